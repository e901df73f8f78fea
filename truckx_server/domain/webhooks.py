"""Webhooks, following the Standard Webhooks specification: endpoints (create, list, change, delete),
their deliveries (list, retry), and the dispatcher that sends them.

Every event a webhook may be told of is an outbox row written by the change that caused it, in the same
transaction (``storage/sql/outbox.py``). The :class:`Dispatcher` of every process fans new outbox rows
out to one delivery per subscribed endpoint, claims the deliveries that are due with a lease, and sends
each as ``POST {"type", "timestamp", "data"}`` signed with the endpoint's secret:
``webhook-signature: v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">``, the key
being the base64 part of ``whsec_...``. Per endpoint one delivery at a time, in event order; a failure
is retried with exponential backoff and jitter until the retry window has passed, then ``failed``.

Endpoint URLs are http(s) only; with ``--webhook-deny-private`` (the default) a host that is, or
resolves to, an address that is not globally routable (loopback, private, link-local, unique-local,
unspecified, ...) is refused on create and PATCH, and at each delivery: the name is resolved, every
address checked, and the connection made to the checked address (no second lookup to rebind).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import re
import secrets
import socket
import time
import urllib.parse
import uuid
from typing import Any, Sequence

import httpx

from .. import paging
from ..errors import InvalidArgument, NotFound
from ..metrics import Metrics
from ..models import AuditEntry, format_time, utcnow
from ..storage.sql.webhooks import DELIVERED, FAILED, PENDING, WebhookRows
from ..vocab import WEBHOOK_EVENTS

log = logging.getLogger("truckx.webhooks")

#: endpoints at most (each is fanned out to for every event of its types)
MAX_WEBHOOKS = 100
URL_MAX = 2048
DESCRIPTION_MAX = 256
#: bytes of a response read at most; the connection is dropped past that
RESPONSE_READ_MAX = 64 * 1024
#: the longest delay between two attempts of a delivery
RETRY_MAX_S = 3600.0
#: each delay is the nominal one times a random factor in this range
JITTER = (0.8, 1.2)
#: outbox events fanned out per transaction, and transactions per dispatcher step at most
FAN_OUT_BATCH = 200
FAN_OUT_ROUNDS = 10
#: the dispatcher looks for work this often even when nothing woke it (other processes' events)
POLL_S = 1.0
#: woken by a commit, the dispatcher waits this long first, so that a burst of changes is fanned out in
#: one transaction rather than one each (every write transaction is a sync to disk on SQLite)
COALESCE_S = 0.05
#: finished deliveries (and their events) are deleted this long after their last attempt
KEEP_FINISHED = dt.timedelta(days=30)
PURGE_EVERY_S = 3600.0
#: a DNS lookup of an endpoint's host may take this long
RESOLVE_TIMEOUT_S = 5.0
USER_AGENT = "truckx-webhooks/1"
DELIVERY_ID = re.compile(r"[0-9]{1,18}")


# -- signing -------------------------------------------------------------------------------------

def new_secret() -> str:
    """``whsec_`` and the base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: ``v1,`` and the base64 HMAC-SHA256 of ``id.timestamp.body``,
    keyed with the base64-decoded part of the ``whsec_`` secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def event_body(event_type: str, at: dt.datetime, data: Any) -> bytes:
    """The body of a delivery: the same bytes on every attempt."""
    return json.dumps({"type": event_type, "timestamp": format_time(at), "data": data},
                      separators=(",", ":"), ensure_ascii=False).encode()


def retry_delay(base_s: float, attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: ``base * 2^(attempts-1)`` (5, 10,
    20, ... for a base of 5), at most an hour, times a random factor (jitter)."""
    nominal = min(RETRY_MAX_S, base_s * 2 ** min(max(attempts - 1, 0), 30))
    return nominal * random.uniform(*JITTER)


# -- addresses -----------------------------------------------------------------------------------

class AddressRefused(Exception):
    """An endpoint's host is, or resolves to, an address deliveries may not go to."""


def address_allowed(address: str) -> bool:
    """True for a globally routable unicast address. Loopback, private (RFC 1918), link-local,
    unique-local (fc00::/7), unspecified, shared (100.64/10), reserved, documentation and multicast
    addresses are not; an IPv4-mapped IPv6 address is judged as its IPv4 address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host`` (itself when it is an address literal)."""
    with contextlib.suppress(ValueError):
        return [str(ipaddress.ip_address(host))]
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, ValueError) as exc:  # UnicodeError (a label too long) is a ValueError
        raise AddressRefused(f"the host {host} does not resolve") from exc
    return list(dict.fromkeys(info[4][0] for info in infos))


