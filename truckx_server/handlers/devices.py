"""Devices: device login (device plane); register, list, show, rename/disable and rotate the secret
(admin plane)."""

from __future__ import annotations

from ..errors import InvalidArgument
from ..models import format_time
from ..vocab import READ, WRITE
from .base import P, AdminHandler, BaseHandler

class DeviceLoginHandler(BaseHandler):
    roles = {"POST": None}
    max_body_bytes = 4096  # an IMEI and a secret

    async def post(self) -> None:
        body = self.json_object()
        token, expires = await self.devices.login(body.get("imei"), body.get("secret"), self.client_address)
        self.write_json({"token": token, "expires_at": format_time(expires)})


class DevicesHandler(AdminHandler):
    roles = {"GET": READ, "POST": WRITE}
    max_body_bytes = 16 * 1024 * 1024  # bulk registration of up to 10,000 devices

    async def get(self) -> None:
        self.write_json(await self.devices.list(*self.page_args()))

    async def post(self) -> None:
        body = self.json_object()
        if "devices" in body:
            entries = body["devices"]
            if not isinstance(entries, list):
                raise InvalidArgument("devices must be a list")
            self.write_json({"devices": await self.devices.register(entries, self.actor)}, 201)
        else:
            self.write_json((await self.devices.register([body], self.actor))[0], 201)


class DeviceHandler(AdminHandler):
    roles = {"GET": READ, "PATCH": WRITE}

    async def get(self, imei: str) -> None:
        self.write_json(await self.devices.get(imei))

    async def patch(self, imei: str) -> None:
        self.write_json(await self.devices.update(imei, self.json_object(), self.actor))


class DeviceSecretHandler(AdminHandler):
    roles = {"POST": WRITE}

    async def post(self, imei: str) -> None:
        self.write_json(await self.devices.rotate_secret(imei, self.actor))


def routes() -> list:
    return [
        (r"/api/v1/device/login", DeviceLoginHandler),
        (r"/api/v1/admin/devices", DevicesHandler),
        (rf"/api/v1/admin/devices/(?P<imei>{P})", DeviceHandler),
        (rf"/api/v1/admin/devices/(?P<imei>{P})/secret", DeviceSecretHandler),
    ]
