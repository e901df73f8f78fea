"""The processes of the deployment: ``GET /api/v1/admin/nodes`` (admin, viewer)."""

from __future__ import annotations

from ..vocab import READ
from .base import AdminHandler


class NodesHandler(AdminHandler):
    roles = {"GET": READ}

    async def get(self) -> None:
        self.write_json(await self.nodes.list())


def routes() -> list:
    return [(r"/api/v1/admin/nodes", NodesHandler)]
