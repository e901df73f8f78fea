"""Shared handler behaviour: JSON in and out, bearer-token auth with roles, one ``write_error``.

Every JSON handler streams its request body (``stream_request_body``) so that the size limit is applied
while reading, with a ``413 payload_too_large`` error body, instead of Tornado buffering any body up to
the server-wide limit (which is as large as the largest video).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, ClassVar

import tornado.web
from tornado import httputil

from .. import paging
from ..auth import Principal
from ..errors import (STATUS_CODES, Forbidden, InvalidArgument, InvalidJson, NotFound, PayloadTooLarge,
                      TruckxError, Unauthorized)
from ..models import require_object
from ..vocab import ROLE_CAN

if TYPE_CHECKING:
    from ..domain.alarms import AlarmService
    from ..domain.audit import AuditService
    from ..domain.commands import CommandService
    from ..domain.devices import DeviceService
    from ..domain.events import EventService
    from ..domain.locations import LocationService
    from ..domain.users import UserService
    from ..domain.videos import VideoService
    from ..wiring import Node

log = logging.getLogger("truckx.handlers")

#: a path parameter in a route: anything up to the next slash; the domain validates it (400, not 404)
P = "[^/]+"


def bearer_token(request: httputil.HTTPServerRequest, allow_query: bool = False) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if allow_query:
        values = request.query_arguments.get("token")
        if values:
            return values[-1].decode("utf-8", "replace")
    return None


class ApiMixin:
    """Behaviour shared by plain handlers and WebSocket handlers."""

    #: who may call each method; a route without an entry for a method refuses it (fail-closed).
    #: ``None`` means no authentication (login, health). Roles: "device" and the role sets of ``vocab``
    #: (READ, OPERATE, WRITE, AUDIT).
    roles: ClassVar[dict[str, tuple[str, ...] | None]] = {}

    principal: Principal | None = None
    request: httputil.HTTPServerRequest
    application: tornado.web.Application

    # the domain services, one typed property each (built once by wiring.Node)
    @property
    def node(self) -> "Node":
        return self.application.settings["node"]  # type: ignore[no-any-return]

    @property
    def devices(self) -> "DeviceService":
        return self.node.devices

    @property
    def users(self) -> "UserService":
        return self.node.users

    @property
    def alarms(self) -> "AlarmService":
        return self.node.alarms

    @property
    def commands(self) -> "CommandService":
        return self.node.commands

    @property
    def locations(self) -> "LocationService":
        return self.node.locations

    @property
    def videos(self) -> "VideoService":
        return self.node.videos

    @property
    def events(self) -> "EventService":
        return self.node.events

    @property
    def audit(self) -> "AuditService":
        return self.node.audit

    def authenticate(self, allow_query_token: bool = False) -> Principal | None:
        """Check the token against ``roles`` for this request's method; sets ``self.principal``."""
        method = self.request.method or "GET"
        if method not in self.roles:
            raise tornado.web.HTTPError(405)
        allowed = self.roles[method]
        if allowed is None:
            return None
        token = bearer_token(self.request, allow_query=allow_query_token)
        if token is None:
            raise Unauthorized("missing bearer token")
        principal = self.node.tokens.verify(token)
        if principal.role not in allowed:
            can = ROLE_CAN.get(principal.role)
            raise Forbidden(f"this call needs role {' or '.join(allowed)}; your token has role {principal.role}"
                            + (f", which may {can}" if can else ""))
        self.principal = principal
        return principal

    def error_body(self, status_code: int, exc: BaseException | None) -> tuple[int, dict[str, Any]]:
        if isinstance(exc, TruckxError):
            return exc.status, exc.body()
        if isinstance(exc, tornado.web.HTTPError):
            status = exc.status_code
            message = exc.log_message % exc.args if exc.log_message and exc.args else exc.log_message
            code = STATUS_CODES.get(status, "internal" if status >= 500 else "invalid_argument")
            return status, {"error": {"code": code, "message": message or httputil.responses.get(status, "error")}}
        if status_code >= 500:
            return 500, {"error": {"code": "internal", "message": "internal server error"}}
        code = STATUS_CODES.get(status_code, "invalid_argument")
        return status_code, {"error": {"code": code, "message": httputil.responses.get(status_code, "error")}}

    # One error path for plain and WebSocket handlers (before the upgrade): the contract's JSON body.
    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        status, body = self.error_body(status_code, exc)
        self.set_status(status)  # type: ignore[attr-defined]
        self.clear_header("Content-Disposition")  # type: ignore[attr-defined]
        self.set_header("Content-Type", "application/json; charset=utf-8")  # type: ignore[attr-defined]
        metrics = self.application.settings.get("metrics")
        if metrics is not None:
            metrics.errors.labels(body["error"]["code"]).inc()
        self.finish(json.dumps(body))  # type: ignore[attr-defined]

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, (TruckxError, tornado.web.HTTPError)):
            return  # an expected client error; the access log has the status
        super().log_exception(typ, value, tb)  # type: ignore[misc]


