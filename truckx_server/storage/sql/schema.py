"""The relational schema as SQLAlchemy Core tables, for building queries.

The database itself is created and changed only by the Alembic migrations in ``sql/versions``; a test
checks that the migrated database and these tables agree.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

metadata = sa.MetaData()

#: microsecond datetimes on MySQL/MariaDB (DATETIME(6)); SQLite stores ISO text, which sorts correctly
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
JsonText = sa.JSON().with_variant(mysql.JSON(), "mysql", "mariadb")
#: double precision on every backend (plain Float is single-precision FLOAT on MySQL; 0002)
Double = sa.Float().with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")

devices = sa.Table(
    "devices", metadata,
    sa.Column("imei", sa.String(15), primary_key=True),
    sa.Column("name", sa.String(128), nullable=True),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("last_seen", Timestamp, nullable=True),
    #: in every device token; rotating the secret bumps it, so older tokens stop working (0003)
    sa.Column("secret_version", sa.Integer, nullable=False, server_default="0"),
    #: the presence last announced to webhooks: null (never connected), ``online`` or ``offline``, and
    #: when a socket of the device was last known open anywhere (renewed while one is; 0012)
    sa.Column("presence", sa.String(8), nullable=True),
    sa.Column("presence_at", Timestamp, nullable=True),
    sa.Index("ix_devices_presence", "presence", "presence_at"),
)

users = sa.Table(
    "users", metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    #: in every token of this user (``ver``); drawn afresh at random on create, password and role change,
    #: so older tokens stop working and a re-created user never gets its former self's back (0010)
    sa.Column("token_version", sa.BigInteger, nullable=False, server_default="0"),
)

alarms = sa.Table(
    "alarms", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("imei", sa.String(15), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("ts", Timestamp, nullable=False),
    sa.Column("lat", Double, nullable=False),
    sa.Column("lon", Double, nullable=False),
    sa.Column("speed_kmh", Double, nullable=True),
    sa.Column("details", JsonText, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("received_at", Timestamp, nullable=False),
    sa.Column("acknowledged_by", sa.String(64), nullable=True),
    sa.Column("acknowledged_at", Timestamp, nullable=True),
    sa.Column("ack_note", sa.Text, nullable=True),
    sa.Column("cleared_by", sa.String(64), nullable=True),
    sa.Column("cleared_at", Timestamp, nullable=True),
    sa.Index("ix_alarms_ts_id", "ts", "id"),
    sa.Index("ix_alarms_imei_ts_id", "imei", "ts", "id"),
    sa.Index("ix_alarms_type_ts_id", "type", "ts", "id"),
    sa.Index("ix_alarms_status_ts_id", "status", "ts", "id"),
)

alarm_files = sa.Table(
    "alarm_files", metadata,
    sa.Column("alarm_id", sa.String(36), sa.ForeignKey("alarms.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("imei", sa.String(15), nullable=False),
    sa.Index("ix_alarm_files_imei_name", "imei", "name"),
)

videos = sa.Table(
    "videos", metadata,
    sa.Column("imei", sa.String(15), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=True),
    sa.Column("complete", sa.Boolean, nullable=False),
    sa.Column("uploaded_at", Timestamp, nullable=True),
    #: read from the file once it is complete (``media.py``; 0007); null when not a decodable video
    sa.Column("duration_s", Double, nullable=True),
    sa.Column("width", sa.Integer, nullable=True),
    sa.Column("height", sa.Integer, nullable=True),
    sa.Column("codec", sa.String(32), nullable=True),
    sa.Column("thumbnail", sa.Boolean, nullable=False, server_default=sa.false()),
    #: when the file was read (null: not yet)
    sa.Column("probed_at", Timestamp, nullable=True),
    sa.Index("ix_videos_uploaded_at", "uploaded_at", "imei", "name"),
    sa.Index("ix_videos_probed_at", "probed_at", "imei", "name"),
)

#: browser sessions of the fleet console (0007): keyed by the SHA-256 of the cookie, never the cookie
sessions = sa.Table(
    "sessions", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("username", sa.String(64), nullable=False),
    #: the principal of the token the sign-in issued (sub, role, and what else a token carries)
    sa.Column("principal", JsonText, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.Index("ix_sessions_expires_at", "expires_at"),
    sa.Index("ix_sessions_username", "username"),
)

commands = sa.Table(
    "commands", metadata,
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
    sa.Index("ix_commands_imei_status_created", "imei", "status", "created_at"),
    sa.Index("ix_commands_status_expires", "status", "expires_at"),
    sa.Index("ix_commands_created_id", "created_at", "id"),  # the admin's list, newest first (0010)
)

#: every change made through the admin plane, written in the same transaction as the change (0010)
audit = sa.Table(
    "audit", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("at", Timestamp, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("target", sa.String(192), nullable=False),
    sa.Column("detail", JsonText, nullable=True),
    sa.Index("ix_audit_at_id", "at", "id"),
    sa.Index("ix_audit_actor_at_id", "actor", "at", "id"),
    sa.Index("ix_audit_action_at_id", "action", "at", "id"),
    sa.Index("ix_audit_target_at_id", "target", "at", "id"),
)

#: named leases with an expiry: the holder of a lease does the work it names (one retention pass at a
#: time across processes), taken with a conditional UPDATE (0008)
leases = sa.Table(
    "leases", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(128), nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
)

#: what each retention pass removed (the newest ones are kept; 0008)
retention_passes = sa.Table(
    "retention_passes", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("node", sa.String(128), nullable=False),
    sa.Column("started_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp, nullable=False),
    sa.Column("complete", sa.Boolean, nullable=False),
    sa.Column("removed_locations", sa.BigInteger, nullable=False),
    sa.Column("removed_alarms", sa.BigInteger, nullable=False),
    sa.Column("removed_videos", sa.BigInteger, nullable=False),
    sa.Column("removed_video_bytes", sa.BigInteger, nullable=False),
)

#: who is receiving an upload of (imei, name) right now, with a lease (0009): several processes share
#: the uploads, and a newer request of the device takes over from an older one on another process
upload_claims = sa.Table(
    "upload_claims", metadata,
    sa.Column("imei", sa.String(15), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("node_id", sa.String(128), nullable=False),
    sa.Column("token", sa.String(36), nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
)

#: an S3 multipart upload in progress (0009); ``state`` is ``open`` while parts arrive, ``assembled``
#: while a completed object is checked before it becomes visible
s3_uploads = sa.Table(
    "s3_uploads", metadata,
    sa.Column("imei", sa.String(15), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("upload_id", sa.String(1024), nullable=False),
    sa.Column("object_key", sa.String(1024), nullable=False),
    sa.Column("part_size", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Index("ix_s3_uploads_updated", "updated_at"),
)

#: the completed parts of an S3 multipart upload (0009): the durable offset is the sum of their sizes
s3_upload_parts = sa.Table(
    "s3_upload_parts", metadata,
    sa.Column("imei", sa.String(15), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("part_number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("etag", sa.String(128), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.ForeignKeyConstraint(["imei", "name"], ["s3_uploads.imei", "s3_uploads.name"], ondelete="CASCADE"),
)

#: every event a webhook may be told of, written in the same transaction as the change that caused it
#: (``storage/sql/outbox.py``); ``at`` is when the event happened, ``id`` its order (0011)
outbox = sa.Table(
    "outbox", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("at", Timestamp, nullable=False),
    #: the event's JSON as text (0012): MariaDB's JSON type refuses documents nested deeper than 32 levels,
    #: and an alarm's ``details`` may be 31 deep inside the alarm that the event wraps
    sa.Column("data", sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb"), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    #: when the event was fanned out to the deliveries of the endpoints subscribed to it (null: not yet; 0012)
    sa.Column("dispatched_at", Timestamp, nullable=True),
    sa.Index("ix_outbox_created", "created_at"),
    sa.Index("ix_outbox_dispatched_id", "dispatched_at", "id"),
)

#: webhook endpoints (0012): ``secret`` signs every delivery (shown once, on create)
webhooks = sa.Table(
    "webhooks", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("events", JsonText, nullable=False),
    sa.Column("description", sa.String(256), nullable=True),
    sa.Column("secret", sa.String(128), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("created_by", sa.String(64), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Index("ix_webhooks_created_id", "created_at", "id"),
)

#: one delivery per (outbox event, endpoint) (0012): ``message_id`` is the ``webhook-id`` header, the same
#: on every attempt; the oldest pending delivery of an endpoint is its head, the only one sent; a process
#: sending it holds a lease (``lease_holder`` until ``lease_expires_at``)
webhook_deliveries = sa.Table(
    "webhook_deliveries", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String(40), nullable=False),
    sa.Column("webhook_id", sa.String(36), sa.ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("outbox_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
              sa.ForeignKey("outbox.id", ondelete="CASCADE"), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_status_code", sa.Integer, nullable=True),
    sa.Column("last_error", sa.String(256), nullable=True),
    sa.Column("next_attempt_at", Timestamp, nullable=False),
    sa.Column("give_up_at", Timestamp, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("lease_holder", sa.String(128), nullable=True),
    sa.Column("lease_expires_at", Timestamp, nullable=True),
    sa.UniqueConstraint("message_id", name="uq_webhook_deliveries_message_id"),
    sa.UniqueConstraint("outbox_id", "webhook_id", name="uq_webhook_deliveries_event_endpoint"),
    sa.Index("ix_webhook_deliveries_status_hook_id", "status", "webhook_id", "id"),
    sa.Index("ix_webhook_deliveries_hook_id", "webhook_id", "id"),
)

#: geofences (0013): ``geometry`` as given (GeoJSON Polygon/MultiPolygon or ``{"type": "Circle", ...}``),
#: ``imeis`` the devices it applies to (null: every device)
geofences = sa.Table(
    "geofences", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("geometry", JsonText, nullable=False),
    sa.Column("imeis", JsonText, nullable=True),
    sa.Column("created_by", sa.String(64), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Index("ix_geofences_created_id", "created_at", "id"),
)

#: each transition of a device across a fence, with the first point on the new side (0013); no foreign
#: key: a deleted fence's history stays
geofence_events = sa.Table(
    "geofence_events", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("geofence_id", sa.String(36), nullable=False),
    sa.Column("imei", sa.String(15), nullable=False),
    sa.Column("transition", sa.String(8), nullable=False),
    sa.Column("ts", Timestamp, nullable=False),
    sa.Column("lat", Double, nullable=False),
    sa.Column("lon", Double, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index("ux_geofence_events_fence_imei_ts", "geofence_id", "imei", "ts", unique=True),
    sa.Index("ix_geofence_events_ts_id", "ts", "id"),
    sa.Index("ix_geofence_events_imei_ts_id", "imei", "ts", "id"),
    sa.Index("ix_geofence_events_fence_ts_id", "geofence_id", "ts", "id"),
)

#: per device: the newest point evaluated against the fences, and a version every evaluation moves
#: (conditional UPDATE: two evaluators of one device never both commit; 0013)
geofence_devices = sa.Table(
    "geofence_devices", metadata,
    sa.Column("imei", sa.String(15), primary_key=True),
    sa.Column("last_ts", Timestamp, nullable=True),
    sa.Column("version", sa.BigInteger, nullable=False),
)

#: per (device, fence): the device is inside the fence since ``since`` (no row: outside; 0013). No foreign
#: key: deleting a fence deletes its rows in its transaction, and a row an evaluation wrote meanwhile for
#: a fence gone is dropped by the next evaluation of that device
geofence_inside = sa.Table(
    "geofence_inside", metadata,
    sa.Column("imei", sa.String(15), primary_key=True),
    sa.Column("geofence_id", sa.String(36), primary_key=True),
    sa.Column("since", Timestamp, nullable=False),
    sa.Index("ix_geofence_inside_fence", "geofence_id"),
)
