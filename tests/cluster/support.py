"""Helpers of the cluster tests: real device WebSockets and admin event feeds to a server process, and
waiting for a condition (never a fixed sleep)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable

import tornado.httpclient
import tornado.websocket

from tests.process import ServerProcess
from tests.support import WsClient


async def device_ws(srv: ServerProcess, token: str) -> WsClient:
    request = tornado.httpclient.HTTPRequest(srv.ws_url + "/api/v1/device/ws",
                                             headers={"Authorization": f"Bearer {token}"})
    return WsClient(await tornado.websocket.websocket_connect(request))


async def event_feed(srv: ServerProcess, token: str) -> WsClient:
    request = tornado.httpclient.HTTPRequest(srv.ws_url + "/api/v1/admin/events",
                                             headers={"Authorization": f"Bearer {token}"})
    return WsClient(await tornado.websocket.websocket_connect(request))


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 15.0, interval: float = 0.05,
                     what: str = "condition") -> Any:
    """Call ``check`` until it returns something true; that value, or TimeoutError after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while True:
        last = await check()
        if last:
            return last
        if loop.time() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout}s (last: {last!r})")
        await asyncio.sleep(interval)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def location(seq: int, second: int) -> dict[str, Any]:
    return {"type": "location", "seq": seq, "ts": f"2026-11-01T08:{second // 60:02d}:{second % 60:02d}Z",
            "lat": 10.0 + second / 1000, "lon": 20.0}


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))
