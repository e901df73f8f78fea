"""Shared handler behaviour: JSON in and out, auth with roles (a bearer token, or on the admin plane the
console's session cookie, XSRF-checked for changes), one ``write_error``.

Every JSON handler streams its request body (``stream_request_body``) so that the size limit is applied
while reading, with a ``413 payload_too_large`` error body, instead of Tornado buffering any body up to
the server-wide limit.

A request refused before its body was read (``401``/``403``/``404``/``413`` from ``prepare``) is answered
once its body, up to :attr:`BaseHandler.drain_body_bytes`, has been read and dropped, so that the
connection stays usable for a pooled client's next request; a larger body is not read: the answer goes
out at once with ``Connection: close``. A body that stops arriving is cut off after
``body_idle_timeout_s`` of inactivity (:class:`BodyWatchdog`), however long it has been flowing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import sys
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import tornado.web
from tornado import httputil
from tornado.iostream import IOStream

from .. import logs, paging
from ..auth import Principal
from ..config import Network
from ..domain.sessions import COOKIE, Session
from ..errors import (STATUS_CODES, Forbidden, InvalidArgument, InvalidJson, NotFound, PayloadTooLarge,
                      RateLimited, TruckxError, Unauthorized)
from ..models import load_json, require_object
from ..vocab import ROLE_CAN, ROLE_DEVICE

if TYPE_CHECKING:
    from ..domain.alarms import AlarmService
    from ..domain.audit import AuditService
    from ..domain.commands import CommandService
    from ..domain.devices import DeviceService
    from ..domain.events import EventService
    from ..domain.geofences import GeofenceService
    from ..domain.locations import LocationService
    from ..domain.sessions import SessionService
    from ..domain.retention import RetentionService
    from ..domain.trips import TripService
    from ..domain.webhooks import WebhookService
    from ..domain.nodes import NodeService
    from ..domain.users import UserService
    from ..domain.videos import VideoService
    from ..wiring import Node

log = logging.getLogger("truckx.handlers")

#: a path parameter in a route: anything up to the next slash; the domain validates it (400, not 404)
P = "[^/]+"
#: the connection-level body limit while a handler counts the bytes itself (Tornado would answer a bare
#: 400 past its own limit, comparing declared chunk sizes before handing a byte over)
UNLIMITED_BODY = 2**62


class BodyWatchdog:
    """Cuts a request whose body stops arriving: no byte for ``timeout`` seconds while the server waits
    for one. Time the server spends on what arrived (an upload's disk writes holding back the reads, the
    handler running once the body is complete) is not the client's and does not count. A limit on the
    total duration (Tornado's ``body_timeout``) would cut a slow but steady upload; this does not."""

    def __init__(self, stream: IOStream, timeout: float) -> None:
        self._stream = stream
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self.last = self._loop.time()
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(timeout, self._check)

    def touch(self) -> None:
        """Bytes arrived."""
        self.last = self._loop.time()

    def _check(self) -> None:
        now = self._loop.time()
        if self._stream.closed():
            self._timer = None
            return
        if not self._stream.reading():
            self.last = now  # the server is busy with what arrived, not waiting for the client
        idle = now - self.last
        if idle >= self._timeout:
            self._timer = None
            log.info("request body idle for %.0fs: closing the connection", idle)
            self._stream.close()
            return
        self._timer = self._loop.call_later(self._timeout - idle, self._check)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


#: methods that change nothing: a session-cookie request of any other method must pass the XSRF check
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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


#: X-Forwarded-For hops looked at, from the right (a longer chain is cut, not parsed)
MAX_FORWARDED_HOPS = 16


def client_address(request: httputil.HTTPServerRequest, trusted: Sequence[Network]) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the rightmost address
    of ``X-Forwarded-For`` that is not itself a trusted proxy (each proxy appends the address it saw, so
    only what our own proxies appended can be believed; anything left of it the client could write).
    An entry that is not an IP address ends the walk at the last trusted hop."""
    peer = request.remote_ip or ""
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    forwarded = ",".join(request.headers.get_list("X-Forwarded-For"))
    hops = forwarded.rsplit(",", MAX_FORWARDED_HOPS)[-MAX_FORWARDED_HOPS:]
    address = peer
    for hop in reversed(hops):
        try:
            ip = ipaddress.ip_address(hop.strip())
        except ValueError:
            break
        address = str(ip.ipv4_mapped or ip) if isinstance(ip, ipaddress.IPv6Address) else str(ip)
        if not _is_trusted(address, trusted):
            break
    return address


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in trusted)


class ApiMixin:
    """Behaviour shared by plain handlers and WebSocket handlers."""

    #: who may call each method; a route without an entry for a method refuses it (fail-closed).
    #: ``None`` means no authentication (login, health). Roles: "device" and the role sets of ``vocab``
    #: (READ, OPERATE, WRITE, AUDIT).
    roles: ClassVar[dict[str, tuple[str, ...] | None]] = {}

    principal: Principal | None = None
    #: the browser session the request was authenticated by (None: a bearer token, or no auth)
    session: Session | None = None
    request: httputil.HTTPServerRequest
    application: tornado.web.Application
    #: answer with ``Connection: close``: the request's body is not read (see BaseHandler.refuse)
    close_after_answer = False

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
    def nodes(self) -> "NodeService":
        return self.node.nodes

    @property
    def audit(self) -> "AuditService":
        return self.node.audit

    @property
    def retention(self) -> "RetentionService":
        return self.node.retention

    @property
    def trips(self) -> "TripService":
        return self.node.trips

    @property
    def webhooks(self) -> "WebhookService":
        return self.node.webhooks

    @property
    def geofences(self) -> "GeofenceService":
        return self.node.geofences

    @property
    def client_address(self) -> str:
        """The client's address (``X-Forwarded-For`` only from ``--trusted-proxies``): every
        per-address limit and the logs use this."""
        cached = getattr(self, "_client_address", None)
        if cached is None:
            cached = self._client_address = client_address(self.request, self.node.settings.trusted_proxies)
        return cached

    @property
    def sessions(self) -> "SessionService":
        return self.node.sessions

    async def authenticate(self, allow_query_token: bool = False) -> Principal | None:
        """Check the credentials against ``roles`` for this request's method; sets ``self.principal``
        (and ``self.session`` for the session cookie). A bearer token wins over a cookie; the cookie is
        taken on the admin plane only, and a change made with it must carry the XSRF token."""
        method = self.request.method or "GET"
        if method not in self.roles:
            raise tornado.web.HTTPError(405)
        allowed = self.roles[method]
        if allowed is None:
            return None
        token = bearer_token(self.request, allow_query=allow_query_token)
        if token is not None:
            principal = self.node.tokens.verify(token)
        elif ROLE_DEVICE not in allowed and (cookie := self.get_cookie(COOKIE)):  # type: ignore[attr-defined]
            self.session = await self.sessions.find(cookie)
            principal = self.session.principal
            if method not in SAFE_METHODS:
                self.check_xsrf()
        elif ROLE_DEVICE in allowed:
            raise Unauthorized("missing bearer token")
        else:
            raise Unauthorized("missing bearer token or session cookie; log in, or sign in to the console")
        if principal.role not in allowed:
            can = ROLE_CAN.get(principal.role)
            raise Forbidden(f"this call needs role {' or '.join(allowed)}; your token has role {principal.role}"
                            + (f", which may {can}" if can else ""))
        self.principal = principal
        return principal

    def check_xsrf(self) -> None:
        """Tornado's XSRF check (the ``X-XSRFToken`` header against the ``_xsrf`` cookie), with the
        contract's error body."""
        try:
            self.check_xsrf_cookie()  # type: ignore[attr-defined]
        except tornado.web.HTTPError:
            raise Forbidden("a change made with the session cookie needs the X-XSRFToken header set to the "
                            "value of the _xsrf cookie") from None

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
        if isinstance(exc, RateLimited) and exc.retry_after:
            self.set_header("Retry-After", str(exc.retry_after))  # type: ignore[attr-defined]
        if self.close_after_answer:
            self.set_header("Connection", "close")  # type: ignore[attr-defined]
        if status == 405:  # RFC 9110 15.5.6: a 405 lists the methods the resource supports
            self.set_header("Allow", ", ".join(self.roles))  # type: ignore[attr-defined]
        metrics = self.application.settings.get("metrics")
        if metrics is not None:
            metrics.errors.labels(body["error"]["code"]).inc()
        self.finish(json.dumps(body))  # type: ignore[attr-defined]

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Tornado's own versions print the raw URI (with any ``?token=``); this one the scrubbed URI,
        for plain and WebSocket handlers alike."""
        if isinstance(value, (TruckxError, tornado.web.HTTPError)):
            return  # an expected client error; the access log has the status
        log.error("uncaught exception in %s", logs.request_summary(self.request, self.client_address),
                  exc_info=(typ, value, tb))


@tornado.web.stream_request_body
class BaseHandler(ApiMixin, tornado.web.RequestHandler):
    #: the largest body this handler accepts; ``None`` means the server's JSON limit
    max_body_bytes: ClassVar[int | None] = None
    #: a request refused before its body was read has a body of up to this many bytes read and dropped
    #: before the answer, so that its connection stays usable; past it, ``Connection: close``
    drain_body_bytes: ClassVar[int] = 4 * 1024 * 1024

    def initialize(self) -> None:
        self._body = bytearray()
        self._body_limit = 0
        #: the error this request ends with once its body is read and dropped
        self._refusal: TruckxError | tornado.web.HTTPError | None = None
        self._drain_left = 0
        self._watchdog: BodyWatchdog | None = None

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    def body_limit(self) -> int:
        return self.max_body_bytes or self.node.settings.max_json_body_bytes

    async def prepare(self) -> None:
        try:
            await self.admit()
        except (TruckxError, tornado.web.HTTPError) as exc:
            self.refuse(exc)
        self.watch_body()

    async def admit(self) -> None:
        """Everything decided from the request head: the token and its role, the declared size."""
        await self.authenticate()
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

    # -- refusing before the body ----------------------------------------------------------------

    def refuse(self, exc: TruckxError | tornado.web.HTTPError) -> None:
        """End this request with ``exc``, decided before its body was read. A body of up to
        :attr:`drain_body_bytes` (or a chunked one, counted as it comes) is read and dropped first and the
        connection kept; a larger one is not read, and the answer, sent now, closes the connection."""
        length = self.request.headers.get("Content-Length", "").strip()
        if length and not (length.isdigit() and int(length) <= self.drain_body_bytes):
            self.close_after_answer = True
            raise exc
        self._refusal, self._drain_left = exc, self.drain_body_bytes
        self.request.connection.set_max_body_size(UNLIMITED_BODY)  # type: ignore[union-attr]
        # Tornado calls the method named after the request's once the body is read: for this request,
        # the refusal takes its place.
        setattr(self, (self.request.method or "GET").lower(), self._answer_refusal)

    def _answer_refusal(self, *_args: Any, **_kwargs: Any) -> None:
        assert self._refusal is not None
        raise self._refusal

    def send_refusal_now(self) -> None:
        """Too much body to read through: answer at once, and close the connection."""
        if self._finished or self._refusal is None:
            return
        self.close_after_answer = True
        try:
            raise self._refusal
        except (TruckxError, tornado.web.HTTPError) as exc:
            status = exc.status if isinstance(exc, TruckxError) else exc.status_code
            self.send_error(status, exc_info=sys.exc_info())

    # -- reading the body ------------------------------------------------------------------------

    def watch_body(self) -> None:
        """Cut this request if its body stops arriving (``body_idle_timeout_s``); from prepare()."""
        headers = self.request.headers
        if headers.get("Content-Length", "0").strip() in ("", "0") and "Transfer-Encoding" not in headers:
            return
        stream = getattr(self.request.connection, "stream", None)
        if isinstance(stream, IOStream) and self._watchdog is None:
            self._watchdog = BodyWatchdog(stream, self.node.settings.body_idle_timeout_s)

    def body_arrived(self) -> None:
        if self._watchdog is not None:
            self._watchdog.touch()

    def _stop_watching(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def on_finish(self) -> None:
        self._stop_watching()

    def on_connection_close(self) -> None:
        super().on_connection_close()
        self._stop_watching()

    def data_received(self, chunk: bytes) -> None:
        self.body_arrived()
        if self._refusal is not None:
            self._drain_left -= len(chunk)
            if self._drain_left < 0:
                self.send_refusal_now()
            return
        if len(self._body) + len(chunk) > self._body_limit:
            raise PayloadTooLarge(f"request body is larger than {self._body_limit} bytes")
        self._body += chunk

    def json_body(self) -> Any:
        if not self._body:
            raise InvalidJson("a JSON body is required")
        return load_json(self._body, "the body")

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

    async def admit(self) -> None:
        await super().admit()
        await self.users.check(self.principal)

    @property
    def actor(self) -> str:
        assert self.principal is not None
        return self.principal.sub


class DeviceHandler(BaseHandler):
    """A device-token call: the device must still exist and be enabled; its IMEI comes from the token."""

    async def admit(self) -> None:
        await super().admit()
        if self.principal is not None:
            await self.devices.authenticate(self.principal)

    @property
    def imei(self) -> str:
        assert self.principal is not None
        return self.principal.sub


class NotFoundHandler(BaseHandler):
    """Everything no route matches: a JSON 404 for any method."""

    roles = {m: None for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}

    async def admit(self) -> None:
        raise NotFound(f"no such path: {self.request.path}")
