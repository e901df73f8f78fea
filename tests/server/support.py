"""Helpers for the server tests (no tests here; the ``api`` fixture is in tests/server/conftest.py).

- :class:`OpenApiChecker` validates every HTTP response a test sees against the served OpenAPI
  document: the status must be documented for that operation, the media type listed, and a JSON body
  must validate against the response schema (JSON Schema 2020-12, ``$ref``s into ``components``).
- users, alarms, event sockets and the routing table, as the admin-plane tests need them.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import jsonschema
import tornado.httpclient
import tornado.web
import tornado.websocket

from tests.support import Device, RunningServer
from truckx_server import openapi

VIEWER_PASSWORD = "viewer-password-123"


class OpenApiChecker:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.ops: list[tuple[re.Pattern[str], str]] = []
        for path in doc["paths"]:
            parts = re.split(r"(\{[^}]+\})", path)
            rx = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
            self.ops.append((re.compile(f"^{rx}$"), path))
        self.failures: list[str] = []
        self.checked: list[tuple[str, str, int]] = []

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        for rx, template in self.ops:
            if rx.match(path):
                item = self.doc["paths"][template]
                if method.lower() in item:
                    return template, item[method.lower()]
                return template, {}
        return None

    def check(self, method: str, path: str, status: int, content_type: str, body: bytes) -> None:
        found = self.operation(method, path)
        where = f"{method} {path} -> {status}"
        if found is None:
            if status != 404:
                self.failures.append(f"{where}: path not in the OpenAPI document")
            return
        template, operation = found
        if not operation:
            if status != 405:
                self.failures.append(f"{where}: method not in the OpenAPI document")
            return
        responses = operation["responses"]
        spec = responses.get(str(status)) or responses.get(f"{status // 100}XX") or responses.get("default")
        if spec is None:
            self.failures.append(f"{where}: status not documented")
            return
        content = spec.get("content")
        if not content or method == "HEAD" or status in (204, 304):
            if body and method != "HEAD":
                self.failures.append(f"{where}: body where the document says none")
            self.checked.append((method, template, status))
            return
        media = content_type.split(";")[0].strip().lower()
        if media not in content:
            ranges = [m for m in content if m == "*/*" or (m.endswith("/*") and media.startswith(m[:-1]))]
            if ranges:
                self.checked.append((method, template, status))
                return
            self.failures.append(f"{where}: media type {media!r} not in {sorted(content)}")
            return
        schema = content[media].get("schema")
        if media.endswith("json") and schema is not None:
            try:
                instance = json.loads(body)
            except ValueError:
                self.failures.append(f"{where}: body is not JSON")
                return
            root = {**schema, "components": self.doc["components"]}
            errors = sorted(jsonschema.Draft202012Validator(root).iter_errors(instance), key=str)
            if errors:
                self.failures.append(f"{where}: {errors[0].message} at {list(errors[0].absolute_path)}")
                return
        self.checked.append((method, template, status))


def attach_checker(server: RunningServer) -> OpenApiChecker:
    checker = OpenApiChecker(openapi.document())

    async def hook(response: httpx.Response) -> None:
        await response.aread()
        checker.check(response.request.method, response.request.url.path, response.status_code,
                      response.headers.get("content-type", ""), response.content)

    server.http.event_hooks["response"].append(hook)
    server.openapi_checker = checker  # type: ignore[attr-defined]
    return checker


async def make_user(server: RunningServer, username: str, role: str, password: str = VIEWER_PASSWORD) -> dict[str, str]:
    """Create a user through the API and return its Authorization header."""
    r = await server.http.post("/api/v1/admin/users", json={"username": username, "password": password, "role": role},
                               headers=await server.admin_headers())
    assert r.status_code == 201, r.text
    return await login_headers(server, username, password)


async def login_headers(server: RunningServer, username: str, password: str) -> dict[str, str]:
    r = await server.http.post("/api/v1/admin/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def report_alarm(server: RunningServer, device: Device, **fields: Any) -> dict[str, Any]:
    body = {"type": "CRASH", "ts": "2026-01-01T00:00:00Z", "lat": 10.0, "lon": 20.0, **fields}
    r = await server.http.post("/api/v1/device/alarms", json=body,
                               headers={"Authorization": f"Bearer {device.token}"})
    assert r.status_code == 201, r.text
    return r.json()


async def events_socket(server: RunningServer, headers: dict[str, str] | None = None, query: str = "",
                        ) -> tornado.websocket.WebSocketClientConnection:
    url = f"ws://127.0.0.1:{server.port}/api/v1/admin/events{query}"
    request = tornado.httpclient.HTTPRequest(url, headers=headers or {})
    return await tornado.websocket.websocket_connect(request)


# -- the routing table as operations ----------------------------------------------------------------

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def path_template(pattern: str) -> str:
    """A Tornado route regex as an OpenAPI path: named groups become ``{name}``, unnamed ones ``{}``."""
    out = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern)
    out = re.sub(r"\((?!\?)[^)]*\)", "{}", out)
    return out.removeprefix("^").removesuffix("$")


def normalise(template: str) -> str:
    """Parameter names do not matter for matching a route to a documented path."""
    return re.sub(r"\{[^}]*\}", "{}", template)


def implemented_methods(cls: type) -> set[str]:
    """The HTTP methods a handler class answers itself (a WebSocket handler answers GET)."""
    if issubclass(cls, tornado.websocket.WebSocketHandler):
        return {"GET"}
    base = tornado.web.RequestHandler
    return {m for m in HTTP_METHODS if getattr(cls, m.lower()) is not getattr(base, m.lower())}


def route_table() -> list[tuple[str, str, type]]:
    """``(regex, path template, handler class)`` for every route of the application."""
    from truckx_server import app

    out = []
    for rule in app.routes():
        if isinstance(rule, tornado.web.URLSpec):
            pattern, cls = rule.regex.pattern, rule.handler_class
        else:
            pattern, cls = rule[0], rule[1]
        out.append((pattern, path_template(pattern), cls))
    return out


def is_websocket(cls: type) -> bool:
    return issubclass(cls, tornado.websocket.WebSocketHandler)
