"""Scenario 5, upload: one 1 GiB streamed PUT through the real server (device token, hashed on the fly,
written to a part file) versus a bare ``stream_request_body`` handler writing to disk, with the
server's RSS sampled every 50 ms; then 50 concurrent uploads while 200 simulated devices report every
second, and the location ack p99 during them.

The upload client is a plain blocking socket (one thread per upload) sending 1 MiB slices of one
buffer, so the client costs almost nothing; the same client drives both servers."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

from common import DATA, Context, Row, TruckxServer, bare_server, fleet_until, login_all, wait_until
from truckx_sim import SimConfig

GIB = 1024**3
SLICE = b"\xa5" * (1024 * 1024)


def put(port: int, path: str, size: int, token: str | None = None) -> tuple[float, int]:
    """Stream ``size`` bytes; returns (seconds, HTTP status)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    t = time.perf_counter()
    s.sendall((f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n{auth}"
               f"Content-Length: {size}\r\n\r\n").encode())
    sent = 0
    view = memoryview(SLICE)
    while sent < size:
        n = min(len(SLICE), size - sent)
        s.sendall(view[:n])
        sent += n
    resp = b""
    while b"\r\n\r\n" not in resp:
        chunk = s.recv(65536)
        if not chunk:
            break
        resp += chunk
    elapsed = time.perf_counter() - t
    s.close()
    status = int(resp.split(b" ", 2)[1]) if resp else 0
    return elapsed, status


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        import psutil
        self.proc = psutil.Process(pid)
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.05)

    def stop(self) -> int:
        self.running = False
        self.join()
        return self.peak - self.base


def run(ctx: Context) -> list[Row]:
    size = GIB // 4 if ctx.quick else GIB
    data = DATA / "s5"
    (data / "bare").mkdir(parents=True, exist_ok=True)
    with bare_server("bare_upload.py", str(data / "bare")) as (port, proc):
        put(port, "/api/v1/device/videos/warm.mp4", 16 * 1024 * 1024)
        rss = RssSampler(proc.pid)
        rss.start()
        bare_s, bare_status = put(port, "/api/v1/device/videos/one.mp4", size)
        bare_rss = rss.stop()
    bare_mbs = size / bare_s / 2**20
    ctx.say(f"s5: bare sink {bare_mbs:.0f} MiB/s (status {bare_status})")
    ctx.commands.append(f"raw-socket PUT of {size} bytes to benchmarks/bare_upload.py and to truckx-server")
    with TruckxServer(data / "server") as srv:
        creds = srv.register(251)
        tokens = login_all(srv.url, creds[:51])
        put(srv.port, "/api/v1/device/videos/warm.mp4", 16 * 1024 * 1024, tokens[0])
        time.sleep(0.5)
        rss = RssSampler(srv.proc.pid)  # type: ignore[union-attr]
        rss.start()
        real_s, real_status = put(srv.port, "/api/v1/device/videos/one.mp4", size, tokens[0])
        real_rss = rss.stop()
        real_mbs = size / real_s / 2**20
        ctx.say(f"s5: truckx {real_mbs:.0f} MiB/s (status {real_status}), RSS growth {real_rss / 2**20:.1f} MiB")

        # 50 concurrent uploads while 200 devices report every second
        each = 8 * 1024 * 1024 if ctx.quick else 32 * 1024 * 1024
        config = SimConfig(url=srv.url, devices=200, duration_s=300, report_interval_s=1.0, workers=2,
                           drain_timeout_s=10, video_size=0)
        ctx.commands.append(f"truckx-sim --url {srv.url} --devices 200 --report-interval 1 --workers 2, "
                            f"with 50 concurrent raw-socket PUTs of {each} bytes")
        statuses: list[int] = []

        async def body(live) -> dict:  # noqa: ANN001
            await wait_until(lambda: live.connected >= 200, 60, 0.2)
            await asyncio.sleep(2)
            before = live.stats.latency("ack").count if live.stats else 0
            t = time.perf_counter()

            def one(i: int) -> None:
                statuses.append(put(srv.port, f"/api/v1/device/videos/c{i}.mp4", each, tokens[1 + i])[1])
            await asyncio.gather(*(asyncio.to_thread(one, i) for i in range(50)))
            return {"seconds": time.perf_counter() - t, "acks_before": before}

        res, summary = asyncio.run(fleet_until(config, creds[51:], body, ctx))
    ack = summary.to_json()["ack_latency_ms"]
    ok_uploads = sum(1 for s in statuses if s in (200, 201))
    conc_mbs = 50 * each / res["seconds"] / 2**20
    ctx.say(f"s5: 50 uploads in {res['seconds']:.1f}s ({conc_mbs:.0f} MiB/s), ack p99 {ack['p99']} ms")
    return [
        Row("5 upload", f"one {size // 2**20} MiB PUT, throughput", round(real_mbs), "MiB/s", round(bare_mbs),
            "bare stream_request_body disk sink", ">= 0.8x", real_mbs / bare_mbs >= 0.8 and real_status == 201,
            f"status {real_status}; bare sink RSS growth {bare_rss / 2**20:.1f} MiB"),
        Row("5 upload", "server RSS growth during it", round(real_rss / 2**20, 1), "MiB", None, "", "<= 32 MB",
            real_rss <= 32 * 10**6, "peak over the idle process, sampled every 50 ms"),
        Row("5 upload", "location ack p99 during 50 concurrent uploads", ack["p99"], "ms", None, "", "<= 500 ms",
            ack["p99"] is not None and ack["p99"] <= 500 and ok_uploads == 50,
            f"{ok_uploads}/50 uploads of {each // 2**20} MiB ok in {res['seconds']:.1f}s ({conc_mbs:.0f} MiB/s); "
            f"ack p50 {ack['p50']} ms, 200 devices at 1 point/s"),
    ]


if __name__ == "__main__":
    for r in run(Context()):
        print(r)