async def checked_addresses(host: str, port: int) -> list[str]:
    """The addresses of ``host``, every one of them allowed; :class:`AddressRefused` otherwise."""
    addresses = await resolve(host, port)
    if not addresses:
        raise AddressRefused(f"the host {host} does not resolve")
    for address in addresses:
        if not address_allowed(address):
            raise AddressRefused(f"the host {host} is or resolves to a non-public address ({address}), "
                                 "which --webhook-deny-private forbids")
    return addresses


def parse_url(value: Any) -> urllib.parse.SplitResult:
    """An endpoint URL: absolute http(s), a host, no credentials, no fragment, at most URL_MAX characters."""
    if not isinstance(value, str) or not value or len(value) > URL_MAX:
        raise InvalidArgument(f"url must be an http or https URL of at most {URL_MAX} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7f for c in value) or not value.isascii():
        raise InvalidArgument("url must be an ASCII URL without spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port
    except ValueError:
        raise InvalidArgument("url is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidArgument("url must use http or https")
    if not parts.hostname:
        raise InvalidArgument("url must name a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidArgument("url must not carry credentials (user:password@)")
    if parts.fragment:
        raise InvalidArgument("url must not have a fragment (#...)")
    if port == 0:
        raise InvalidArgument("url: port 0 is not valid")
    return parts


def default_port(parts: urllib.parse.SplitResult) -> int:
    return parts.port or (443 if parts.scheme.lower() == "https" else 80)


# -- JSON ----------------------------------------------------------------------------------------

def webhook_json(row: dict[str, Any], secret: str | None = None) -> dict[str, Any]:
    out = {"id": row["id"], "url": row["url"], "events": list(row["events"] or []),
           "description": row.get("description"), "enabled": bool(row["enabled"]),
           "created_at": format_time(row["created_at"]), "updated_at": format_time(row["updated_at"])}
    if secret is not None:
        out["secret"] = secret
    return out


def delivery_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "message_id": row["message_id"], "webhook_id": row["webhook_id"], "type": row["type"],
            "status": row["status"], "attempts": row["attempts"], "last_status_code": row["last_status_code"],
            "last_error": row["last_error"], "next_attempt_at": format_time(row["next_attempt_at"]),
            "created_at": format_time(row["created_at"])}


def _events(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or len(value) > len(WEBHOOK_EVENTS) * 2:
        raise InvalidArgument("events must be a non-empty list of event types: " + ", ".join(WEBHOOK_EVENTS))
    for item in value:
        if item not in WEBHOOK_EVENTS:
            raise InvalidArgument("events: each must be one of " + ", ".join(WEBHOOK_EVENTS))
    return list(dict.fromkeys(value))


def _description(value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > DESCRIPTION_MAX):
        raise InvalidArgument(f"description must be a string of at most {DESCRIPTION_MAX} characters")
    return value


def _webhook_id(value: str) -> str:
    """An endpoint id (a UUID, as made by create); anything else names no endpoint."""
    try:
        if len(value) == 36:
            return str(uuid.UUID(value))
    except ValueError:
        pass
    raise NotFound("no such webhook")


class WebhookService:
    """The admin's side: endpoints and their deliveries."""

    def __init__(self, rows: WebhookRows, *, deny_private: bool, retry_window_s: int,
                 dispatcher: "Dispatcher") -> None:
        self.rows = rows
        self.deny_private = deny_private
        self.retry_window_s = retry_window_s
        self.dispatcher = dispatcher

    async def _url(self, value: Any) -> str:
        parts = parse_url(value)
        if self.deny_private:
            try:
                await checked_addresses(parts.hostname or "", default_port(parts))
            except AddressRefused as exc:
                raise InvalidArgument(f"url: {exc}") from None
        return value  # type: ignore[no-any-return]

    async def create(self, body: dict[str, Any], actor: str) -> dict[str, Any]:
        url = await self._url(body.get("url"))
        events = _events(body.get("events"))
        description = _description(body.get("description"))
        enabled = body.get("enabled", True)
        if not isinstance(enabled, bool):
            raise InvalidArgument("enabled must be true or false")
        secret = new_secret()
        now = utcnow()
        row = {"id": str(uuid.uuid4()), "url": url, "events": events, "description": description, "secret": secret,
               "enabled": enabled, "created_by": actor, "created_at": now}
        await self.rows.create(row, MAX_WEBHOOKS, AuditEntry(actor, "webhook.create", row["id"],
                                                             {"url": url, "events": events}, at=now))
        return webhook_json({**row, "updated_at": now}, secret=secret)

    async def list(self, limit: int, cursor: str | None) -> dict[str, Any]:
        after = paging.decode(cursor, paging.time, paging.text)
        page = await paging.keyset(lambda n: self.rows.page(n, tuple(after) if after else None), limit,
                                   lambda r: [format_time(r["created_at"]), r["id"]])
        return page.json(webhook_json)

    async def _require(self, webhook_id: str) -> dict[str, Any]:
        row = await self.rows.get(_webhook_id(webhook_id))
        if row is None:
            raise NotFound("no such webhook")
        return row

    async def get(self, webhook_id: str) -> dict[str, Any]:
        return webhook_json(await self._require(webhook_id))

    async def update(self, webhook_id: str, body: dict[str, Any], actor: str) -> dict[str, Any]:
        webhook_id = _webhook_id(webhook_id)
        values: dict[str, Any] = {}
        if "url" in body:
            values["url"] = await self._url(body["url"])
        if "events" in body:
            values["events"] = _events(body["events"])
        if "enabled" in body:
            if not isinstance(body["enabled"], bool):
                raise InvalidArgument("enabled must be true or false")
            values["enabled"] = body["enabled"]
        if "description" in body:
            values["description"] = _description(body["description"])
        if not values:
            raise InvalidArgument("give url, events, enabled and/or description")
        if not await self.rows.update(webhook_id, values, utcnow(), AuditEntry(actor, "webhook.update", webhook_id,
                                                                               values)):
            raise NotFound("no such webhook")
        self.dispatcher.wake()  # enabled again: its waiting deliveries may go
        return await self.get(webhook_id)

    async def delete(self, webhook_id: str, actor: str) -> None:
        webhook_id = _webhook_id(webhook_id)
        if not await self.rows.delete(webhook_id, AuditEntry(actor, "webhook.delete", webhook_id)):
            raise NotFound("no such webhook")

    async def deliveries(self, webhook_id: str, limit: int, cursor: str | None) -> dict[str, Any]:
        row = await self._require(webhook_id)
        after = paging.decode(cursor, paging.integer)
        page = await paging.keyset(lambda n: self.rows.deliveries(row["id"], n, after[0] if after else None), limit,
                                   lambda r: [r["id"]])
        return page.json(delivery_json)

    async def retry(self, webhook_id: str, delivery_id: str, actor: str) -> dict[str, Any]:
        webhook_id = _webhook_id(webhook_id)
        if not DELIVERY_ID.fullmatch(delivery_id):
            raise NotFound("no such delivery")
        now = utcnow()
        row = await self.rows.retry(webhook_id, int(delivery_id), now,
                                    now + dt.timedelta(seconds=self.retry_window_s),
                                    AuditEntry(actor, "webhook.retry", f"{webhook_id}/{delivery_id}", at=now))
        if row is None:
            raise NotFound("no such delivery")
        self.dispatcher.wake()
        return delivery_json(row)


class Dispatcher:
    """Fans the outbox out to deliveries and sends them (one per process, every process runs one)."""

    def __init__(self, rows: WebhookRows, metrics: Metrics, holder: str, *, deny_private: bool,
                 retry_base_s: float, retry_window_s: int, timeout_s: float, concurrency: int) -> None:
        self.rows = rows
        self.metrics = metrics
        self.holder = holder
        self.deny_private = deny_private
        self.retry_base_s = retry_base_s
        self.retry_window_s = retry_window_s
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        #: a claim outlives the attempt it covers
        self.lease_s = timeout_s + RESOLVE_TIMEOUT_S + 30.0
        self._wake = asyncio.Event()
        #: a delivery finished: its endpoint's next one may go at once (no coalescing wait)
        self._next_due = False
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._last_purge = 0.0
        self._client: httpx.AsyncClient | None = None

    def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout_s), follow_redirects=False, trust_env=False,
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency))
        self._task = asyncio.create_task(self._run(), name="webhooks")

    def wake(self) -> None:
        """Something was recorded (or changed): look for work now rather than at the next poll."""
        self._wake.set()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.rows.release(list(self._inflight), self.holder)
        self._inflight.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            self._next_due = False
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("webhook dispatch failed: %s", type(exc).__name__)
            try:
                async with asyncio.timeout(POLL_S):
                    await self._wake.wait()
                if not self._next_due:
                    await asyncio.sleep(COALESCE_S)
            except TimeoutError:
                pass

    async def step(self) -> int:
        """Fan out what the outbox holds, then start sending what is due (as many as free slots).
        Returns the deliveries started."""
        for _ in range(FAN_OUT_ROUNDS):
            now = utcnow()
            taken, _made = await self.rows.fan_out(now, now + dt.timedelta(seconds=self.retry_window_s),
                                                   FAN_OUT_BATCH)
            if taken < FAN_OUT_BATCH:
                break
        if time.monotonic() - self._last_purge > PURGE_EVERY_S:
            self._last_purge = time.monotonic()
            await self.rows.purge(utcnow() - KEEP_FINISHED)
        free = self.concurrency - len(self._inflight)
        if free <= 0:
            return 0
        claimed = await self.rows.claim_due(self.holder, utcnow(), self.lease_s, free)
        for delivery in claimed:
            task = asyncio.create_task(self._deliver(delivery), name=f"webhook-delivery-{delivery['id']}")
            self._inflight[delivery["id"]] = task
            task.add_done_callback(lambda _t, key=delivery["id"]: self._done(key))
        return len(claimed)

    def _done(self, delivery_id: int) -> None:
        self._inflight.pop(delivery_id, None)
        self._next_due = True
        self._wake.set()  # the endpoint's next delivery may be due now

    async def _deliver(self, d: dict[str, Any]) -> None:
        body = event_body(d["type"], d["event_at"], d["data"])
        timestamp = int(time.time())
        headers = {"content-type": "application/json", "user-agent": USER_AGENT,
                   "webhook-id": d["message_id"], "webhook-timestamp": str(timestamp),
                   "webhook-signature": sign(d["secret"], d["message_id"], timestamp, body)}
        code, error = await self.post(d["url"], headers, body)
        now = utcnow()
        if code is not None and 200 <= code < 300:
            status, next_at, result = DELIVERED, now, "delivered"
            error = None
        elif now >= d["give_up_at"]:
            status, next_at, result = FAILED, now, "failed"
        else:
            status, result = PENDING, "retry"
            next_at = now + dt.timedelta(seconds=retry_delay(self.retry_base_s, d["attempts"] + 1))
        self.metrics.webhook_attempts.labels(result).inc()
        try:
            await self.rows.attempted(d["id"], self.holder, now, status=status, status_code=code, error=error,
                                      next_attempt_at=next_at)
        except Exception as exc:  # the lease runs out and the attempt is made again: at least once
            log.warning("could not record a webhook attempt: %s", type(exc).__name__)

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> tuple[int | None, str | None]:
        """One attempt: ``(status code, None)`` once a response head arrived (at most RESPONSE_READ_MAX
        bytes of its body are read), or ``(None, reason)``."""
        assert self._client is not None
        parts = urllib.parse.urlsplit(url)
        target, extensions = url, {}
        try:
            async with asyncio.timeout(self.timeout_s):
                if self.deny_private:
                    host = parts.hostname or ""
                    address = (await checked_addresses(host, default_port(parts)))[0]
                    if address != host:  # connect to the address checked, not to a second lookup's answer
                        literal = f"[{address}]" if ":" in address else address
                        netloc = literal + (f":{parts.port}" if parts.port else "")
                        target = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
                        headers = {**headers, "host": parts.netloc}
                        if parts.scheme.lower() == "https":
                            extensions["sni_hostname"] = host
                async with self._client.stream("POST", target, content=body, headers=headers,
                                               extensions=extensions) as response:
                    read = 0
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read >= RESPONSE_READ_MAX:
                            break  # read no further; closing the stream drops the connection
                    return response.status_code, None if response.is_success else f"HTTP {response.status_code}"
        except AddressRefused as exc:
            return None, str(exc)
        except TimeoutError:
            return None, f"timed out after {self.timeout_s:g} s"
        except httpx.TimeoutException:
            return None, f"timed out after {self.timeout_s:g} s"
        except httpx.HTTPError as exc:
            return None, f"request failed: {type(exc).__name__}"
        except (OSError, ValueError) as exc:
            return None, f"request failed: {type(exc).__name__}"

    @property
    def inflight(self) -> Sequence[int]:
        return list(self._inflight)
