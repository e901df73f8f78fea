"""The admin event feed (``/api/v1/admin/events``, a WebSocket) for ``watch`` and ``commands send --wait``:
the first connection's failures are errors with their exit codes; once connected, a feed that closes
(the server restarting, 1001; too slow a reader, 4429; a network drop) is opened again with exponential
backoff and jitter, until the caller's deadline."""

from __future__ import annotations

import json
import random
import time
from typing import Any, Callable
from urllib.parse import urlencode

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection, connect

from .client import EXIT_AUTH, EXIT_ERROR, EXIT_NOT_FOUND, EXIT_UNREACHABLE, EXIT_USAGE, CliError

EVENT_TYPES = ("location", "alarm", "device_status", "command_status", "video", "geofence")
#: the largest frame accepted from the server
MAX_FRAME = 4 * 1024 * 1024


def events_url(http_url: str, imeis: list[str]) -> str:
    if http_url.startswith("https://"):
        ws = "wss://" + http_url[len("https://"):]
    else:
        ws = "ws://" + http_url[len("http://"):]
    query = urlencode([("imei", i) for i in imeis])
    return f"{ws}/api/v1/admin/events" + (f"?{query}" if query else "")


class Feed:
    """Events as dicts from :meth:`next`. ``notify`` gets one human line per connection change."""

    def __init__(self, http_url: str, token: str | None, imeis: list[str], *, reconnect: bool = True,
                 notify: Callable[[str], None] | None = None, backoff_base_s: float = 0.5,
                 backoff_cap_s: float = 15.0) -> None:
        self.url = events_url(http_url, imeis)
        self.where = self.url.split("?")[0]
        self.token = token
        self.reconnect = reconnect
        self.notify = notify or (lambda _line: None)
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.ws: ClientConnection | None = None
        self.connects = 0
        self.status = "connecting"

    # -- connecting ------------------------------------------------------------------------------

    def _open(self) -> ClientConnection:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            ws = connect(self.url, additional_headers=headers, open_timeout=10, close_timeout=2, max_size=MAX_FRAME)
            return ws.__enter__()  # websockets >= 17 wants the connection entered as a context manager
        except InvalidStatus as exc:
            status = exc.response.status_code
            try:
                message = json.loads(exc.response.body or b"{}")["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = exc.response.reason_phrase
            if status == 401:
                raise CliError(f"event feed: not authenticated ({message}); run `truckx login`", EXIT_AUTH) from None
            if status == 403:
                raise CliError(f"event feed: forbidden: {message}", EXIT_AUTH) from None
            if status == 404:
                raise CliError(f"event feed: not found ({message}); does the server have /api/v1/admin/events?",
                               EXIT_NOT_FOUND) from None
            if status in (502, 503, 504):
                raise CliError(f"event feed unavailable ({status}): {message}", EXIT_UNREACHABLE) from None
            raise CliError(f"event feed refused ({status}): {message}", EXIT_ERROR) from None
        except InvalidURI as exc:
            raise CliError(f"invalid server URL: {exc}", EXIT_USAGE) from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise CliError(f"cannot reach the event feed at {self.where}: {exc or type(exc).__name__} "
                           "(is the server running? check --url / TRUCKX_URL)", EXIT_UNREACHABLE) from None

    def open(self) -> None:
        """The first connection: any failure is the command's error."""
        self.ws = self._open()
        self.connects += 1
        self.status = f"connected to {self.where}"

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * 2 ** min(attempt, 30))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _reopen(self, why: str, deadline: float | None) -> bool:
        """Connect again with backoff until it works (True) or ``deadline`` passes (False). Refusals that
        another try cannot fix (the token revoked, the role changed) end the command."""
        self.ws = None
        attempt = 0
        while True:
            delay = self._backoff(attempt)
            if deadline is not None and time.monotonic() + delay >= deadline:
                return False
            self.status = f"{why}; reconnecting in {delay:.1f} s (attempt {attempt + 1})"
            self.notify(self.status)
            time.sleep(delay)
            try:
                self.ws = self._open()
            except CliError as exc:
                if exc.code in (EXIT_AUTH, EXIT_NOT_FOUND, EXIT_USAGE):
                    raise
                why = "the server is not reachable yet"
                attempt += 1
                continue
            self.connects += 1
            self.status = f"reconnected to {self.where}"
            self.notify(f"{self.status} (events sent while disconnected are not replayed)")
            return True

    # -- reading ---------------------------------------------------------------------------------

    def next(self, timeout: float, deadline: float | None = None) -> dict[str, Any] | None:
        """The next event, or None when ``timeout`` passes first (or the feed cannot be reopened before
        ``deadline``: then :attr:`ws` is None)."""
        if self.ws is None:
            return None
        try:
            raw = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return None
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            why = {1001: "the server is restarting", 4429: "this reader fell too far behind"}.get(
                code or 0, "the connection was lost") + f" (code {code})"
            if not self.reconnect:
                raise CliError(f"the server closed the event feed: {why}", EXIT_UNREACHABLE) from None
            self._close_quietly()
            self._reopen(why, deadline)
            return None
        try:
            event = json.loads(raw)
        except ValueError:
            return None
        return event if isinstance(event, dict) else None

    def _close_quietly(self) -> None:
        if self.ws is not None:
            try:
                self.ws.close()
            except Exception:  # noqa: BLE001 - already broken
                pass

    def close(self) -> None:
        self._close_quietly()
        self.ws = None

    def __enter__(self) -> "Feed":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
