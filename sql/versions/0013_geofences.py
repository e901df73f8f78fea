"""geofences: the fences (GeoJSON Polygon/MultiPolygon or a geodesic circle, for every device or a list),
their transitions, and the evaluation state per device (newest evaluated point, with a version for
conditional updates) and per (device, fence) (inside)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
JsonText = sa.JSON().with_variant(mysql.JSON(), "mysql", "mariadb")
Double = sa.Float().with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")
MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin",
         "mariadb_engine": "InnoDB", "mariadb_charset": "utf8mb4", "mariadb_collate": "utf8mb4_bin"}


def upgrade() -> None:
    op.create_table(
        "geofences",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("geometry", JsonText, nullable=False),
        sa.Column("imeis", JsonText, nullable=True),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        **MYSQL,
    )
    op.create_index("ix_geofences_created_id", "geofences", ["created_at", "id"])
    op.create_table(
        "geofence_events",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("geofence_id", sa.String(36), nullable=False),
        sa.Column("imei", sa.String(15), nullable=False),
        sa.Column("transition", sa.String(8), nullable=False),
        sa.Column("ts", Timestamp, nullable=False),
        sa.Column("lat", Double, nullable=False),
        sa.Column("lon", Double, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        **MYSQL,
    )
    op.create_index("ux_geofence_events_fence_imei_ts", "geofence_events", ["geofence_id", "imei", "ts"], unique=True)
    op.create_index("ix_geofence_events_ts_id", "geofence_events", ["ts", "id"])
    op.create_index("ix_geofence_events_imei_ts_id", "geofence_events", ["imei", "ts", "id"])
    op.create_index("ix_geofence_events_fence_ts_id", "geofence_events", ["geofence_id", "ts", "id"])
    op.create_table(
        "geofence_devices",
        sa.Column("imei", sa.String(15), primary_key=True),
        sa.Column("last_ts", Timestamp, nullable=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        **MYSQL,
    )
    op.create_table(
        "geofence_inside",
        sa.Column("imei", sa.String(15), primary_key=True),
        sa.Column("geofence_id", sa.String(36), primary_key=True),
        sa.Column("since", Timestamp, nullable=False),
        **MYSQL,
    )
    op.create_index("ix_geofence_inside_fence", "geofence_inside", ["geofence_id"])


def downgrade() -> None:
    op.drop_table("geofence_inside")
    op.drop_table("geofence_devices")
    op.drop_table("geofence_events")
    op.drop_table("geofences")
