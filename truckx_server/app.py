"""The Tornado application and the server's life cycle: start, serve, ordered shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from typing import Sequence

import tornado.httpserver
import tornado.netutil
import tornado.web

from . import config, logs, migrate
from .config import Settings
from .handlers import (alarms, audit, commands, device_socket, devices, events, locations, openapi, ops, users,
                       videos)
from .handlers.base import NotFoundHandler
from .wiring import Node

log = logging.getLogger("truckx")

ROUTE_MODULES = [ops, openapi, devices, users, alarms, locations, commands, videos, device_socket, events, audit]


def routes() -> list:
    table: list = []
    for module in ROUTE_MODULES:
        table.extend(module.routes())
    return table


def make_app(node: Node) -> tornado.web.Application:
    s = node.settings
    return tornado.web.Application(
        routes(),
        node=node,
        metrics=node.metrics,
        log_function=logs.log_function,
        default_handler_class=NotFoundHandler,
        websocket_max_message_size=s.max_ws_message_bytes,
        websocket_ping_interval=s.ws_ping_interval_s,
        websocket_ping_timeout=s.ws_ping_interval_s,
        compress_response=False,
    )


class Server:
    """A running server: ``await start()``, then ``await stop()`` (also used by the tests)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.node = Node(settings)
        self.app = make_app(self.node)
        self.http: tornado.httpserver.HTTPServer | None = None
        self.port: int = settings.port

    async def start(self, sockets: Sequence[socket.socket] | None = None) -> None:
        await self.node.start()
        # The server-wide body limit must admit the largest video; each handler lowers it for itself.
        self.http = tornado.httpserver.HTTPServer(
            self.app, max_body_size=self.settings.max_video_bytes + 1, idle_connection_timeout=120,
            body_timeout=300, xheaders=False)
        if sockets is None:
            sockets = tornado.netutil.bind_sockets(self.settings.port, self.settings.host, backlog=4096)
        self.http.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]

    async def stop(self, flush_timeout_s: float = 10.0) -> None:
        """Stop accepting, flush the pending location batch (acks still reach devices), close every
        WebSocket, then close the stores."""
        if self.http is not None:
            self.http.stop()
        await self.node.flush_locations(flush_timeout_s)
        self.node.close_connections()  # device sessions, admin event feeds, command long polls
        await asyncio.sleep(0)  # let the close frames go out
        if self.http is not None:
            try:
                await asyncio.wait_for(self.http.close_all_connections(), 5)
            except TimeoutError:
                log.warning("shutdown: some HTTP connections did not close in time")
        await self.node.aclose()


async def serve(settings: Settings) -> None:
    server = Server(settings)
    await server.start()
    if server.node.initial_admin_password:
        print(f"truckx: created admin user 'admin' with password: {server.node.initial_admin_password}\n"
              f"truckx: (also written to {settings.data_dir / 'admin-password'}, mode 0600; shown only once)",
              flush=True)
    log.info("truckx listening on http://%s:%d (data dir %s)", settings.host, server.port, settings.data_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    command, args = config.parse_args(argv)
    try:
        settings = config.load(args)
    except config.ConfigError as exc:
        print(f"truckx-server: {exc}", file=sys.stderr)
        return 2
    logs.setup(settings.log_level)
    if command == "migrate":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        migrate.upgrade(settings.resolved_sql_url)
        print(f"migrated to {migrate.current(settings.resolved_sql_url)}")
        return 0
    asyncio.run(serve(settings))
    return 0
