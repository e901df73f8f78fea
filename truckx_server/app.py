"""The Tornado application and the server's life cycle: start, serve, ordered shutdown."""

from __future__ import annotations

import asyncio
import gc
import contextlib
import logging
import re
import os
import signal
import socket
import sys
from typing import Sequence

import tornado.httpserver
import tornado.netutil
import tornado.web

from . import config, listener, logs, migrate, workers
from .config import Settings
from .handlers import (alarms, audit, commands, console, device_socket, devices, events, geofences, locations, nodes,
                       openapi, ops, retention, sessions, trips, users, videos, webhooks)
from .handlers.base import NotFoundHandler
from .wiring import Node

log = logging.getLogger("truckx")

ROUTE_MODULES = [ops, openapi, devices, users, sessions, alarms, locations, trips, commands, videos, retention,
                 nodes, device_socket, events, console, audit, webhooks, geofences]


def routes() -> list:
    table: list = []
    for module in ROUTE_MODULES:
        table.extend(module.routes())
    return table


def route_names(table: list) -> dict[type, str]:
    """Each handler class's route as a pattern (``/api/v1/admin/devices/{imei}``): the ``route`` label of
    the request metric, a closed set, never the raw path."""
    names: dict[type, str] = {NotFoundHandler: "unmatched"}
    for rule in table:
        pattern, cls = rule[0], rule[1]
        name = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern)
        names[cls] = re.sub(r"\((?!\?)[^)]*\)", "{}", name)
    return names


def make_app(node: Node) -> tornado.web.Application:
    s = node.settings
    table = routes()
    return tornado.web.Application(
        table,
        node=node,
        metrics=node.metrics,
        route_names=route_names(table),
        log_function=logs.log_function,
        default_handler_class=NotFoundHandler,
        websocket_max_message_size=s.max_ws_message_bytes,
        websocket_ping_interval=s.ws_ping_interval_s,
        websocket_ping_timeout=s.ws_ping_interval_s,
        compress_response=False,
        console=console.ConsolePage(console.STATIC_DIR, s.tile_url),
        # the _xsrf cookie is read by the console's script (not HttpOnly); checked only for requests
        # authenticated by the session cookie (handlers.base), so xsrf_cookies stays off
        xsrf_cookie_kwargs={"samesite": "Strict", "path": "/"},
    )


class ListenError(Exception):
    """The address cannot be listened on (taken, not local, not allowed)."""


class Server:
    """A running server: ``await start()``, then ``await stop()`` (also used by the tests)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.node = Node(settings)
        self.app = make_app(self.node)
        self.http: tornado.httpserver.HTTPServer | None = None
        self.listener: listener.Listener | None = None
        self.port: int = settings.port

    async def start(self, sockets: Sequence[socket.socket] | None = None, reuse_port: bool = False) -> None:
        s = self.settings
        # Bind before anything starts a thread or opens a store: a taken port fails here, with nothing
        # to undo (see main: one line, exit code 2).
        if sockets is None:
            try:
                sockets = tornado.netutil.bind_sockets(s.port, s.host, backlog=4096, reuse_port=reuse_port)
            except OSError as exc:
                raise ListenError(f"cannot listen on {s.host}:{s.port}: {(exc.strerror or str(exc)).lower()}") from exc
        try:
            await self.node.start()
        except BaseException:
            for sock in sockets:
                sock.close()
            with contextlib.suppress(Exception):
                await self.node.aclose()
            raise
        # The server-wide body limit is the JSON one: it bounds what Tornado itself buffers for handlers
        # that do not stream their body (the WebSocket handshakes). Streaming handlers set their own
        # limit (videos: the largest video) once they have authenticated the request.
        # Request bodies are not timed out on their total duration (a slow upload may take hours), but
        # on inactivity, by the handlers (handlers/base.py: BodyWatchdog).
        self.http = tornado.httpserver.HTTPServer(
            self.app, max_body_size=s.max_json_body_bytes, idle_connection_timeout=s.header_timeout_s,
            body_timeout=None, xheaders=False)
        max_connections = s.max_connections or listener.default_max_connections()
        if s.max_connections and s.max_connections > listener.fd_limit():
            log.warning("--max-connections %d is above the file-descriptor limit (%d): accept() will run out "
                        "of descriptors first", s.max_connections, listener.fd_limit())
        self.listener = listener.Listener(self.http.handle_stream, max_connections,
                                          max_buffer_size=self.http.max_buffer_size,
                                          read_chunk_size=self.http.read_chunk_size)
        self.listener.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]

    async def stop(self, flush_timeout_s: float = 10.0) -> None:
        """Stop accepting, flush the pending location batch (acks still reach devices), close every
        WebSocket, then close the stores."""
        if self.listener is not None:
            self.listener.stop()
        await self.node.flush_locations(flush_timeout_s)
        self.node.close_connections()  # device sessions, admin event feeds, command long polls
        await asyncio.sleep(0)  # let the close frames go out
        if self.http is not None:
            try:
                await asyncio.wait_for(self.http.close_all_connections(), 5)
            except TimeoutError:
                log.warning("shutdown: some HTTP connections did not close in time")
        await self.node.aclose()


async def serve(settings: Settings, reuse_port: bool = False) -> None:
    server = Server(settings)
    await server.start(reuse_port=reuse_port)
    if server.node.initial_admin_password:
        print(f"truckx: created admin user 'admin' with password: {server.node.initial_admin_password}\n"
              f"truckx: (also written to {settings.data_dir / 'admin-password'}, mode 0600; shown only once)",
              flush=True)
    log.info("truckx listening on http://%s:%d (data dir %s, node %s)", settings.host, server.port,
             settings.data_dir, server.node.node_id)
    settle_heap()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    log.info("stopped")


def settle_heap() -> None:
    """Move what start-up allocated (modules, routes, the OpenAPI document, SQLAlchemy's metadata: over a
    million objects) out of the collector's sight, once the server is up. Without it every full
    collection walks them all: 50-120 ms with the event loop stopped, about twice a second under a
    flat-out ingest (benchmark scenario 1), which was the whole /healthz p99 under load. What is
    frozen is never freed, which suits objects that live as long as the process."""
    gc.collect()
    gc.freeze()


def main(argv: Sequence[str] | None = None) -> int:
    command, args = config.parse_args(argv)
    try:
        settings = config.load(args)
    except config.ConfigError as exc:
        print(f"truckx-server: {exc}", file=sys.stderr)
        return 2
    # Everything the process creates is private (SQLite's journals and every file a library opens
    # included); the stores also create their files 0600 and directories 0700 themselves.
    os.umask(0o077)
    logs.setup(settings.log_level)
    if command == "migrate":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        migrate.upgrade(settings.resolved_sql_url)
        print(f"migrated to {migrate.current(settings.resolved_sql_url)}")
        return 0
    try:
        if settings.workers > 1:
            return workers.supervise(settings, serve_worker)
        asyncio.run(serve(settings))
    except (ListenError, workers.PortTaken) as exc:
        print(f"truckx-server: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


def serve_worker(settings: Settings) -> int:
    """One worker of ``--workers N`` (in a forked process): the port is shared with SO_REUSEPORT."""
    asyncio.run(serve(settings, reuse_port=True))
    return 0
