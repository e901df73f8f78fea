"""Device plane REST: login and alarms. (Videos are in ``videos.py``, the WebSocket in ``device_ws.py``.)"""

from __future__ import annotations

from ..models import format_time, parse_alarm, utcnow
from .base import BaseHandler


class DeviceLoginHandler(BaseHandler):
    roles = {"POST": None}

    async def post(self) -> None:
        body = self.json_object()
        token, expires = await self.services.device_login(body.get("imei"), body.get("secret"))
        self.write_json({"token": token, "expires_at": format_time(expires)})


class DeviceHandler(BaseHandler):
    """A device-token call: the device must still exist and be enabled; its IMEI comes from the token."""

    async def prepare(self) -> None:
        await super().prepare()
        if self.principal is not None:
            await self.services.authenticate_device(self.principal)

    @property
    def imei(self) -> str:
        assert self.principal is not None
        return self.principal.sub


class AlarmsHandler(DeviceHandler):
    roles = {"POST": ("device",)}

    async def post(self) -> None:
        alarm = parse_alarm(self.json_body(), utcnow())
        stored, created = await self.services.report_alarm(self.imei, alarm)
        self.write_json(stored, 201 if created else 200)


def routes() -> list:
    return [
        (r"/api/v1/device/login", DeviceLoginHandler),
        (r"/api/v1/device/alarms", AlarmsHandler),
    ]
