"""The fleet: an :class:`Environment` per process (config, shared HTTP client, stats, stop signals), the
devices it runs, and :func:`arun` / :func:`run`, which return a :class:`Summary`.

With ``workers > 1`` the devices are spread over worker processes (spawned, so each has its own event
loop and core time); each posts a stats snapshot twice a second and its summary at the end, and the
parent merges them (histograms merge exactly).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import multiprocessing as mp
import queue as queue_mod
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx

from .clips import ClipCache, default_cache_dir
from .config import SimConfig
from .device import SimDevice
from .fasthttp import FastHttp
from .stats import Stats
from .video import AUTO_DEVICE_LABELS

#: connections per 127.0.0.x source address before another address is used
PER_SOURCE_ADDRESS = 12_000
#: REST calls in flight per process
HTTP_CONCURRENCY = 16

TickCallback = Callable[["Stats", dict[str, Any]], None]


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def source_addresses(config: SimConfig) -> list[str]:
    host = config.http_url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    if not host.startswith("127."):
        return []
    n = config.source_addresses or math.ceil(config.devices / PER_SOURCE_ADDRESS)
    if n <= 1:
        return []
    return [f"127.0.0.{10 + i}" for i in range(n)]


class Environment:
    """What the devices of one process share."""

    def __init__(self, config: SimConfig, addresses: list[str] | None = None) -> None:
        self.config = config
        self.stats = Stats()
        #: set when the driving time is over (devices stop generating and drain)
        self.driving = asyncio.Event()
        #: set when everything must stop now
        self.stopped = asyncio.Event()
        self.addresses = addresses or []
        # httpx's pool scans its whole wait queue on every request (quadratic with thousands waiting), so
        # requests queue on our own semaphore and the pool never has more waiting than it has connections
        self.http_slots = asyncio.Semaphore(HTTP_CONCURRENCY)
        self._http = httpx.AsyncClient(
            base_url=config.http_url, timeout=config.http_timeout_s,
            limits=httpx.Limits(max_connections=HTTP_CONCURRENCY, max_keepalive_connections=HTTP_CONCURRENCY))
        self.http = _BoundedClient(self._http, self.http_slots)
        self.fast = FastHttp(config.http_url, HTTP_CONCURRENCY, config.http_timeout_s) \
            if config.http_url.startswith("http://") else None
        self.upload_slots = asyncio.Semaphore(config.max_concurrent_uploads)
        self.clips = ClipCache((Path(config.cache_dir) if config.cache_dir else default_cache_dir()) / "clips")
        self.devices: list[SimDevice] = []

    def source_address(self, index: int) -> str | None:
        return self.addresses[index % len(self.addresses)] if self.addresses else None

    def gauges(self) -> dict[str, Any]:
        oldest = min((o for d in self.devices if (o := d.oldest_unacked_us()) is not None), default=None)
        age = max(0.0, time.time() - oldest / 1e6) if oldest else 0.0
        return {"unacked": sum(d.unacked for d in self.devices), "devices": len(self.devices),
                "fatal": sum(1 for d in self.devices if d.fatal), "oldest_unacked_s": age}

    def snapshot(self) -> dict[str, Any]:
        snap = self.stats.snapshot()
        snap["gauges"] = self.gauges()
        return snap

    async def aclose(self) -> None:
        await self._http.aclose()
        if self.fast is not None:
            await self.fast.aclose()


class _BoundedClient:
    """The few httpx calls the devices make, each holding one of a bounded number of slots."""

    def __init__(self, client: httpx.AsyncClient, slots: asyncio.Semaphore) -> None:
        self.client = client
        self.slots = slots

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async with self.slots:
            return await self.client.request(method, url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", url, **kwargs)

    async def head(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("HEAD", url, **kwargs)


@dataclass
class DeviceResult:
    imei: str
    points_generated: int
    points_acked: int
    unacked: int
    generated_us: list[int] = field(default_factory=list)
    fatal: str | None = None
    videos: list[str] = field(default_factory=list)

    @property
    def generated(self) -> list[dt.datetime]:
        epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
        return [epoch + dt.timedelta(microseconds=us) for us in self.generated_us]


@dataclass
class Summary:
    config: SimConfig
    elapsed_s: float
    stats: Stats
    #: devices connected when the driving time ended
    connected: int
    devices: dict[str, DeviceResult]

    def to_json(self) -> dict[str, Any]:
        c = self.stats.counters
        ack = self.stats.latency("ack")
        return {
            "devices": len(self.devices) or self.config.devices,
            "connected": self.connected,
            "duration_s": round(self.elapsed_s, 2),
            "points_generated": c["points_generated"],
            "points_sent": c["points_sent"],
            "points_acked": c["points_acked"],
            "points_unacked": sum(d.unacked for d in self.devices.values()),
            "points_per_s": round(c["points_acked"] / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "messages_sent": c["messages_sent"],
            "alarms": c["alarms"],
            "uploads": c["uploads"],
            "upload_bytes": c["upload_bytes"],
            "upload_resumes": c["upload_resumes"],
            "clips_encoded": c["clips_encoded"],
            "commands": c["commands"],
            "command_results": c["command_results"],
            "resets": c["resets"],
            "logins": c["logins"],
            "connects": c["connects"],
            "errors": c["errors"],
            "error_kinds": dict(self.stats.errors),
            "ack_latency_ms": {"p50": ack.summary()["p50"], "p99": ack.summary()["p99"],
                               "max": ack.summary()["max"]},
            "alarm_latency_ms": self.stats.latency("alarm").summary(),
            "upload_latency_ms": self.stats.latency("upload").summary(),
        }


# -- one process -----------------------------------------------------------------------------------


async def run_devices(config: SimConfig, creds: list[dict[str, str]], first_index: int = 0,
                      addresses: list[str] | None = None, on_tick: Callable[[Environment], None] | None = None,
                      stop_early: Callable[[], bool] | None = None) -> tuple[Environment, float, int]:
    """Run ``creds`` as devices in this event loop for the configured duration, then drain."""
    env = Environment(config, addresses)
    env.devices = [SimDevice(env, c["imei"], c["secret"], first_index + i) for i, c in enumerate(creds)]
    started = time.monotonic()
    tasks: list[asyncio.Task[None]] = []

    async def launcher() -> None:
        for i, dev in enumerate(env.devices):
            if config.ramp_per_s > 0:
                delay = started + i / config.ramp_per_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(dev.run(), name=f"device-{dev.imei}"))
            if i % 200 == 199:
                await asyncio.sleep(0)

    launch = asyncio.create_task(launcher())
    connected_at_end = 0
    try:
        end = started + config.duration_s
        while time.monotonic() < end:
            await asyncio.sleep(min(0.5, max(0.0, end - time.monotonic())))
            if on_tick:
                on_tick(env)
            if stop_early and stop_early():
                break
        connected_at_end = env.stats.connected
        env.driving.set()
        await launch
        deadline = config.drain_timeout_s + 10
        drain_end = time.monotonic() + deadline
        pending = set(tasks)
        while pending and time.monotonic() < drain_end:
            _done, pending = await asyncio.wait(pending, timeout=0.5)
            if on_tick:
                on_tick(env)
    finally:
        launch.cancel()
        env.driving.set()
        env.stopped.set()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        elapsed = time.monotonic() - started
        env.stats.incr("clips_encoded", env.clips.encoded)
        await env.aclose()
    return env, elapsed, connected_at_end


def _results(env: Environment) -> dict[str, DeviceResult]:
    return {d.imei: DeviceResult(imei=d.imei, points_generated=d.points_generated, points_acked=d.points_acked,
                                 unacked=d.unacked, generated_us=list(d.generated), fatal=d.fatal,
                                 videos=list(d.video_names)) for d in env.devices}


# -- several processes -----------------------------------------------------------------------------


def _worker_main(index: int, config_dict: dict[str, Any], creds: list[dict[str, str]], first_index: int,
                 addresses: list[str], out: Any, stop: Any) -> None:
    raise_fd_limit()
    config = SimConfig(**config_dict)

    def tick(env: Environment) -> None:
        with contextlib.suppress(Exception):
            out.put(("tick", index, env.snapshot()))

    async def main() -> None:
        env, elapsed, connected = await run_devices(config, creds, first_index, addresses, tick, stop.is_set)
        results = {imei: r.__dict__ for imei, r in _results(env).items()}
        out.put(("done", index, {"snapshot": env.snapshot(), "elapsed": elapsed, "connected": connected,
                                 "results": results}))
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


async def _run_workers(config: SimConfig, creds: list[dict[str, str]], addresses: list[str],
                       on_tick: TickCallback | None, stop_early: Callable[[], bool] | None) -> Summary:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    stop = ctx.Event()
    k = max(1, min(config.workers, len(creds)))
    per = math.ceil(len(creds) / k)
    procs = []
    for i in range(k):
        chunk = creds[i * per:(i + 1) * per]
        if not chunk:
            continue
        # each worker uses its own share of the source addresses
        addrs = addresses[i::k] if len(addresses) >= k else addresses
        sub = config.replace(devices=len(chunk), workers=1)
        p = ctx.Process(target=_worker_main, args=(i, sub.to_dict(), chunk, i * per, addrs, out, stop),
                        daemon=True, name=f"truckx-sim-{i}")
        p.start()
        procs.append(p)
    ticks: dict[int, dict[str, Any]] = {}
    done: dict[int, dict[str, Any]] = {}
    started = time.monotonic()
    hard_deadline = started + config.duration_s + config.drain_timeout_s + 60 + len(creds) / 500
    while len(done) < len(procs) and time.monotonic() < hard_deadline:
        try:
            while True:
                kind, idx, payload = out.get_nowait()
                if kind == "tick":
                    ticks[idx] = payload
                else:
                    done[idx] = payload
                    ticks[idx] = payload["snapshot"]
        except queue_mod.Empty:
            pass
        if on_tick and ticks:
            merged = Stats.merged(list(ticks.values()))
            on_tick(merged, _sum_gauges(ticks.values()))
        if stop_early and stop_early():
            stop.set()
        if all(not p.is_alive() for p in procs) and out.empty():
            break
        await asyncio.sleep(0.25)
    stop.set()
    for p in procs:
        await asyncio.to_thread(p.join, 10)
        if p.is_alive():
            p.terminate()
    stats = Stats.merged([d["snapshot"] for d in done.values()] or list(ticks.values()))
    results: dict[str, DeviceResult] = {}
    for d in done.values():
        for imei, r in d["results"].items():
            results[imei] = DeviceResult(**r)
    if len(done) < len(procs):
        stats.error("worker_lost")
    elapsed = max((d["elapsed"] for d in done.values()), default=time.monotonic() - started)
    return Summary(config, elapsed, stats, sum(d["connected"] for d in done.values()), results)


def _sum_gauges(snaps: Any) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for s in snaps:
        for k, v in s.get("gauges", {}).items():
            total[k] = max(total.get(k, 0), v) if k == "oldest_unacked_s" else total.get(k, 0) + v
    return total


# -- entry points ----------------------------------------------------------------------------------


async def arun(config: SimConfig, creds: list[dict[str, str]] | None = None, on_tick: TickCallback | None = None,
               stop_early: Callable[[], bool] | None = None) -> Summary:
    """Run the fleet and return its summary. ``creds`` default to the cache / ``--provision``."""
    raise_fd_limit()
    if creds is None:
        from .provision import credentials
        creds = await credentials(config)
    creds = creds[:config.devices]
    config = config.replace(devices=len(creds))
    if config.video_labels == "auto":  # decided once for the fleet, before it is split over workers
        config = config.replace(video_labels="device" if len(creds) <= AUTO_DEVICE_LABELS else "pool")
    addresses = source_addresses(config)
    if config.workers > 1:
        return await _run_workers(config, creds, addresses, on_tick, stop_early)

    def tick(env: Environment) -> None:
        if on_tick:
            on_tick(env.stats, env.gauges())
    env, elapsed, connected = await run_devices(config, creds, 0, addresses, tick, stop_early)
    return Summary(config, elapsed, env.stats, connected, _results(env))


def run(config: SimConfig, creds: list[dict[str, str]] | None = None, on_tick: TickCallback | None = None) -> Summary:
    return asyncio.run(arun(config, creds, on_tick))
