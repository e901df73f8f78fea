"""The relational store (SQLAlchemy Core over aiosqlite or aiomysql): one engine, one module per
aggregate. ``SqlStore(url).devices.get(imei)``, ``.users``, ``.alarms``, ``.videos``, ``.commands``,
``.sessions``, ``.retention``, ``.uploads``, ``.audit``, ``.webhooks``, ``.geofences``."""

from __future__ import annotations

from .alarms import AlarmRows
from .audit import AuditRows
from .commands import CommandRows
from .devices import DeviceRows
from .engine import SqlEngine, async_url, sync_url
from .geofences import GeofenceRows
from .sessions import SessionRows
from .retention import RetentionRows
from .uploads import UploadRows
from .users import UserRows
from .videos import VideoRows
from .webhooks import WebhookRows

__all__ = ["SqlStore", "async_url", "sync_url"]


class SqlStore:
    def __init__(self, url: str, pool_size: int = 10, timeout_s: float = 10.0, retries: int = 3) -> None:
        self.db = SqlEngine(url, pool_size=pool_size, timeout_s=timeout_s, retries=retries)
        self.url = url
        self.dialect = self.db.dialect
        self.devices = DeviceRows(self.db)
        self.users = UserRows(self.db)
        self.alarms = AlarmRows(self.db)
        self.videos = VideoRows(self.db)
        self.commands = CommandRows(self.db)
        self.sessions = SessionRows(self.db)
        self.retention = RetentionRows(self.db)
        self.uploads = UploadRows(self.db)
        self.audit = AuditRows(self.db)
        self.webhooks = WebhookRows(self.db)
        self.geofences = GeofenceRows(self.db)

    async def ping(self) -> None:
        await self.db.ping()

    async def close(self) -> None:
        await self.db.close()
