"""Shared plumbing for the benchmark scenarios: start the real server and the bare baselines as
subprocesses, register devices, sample RSS and CPU, probe latency, format results.

Every scenario is a module with ``run(ctx) -> list[Row]``; ``run_all.py`` calls them in order and
writes RESULTS.md and results.json. Everything targets 127.0.0.0/8 and is bounded in time.

The benchmarks use only the server's public surface: the ``truckx-server`` command line and flags,
HTTP, WebSockets, ``truckx-sim``, and the databases themselves (data generation, direct baselines).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
DATA = BENCH / ".data"
PY = sys.executable
ADMIN_PASSWORD = "bench-admin-password"
MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
REDIS = ("127.0.0.1", 6379)


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- results ---------------------------------------------------------------------------------------

#: how far a ratio may move between two runs before compare.py calls it a change (see README.md)
NOISE = {"rate": 0.10, "time": 0.20, "memory": 0.10, "tail": 0.35}


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
    #: stable identifier across runs (compare.py matches rows on it)
    key: str = ""
    #: which way the ratio should go: "higher" or "lower" ("" when the row has no ratio target)
    better: str = ""
    #: noise class for compare.py: "rate" (a throughput over many samples), "time" (one duration),
    #: "memory", "tail" (a p99 latency); "" = not compared
    kind: str = ""
    #: "ok", "info" (no target), "unsupported" (the server lacks the feature), "failed"
    status: str = "ok"

    @property
    def ratio(self) -> float | None:
        if isinstance(self.value, (int, float)) and not isinstance(self.value, bool) and self.baseline:
            return self.value / self.baseline
        return None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = None if self.ratio is None else round(self.ratio, 4)
        return d


def ratio_row(scenario: str, key: str, metric: str, value: float | None, unit: str, baseline: float | None,
              baseline_name: str, better: str, limit: float, kind: str, note: str = "",
              also: bool = True, also_text: str = "") -> Row:
    """A row whose target is ``value / baseline`` >= ``limit`` (better="higher") or <= it ("lower");
    ``also`` is a further condition of the target (described by ``also_text``)."""
    target = (">= " if better == "higher" else "<= ") + f"{limit:g}x" + (f", {also_text}" if also_text else "")
    row = Row(scenario, metric, value, unit, baseline, baseline_name, target, None, note, key, better, kind)
    r = row.ratio
    if r is None:
        row.met = False
        row.status = "failed"
    else:
        row.met = (r >= limit if better == "higher" else r <= limit) and also
    return row


def unsupported(scenario: str, key: str, metric: str, why: str, target: str = "") -> Row:
    return Row(scenario, metric, "not supported by this server", "", None, "", target, None, why, key,
               status="unsupported")


@dataclass
class Context:
    quick: bool = False
    profile: bool = False
    log: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    #: the scenario running now (profile file names)
    scenario: str = ""

    def say(self, text: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {text}"
        self.log.append(line)
        print(line, file=sys.stderr, flush=True)

    def profiler(self, pid: int | None, label: str) -> Any:
        """``with ctx.profiler(server_pid, "label"):`` records the server under the load inside the block
        when the run has ``--profile`` (see profiling.py); otherwise does nothing."""
        if not self.profile or pid is None:
            return contextlib.nullcontext()
        from profiling import Profiler
        return Profiler(self, pid, f"{self.scenario}-{label}")


# -- the server under test -------------------------------------------------------------------------

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


@functools.cache
def server_help() -> str:
    """``truckx-server --help`` (and ``serve --help``) of the server under test."""
    out = []
    for args in (["--help"], ["serve", "--help"]):
        r = subprocess.run([PY, "-m", "truckx_server", *args], capture_output=True, text=True, timeout=60, cwd=ROOT)
        out.append(r.stdout)
    return "\n".join(out)


def server_supports(flag: str) -> bool:
    """Whether the server's command line has ``flag`` (e.g. ``--workers``)."""
    return re.search(r"(?<![\w-])" + re.escape(flag) + r"(?![\w-])", server_help()) is not None


