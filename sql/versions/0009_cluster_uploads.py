"""upload_claims (leases on uploads in progress, across processes); s3_uploads and s3_upload_parts (S3
multipart uploads and their completed parts)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin",
         "mariadb_engine": "InnoDB", "mariadb_charset": "utf8mb4", "mariadb_collate": "utf8mb4_bin"}


def upgrade() -> None:
    op.create_table(
        "upload_claims",
        sa.Column("imei", sa.String(15), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("node_id", sa.String(128), nullable=False),
        sa.Column("token", sa.String(36), nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        **MYSQL,
    )
    op.create_table(
        "s3_uploads",
        sa.Column("imei", sa.String(15), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("upload_id", sa.String(1024), nullable=False),
        sa.Column("object_key", sa.String(1024), nullable=False),
        sa.Column("part_size", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        **MYSQL,
    )
    op.create_index("ix_s3_uploads_updated", "s3_uploads", ["updated_at"])
    op.create_table(
        "s3_upload_parts",
        sa.Column("imei", sa.String(15), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("part_number", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("etag", sa.String(128), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(["imei", "name"], ["s3_uploads.imei", "s3_uploads.name"], ondelete="CASCADE"),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("s3_upload_parts")
    op.drop_index("ix_s3_uploads_updated", table_name="s3_uploads")
    op.drop_table("s3_uploads")
    op.drop_table("upload_claims")
