"""One simulated dashcam: logs in, drives its route, reports positions over the WebSocket, keeps what is
not acknowledged and sends it again after reconnecting, raises alarms and uploads their videos with
resume, obeys commands, and reconnects with exponential backoff and full jitter.

Locust's shape: the :class:`~truckx_sim.env.Environment` starts each device's :meth:`SimDevice.run`,
which calls :meth:`on_start`, drives until the environment stops, then :meth:`on_stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from truckx_server.vocab import ALARM_TYPES

from .route import Route
from .video import source_for, upload_video

if TYPE_CHECKING:
    from .env import Environment

log = logging.getLogger("truckx_sim.device")

MAX_BATCH = 1000


def rfc3339_us(us: int) -> str:
    secs, frac = divmod(us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:06d}Z"


class FatalDeviceError(Exception):
    """The server refuses this device for good (unknown, wrong secret, disabled)."""


class SimDevice:
    def __init__(self, env: "Environment", imei: str, secret: str, index: int) -> None:
        self.env = env
        self.imei = imei
        self.secret = secret
        self.index = index
        self.rng = random.Random(f"{env.config.seed}-{imei}" if env.config.seed is not None else None)
        self.route = Route(self.rng)
        self.token: str | None = None
        self.interval = env.config.report_interval_s
        self.local_addr = env.source_address(index)
        self.ws: ClientConnection | None = None
        self.ready = False  # connected and done resending
        self._seq = 0
        self._last_us = 0
        #: seq -> (sent at (monotonic), points as JSON dicts with their ts in microseconds under "_us")
        self.pending: dict[int, tuple[float, list[dict[str, Any]]]] = {}
        #: generated while offline, or taken back from ``pending`` after a disconnect
        self.unsent: list[dict[str, Any]] = []
        self.generated: list[int] = []
        self.points_generated = 0
        self.points_acked = 0
        self._results_outbox: list[dict[str, Any]] = []
        #: alarms being reported or having their videos uploaded; the drain waits for them
        self._alarms_in_flight: set[asyncio.Task[Any]] = set()
        self._handled_commands: dict[str, dict[str, Any]] = {}
        self._reset_until = 0.0
        self._interval_changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.fatal: str | None = None
        self.video_names: list[str] = []

    # -- life cycle ------------------------------------------------------------------------------

    @property
    def stats(self):  # noqa: ANN201
        return self.env.stats

    @property
    def unacked(self) -> int:
        return len(self.unsent) + sum(len(p) for _, p in self.pending.values())

    def oldest_unacked_us(self) -> int | None:
        """Timestamp of the oldest point not acknowledged yet (None when everything is acked)."""
        oldest = min((p["_us"] for p in self.unsent), default=None)
        for _, points in self.pending.values():
            if points and (oldest is None or points[0]["_us"] < oldest):
                oldest = points[0]["_us"]
            break  # pending is in send order; its first entry holds its oldest points
        return oldest

    async def on_start(self) -> None:
        await self.login()

    async def on_stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 2)

    async def run(self) -> None:
        try:
            await self.on_start()
            gen = self._spawn(self._generate())
            if self.env.config.alarm_rate_per_h > 0:
                self._spawn(self._alarms())
            conn = self._spawn(self._connection_loop())
            await self.env.driving.wait()  # the fleet's duration is over
            gen.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gen
            await self._drain()
            conn.cancel()
        except FatalDeviceError as exc:
            self.fatal = str(exc)
            self.stats.error("device_refused")
            log.warning("device %s refused: %s", self.imei, exc)
        finally:
            await self.on_stop()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _drain(self) -> None:
        """Wait (bounded) until everything generated is acknowledged, command results are out and the
        alarms raised (with their video uploads) are finished, as a real device would before parking."""
        deadline = time.monotonic() + self.env.config.drain_timeout_s
        while ((self.unacked or self._results_outbox or self._alarms_in_flight)
               and time.monotonic() < deadline and not self.fatal):
            await asyncio.sleep(0.05)

    # -- REST: login -----------------------------------------------------------------------------

    async def login(self) -> None:
        attempt = 0
        body = {"imei": self.imei, "secret": self.secret}
        while True:
            status, data = 0, None
            try:
                if self.env.fast is not None:
                    status, data = await self.env.fast.post_json("/api/v1/device/login", body)
                else:
                    r = await self.env.http.post("/api/v1/device/login", json=body)
                    status, data = r.status_code, (r.json() if r.status_code == 200 else None)
            except (httpx.HTTPError, OSError) as exc:
                self.stats.error("login_" + type(exc).__name__)
            else:
                if status == 200:
                    self.token = data["token"]
                    self.stats.incr("logins")
                    return
                if status in (401, 403):
                    raise FatalDeviceError(f"login refused with {status}")
                self.stats.error(f"login_http_{status}")
            if self.env.stopped.is_set():
                raise FatalDeviceError("stopped before logging in")
            await asyncio.sleep(self.backoff(attempt))
            attempt += 1

    def backoff(self, attempt: int) -> float:
        cfg = self.env.config
        return self.rng.uniform(0, min(cfg.backoff_cap_s, cfg.backoff_base_s * 2 ** min(attempt, 16)))

    # -- WebSocket -------------------------------------------------------------------------------

    async def _connection_loop(self) -> None:
        attempt = 0
        while not self.env.stopped.is_set():
            wait = self._reset_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                await self.login()  # a rebooted device logs in again
            try:
                await self._session()
                attempt = 0
            except asyncio.CancelledError:
                raise
            except FatalDeviceError:
                raise
            except InvalidStatus as exc:
                status = exc.response.status_code
                self.stats.error(f"ws_handshake_{status}")
                if status == 401:
                    await self.login()
                    continue
                if status == 403:
                    raise FatalDeviceError("device disabled")
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
                self.stats.error("ws_" + type(exc).__name__)
            if self._reset_until > time.monotonic():
                continue
            await asyncio.sleep(self.backoff(attempt))
            attempt += 1
            if self.env.config.relogin_on_reconnect:
                await self.login()

    async def _session(self) -> None:
        cfg = self.env.config
        kwargs: dict[str, Any] = {}
        if self.local_addr:
            kwargs["local_addr"] = (self.local_addr, 0)
        ws = await connect(cfg.ws_url, additional_headers={"Authorization": f"Bearer {self.token}"},
                           ping_interval=None, close_timeout=2, open_timeout=30, compression=None,
                           max_size=2**20, max_queue=64, **kwargs)
        self.ws = ws
        self.stats.incr("connects")
        self.stats.connected += 1
        reader = self._spawn(self._read(ws))
        try:
            await self._resend(ws)
            self.ready = True
            await reader
        finally:
            self.ready = False
            self.ws = None
            self.stats.connected -= 1
            self.stats.incr("disconnects")
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self._requeue_pending()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2)

    def _requeue_pending(self) -> None:
        """A connection ended: what it did not acknowledge goes back to the unsent buffer."""
        if self.pending:
            for _, points in self.pending.values():
                self.unsent.extend(points)
            self.pending.clear()

    async def _resend(self, ws: ClientConnection) -> None:
        for result in self._results_outbox[:]:
            await ws.send(json.dumps(result))
            self._results_outbox.remove(result)
        while self.unsent:
            self.unsent.sort(key=lambda p: p["_us"])
            chunk, self.unsent = self.unsent[:MAX_BATCH], self.unsent[MAX_BATCH:]
            await self._send_points(ws, chunk)

    async def _send_points(self, ws: ClientConnection, points: list[dict[str, Any]]) -> None:
        self._seq += 1
        seq = self._seq
        self.pending[seq] = (time.perf_counter(), points)  # before the await: a failed send requeues it
        if len(points) == 1:
            p = points[0]
            msg = {"type": "location", "seq": seq, **{k: v for k, v in p.items() if k != "_us"}}
        else:
            msg = {"type": "locations", "seq": seq,
                   "points": [{k: v for k, v in p.items() if k != "_us"} for p in points]}
        await ws.send(json.dumps(msg, separators=(",", ":")))
        self.stats.incr("messages_sent")
        self.stats.incr("points_sent", len(points))

    async def _read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            try:
                msg = json.loads(raw)
            except ValueError:
                self.stats.error("bad_frame")
                continue
            kind = msg.get("type")
            if kind == "ack":
                self._on_ack(msg.get("seq", -1))
            elif kind == "command":
                self._on_command(msg)
            elif kind == "error":
                self.stats.error("server_" + str(msg.get("code")))
            elif kind != "pong":
                self.stats.error("unexpected_frame")

    def _on_ack(self, seq: int) -> None:
        now = time.perf_counter()
        done = [s for s in self.pending if s <= seq]
        for s in done:
            sent_at, points = self.pending.pop(s)
            self.stats.measure("ack", (now - sent_at) * 1000)
            self.points_acked += len(points)
            self.stats.incr("points_acked", len(points))

    # -- locations -------------------------------------------------------------------------------

    def make_point(self, elapsed_s: float) -> dict[str, Any]:
        us = max(time.time_ns() // 1000, self._last_us + 1)
        self._last_us = us
        fix = self.route.advance(elapsed_s)
        self.points_generated += 1
        self.stats.incr("points_generated")
        if self.env.config.collect_points:
            self.generated.append(us)
        return {"_us": us, "ts": rfc3339_us(us), "lat": fix.lat, "lon": fix.lon, "speed_kmh": fix.speed_kmh,
                "heading": fix.heading, "alt_m": fix.alt_m, "accuracy_m": fix.accuracy_m}

    async def _generate(self) -> None:
        # spread the fleet's reports over the interval
        await asyncio.sleep(self.rng.uniform(0, self.interval))
        last = time.monotonic()
        while True:
            now = time.monotonic()
            point = self.make_point(now - last)
            last = now
            ws = self.ws
            if ws is not None and self.ready:
                try:
                    await self._send_points(ws, [point])
                except ConnectionClosed:
                    pass  # in ``pending``: requeued when the session ends
            else:
                self.unsent.append(point)
            self._interval_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._interval_changed.wait(), self.interval)

    # -- commands --------------------------------------------------------------------------------

    def _on_command(self, msg: dict[str, Any]) -> None:
        cid, name, args = msg.get("id"), msg.get("command"), msg.get("args") or {}
        self.stats.incr("commands")
        if not isinstance(cid, str):
            self.stats.error("bad_command")
            return
        if cid in self._handled_commands:  # delivered again: repeat the result
            self._send_result(self._handled_commands[cid])
            return
        if name == "reset":
            self._finish_command(cid, True, "rebooting")
            self.stats.incr("resets")
            self._reset_until = time.monotonic() + self.env.config.reset_delay_s
            self._spawn(self._close_for_reset())
        elif name == "set_report_interval":
            seconds = args.get("seconds")
            if isinstance(seconds, (int, float)) and seconds > 0:
                self.interval = float(seconds)
                self._interval_changed.set()
                self._finish_command(cid, True, f"report interval {seconds}s")
            else:
                self._finish_command(cid, False, "seconds missing")
        elif name == "request_video":
            self._spawn(self._requested_video(cid, args))
        else:
            self._finish_command(cid, False, f"unknown command {name!r}")

    async def _close_for_reset(self) -> None:
        await asyncio.sleep(0.05)  # let the result frame go out first
        ws = self.ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close(1000, "reset")

    async def _requested_video(self, cid: str, args: dict[str, Any]) -> None:
        name = f"req-{self.imei}-{cid[:8]}.mp4"
        source = await source_for(self.env.config, self.env.clips, self.imei, name, fallback_size=64 * 1024)
        if source is None:
            self._finish_command(cid, False, "this device has no video")
            return
        ok, detail = await upload_video(self, name, source)
        self._finish_command(cid, ok, detail if not ok else f"uploaded {name}")

    def _finish_command(self, cid: str, ok: bool, detail: str) -> None:
        result = {"type": "command_result", "id": cid, "ok": ok, "detail": detail}
        self._handled_commands[cid] = result
        self.stats.incr("command_results")
        self._send_result(result)

    def _send_result(self, result: dict[str, Any]) -> None:
        ws = self.ws
        if ws is None or not self.ready:
            self._results_outbox.append(result)
            return

        async def send() -> None:
            try:
                await ws.send(json.dumps(result))
            except ConnectionClosed:
                self._results_outbox.append(result)
        self._spawn(send())

    # -- alarms and videos -----------------------------------------------------------------------

    async def _alarms(self) -> None:
        rate_per_s = self.env.config.alarm_rate_per_h / 3600.0
        while not self.env.driving.is_set():
            await asyncio.sleep(self.rng.expovariate(rate_per_s))
            if self.env.driving.is_set():
                return
            task = self._spawn(self.raise_alarm())
            self._alarms_in_flight.add(task)
            task.add_done_callback(self._alarms_in_flight.discard)

    async def raise_alarm(self) -> None:
        fix = self.route.advance(0)
        us = max(time.time_ns() // 1000, 0)
        alarm_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        kind = self.rng.choice(ALARM_TYPES)
        files = [f"{self.imei}-{us // 1000}-{kind.lower()}-front.mp4"]
        body = {"id": alarm_id, "type": kind, "ts": rfc3339_us(us), "lat": fix.lat, "lon": fix.lon,
                "speed_kmh": fix.speed_kmh, "files": files, "details": {"g_force": round(self.rng.uniform(0.3, 3), 2)}}
        started = time.perf_counter()
        attempt = 0
        while True:
            try:
                r = await self.env.http.post("/api/v1/device/alarms", json=body, headers=self.auth_headers())
                if r.status_code in (200, 201):
                    break
                if r.status_code == 401:
                    await self.login()
                elif r.status_code < 500 and r.status_code != 429:
                    self.stats.error(f"alarm_http_{r.status_code}")
                    return
                else:
                    self.stats.error(f"alarm_http_{r.status_code}")
            except httpx.HTTPError as exc:
                self.stats.error("alarm_" + type(exc).__name__)
            if attempt >= 8 or self.env.stopped.is_set():
                return
            self.stats.incr("alarm_retries")
            await asyncio.sleep(self.backoff(attempt))
            attempt += 1
        self.stats.incr("alarms")
        self.stats.measure("alarm", (time.perf_counter() - started) * 1000)
        for name in files:
            source = await source_for(self.env.config, self.env.clips, self.imei, name)
            if source is None:
                break
            await upload_video(self, name, source)

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}
