"""Admin plane REST. Every handler declares ``roles`` per method; a method without an entry is refused."""

from __future__ import annotations

from ..errors import InvalidArgument
from ..models import format_time
from .base import BaseHandler

READ = ("admin", "viewer")
WRITE = ("admin",)


class AdminLoginHandler(BaseHandler):
    roles = {"POST": None}

    async def post(self) -> None:
        body = self.json_object()
        token, expires, role = await self.services.admin_login(body.get("username"), body.get("password"),
                                                               self.request.remote_ip or "")
        self.write_json({"token": token, "expires_at": format_time(expires), "role": role})


class DevicesHandler(BaseHandler):
    roles = {"POST": WRITE}
    max_body_bytes = 16 * 1024 * 1024  # bulk registration of up to 10,000 devices

    async def post(self) -> None:
        body = self.json_object()
        if "devices" in body:
            entries = body["devices"]
            if not isinstance(entries, list):
                raise InvalidArgument("devices must be a list")
            created = await self.services.register_devices(entries)
            self.write_json({"devices": created}, 201)
        else:
            created = await self.services.register_devices([body])
            self.write_json(created[0], 201)


def routes() -> list:
    return [
        (r"/api/v1/admin/login", AdminLoginHandler),
        (r"/api/v1/admin/devices", DevicesHandler),
    ]
