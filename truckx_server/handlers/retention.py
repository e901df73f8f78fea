"""Retention: what the stores hold and what the last retention pass removed. (The passes themselves run
in the background, ``domain/retention.py``.)"""

from __future__ import annotations

from ..vocab import READ
from .base import AdminHandler


class StorageHandler(AdminHandler):
    roles = {"GET": READ}

    async def get(self) -> None:
        self.write_json(await self.retention.storage())


def routes() -> list:
    return [(r"/api/v1/admin/storage", StorageHandler)]
