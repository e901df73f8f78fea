"""browser sessions of the fleet console; video metadata and thumbnails

- ``sessions``: one row per signed-in browser, keyed by the SHA-256 of its cookie (the cookie itself is
  never stored), with the user and the principal its sign-in's token carried.
- ``videos`` gains what ``media.py`` reads from a file once it is complete: ``duration_s``, ``width``,
  ``height``, ``codec``, ``thumbnail`` (whether one was made) and ``probed_at`` (null: not read yet), and
  an index for the fleet-wide list (newest first) and one for finding what is still to be read.

Revision ID: 0007
Revises: 0003
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0007"
down_revision = "0003"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
JsonText = sa.JSON().with_variant(mysql.JSON(), "mysql", "mariadb")
Double = sa.Float().with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")
MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin",
         "mariadb_engine": "InnoDB", "mariadb_charset": "utf8mb4", "mariadb_collate": "utf8mb4_bin"}


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("principal", JsonText, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        **MYSQL,
    )
    op.create_index("ix_sessions_expires_at", "sessions", ["expires_at"])
    op.create_index("ix_sessions_username", "sessions", ["username"])
    with op.batch_alter_table("videos") as batch:
        batch.add_column(sa.Column("duration_s", Double, nullable=True))
        batch.add_column(sa.Column("width", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("height", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("codec", sa.String(32), nullable=True))
        batch.add_column(sa.Column("thumbnail", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("probed_at", Timestamp, nullable=True))
    op.create_index("ix_videos_uploaded_at", "videos", ["uploaded_at", "imei", "name"])
    op.create_index("ix_videos_probed_at", "videos", ["probed_at", "imei", "name"])


def downgrade() -> None:
    op.drop_index("ix_videos_probed_at", "videos")
    op.drop_index("ix_videos_uploaded_at", "videos")
    with op.batch_alter_table("videos") as batch:
        for name in ("probed_at", "thumbnail", "codec", "height", "width", "duration_s"):
            batch.drop_column(name)
    op.drop_index("ix_sessions_username", "sessions")
    op.drop_index("ix_sessions_expires_at", "sessions")
    op.drop_table("sessions")
