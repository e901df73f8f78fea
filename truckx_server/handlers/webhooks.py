"""Webhook endpoints and their deliveries (admins only: URLs and delivery history are sensitive, and the
secret is shown once, on create)."""

from __future__ import annotations

from ..vocab import WRITE
from .base import P, AdminHandler


class WebhooksHandler(AdminHandler):
    roles = {"GET": WRITE, "POST": WRITE}

    async def get(self) -> None:
        limit, cursor = self.page_args()
        self.write_json(await self.webhooks.list(limit, cursor))

    async def post(self) -> None:
        self.write_json(await self.webhooks.create(self.json_object(), self.actor), 201)


class WebhookHandler(AdminHandler):
    roles = {"GET": WRITE, "PATCH": WRITE, "DELETE": WRITE}

    async def get(self, webhook_id: str) -> None:
        self.write_json(await self.webhooks.get(webhook_id))

    async def patch(self, webhook_id: str) -> None:
        self.write_json(await self.webhooks.update(webhook_id, self.json_object(), self.actor))

    async def delete(self, webhook_id: str) -> None:
        await self.webhooks.delete(webhook_id, self.actor)
        self.write_no_content()


class DeliveriesHandler(AdminHandler):
    roles = {"GET": WRITE}

    async def get(self, webhook_id: str) -> None:
        limit, cursor = self.page_args()
        self.write_json(await self.webhooks.deliveries(webhook_id, limit, cursor))


class DeliveryRetryHandler(AdminHandler):
    roles = {"POST": WRITE}

    async def post(self, webhook_id: str, delivery_id: str) -> None:
        self.write_json(await self.webhooks.retry(webhook_id, delivery_id, self.actor))


def routes() -> list:
    return [
        (r"/api/v1/admin/webhooks", WebhooksHandler),
        (rf"/api/v1/admin/webhooks/(?P<webhook_id>{P})", WebhookHandler),
        (rf"/api/v1/admin/webhooks/(?P<webhook_id>{P})/deliveries", DeliveriesHandler),
        (rf"/api/v1/admin/webhooks/(?P<webhook_id>{P})/deliveries/(?P<delivery_id>{P})/retry", DeliveryRetryHandler),
    ]
