"""OpenAPI: webhook endpoints (Standard Webhooks) and their deliveries."""

from __future__ import annotations

from typing import Any

from .. import vocab
from .common import (ADMIN, CURSOR, LIMIT, TIME, UUID, WRITE, json_response, nullable, obj, op, page_of, param,
                     ref)

EVENTS = list(vocab.WEBHOOK_EVENTS)
_URL = {"type": "string", "minLength": 1, "maxLength": 2048, "format": "uri",
        "description": "http or https; with --webhook-deny-private (default) the host must not be or resolve to "
                       "a loopback, private, link-local, unique-local or unspecified address"}
_EVENT_LIST = {"type": "array", "items": {"enum": EVENTS}, "minItems": 1, "maxItems": 2 * len(EVENTS)}
_DESCRIPTION = {"type": ["string", "null"], "maxLength": 256}
_WEBHOOK = {
    "id": UUID, "url": {"type": "string"}, "events": {"type": "array", "items": {"enum": EVENTS}},
    "description": {"type": ["string", "null"]}, "enabled": {"type": "boolean"}, "created_at": TIME,
    "updated_at": TIME}

SCHEMAS: dict[str, Any] = {
    "WebhookNew": obj(["url", "events"], {"url": _URL, "events": _EVENT_LIST, "description": _DESCRIPTION,
                                          "enabled": {"type": "boolean", "default": True}}),
    "WebhookChange": obj([], {"url": _URL, "events": _EVENT_LIST, "enabled": {"type": "boolean"},
                              "description": _DESCRIPTION}, minProperties=1),
    "Webhook": obj(["id", "url", "events", "enabled", "created_at", "updated_at"], _WEBHOOK),
    "WebhookCreated": obj(["id", "url", "events", "enabled", "created_at", "updated_at", "secret"], {
        **_WEBHOOK, "secret": {"type": "string", "pattern": "^whsec_[A-Za-z0-9+/=]{32,}$",
                               "description": "signs every delivery; shown this once"}}),
    "WebhookPage": page_of("Webhook"),
    "WebhookDelivery": obj(["id", "message_id", "webhook_id", "type", "status", "attempts", "last_status_code",
                            "last_error", "next_attempt_at", "created_at"], {
        "id": {"type": "integer"}, "message_id": {"type": "string", "description": "the webhook-id header, the "
                                                                                   "same on every attempt"},
        "webhook_id": UUID, "type": {"enum": EVENTS}, "status": {"enum": ["pending", "delivered", "failed"]},
        "attempts": {"type": "integer", "minimum": 0}, "last_status_code": {"type": ["integer", "null"]},
        "last_error": {"type": ["string", "null"]}, "next_attempt_at": nullable(TIME), "created_at": TIME}),
    "WebhookDeliveryPage": page_of("WebhookDelivery"),
}

_PATH_ID = param("webhook_id", "path", {"type": "string"}, "the endpoint's id")

PATHS: dict[str, Any] = {
    "/api/v1/admin/webhooks": {
        "get": op("List webhook endpoints", WRITE, {200: json_response("a page", ref("WebhookPage"))},
                  parameters=[LIMIT, CURSOR], op_id="listWebhooks", tags=ADMIN,
                  description="Oldest first. The secret is never shown here."),
        "post": op("Create a webhook endpoint", WRITE, {201: json_response("created", ref("WebhookCreated"))},
                   body=ref("WebhookNew"), errors=(409,), op_id="createWebhook", tags=ADMIN,
                   description="Answers the endpoint with its secret (`whsec_` + base64 of 32 random bytes), shown "
                               "once. Deliveries are `POST {type, timestamp, data}` with the Standard Webhooks "
                               "headers `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 "
                               "HMAC-SHA256 of \"id.timestamp.body\">` (key: the base64-decoded part of the "
                               "secret). Unknown event types, non-http(s) URLs and denied addresses are 400; "
                               "more than 100 endpoints is 409."),
    },
    "/api/v1/admin/webhooks/{webhook_id}": {
        "parameters": [_PATH_ID],
        "get": op("A webhook endpoint", WRITE, {200: json_response("endpoint", ref("Webhook"))}, errors=(404,),
                  op_id="getWebhook", tags=ADMIN),
        "patch": op("Change a webhook endpoint", WRITE, {200: json_response("endpoint", ref("Webhook"))},
                    body=ref("WebhookChange"), errors=(404,), op_id="updateWebhook", tags=ADMIN,
                    description="A disabled endpoint is sent nothing; events recorded while it is disabled are not "
                                "queued for it, its pending deliveries wait."),
        "delete": op("Delete a webhook endpoint", WRITE, {204: {"description": "deleted, with its deliveries"}},
                     errors=(404,), op_id="deleteWebhook", tags=ADMIN),
    },
    "/api/v1/admin/webhooks/{webhook_id}/deliveries": {
        "parameters": [_PATH_ID],
        "get": op("An endpoint's deliveries, newest first", WRITE,
                  {200: json_response("a page", ref("WebhookDeliveryPage"))}, parameters=[LIMIT, CURSOR],
                  errors=(404,), op_id="listWebhookDeliveries", tags=ADMIN),
    },
    "/api/v1/admin/webhooks/{webhook_id}/deliveries/{delivery_id}/retry": {
        "parameters": [_PATH_ID, param("delivery_id", "path", {"type": "string", "pattern": "^[0-9]{1,18}$"})],
        "post": op("Send a delivery again", WRITE, {200: json_response("pending again", ref("WebhookDelivery"))},
                   errors=(404,), op_id="retryWebhookDelivery", tags=ADMIN,
                   description="The delivery becomes pending, due now, with the same webhook-id, and is retried "
                               "for another retry window; it goes in its turn among the endpoint's deliveries."),
    },
}
