"""Alarms: a device reports one (device plane); admins search, show, acknowledge and clear them."""

from __future__ import annotations

from ..vocab import OPERATE, READ
from .base import P, AdminHandler, DeviceHandler


class DeviceAlarmsHandler(DeviceHandler):
    roles = {"POST": ("device",)}

    async def post(self) -> None:
        stored, created = await self.alarms.report(self.imei, self.json_body())
        self.write_json(stored, 201 if created else 200)


class AlarmsHandler(AdminHandler):
    roles = {"GET": READ}

    async def get(self) -> None:
        limit, cursor = self.page_args()
        arg = self.get_query_argument
        self.write_json(await self.alarms.search(
            imeis=self.query_list("imei"), types=self.query_list("type"), statuses=self.query_list("status"),
            since=arg("since", None), until=arg("until", None), bbox=arg("bbox", None),
            has_video=arg("has_video", None), limit=limit, cursor=cursor))


class AlarmHandler(AdminHandler):
    roles = {"GET": READ}

    async def get(self, alarm_id: str) -> None:
        self.write_json(await self.alarms.get(alarm_id))


class AlarmAckHandler(AdminHandler):
    roles = {"POST": OPERATE}

    async def post(self, alarm_id: str) -> None:
        self.write_json(await self.alarms.ack(alarm_id, self.actor, self.optional_object()))


class AlarmClearHandler(AdminHandler):
    roles = {"POST": OPERATE}

    async def post(self, alarm_id: str) -> None:
        self.optional_object()  # an optional body must still be a JSON object
        self.write_json(await self.alarms.clear(alarm_id, self.actor))


def routes() -> list:
    return [
        (r"/api/v1/device/alarms", DeviceAlarmsHandler),
        (r"/api/v1/admin/alarms", AlarmsHandler),
        (rf"/api/v1/admin/alarms/(?P<alarm_id>{P})", AlarmHandler),
        (rf"/api/v1/admin/alarms/(?P<alarm_id>{P})/ack", AlarmAckHandler),
        (rf"/api/v1/admin/alarms/(?P<alarm_id>{P})/clear", AlarmClearHandler),
    ]
