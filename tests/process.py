"""A real ``truckx-server`` in its own process, for tests that need one: memory measured from outside
(RSS with psutil), ``kill -9``, file-descriptor limits, several nodes, the command line itself.

    with ServerProcess(tmp_path / "data", "--batch-interval-ms", "5") as srv:
        httpx.get(srv.url + "/healthz")
        srv.rss()          # bytes
        srv.kill()         # SIGKILL; srv.start() brings it back on the same port and data dir

The server listens on a free loopback port and is ready when ``/healthz`` answers. Its output goes to
``<data_dir>/server.log`` (``srv.log_text()``), which a failing test prints.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import httpx
import psutil

ADMIN_PASSWORD = "process-admin-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, data_dir: Path, *args: str, port: int | None = None, env: dict[str, str] | None = None,
                 preexec: Any = None) -> None:
        self.data_dir = data_dir
        self.args = list(args)
        self.port = port or free_port()
        self.env = {**os.environ, "TRUCKX_INITIAL_ADMIN_PASSWORD": ADMIN_PASSWORD, **(env or {})}
        self.preexec = preexec
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "truckx_server", "--host", "127.0.0.1", "--port", str(self.port),
                "--data-dir", str(self.data_dir), *self.args]

    def start(self, timeout: float = 30.0) -> "ServerProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=self.env, preexec_fn=self.preexec)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"truckx-server exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"truckx-server did not answer in {timeout}s:\n{self.log_text()}")

    def rss(self) -> int:
        """The server's resident memory in bytes."""
        assert self.proc is not None
        return psutil.Process(self.proc.pid).memory_info().rss

    def num_fds(self) -> int:
        assert self.proc is not None
        return psutil.Process(self.proc.pid).num_fds()

    def cpu_percent(self, interval: float = 1.0) -> float:
        assert self.proc is not None
        return psutil.Process(self.proc.pid).cpu_percent(interval)

    def exit_code(self, timeout: float = 30.0) -> int | None:
        """Run until the process exits by itself (for a server that must refuse to start); None if it was
        still running after ``timeout`` (it is then killed)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env, preexec_fn=self.preexec)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        """SIGKILL: no shutdown of any kind."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20_000:]
        except FileNotFoundError:
            return ""

    def admin_token(self) -> str:
        r = httpx.post(self.url + "/api/v1/admin/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        r.raise_for_status()
        return r.json()["token"]

    def register(self, imeis: Sequence[str]) -> list[dict[str, Any]]:
        """Register devices; returns ``[{imei, secret, token}]`` (each logged in)."""
        headers = {"Authorization": f"Bearer {self.admin_token()}"}
        r = httpx.post(self.url + "/api/v1/admin/devices", json={"devices": [{"imei": i} for i in imeis]},
                       headers=headers, timeout=30)
        r.raise_for_status()
        out = []
        for dev in r.json()["devices"]:
            t = httpx.post(self.url + "/api/v1/device/login", json={"imei": dev["imei"], "secret": dev["secret"]})
            t.raise_for_status()
            out.append({"imei": dev["imei"], "secret": dev["secret"], "token": t.json()["token"]})
        return out

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
