"""The closed vocabularies of the contract, in one place: the OpenAPI document, the handlers, the domain
rules, the CLI and the simulator import them from here."""

from __future__ import annotations

ALARM_TYPES = ("VIBRATION", "OVERSPEED", "CRASH", "HARD_ACCELERATION", "HARD_BRAKE", "SHARP_TURN")
ALARM_STATUSES = ("active", "acknowledged", "cleared")

COMMANDS = ("reset", "set_report_interval", "request_video")
COMMAND_STATUSES = ("queued", "sent", "succeeded", "failed", "expired", "cancelled")
FINAL_COMMAND_STATUSES = frozenset({"succeeded", "failed", "expired", "cancelled"})

ROLE_DEVICE, ROLE_ADMIN, ROLE_OPERATOR, ROLE_VIEWER = "device", "admin", "operator", "viewer"
#: roles of admin-plane users
ROLES = (ROLE_ADMIN, ROLE_OPERATOR, ROLE_VIEWER)
#: who may call what on the admin plane (every handler's ``roles`` and every OpenAPI ``x-roles``):
#: reading anything (and changing one's own password)
READ = (ROLE_ADMIN, ROLE_OPERATOR, ROLE_VIEWER)
#: the day-to-day operations: acknowledge and clear alarms, send and cancel commands
OPERATE = (ROLE_ADMIN, ROLE_OPERATOR)
#: every other change (devices, users), and reading the audit log
WRITE = (ROLE_ADMIN,)
AUDIT = (ROLE_ADMIN,)
#: what each role may do, for the messages of a refused call
ROLE_CAN = {ROLE_ADMIN: "do everything on the admin plane",
            ROLE_OPERATOR: "read, acknowledge and clear alarms, and send and cancel commands",
            ROLE_VIEWER: "only read"}

#: invalidation kind on the bus: every token issued to this user before is revoked (deleted, password or
#: role changed); each process drops its cached check and closes the user's event feeds
USER_REVOKED = "user.revoked"

#: the audit log's actions (``GET /api/v1/admin/audit?action=``); each names ``target`` in its comment.
#: Add new audited actions here (and record them with ``models.AuditEntry`` in the same transaction)
AUDIT_ACTIONS = (
    "device.register",       # imei
    "device.rename",         # imei
    "device.disable",        # imei
    "device.enable",         # imei
    "device.rotate_secret",  # imei
    "user.create",           # username
    "user.delete",           # username
    "user.password",         # username
    "user.role",             # username
    "alarm.ack",             # alarm id
    "alarm.clear",           # alarm id
    "command.send",          # command id
    "command.cancel",        # command id
    "video.delete",          # imei/name
    "webhook.create",        # webhook id
    "webhook.update",        # webhook id
    "webhook.delete",        # webhook id
    "webhook.retry",         # webhook id/delivery id
    "geofence.create",       # geofence id
    "geofence.update",       # geofence id
    "geofence.delete",       # geofence id
)

#: the webhook event types (``models.OutboxEvent.type``, ``POST /api/v1/admin/webhooks`` ``events``)
WEBHOOK_EVENTS = ("alarm.created", "alarm.acknowledged", "alarm.cleared", "device.online", "device.offline",
                  "geofence.enter", "geofence.exit", "command.finished", "video.uploaded")

#: events on the admin feed (and the bus)
EVENT_TYPES = ("location", "alarm", "device_status", "command_status", "video", "geofence")

#: geofence transitions (``GET /api/v1/admin/geofence-events``; webhooks ``geofence.<transition>``)
GEOFENCE_TRANSITIONS = ("enter", "exit")
#: invalidation kind on the bus: the fences changed; every process reloads its compiled fences
GEOFENCES_CHANGED = "geofences.changed"

#: invalidation kinds on the bus about devices (``bus.Bus.invalidate``): published by domain/devices.py,
#: heard by every service that holds something of a device (its credentials, its socket, its uploads)
DEVICE_DISABLED, DEVICE_ROTATED, DEVICE_CHANGED = "device.disabled", "device.rotated", "device.changed"

# WebSocket close codes
CLOSE_GOING_AWAY = 1001
#: a fault of the server itself while handling a frame (logged); reconnect and resend
CLOSE_INTERNAL_ERROR = 1011
CLOSE_CREDENTIALS_CHANGED = 4401
CLOSE_DISABLED = 4403
CLOSE_REPLACED = 4409
CLOSE_TOO_SLOW = 4429
