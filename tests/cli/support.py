"""Helpers for the CLI tests (fixtures are in conftest.py): a real truckx server in a background thread, real devices, the CLI in-process.

Typer's ``CliRunner`` is synchronous and the CLI uses sync httpx and the sync ``websockets`` client, so
the server cannot share the test's event loop. :class:`ServerThread` runs ``truckx_server.app.Server``
on its own asyncio loop in a daemon thread (started and stopped with ``run_coroutine_threadsafe``).
One server per test module (a module's tests use their own fresh devices, so they do not see each
other's data where it matters; every filter test names its devices).

Data is seeded with real clients only: devices registered over the admin API (httpx), connected over the
device WebSocket (``websockets.sync.client``), alarms posted and videos uploaded with device tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
from typer.testing import CliRunner, Result
from websockets.sync.client import ClientConnection, connect

from truckx_cli.main import app as cli_app
from truckx_server import config
from truckx_server.app import Server
from truckx_server.config import Secret
from tests.support import Device
from truckx_server.models import make_imei

ADMIN_PASSWORD = "cli-test-admin-password"
_imeis = itertools.count(random.randrange(10**6))


def server_settings(data_dir: Path, port: int = 0, admin_password: str = ADMIN_PASSWORD) -> config.Settings:
    """Settings of a CLI test's server (embedded default in ``data_dir``)."""
    return config.load(environ={}, host="127.0.0.1", port=port, data_dir=data_dir,
                       initial_admin_password=Secret(admin_password), batch_interval_ms=10,
                       login_rate_per_min=1000, device_login_rate_per_min=1000, store_timeout_s=5.0)


def new_imei() -> str:
    return make_imei(f"86{next(_imeis):012d}")


