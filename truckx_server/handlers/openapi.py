"""``GET /api/v1/openapi.json``: the OpenAPI 3.1 document of every REST call (no auth)."""

from __future__ import annotations

from .. import openapi
from .base import BaseHandler


class OpenApiHandler(BaseHandler):
    roles = {"GET": None}

    def get(self) -> None:
        self.set_header("Cache-Control", "no-cache")
        self.finish(openapi.document_json())


def routes() -> list:
    return [(r"/api/v1/openapi.json", OpenApiHandler)]
