"""retention: a lease table (one process at a time runs a pass) and the history of retention passes
(old videos are found with ix_videos_uploaded_at, made by 0007)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin",
         "mariadb_engine": "InnoDB", "mariadb_charset": "utf8mb4", "mariadb_collate": "utf8mb4_bin"}


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        **MYSQL,
    )
    op.create_table(
        "retention_passes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("node", sa.String(128), nullable=False),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("finished_at", Timestamp, nullable=False),
        sa.Column("complete", sa.Boolean, nullable=False),
        sa.Column("removed_locations", sa.BigInteger, nullable=False),
        sa.Column("removed_alarms", sa.BigInteger, nullable=False),
        sa.Column("removed_videos", sa.BigInteger, nullable=False),
        sa.Column("removed_video_bytes", sa.BigInteger, nullable=False),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("retention_passes")
    op.drop_table("leases")
