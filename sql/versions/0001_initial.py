"""initial schema: devices, users, alarms + files, video index, commands

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
JsonText = sa.JSON().with_variant(mysql.JSON(), "mysql", "mariadb")
MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin",
         "mariadb_engine": "InnoDB", "mariadb_charset": "utf8mb4", "mariadb_collate": "utf8mb4_bin"}


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("imei", sa.String(15), primary_key=True),
        sa.Column("name", sa.String(128), nullable=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("last_seen", Timestamp, nullable=True),
        **MYSQL,
    )
    op.create_table(
        "users",
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        **MYSQL,
    )
    op.create_table(
        "alarms",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("imei", sa.String(15), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("ts", Timestamp, nullable=False),
        sa.Column("lat", sa.Float, nullable=False),
        sa.Column("lon", sa.Float, nullable=False),
        sa.Column("speed_kmh", sa.Float, nullable=True),
        sa.Column("details", JsonText, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("received_at", Timestamp, nullable=False),
        sa.Column("acknowledged_by", sa.String(64), nullable=True),
        sa.Column("acknowledged_at", Timestamp, nullable=True),
        sa.Column("ack_note", sa.Text, nullable=True),
        sa.Column("cleared_by", sa.String(64), nullable=True),
        sa.Column("cleared_at", Timestamp, nullable=True),
        **MYSQL,
    )
    op.create_index("ix_alarms_ts_id", "alarms", ["ts", "id"])
    op.create_index("ix_alarms_imei_ts_id", "alarms", ["imei", "ts", "id"])
    op.create_index("ix_alarms_type_ts_id", "alarms", ["type", "ts", "id"])
    op.create_index("ix_alarms_status_ts_id", "alarms", ["status", "ts", "id"])
    op.create_table(
        "alarm_files",
        sa.Column("alarm_id", sa.String(36), sa.ForeignKey("alarms.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("imei", sa.String(15), nullable=False),
        **MYSQL,
    )
    op.create_index("ix_alarm_files_imei_name", "alarm_files", ["imei", "name"])
    op.create_table(
        "videos",
        sa.Column("imei", sa.String(15), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("complete", sa.Boolean, nullable=False),
        sa.Column("uploaded_at", Timestamp, nullable=True),
        **MYSQL,
    )
    op.create_table(
        "commands",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("imei", sa.String(15), nullable=False),
        sa.Column("command", sa.String(32), nullable=False),
        sa.Column("args", JsonText, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.Column("sent_at", Timestamp, nullable=True),
        sa.Column("finished_at", Timestamp, nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        **MYSQL,
    )
    op.create_index("ix_commands_imei_status_created", "commands", ["imei", "status", "created_at"])
    op.create_index("ix_commands_status_expires", "commands", ["status", "expires_at"])


def downgrade() -> None:
    for table in ("commands", "videos", "alarm_files", "alarms", "users", "devices"):
        op.drop_table(table)
