"""A minimal keep-alive HTTP/1.1 JSON client for the one call every device makes in bulk (login).

httpx spends milliseconds of CPU per request in its connection pool bookkeeping; thousands of devices
logging in at once made the load generator, not the server, the bottleneck. This client keeps a few
persistent connections and speaks just enough HTTP/1.1 for ``POST`` with a JSON body and a
``Content-Length`` response. Anything unusual (no Content-Length, a closed connection) raises
:class:`FastHttpError`, and the caller retries like any other transport error.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit


class FastHttpError(OSError):
    pass


class FastHttp:
    def __init__(self, base_url: str, connections: int = 16, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http":
            raise ValueError("FastHttp speaks plain http only")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout = timeout
        self._idle: asyncio.LifoQueue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = asyncio.LifoQueue()
        for _ in range(connections):
            self._idle.put_nowait(None)  # a slot; connected lazily

    async def post_json(self, path: str, body: Any) -> tuple[int, Any]:
        conn = await self._idle.get()
        try:
            if conn is None:
                conn = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.timeout)
            status, data, keep = await asyncio.wait_for(self._exchange(conn, path, body), self.timeout)
            if not keep:
                conn[1].close()
                conn = None
            return status, data
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            if conn is not None:
                conn[1].close()
            conn = None
            raise FastHttpError(f"{type(exc).__name__}: {exc}") from None
        finally:
            self._idle.put_nowait(conn)

    async def _exchange(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], path: str,
                        body: Any) -> tuple[int, Any, bool]:
        reader, writer = conn
        payload = json.dumps(body).encode()
        writer.write(b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (path.encode(), self.host.encode(), self.port, len(payload), payload))
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, keep = None, True
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                keep = False
        if length is None:
            raise FastHttpError("response without Content-Length")
        data = await reader.readexactly(length)
        return status, (json.loads(data) if data else None), keep

    async def aclose(self) -> None:
        while not self._idle.empty():
            conn = self._idle.get_nowait()
            if conn is not None:
                conn[1].close()
