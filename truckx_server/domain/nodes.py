"""Nodes: the server processes of this deployment, as the bus knows them (each heartbeats on it)."""

from __future__ import annotations

from typing import Any

from ..bus import Bus


class NodeService:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    @property
    def node_id(self) -> str:
        return self.bus.node_id

    async def list(self) -> dict[str, Any]:
        """``{"items": [{node_id, started_at, sessions, last_heartbeat}]}``, by node id."""
        return {"items": await self.bus.nodes()}
