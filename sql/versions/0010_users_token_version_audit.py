"""users.token_version (in every admin token; revoked on delete, password or role change), the audit log,
and an index for the admin's command list

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
JsonText = sa.JSON().with_variant(mysql.JSON(), "mysql", "mariadb")
MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin",
         "mariadb_engine": "InnoDB", "mariadb_charset": "utf8mb4", "mariadb_collate": "utf8mb4_bin"}


def upgrade() -> None:
    # tokens issued before this revision carry no "ver" and are refused: their users log in again
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("token_version", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_table(
        "audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("at", Timestamp, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target", sa.String(192), nullable=False),
        sa.Column("detail", JsonText, nullable=True),
        **MYSQL,
    )
    op.create_index("ix_audit_at_id", "audit", ["at", "id"])
    op.create_index("ix_audit_actor_at_id", "audit", ["actor", "at", "id"])
    op.create_index("ix_audit_action_at_id", "audit", ["action", "at", "id"])
    op.create_index("ix_audit_target_at_id", "audit", ["target", "at", "id"])
    op.create_index("ix_commands_created_id", "commands", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_commands_created_id", table_name="commands")
    op.drop_table("audit")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("token_version")
