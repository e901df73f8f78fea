"""MySQL/MariaDB: alarm coordinates and speed as DOUBLE

``sa.Float`` renders as single-precision FLOAT on MySQL/MariaDB (about 7 significant digits: 52.123456789
came back as 52.1235), while SQLite stores a double. DOUBLE keeps both backends identical. Nothing
changes on SQLite.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS = (("lat", False), ("lon", False), ("speed_kmh", True))


def upgrade() -> None:
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    for name, nullable in _COLUMNS:
        op.alter_column("alarms", name, existing_type=sa.Float(), type_=mysql.DOUBLE(), existing_nullable=nullable,
                        nullable=nullable)


def downgrade() -> None:
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    for name, nullable in _COLUMNS:
        op.alter_column("alarms", name, existing_type=mysql.DOUBLE(), type_=sa.Float(), existing_nullable=nullable,
                        nullable=nullable)
