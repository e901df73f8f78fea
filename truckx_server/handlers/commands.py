"""Commands: queue one for a device; list them; read one, optionally waiting for its final state; cancel
a queued one. (Delivery and results travel over the device WebSocket, ``device_socket.py``.)"""

from __future__ import annotations

from ..domain.commands import MAX_WAIT_S
from ..vocab import OPERATE, READ
from .base import P, AdminHandler


class DeviceCommandsHandler(AdminHandler):
    roles = {"POST": OPERATE}

    async def post(self, imei: str) -> None:
        self.write_json(await self.commands.send(imei, self.json_body(), self.actor), 202)


class CommandsHandler(AdminHandler):
    roles = {"GET": READ}

    async def get(self) -> None:
        limit, cursor = self.page_args()
        arg = self.get_query_argument
        self.write_json(await self.commands.search(
            imeis=self.query_list("imei"), statuses=self.query_list("status"), since=arg("since", None),
            until=arg("until", None), limit=limit, cursor=cursor))


class CommandHandler(AdminHandler):
    roles = {"GET": READ, "DELETE": OPERATE}

    async def get(self, command_id: str) -> None:
        wait = self.query_int("wait", 0, 0, MAX_WAIT_S)
        self.write_json(await self.commands.get(command_id, wait))

    async def delete(self, command_id: str) -> None:
        self.write_json(await self.commands.cancel(command_id, self.actor))


def routes() -> list:
    return [
        (rf"/api/v1/admin/devices/(?P<imei>{P})/commands", DeviceCommandsHandler),
        (r"/api/v1/admin/commands", CommandsHandler),
        (rf"/api/v1/admin/commands/(?P<command_id>{P})", CommandHandler),
    ]
