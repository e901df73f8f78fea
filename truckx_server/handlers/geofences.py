"""Geofences: create, list, read, change and delete fences (admins), and read their transitions (every
role). Evaluation happens in the background (``domain/geofences.py``)."""

from __future__ import annotations

from ..vocab import READ, WRITE
from .base import P, AdminHandler


class GeofencesHandler(AdminHandler):
    roles = {"GET": READ, "POST": WRITE}

    async def get(self) -> None:
        limit, cursor = self.page_args()
        self.write_json(await self.geofences.list(limit, cursor))

    async def post(self) -> None:
        self.write_json(await self.geofences.create(self.json_body(), self.actor), 201)


class GeofenceHandler(AdminHandler):
    roles = {"GET": READ, "PATCH": WRITE, "DELETE": WRITE}

    async def get(self, fence_id: str) -> None:
        self.write_json(await self.geofences.get(fence_id))

    async def patch(self, fence_id: str) -> None:
        self.write_json(await self.geofences.update(fence_id, self.json_body(), self.actor))

    async def delete(self, fence_id: str) -> None:
        await self.geofences.delete(fence_id, self.actor)
        self.write_no_content()


class GeofenceEventsHandler(AdminHandler):
    roles = {"GET": READ}

    async def get(self) -> None:
        limit, cursor = self.page_args()
        arg = self.get_query_argument
        self.write_json(await self.geofences.events(
            imeis=self.query_list("imei"), fence_ids=self.query_list("geofence_id"), since=arg("since", None),
            until=arg("until", None), limit=limit, cursor=cursor))


def routes() -> list:
    return [
        (r"/api/v1/admin/geofences", GeofencesHandler),
        (rf"/api/v1/admin/geofences/(?P<fence_id>{P})", GeofenceHandler),
        (r"/api/v1/admin/geofence-events", GeofenceEventsHandler),
    ]
