"""Shared plumbing for the benchmark scenarios: start the real server and the bare baselines as
subprocesses, register devices, sample RSS, format results.

Every scenario is a module with ``run(ctx) -> list[Row]``; ``run_all.py`` calls them in order and
writes RESULTS.md. Everything targets 127.0.0.0/8 and is bounded in time.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
DATA = BENCH / ".data"
PY = sys.executable
ADMIN_PASSWORD = "bench-admin-password"


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Row:
    scenario: str
    metric: str
    value: float | str | None
    unit: str = ""
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if isinstance(self.value, (int, float)) and self.baseline:
            return self.value / self.baseline
        return None


@dataclass
class Context:
    quick: bool = False
    log: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {text}"
        self.log.append(line)
        print(line, file=sys.stderr, flush=True)


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {timeout}s")


class TruckxServer:
    """``truckx-server`` in its own process (its own core), on SQLite files in ``data_dir``."""

    def __init__(self, data_dir: Path, port: int | None = None, fresh: bool = True, **settings: Any) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.settings = settings
        self.proc: subprocess.Popen | None = None
        if fresh and data_dir.exists():
            shutil.rmtree(data_dir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [PY, "-m", "truckx_server", "--host", "127.0.0.1", "--port", str(self.port),
               "--data-dir", str(self.data_dir), "--log-level", "warning"]
        for k, v in self.settings.items():
            cmd += ["--" + k.replace("_", "-"), str(v)]
        return cmd

    def start(self) -> "TruckxServer":
        env = {**os.environ, "TRUCKX_INITIAL_ADMIN_PASSWORD": ADMIN_PASSWORD, "TRUCKX_LOGIN_RATE_PER_MIN": "10000"}
        self.proc = subprocess.Popen(self.command(), env=env, preexec_fn=raise_fd_limit, cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=open(self.data_dir.parent / f"server-{self.port}.log", "ab")
                                     if self.data_dir.parent.exists() else subprocess.DEVNULL)
        wait_http(self.url + "/readyz", 60, self.proc)
        return self

    def stop(self, timeout: float = 30.0) -> float:
        """SIGTERM (ordered shutdown); returns how long it took."""
        if self.proc is None:
            return 0.0
        t = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        return time.monotonic() - t

    def rss(self) -> int:
        assert self.proc is not None
        return psutil.Process(self.proc.pid).memory_info().rss

    def admin_token(self) -> str:
        r = httpx.post(self.url + "/api/v1/admin/login", json={"username": "admin", "password": ADMIN_PASSWORD}, timeout=30)
        r.raise_for_status()
        return r.json()["token"]

    def register(self, n: int, prefix: str = "86") -> list[dict[str, str]]:
        from truckx_server.models import make_imei
        headers = {"Authorization": f"Bearer {self.admin_token()}"}
        out: list[dict[str, str]] = []
        base = int(time.time() * 1000) % 10**9 * 100
        i = 0
        while len(out) < n:
            k = min(5000, n - len(out))
            batch = [{"imei": make_imei(f"{prefix}{(base + i + j) % 10**12:012d}")} for j in range(k)]
            i += k
            r = httpx.post(self.url + "/api/v1/admin/devices", json={"devices": batch}, headers=headers, timeout=120)
            r.raise_for_status()
            out += [{"imei": d["imei"], "secret": d["secret"]} for d in r.json()["devices"]]
        return out

    def __enter__(self) -> "TruckxServer":
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@contextlib.contextmanager
def bare_server(script: str, *args: str) -> Iterator[tuple[int, subprocess.Popen]]:
    port = free_port()
    proc = subprocess.Popen([PY, str(BENCH / script), str(port), *args], preexec_fn=raise_fd_limit, cwd=ROOT)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 30, proc)
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def login_all(url: str, creds: list[dict[str, str]], concurrency: int = 16) -> list[str]:
    """Device tokens for ``creds`` (through the real login endpoint)."""
    import asyncio

    async def go() -> list[str]:
        sem = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=url, timeout=60,
                                     limits=httpx.Limits(max_connections=concurrency)) as http:
            async def one(c: dict[str, str]) -> str:
                async with sem:
                    r = await http.post("/api/v1/device/login", json=c)
                    r.raise_for_status()
                    return r.json()["token"]
            return await asyncio.gather(*(one(c) for c in creds))
    return asyncio.run(go())


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


def dump(obj: Any) -> str:
    return json.dumps(obj, default=str)


def cpu_seconds(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def machine() -> str:
    import platform
    mem = psutil.virtual_memory().total / 1024**3
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{psutil.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


async def fleet_until(config: Any, creds: list[dict[str, str]], body: Any, ctx: Context) -> Any:
    """Run the simulator (``config``) and, alongside it, ``await body(live)`` where ``live`` exposes the
    merged stats as they arrive; the fleet stops when ``body`` returns. Returns (body result, summary)."""
    import asyncio

    from truckx_sim import arun

    class Live:
        stats: Any = None
        gauges: dict = {}

        @property
        def connected(self) -> int:
            return self.stats.connected if self.stats else 0

    live = Live()
    done = asyncio.Event()

    def tick(stats: Any, gauges: dict) -> None:
        live.stats, live.gauges = stats, gauges

    sim = asyncio.create_task(arun(config, creds, on_tick=tick, stop_early=done.is_set))
    try:
        result = await body(live)
    finally:
        done.set()
    summary = await sim
    return result, summary


async def wait_until(pred: Any, timeout: float, step: float = 0.1) -> bool:
    import asyncio
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(step)
    return pred()
