"""Admin plane REST. Every handler declares ``roles`` per method; a method without an entry is refused
(405), and every admin route except login needs an admin or viewer token: ``viewer`` may read, only
``admin`` may change anything. The operations live in :mod:`truckx_server.admin_service`."""

from __future__ import annotations

from ..admin_service import MAX_WAIT_S, TRACK_FORMATS, track_csv, track_geojson, track_gpx
from ..errors import InvalidArgument
from ..models import format_time
from .base import AdminHandler, BaseHandler, encode_cursor

READ = ("admin", "viewer")
WRITE = ("admin",)

#: the path parameter pattern: anything up to the next slash; the service validates it (400, not 404)
P = "[^/]+"


class AdminLoginHandler(BaseHandler):
    roles = {"POST": None}

    async def post(self) -> None:
        body = self.json_object()
        token, expires, role = await self.services.admin_login(body.get("username"), body.get("password"),
                                                               self.request.remote_ip or "")
        self.write_json({"token": token, "expires_at": format_time(expires), "role": role})


# -- users ---------------------------------------------------------------------------------------


class UsersHandler(AdminHandler):
    roles = {"GET": READ, "POST": WRITE}

    async def get(self) -> None:
        self.write_json({"items": await self.services.admin.list_users()})

    async def post(self) -> None:
        self.write_json(await self.services.admin.create_user(self.json_object()), 201)


class UserHandler(AdminHandler):
    roles = {"DELETE": WRITE}

    async def delete(self, username: str) -> None:
        await self.services.admin.delete_user(self.actor, username)
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()


# -- devices -------------------------------------------------------------------------------------


class DevicesHandler(AdminHandler):
    roles = {"GET": READ, "POST": WRITE}
    max_body_bytes = 16 * 1024 * 1024  # bulk registration of up to 10,000 devices

    async def get(self) -> None:
        limit, cursor = self.page_args(1)
        items, next_key = await self.services.admin.list_devices(limit, cursor)
        self.write_page(items, next_key)

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


class DeviceHandler(AdminHandler):
    roles = {"GET": READ, "PATCH": WRITE}

    async def get(self, imei: str) -> None:
        self.write_json(await self.services.admin.get_device(imei))

    async def patch(self, imei: str) -> None:
        self.write_json(await self.services.admin.update_device(imei, self.json_object()))


class DeviceSecretHandler(AdminHandler):
    roles = {"POST": WRITE}

    async def post(self, imei: str) -> None:
        self.write_json(await self.services.admin.rotate_secret(imei))


# -- alarms --------------------------------------------------------------------------------------


class AlarmsHandler(AdminHandler):
    roles = {"GET": READ}

    async def get(self) -> None:
        limit, cursor = self.page_args(2)
        arg = self.get_query_argument
        items, next_key = await self.services.admin.search_alarms(
            imeis=self.query_list("imei"), types=self.query_list("type"), statuses=self.query_list("status"),
            since=arg("since", None), until=arg("until", None), bbox=arg("bbox", None),
            has_video=arg("has_video", None), limit=limit, cursor=cursor)
        self.write_page(items, next_key)


class AlarmHandler(AdminHandler):
    roles = {"GET": READ}

    async def get(self, alarm_id: str) -> None:
        self.write_json(await self.services.admin.get_alarm(alarm_id))


class AlarmAckHandler(AdminHandler):
    roles = {"POST": WRITE}

    async def post(self, alarm_id: str) -> None:
        body = self.json_object() if self._body.strip() else {}
        self.write_json(await self.services.admin.ack_alarm(alarm_id, self.actor, body))


class AlarmClearHandler(AdminHandler):
    roles = {"POST": WRITE}

    async def post(self, alarm_id: str) -> None:
        if self._body.strip():
            self.json_object()  # an optional body must still be a JSON object
        self.write_json(await self.services.admin.clear_alarm(alarm_id, self.actor))


# -- locations -----------------------------------------------------------------------------------


class TrackHandler(AdminHandler):
    roles = {"GET": READ}

    async def get(self, imei: str) -> None:
        fmt = self.get_query_argument("format", "json") or "json"
        if fmt not in TRACK_FORMATS:
            raise InvalidArgument("format must be one of " + ", ".join(TRACK_FORMATS))
        limit, cursor = self.page_args(1)
        points, next_key = await self.services.admin.track(
            imei, self.get_query_argument("since", None), self.get_query_argument("until", None), limit, cursor)
        next_cursor = encode_cursor(next_key) if next_key is not None else None
        if next_cursor is not None:
            self.set_header("X-Next-Cursor", next_cursor)
        if fmt == "json":
            self.write_json({"items": [p.to_json() for p in points], "next_cursor": next_cursor})
        elif fmt == "geojson":
            self.set_header("Content-Type", "application/geo+json")
            self.write_json(track_geojson(imei, points, next_cursor))
        elif fmt == "gpx":
            self.set_header("Content-Type", "application/gpx+xml")
            self.set_header("Content-Disposition", f'attachment; filename="{imei}.gpx"')
            self.finish(track_gpx(imei, points))
        else:
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", f'attachment; filename="{imei}.csv"')
            self.finish(track_csv(points))


class LatestLocationsHandler(AdminHandler):
    roles = {"GET": READ}

    async def get(self) -> None:
        self.write_json({"items": await self.services.admin.latest(self.query_list("imei"))})


# -- commands ------------------------------------------------------------------------------------


class DeviceCommandsHandler(AdminHandler):
    roles = {"POST": WRITE}

    async def post(self, imei: str) -> None:
        cmd = await self.services.send_command(imei, self.json_body(), self.actor)
        self.write_json(cmd, 202)


class CommandHandler(AdminHandler):
    roles = {"GET": READ}

    async def get(self, command_id: str) -> None:
        wait = self.query_int("wait", 0, 0, MAX_WAIT_S)
        self.write_json(await self.services.admin.get_command(command_id, wait))


def routes() -> list:
    return [
        (r"/api/v1/admin/login", AdminLoginHandler),
        (r"/api/v1/admin/users", UsersHandler),
        (rf"/api/v1/admin/users/(?P<username>{P})", UserHandler),
        (r"/api/v1/admin/devices", DevicesHandler),
        (rf"/api/v1/admin/devices/(?P<imei>{P})", DeviceHandler),
        (rf"/api/v1/admin/devices/(?P<imei>{P})/secret", DeviceSecretHandler),
        (rf"/api/v1/admin/devices/(?P<imei>{P})/locations", TrackHandler),
        (rf"/api/v1/admin/devices/(?P<imei>{P})/commands", DeviceCommandsHandler),
        (r"/api/v1/admin/alarms", AlarmsHandler),
        (rf"/api/v1/admin/alarms/(?P<alarm_id>{P})", AlarmHandler),
        (rf"/api/v1/admin/alarms/(?P<alarm_id>{P})/ack", AlarmAckHandler),
        (rf"/api/v1/admin/alarms/(?P<alarm_id>{P})/clear", AlarmClearHandler),
        (r"/api/v1/admin/locations/latest", LatestLocationsHandler),
        (rf"/api/v1/admin/commands/(?P<command_id>{P})", CommandHandler),
    ]