class ServerThread:
    """A real server on 127.0.0.1:<free port>, served by an event loop in a background thread."""

    def __init__(self, settings: config.Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="truckx-test-server", daemon=True)
        self.server: Server | None = None

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()

        async def start() -> None:
            self.server = Server(self.settings)  # built on its own loop
            await self.server.start()

        self.call(start())

    def stop(self) -> None:
        async def stop() -> None:
            assert self.server is not None
            await self.server.stop(flush_timeout_s=5)
            current = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not current]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        try:
            self.call(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/api/v1/device/ws"


@dataclass
class Env:
    """A running server plus helpers: admin HTTP, seeding with real device clients, and the CLI."""

    srv: ServerThread
    tmp: Path
    http: httpx.Client
    admin_token: str
    password_file: Path
    runner: CliRunner = field(default_factory=CliRunner)
    _config_dirs: Iterator[int] = field(default_factory=itertools.count)

    @property
    def url(self) -> str:
        return self.srv.url

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    # -- seeding ---------------------------------------------------------------------------------

    def register(self, name: str | None = None) -> Device:
        imei = new_imei()
        r = self.http.post("/api/v1/admin/devices", json={"imei": imei, "name": name}, headers=self.admin_headers())
        assert r.status_code == 201, r.text
        dev = Device(imei, r.json()["secret"])
        r = self.http.post("/api/v1/device/login", json={"imei": imei, "secret": dev.secret})
        assert r.status_code == 200, r.text
        dev.token = r.json()["token"]
        return dev

    def connect(self, dev: Device) -> "DeviceConn":
        return DeviceConn(connect(self.srv.ws_url, additional_headers={"Authorization": f"Bearer {dev.token}"},
                                  open_timeout=10))

    def post_alarm(self, dev: Device, **alarm: Any) -> dict[str, Any]:
        r = self.http.post("/api/v1/device/alarms", json=alarm, headers={"Authorization": f"Bearer {dev.token}"})
        assert r.status_code == 201, r.text
        return r.json()

    def upload(self, dev: Device, name: str, data: bytes) -> dict[str, Any]:
        r = self.http.put(f"/api/v1/device/videos/{name}", content=data,
                          headers={"Authorization": f"Bearer {dev.token}"})
        assert r.status_code in (200, 201), r.text
        return r.json()

    # -- the CLI ---------------------------------------------------------------------------------

    def config_dir(self) -> Path:
        path = self.tmp / f"config-{next(self._config_dirs)}"
        path.mkdir()
        return path

    def cli_env(self, config_dir: Path | None = None, **extra: str | None) -> dict[str, str | None]:
        env: dict[str, str | None] = {"TRUCKX_CONFIG_DIR": str(config_dir or self.config_dir()),
                                      "TRUCKX_URL": None, "TRUCKX_TOKEN": None, "COLUMNS": "200"}
        env.update(extra)
        return env

    def run(self, *args: str, env: dict[str, str | None] | None = None, input: str | None = None) -> Result:
        """Run ``truckx ARGS`` in-process, logged in as admin unless ``env`` says otherwise."""
        if env is None:
            env = self.cli_env(TRUCKX_URL=self.url, TRUCKX_TOKEN=self.admin_token)
        return self.runner.invoke(cli_app, list(args), env=env, input=input, catch_exceptions=True)

    def ok(self, *args: str, env: dict[str, str | None] | None = None, input: str | None = None) -> Result:
        result = self.run(*args, env=env, input=input)
        assert result.exit_code == 0, (args, result.exit_code, result.stdout, result.stderr, result.exception)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        return result

    def json(self, *args: str, env: dict[str, str | None] | None = None) -> Any:
        return json.loads(self.ok(*args, "--json", env=env).stdout)


class DeviceConn:
    """A device's WebSocket (sync client): send locations, wait for acks, answer commands."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws.__enter__()  # used as a context manager (websockets >= 17.1 warns otherwise)
        self.seq = 0
        self.commands: list[dict[str, Any]] = []
        self._answer: threading.Thread | None = None
        self._stop = threading.Event()

    def send_points(self, points: list[dict[str, Any]]) -> int:
        self.seq += 1
        self.ws.send(json.dumps({"type": "locations", "seq": self.seq, "points": points}))
        return self.seq

    def wait_ack(self, seq: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if msg.get("type") == "command":
                self.commands.append(msg)
            if msg.get("type") == "error":
                raise AssertionError(f"device got an error frame: {msg}")
            if msg.get("type") == "ack" and msg["seq"] >= seq:
                return

    def answer_commands(self, ok: bool = True, detail: str | None = None) -> None:
        """In a thread: answer every ``command`` frame with a ``command_result``."""

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    msg = json.loads(self.ws.recv(timeout=0.2))
                except TimeoutError:
                    continue
                except Exception:
                    return
                if msg.get("type") == "command":
                    self.commands.append(msg)
                    self.ws.send(json.dumps({"type": "command_result", "id": msg["id"], "ok": ok, "detail": detail}))

        self._answer = threading.Thread(target=loop, daemon=True)
        self._answer.start()

    def close(self) -> None:
        self._stop.set()
        if self._answer is not None:
            self._answer.join(5)
        with contextlib.suppress(Exception):
            self.ws.close()

    def __enter__(self) -> "DeviceConn":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def eventually(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Call ``check`` until it returns something truthy (or raise its last assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


@contextlib.contextmanager
def running_env(tmp: Path, settings: config.Settings) -> Iterator[Env]:
    """A real server on ``settings`` in a thread, an admin logged in over HTTP, and the CLI's password
    file: what the CLI tests of a module share (the ``env`` fixture; modules that need other settings)."""
    srv = ServerThread(settings)
    srv.start()
    password_file = tmp / "admin-password"
    password_file.write_text(ADMIN_PASSWORD + "\n")
    try:
        with httpx.Client(base_url=srv.url, timeout=15) as http:
            r = http.post("/api/v1/admin/login", json={"username": "admin", "password": ADMIN_PASSWORD})
            assert r.status_code == 200, r.text
            yield Env(srv=srv, tmp=tmp, http=http, admin_token=r.json()["token"], password_file=password_file)
    finally:
        srv.stop()