@tornado.web.stream_request_body
class BaseHandler(ApiMixin, tornado.web.RequestHandler):
    #: the largest body this handler accepts; ``None`` means the server's JSON limit
    max_body_bytes: ClassVar[int | None] = None

    def initialize(self) -> None:
        self._body = bytearray()
        self._body_limit = 0

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    def body_limit(self) -> int:
        return self.max_body_bytes or self.node.settings.max_json_body_bytes

    async def prepare(self) -> None:
        self.authenticate()
        self._body_limit = self.body_limit()
        length = self.request.headers.get("Content-Length")
        if length is not None:
            try:
                if int(length) > self._body_limit:
                    raise PayloadTooLarge(f"request body is larger than {self._body_limit} bytes")
            except ValueError:
                raise tornado.web.HTTPError(400, "bad Content-Length") from None
        # let the connection read a little more than we accept, so that we answer 413 ourselves
        self.request.connection.set_max_body_size(self._body_limit + 1)  # type: ignore[union-attr]

    def data_received(self, chunk: bytes) -> None:
        if len(self._body) + len(chunk) > self._body_limit:
            raise PayloadTooLarge(f"request body is larger than {self._body_limit} bytes")
        self._body += chunk

    def json_body(self) -> Any:
        if not self._body:
            raise InvalidJson("a JSON body is required")
        try:
            return json.loads(self._body)
        except (ValueError, UnicodeDecodeError):
            raise InvalidJson("the body is not valid JSON") from None

    def json_object(self) -> dict[str, Any]:
        return require_object(self.json_body())

    def optional_object(self) -> dict[str, Any]:
        """The body as a JSON object, or ``{}`` when there is no body."""
        return self.json_object() if self._body.strip() else {}

    def write_no_content(self) -> None:
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()

    def write_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(obj, separators=(",", ":"), default=str))

    def query_int(self, name: str, default: int, lo: int, hi: int) -> int:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise InvalidArgument(f"{name} must be an integer") from None
        if not lo <= value <= hi:
            raise InvalidArgument(f"{name} must be between {lo} and {hi}")
        return value

    def query_list(self, name: str) -> list[str]:
        """Every value of a repeatable query argument; comma-separated values are split too."""
        out: list[str] = []
        for value in self.get_query_arguments(name):
            out.extend(v.strip() for v in value.split(",") if v.strip())
        return out

    def page_args(self) -> tuple[int, str | None]:
        """``limit`` (default 100, at most 1000) and the opaque ``cursor`` of a paged list."""
        return (self.query_int("limit", paging.DEFAULT_LIMIT, 1, paging.MAX_LIMIT),
                self.get_query_argument("cursor", None) or None)


class AdminHandler(BaseHandler):
    """An admin-token call: the token's user must still exist with the token's role."""

    async def prepare(self) -> None:
        await super().prepare()
        await self.users.check(self.principal)

    @property
    def actor(self) -> str:
        assert self.principal is not None
        return self.principal.sub


class DeviceHandler(BaseHandler):
    """A device-token call: the device must still exist and be enabled; its IMEI comes from the token."""

    async def prepare(self) -> None:
        await super().prepare()
        if self.principal is not None:
            await self.devices.authenticate(self.principal)

    @property
    def imei(self) -> str:
        assert self.principal is not None
        return self.principal.sub


class NotFoundHandler(BaseHandler):
    """Everything no route matches: a JSON 404 for any method."""

    roles = {m: None for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}

    async def prepare(self) -> None:
        raise NotFound(f"no such path: {self.request.path}")
