"""webhook endpoints and their deliveries (one per outbox event and endpoint), the outbox's fan-out mark,
and each device's announced presence (device.online / device.offline)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
JsonText = sa.JSON().with_variant(mysql.JSON(), "mysql", "mariadb")
BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin",
         "mariadb_engine": "InnoDB", "mariadb_charset": "utf8mb4", "mariadb_collate": "utf8mb4_bin"}


def upgrade() -> None:
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("events", JsonText, nullable=False),
        sa.Column("description", sa.String(256), nullable=True),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        **MYSQL,
    )
    op.create_index("ix_webhooks_created_id", "webhooks", ["created_at", "id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(40), nullable=False),
        sa.Column("webhook_id", sa.String(36), sa.ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("outbox_id", BigId, sa.ForeignKey("outbox.id", ondelete="CASCADE"), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(256), nullable=True),
        sa.Column("next_attempt_at", Timestamp, nullable=False),
        sa.Column("give_up_at", Timestamp, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("lease_holder", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", Timestamp, nullable=True),
        sa.UniqueConstraint("message_id", name="uq_webhook_deliveries_message_id"),
        sa.UniqueConstraint("outbox_id", "webhook_id", name="uq_webhook_deliveries_event_endpoint"),
        **MYSQL,
    )
    op.create_index("ix_webhook_deliveries_status_hook_id", "webhook_deliveries", ["status", "webhook_id", "id"])
    op.create_index("ix_webhook_deliveries_hook_id", "webhook_deliveries", ["webhook_id", "id"])
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("dispatched_at", Timestamp, nullable=True))
        # JSON as text: MariaDB's JSON type refuses documents nested deeper than 32 levels, and an alarm's
        # details may be 31 deep inside the alarm an event wraps
        batch.alter_column("data", existing_type=JsonText, type_=LongText, existing_nullable=False)
    op.create_index("ix_outbox_dispatched_id", "outbox", ["dispatched_at", "id"])
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("presence", sa.String(8), nullable=True))
        batch.add_column(sa.Column("presence_at", Timestamp, nullable=True))
    op.create_index("ix_devices_presence", "devices", ["presence", "presence_at"])


def downgrade() -> None:
    op.drop_index("ix_devices_presence", table_name="devices")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("presence_at")
        batch.drop_column("presence")
    op.drop_index("ix_outbox_dispatched_id", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("dispatched_at")
        batch.alter_column("data", existing_type=LongText, type_=JsonText, existing_nullable=False)
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
