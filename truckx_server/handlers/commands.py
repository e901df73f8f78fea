"""Commands: queue one for a device; read one, optionally waiting for its final state.
(Delivery and results travel over the device WebSocket, ``device_socket.py``.)"""

from __future__ import annotations

from ..domain.commands import MAX_WAIT_S
from ..vocab import READ, WRITE
from .base import P, AdminHandler


class DeviceCommandsHandler(AdminHandler):
    roles = {"POST": WRITE}

    async def post(self, imei: str) -> None:
        self.write_json(await self.commands.send(imei, self.json_body(), self.actor), 202)


class CommandHandler(AdminHandler):
    roles = {"GET": READ}

    async def get(self, command_id: str) -> None:
        wait = self.query_int("wait", 0, 0, MAX_WAIT_S)
        self.write_json(await self.commands.get(command_id, wait))


def routes() -> list:
    return [
        (rf"/api/v1/admin/devices/(?P<imei>{P})/commands", DeviceCommandsHandler),
        (rf"/api/v1/admin/commands/(?P<command_id>{P})", CommandHandler),
    ]
