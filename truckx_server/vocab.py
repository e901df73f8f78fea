"""The closed vocabularies of the contract, in one place: the OpenAPI document, the handlers, the domain
rules, the CLI and the simulator import them from here."""

from __future__ import annotations

ALARM_TYPES = ("VIBRATION", "OVERSPEED", "CRASH", "HARD_ACCELERATION", "HARD_BRAKE", "SHARP_TURN")
ALARM_STATUSES = ("active", "acknowledged", "cleared")

COMMANDS = ("reset", "set_report_interval", "request_video")
COMMAND_STATUSES = ("queued", "sent", "succeeded", "failed", "expired")
FINAL_COMMAND_STATUSES = frozenset({"succeeded", "failed", "expired"})

ROLE_DEVICE, ROLE_ADMIN, ROLE_VIEWER = "device", "admin", "viewer"
#: roles of admin-plane users
ROLES = (ROLE_ADMIN, ROLE_VIEWER)
#: who may call what on the admin plane
READ = (ROLE_ADMIN, ROLE_VIEWER)
WRITE = (ROLE_ADMIN,)

#: events on the admin feed (and the bus)
EVENT_TYPES = ("location", "alarm", "device_status", "command_status", "video")

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
