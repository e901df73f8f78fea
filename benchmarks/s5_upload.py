"""Scenario 5, upload: a 1 GiB streamed PUT through the real server (device token, hashed on the fly,
written to a part file) versus a bare ``stream_request_body`` handler writing to disk, repeated (the
target holds "in every run": the worst ratio is the figure), with the server's RSS sampled every 50 ms;
then 200 simulated devices reporting every second, and their location ack p99 while 50 uploads run
concurrently against their ack p99 in a 10 s window just before without uploads, same fleet, same run.
``os.sync()`` before each timed part, so that no run pays for the write-back of the one before.

The upload client is a plain blocking socket (one thread per upload) sending 1 MiB slices of one
buffer, so the client costs almost nothing; the same client drives both servers, alternately."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
import time

from common import (DATA, Context, Row, TruckxServer, bare_server, fleet_until, hist_percentile, login_all,
                    ratio_row, wait_until)
from truckx_sim import SimConfig

GIB = 1024**3
SLICE = b"\xa5" * (1024 * 1024)
UPLOADERS = 50


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


def timed_put(pid: int, port: int, name: str, size: int, token: str | None = None) -> tuple[float, int, int]:
    """(MiB/s, status, RSS growth bytes) of one PUT."""
    rss = RssSampler(pid)
    rss.start()
    seconds, status = put(port, f"/api/v1/device/videos/{name}", size, token)
    return size / seconds / 2**20, status, rss.stop()


def run(ctx: Context) -> list[Row]:
    size = GIB // 4 if ctx.quick else GIB
    repeats = 2 if ctx.quick else 3
    data = DATA / "s5"
    (data / "bare").mkdir(parents=True, exist_ok=True)
    ctx.commands.append(f"raw-socket PUT of {size} bytes to benchmarks/bare_upload.py and to truckx-server, "
                        f"{repeats} times each, alternately")
    runs: list[dict] = []
    with bare_server("bare_upload.py", str(data / "bare")) as (bport, bproc), TruckxServer(data / "server") as srv:
        creds = srv.register(251)
        tokens = login_all(srv.url, creds[:1 + UPLOADERS])
        put(bport, "/api/v1/device/videos/warm.mp4", 16 * 1024 * 1024)
        put(srv.port, "/api/v1/device/videos/warm.mp4", 16 * 1024 * 1024, tokens[0])
        time.sleep(0.5)
        for i in range(repeats):
            os.sync()  # each PUT starts with no dirty pages of the previous one waiting to be written back
            b_mbs, b_status, b_rss = timed_put(bproc.pid, bport, f"one-{i}.mp4", size)
            with ctx.profiler(srv.pid if i == 0 else None, "upload"):
                r_mbs, r_status, r_rss = timed_put(srv.pid, srv.port, f"one-{i}.mp4", size,  # type: ignore[arg-type]
                                                   tokens[0])
            runs.append({"bare": b_mbs, "real": r_mbs, "ratio": r_mbs / b_mbs, "status": (b_status, r_status),
                         "rss": r_rss, "bare_rss": b_rss})
            ctx.say(f"s5: run {i + 1}: truckx {r_mbs:.0f} MiB/s (status {r_status}, RSS growth {r_rss / 2**20:.1f} MiB)"
                    f" / bare sink {b_mbs:.0f} MiB/s (status {b_status}) = {r_mbs / b_mbs:.2f}x")

        # 50 concurrent uploads while 200 devices report every second; a window without them first
        each = 8 * 1024 * 1024 if ctx.quick else 32 * 1024 * 1024
        window = 5.0 if ctx.quick else 10.0
        config = SimConfig(url=srv.url, devices=200, duration_s=300, report_interval_s=1.0, workers=2,
                           drain_timeout_s=10, video_size=0)
        ctx.commands.append(f"truckx-sim --url {srv.url} --devices 200 --report-interval 1 --workers 2; "
                            f"{window:.0f}s without uploads, then {UPLOADERS} concurrent raw-socket PUTs of "
                            f"{each} bytes")
        statuses: list[int] = []

        async def body(live) -> dict:  # noqa: ANN001
            await wait_until(lambda: live.connected >= 200, 60, 0.2)
            await asyncio.sleep(3)
            h0 = live.ack_buckets()
            await asyncio.sleep(window)
            h1 = live.ack_buckets()
            await asyncio.to_thread(os.sync)  # the 1 GiB files above are not being written back meanwhile
            h1b = live.ack_buckets()
            t = time.perf_counter()

            def one(i: int) -> None:
                statuses.append(put(srv.port, f"/api/v1/device/videos/c{i}.mp4", each, tokens[1 + i])[1])
            with ctx.profiler(srv.pid, "uploads-concurrent"):
                await asyncio.gather(*(asyncio.to_thread(one, i) for i in range(UPLOADERS)))
            seconds = time.perf_counter() - t
            await asyncio.sleep(1.5)  # acks of points sent during the uploads arrive
            h2 = live.ack_buckets()
            return {"seconds": seconds, "h0": h0, "h1": h1, "h1b": h1b, "h2": h2}

        res, summary = asyncio.run(fleet_until(config, creds[1 + UPLOADERS:], body, ctx))
    shutil.rmtree(data / "server" / "videos", ignore_errors=True)  # several GiB of test uploads
    quiet99, quiet_n = hist_percentile(res["h0"], res["h1"], 99)
    quiet50, _ = hist_percentile(res["h0"], res["h1"], 50)
    busy99, busy_n = hist_percentile(res["h1b"], res["h2"], 99)
    busy50, _ = hist_percentile(res["h1b"], res["h2"], 50)
    ok_uploads = sum(1 for s in statuses if s in (200, 201))
    conc_mbs = len(statuses) * each / res["seconds"] / 2**20
    ctx.say(f"s5: {len(statuses)} concurrent uploads in {res['seconds']:.1f}s ({conc_mbs:.0f} MiB/s), "
            f"ack p99 {busy99} ms vs {quiet99} ms without uploads")
    worst = min(runs, key=lambda r: r["ratio"])
    all_201 = all(r["status"] == (201, 201) for r in runs)
    peak_rss = max(r["rss"] for r in runs)
    return [
        ratio_row("5 upload", "s5.upload", f"one {size // 2**20} MiB PUT, throughput (worst of {repeats} runs)",
                  round(worst["real"]), "MiB/s", round(worst["bare"]), "bare stream_request_body disk sink, same run",
                  "higher", 0.9, "rate",
                  "ratios per run " + ", ".join(f"{r['ratio']:.2f}x ({r['real']:.0f}/{r['bare']:.0f})" for r in runs)
                  + f"; bare sink RSS growth {max(r['bare_rss'] for r in runs) / 2**20:.1f} MiB",
                  also=all_201, also_text="in every run, all 201"),
        Row("5 upload", "server RSS growth during it (peak of the runs)", round(peak_rss / 2**20, 1), "MiB", None, "",
            "<= 32 MB", peak_rss <= 32 * 10**6, "peak over the idle process, sampled every 50 ms",
            key="s5.upload_rss", kind="memory"),
        ratio_row("5 upload", "s5.ack_during_uploads", f"location ack p99 during {UPLOADERS} concurrent uploads",
                  busy99, "ms", quiet99, f"ack p99 of the same fleet in {window:.0f}s without uploads", "lower", 2.0,
                  "tail",
                  f"{ok_uploads}/{len(statuses)} uploads of {each // 2**20} MiB ok in {res['seconds']:.1f}s "
                  f"({conc_mbs:.0f} MiB/s); ack p50 {busy50} ms (without {quiet50}); {busy_n} / {quiet_n} acks; "
                  "200 devices at 1 point/s", also=ok_uploads == UPLOADERS,
                  also_text="all uploads ok"),
    ]


if __name__ == "__main__":
    for r in run(Context()):
        print(r)