def process_tree(pid: int) -> list[psutil.Process]:
    try:
        p = psutil.Process(pid)
        return [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its live children."""
    total = 0.0
    for p in process_tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def tree_rss(pid: int) -> int:
    total = 0
    for p in process_tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


class TruckxServer:
    """``truckx-server`` in its own process (its own core), on SQLite files in ``data_dir`` unless
    ``sql_url`` / ``locations_url`` say otherwise. ``settings`` become command-line flags
    (``workers=2`` -> ``--workers 2``); ``env`` adds environment variables (secrets go there, not on
    the command line)."""

    def __init__(self, data_dir: Path, port: int | None = None, fresh: bool = True, env: dict[str, str] | None = None,
                 **settings: Any) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.settings = settings
        self.env = env or {}
        self.proc: subprocess.Popen | None = None
        if fresh and data_dir.exists():
            shutil.rmtree(data_dir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def command(self) -> list[str]:
        cmd = [PY, "-m", "truckx_server", "--host", "127.0.0.1", "--port", str(self.port),
               "--data-dir", str(self.data_dir), "--log-level", "warning"]
        for k, v in self.settings.items():
            cmd += ["--" + k.replace("_", "-"), str(v)]
        return cmd

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"server-{self.port}.log"

    def start(self, timeout: float = 60.0) -> "TruckxServer":
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        # the login limiters are not what is measured: a storm of 10,000 re-logins must not meet them
        env = {**os.environ, "TRUCKX_INITIAL_ADMIN_PASSWORD": ADMIN_PASSWORD, "TRUCKX_LOGIN_RATE_PER_MIN": "10000",
               "TRUCKX_DEVICE_LOGIN_RATE_PER_MIN": "10000", **self.env}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), env=env, preexec_fn=raise_fd_limit, cwd=ROOT,
                                         stdout=subprocess.DEVNULL, stderr=log)
        try:
            wait_http(self.url + "/readyz", timeout, self.proc)
        except RuntimeError as exc:
            self.stop()
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"{exc}: {' / '.join(tail)[-400:]}") from None
        return self

    def stop(self, timeout: float = 30.0) -> float:
        """SIGTERM (ordered shutdown); returns how long it took. Children it forked (``--workers``) that
        outlive it are ended too."""
        if self.proc is None:
            return 0.0
        children = process_tree(self.proc.pid)[1:]
        t = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        elapsed = time.monotonic() - t
        for c in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                c.terminate()
                c.wait(5)
        self.proc = None
        return elapsed

    def rss(self) -> int:
        assert self.proc is not None
        return tree_rss(self.proc.pid)

    def cpu(self) -> float:
        assert self.proc is not None
        return tree_cpu(self.proc.pid)

    def admin_token(self) -> str:
        r = httpx.post(self.url + "/api/v1/admin/login", json={"username": "admin", "password": ADMIN_PASSWORD},
                       timeout=30)
        r.raise_for_status()
        return r.json()["token"]

    def register(self, n: int, prefix: str = "86", imeis: list[str] | None = None) -> list[dict[str, str]]:
        """Register ``n`` new devices (or exactly ``imeis``) through the admin API; returns the credentials."""
        headers = {"Authorization": f"Bearer {self.admin_token()}"}
        if imeis is None:
            base = int(time.time() * 1000) % 10**9 * 100
            imeis = [make_imei(f"{prefix}{(base + i) % 10**12:012d}") for i in range(n)]
        out: list[dict[str, str]] = []
        for i in range(0, len(imeis), 5000):
            batch = [{"imei": imei} for imei in imeis[i:i + 5000]]
            r = httpx.post(self.url + "/api/v1/admin/devices", json={"devices": batch}, headers=headers, timeout=120)
            r.raise_for_status()
            out += [{"imei": d["imei"], "secret": d["secret"]} for d in r.json()["devices"]]
        return out

    def __enter__(self) -> "TruckxServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class BareServer:
    """A bare baseline from this folder (``bare_ws.py``, ``bare_upload.py``) in its own process on a
    fixed port, so it can be stopped and started again (the reconnect storm's baseline)."""

    def __init__(self, script: str, *args: str, port: int | None = None) -> None:
        self.script, self.args = script, args
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.start_s = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> "BareServer":
        t = time.monotonic()
        self.proc = subprocess.Popen([PY, str(BENCH / self.script), str(self.port), *self.args],
                                     preexec_fn=raise_fd_limit, cwd=ROOT)
        try:
            wait_http(f"{self.url}/healthz", 30, self.proc)
        except RuntimeError:
            self.stop()
            raise
        #: how long the last start took (process start to answering /healthz)
        self.start_s = time.monotonic() - t
        return self

    def stop(self) -> float:
        if self.proc is None:
            return 0.0
        t = time.monotonic()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        return time.monotonic() - t

    def rss(self) -> int:
        assert self.proc is not None
        return tree_rss(self.proc.pid)

    def cpu(self) -> float:
        assert self.proc is not None
        return tree_cpu(self.proc.pid)

    def __enter__(self) -> "BareServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@contextlib.contextmanager
def bare_server(script: str, *args: str) -> Iterator[tuple[int, subprocess.Popen]]:
    with BareServer(script, *args) as srv:
        assert srv.proc is not None
        yield srv.port, srv.proc


def luhn_digit(digits14: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits14)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def make_imei(prefix14: str) -> str:
    """A valid IMEI (Luhn check digit) from 14 digits."""
    return prefix14 + luhn_digit(prefix14)


def fake_creds(n: int, prefix: str = "99") -> list[dict[str, str]]:
    """Credentials for the bare sink, which accepts any login."""
    return [{"imei": make_imei(f"{prefix}{i:012d}"), "secret": "bare"} for i in range(n)]


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


# -- measuring -------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


def hist_percentile(before: dict[int, int], after: dict[int, int], q: float) -> tuple[float | None, int]:
    """The ``q``-th percentile (ms) of the samples a truckx-sim histogram gained between two snapshots of
    its buckets (log-spaced, 1 % wide: the upper edge of the bucket is returned), and how many."""
    diff = Counter(after)
    diff.subtract(before)
    diff = Counter({k: v for k, v in diff.items() if v > 0})
    n = sum(diff.values())
    if not n:
        return None, 0
    rank = max(1, math.ceil(n * q / 100))
    seen = 0
    for idx in sorted(diff):
        seen += diff[idx]
        if seen >= rank:
            return round(0.001 * 1.01 ** (idx + 1), 2), n
    return None, n


class HttpProbe(threading.Thread):
    """Sequential ``GET path`` over one keep-alive connection (a raw socket: the client costs next to
    nothing), one request every ``interval`` seconds, in a thread; ``stop()`` returns the latencies in ms.
    ``start_after`` delays the first request (to skip a load generator's warm-up)."""

    def __init__(self, port: int, path: str = "/healthz", interval: float = 0.01, start_after: float = 0.0,
                 count: int | None = None) -> None:
        super().__init__(daemon=True)
        self.port, self.path, self.interval, self.start_after, self.count = port, path, interval, start_after, count
        self.latencies: list[float] = []
        self.errors = 0
        self._halt = threading.Event()
        self._sock: socket.socket | None = None
        self._buf = b""

    def _get(self) -> None:
        if self._sock is None:
            self._sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._buf = b""
        self._sock.sendall(f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n".encode())
        while b"\r\n\r\n" not in self._buf:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self._buf += chunk
        head, _, rest = self._buf.partition(b"\r\n\r\n")
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        length = int(m.group(1)) if m else 0
        while len(rest) < length:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            rest += chunk
        self._buf = rest[length:]
        if not head.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(head[:40].decode(errors="replace"))

    def run(self) -> None:
        if self._halt.wait(self.start_after):
            return
        while not self._halt.is_set() and (self.count is None or len(self.latencies) < self.count):
            t = time.perf_counter()
            try:
                self._get()
                self.latencies.append((time.perf_counter() - t) * 1000)
            except OSError:
                self.errors += 1
                if self._sock is not None:
                    self._sock.close()
                self._sock = None
            self._halt.wait(max(0.0, self.interval - (time.perf_counter() - t)))
        if self._sock is not None:
            self._sock.close()

    def stop(self) -> list[float]:
        self._halt.set()
        self.join(30)
        return self.latencies

    def measure(self) -> list[float]:
        """Run ``count`` requests in the calling thread."""
        self.run()
        return self.latencies


def dump(obj: Any) -> str:
    return json.dumps(obj, default=str)


def cpu_seconds(pid: int) -> float:
    return tree_cpu(pid)


def machine_info() -> dict[str, Any]:
    import platform
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                text=True, cwd=ROOT).stdout.strip())
    return {"cores": psutil.cpu_count(), "cpu": cpu, "mem_gib": round(psutil.virtual_memory().total / 1024**3, 1),
            "system": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "git_commit": commit + ("+dirty" if dirty else ""),
            "server_flags": sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", server_help())))}


def machine() -> str:
    m = machine_info()
    return f"{m['cores']} cores ({m['cpu']}), {m['mem_gib']:.0f} GiB RAM, {m['system']}, Python {m['python']}"


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


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

        def ack_buckets(self) -> dict[int, int]:
            """A copy of the ack-latency histogram's buckets now (see :func:`hist_percentile`)."""
            return dict(self.stats.latency("ack").buckets) if self.stats else {}

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


def redis_up() -> bool:
    try:
        with socket.create_connection(REDIS, timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def mariadb_connect(database: str | None = None, **kw: Any) -> Any:
    import pymysql
    return pymysql.connect(**MARIADB, database=database, autocommit=True, charset="utf8mb4", **kw)


def mariadb_fresh(name: str) -> str:
    """Drop and create the MariaDB database ``name`` (benchmark-owned: ``truckx_bench*``); its URL."""
    assert re.fullmatch(r"truckx_bench\w*", name), name
    conn = mariadb_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    finally:
        conn.close()
    return f"mysql://{MARIADB['user']}@{MARIADB['host']}:{MARIADB['port']}/{name}"
