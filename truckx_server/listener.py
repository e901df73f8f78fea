"""Accepting connections: a cap on open connections below the file-descriptor limit, and a back-off when
``accept()`` fails for want of descriptors or memory.

Tornado's own accept handler (``netutil.add_accept_handler``) lets ``EMFILE`` escape to the event loop,
which logs a traceback and calls it again at once while the listening socket stays readable: 100% CPU,
tens of thousands of tracebacks a second, and nothing else served. Here:

- every accepted socket becomes an :class:`IOStream` whose descriptor is counted until it is closed
  (WebSockets included: they keep the stream of their upgrade request);
- past ``max_connections`` a new connection gets a ``503`` with ``Connection: close`` and is closed;
- on ``EMFILE``/``ENFILE``/``ENOBUFS``/``ENOMEM`` the listening sockets are left alone for a while
  (50 ms, doubling to 1 s), so the pending connections wait in the kernel's backlog;
- both are logged at most once per :data:`LOG_EVERY_S`, with counts.

The default cap (:func:`default_max_connections`) leaves room under ``RLIMIT_NOFILE`` for what else
the process opens: database files and connections, video files being written or read, pipes.
"""

from __future__ import annotations

import errno
import json
import logging
import resource
import socket
import time
from typing import Any, Callable, Sequence

from tornado.ioloop import IOLoop
from tornado.iostream import IOStream

log = logging.getLogger("truckx.listener")

#: descriptors kept free for files and store connections: at least this many, or a fifth of the limit
HEADROOM_MIN = 64
#: connections accepted per wake-up of a listening socket (as Tornado does), so accepting never starves the loop
ACCEPT_BATCH = 128
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 1.0
LOG_EVERY_S = 10.0
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

_BUSY_BODY = json.dumps({"error": {"code": "unavailable", "message": "too many connections; retry later"}}).encode()
BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n"
                 b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(_BUSY_BODY)) + _BUSY_BODY


def fd_limit() -> int:
    """The process's soft limit on open file descriptors."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def default_max_connections(limit: int | None = None) -> int:
    """Open connections allowed under a descriptor limit of ``limit`` (the process's by default)."""
    limit = fd_limit() if limit is None else limit
    return max(1, limit - max(HEADROOM_MIN, limit // 5))


class _CountedStream(IOStream):
    """An IOStream that tells the listener when its descriptor is closed."""

    def __init__(self, sock: socket.socket, on_close_fd: Callable[[], None], **kwargs: Any) -> None:
        self._on_close_fd = on_close_fd
        super().__init__(sock, **kwargs)

    def close_fd(self) -> None:
        try:
            super().close_fd()
        finally:
            self._on_close_fd()


class _Throttled:
    """A warning logged at most once per ``every`` seconds, with how often it happened meanwhile."""

    def __init__(self, every: float = LOG_EVERY_S) -> None:
        self.every = every
        self._last = -float("inf")
        self._suppressed = 0

    def warn(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            self._suppressed += 1
            return
        if self._suppressed:
            message += f" (and {self._suppressed} more times in the last {now - self._last:.0f}s)"
        self._last, self._suppressed = now, 0
        log.warning(message, *args)


class Listener:
    """Accepts on ``sockets`` and hands each connection to ``handle_stream(stream, address)`` (an
    ``HTTPServer``'s), at most ``max_connections`` at a time."""

    def __init__(self, handle_stream: Callable[[IOStream, Any], Any], max_connections: int,
                 max_buffer_size: int | None = None, read_chunk_size: int | None = None) -> None:
        self.handle_stream = handle_stream
        self.max_connections = max_connections
        self._stream_args = {"max_buffer_size": max_buffer_size, "read_chunk_size": read_chunk_size}
        self.open_connections = 0
        self._sockets: list[socket.socket] = []
        self._paused = False
        self._backoff = BACKOFF_FIRST_S
        self._resume: object | None = None
        self._stopped = False
        self._refused_log = _Throttled()
        self._exhausted_log = _Throttled()

    def add_sockets(self, sockets: Sequence[socket.socket]) -> None:
        loop = IOLoop.current()
        for sock in sockets:
            sock.setblocking(False)
            self._sockets.append(sock)
            loop.add_handler(sock, self._on_readable, IOLoop.READ)

    def stop(self) -> None:
        """Stop accepting and close the listening sockets (open connections are not touched)."""
        self._stopped = True
        loop = IOLoop.current()
        if self._resume is not None:
            loop.remove_timeout(self._resume)
            self._resume = None
        for sock in self._sockets:
            if not self._paused:
                loop.remove_handler(sock)
            sock.close()
        self._sockets.clear()

    # -- accepting -------------------------------------------------------------------------------

    def _on_readable(self, sock: socket.socket, _events: int) -> None:
        for _ in range(ACCEPT_BATCH):
            if self._paused or self._stopped:
                return
            try:
                conn, address = sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    self._pause(exc)
                    return
                raise
            self._backoff = BACKOFF_FIRST_S
            if self.open_connections >= self.max_connections:
                self._refuse(conn)
                continue
            self._serve(conn, address)

    def _serve(self, conn: socket.socket, address: Any) -> None:
        self.open_connections += 1
        try:
            stream = _CountedStream(conn, self._closed_one, **self._stream_args)
        except BaseException:
            self.open_connections -= 1
            conn.close()
            raise
        self.handle_stream(stream, address)

    def _closed_one(self) -> None:
        self.open_connections -= 1

    def _refuse(self, conn: socket.socket) -> None:
        """Over the cap: a 503 if the socket takes it at once, then close."""
        try:
            conn.setblocking(False)
            conn.send(BUSY_RESPONSE)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            conn.close()
        self._refused_log.warn("%d connections open, the most allowed (--max-connections): refusing new ones",
                               self.open_connections)

    # -- out of descriptors: back off ------------------------------------------------------------

    def _pause(self, exc: OSError) -> None:
        loop = IOLoop.current()
        self._paused = True
        for sock in self._sockets:
            loop.remove_handler(sock)
        self._exhausted_log.warn("cannot accept connections (%s, %d open); pausing accept for %.2fs",
                                 errno.errorcode.get(exc.errno or 0, str(exc.errno)), self.open_connections,
                                 self._backoff)
        self._resume = loop.call_later(self._backoff, self._unpause)
        self._backoff = min(BACKOFF_MAX_S, self._backoff * 2)

    def _unpause(self) -> None:
        self._resume = None
        if self._stopped:
            return
        self._paused = False
        loop = IOLoop.current()
        for sock in self._sockets:
            loop.add_handler(sock, self._on_readable, IOLoop.READ)
