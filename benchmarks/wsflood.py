"""A lean WebSocket load generator for the ingest scenario (one process, asyncio streams).

Each connection keeps ``window`` messages in flight (credit returns with each cumulative ack) and sends
``location`` (or ``locations`` of ``points`` points) frames as fast as the server acknowledges them.
Frames are pre-built and masked with the all-zero key (legal per RFC 6455 and free to apply), so the
client spends its CPU on the socket, not on framing; the same client drives the bare baseline and the
real server. Prints one JSON object (with the client's own CPU use, so a run can tell when the client,
not the server, was the limit). Usage:
    python wsflood.py --port P --tokens FILE --duration S --warmup S --window W --points N
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import time

TEMPLATE = '{"lat":%.5f,"lon":%.5f,"speed_kmh":72.5,"heading":181.0,"ts":"%s"}'


def frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x81, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


def ts_text(us: int) -> str:
    secs, frac = divmod(us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + ".%06dZ" % frac


class Conn:
    def __init__(self, idx: int, token: str, args: argparse.Namespace, base_us: int) -> None:
        self.idx, self.token, self.args = idx, token, args
        self.us = base_us + idx  # unique per connection, strictly increasing
        self.seq = 0
        self.acked = 0
        self.sent_at: dict[int, float] = {}
        self.credit = asyncio.Event()
        self.lat: list[float] = []
        self.acked_points = 0
        self.measure_from = 0.0

    def build(self) -> bytes:
        self.seq += 1
        pts = []
        for _ in range(self.args.points):
            self.us += 1000
            pts.append(TEMPLATE % (40.0 + (self.us % 1000) / 1e4, -90.0, ts_text(self.us)))
        if self.args.points == 1:
            body = '{"type":"location","seq":%d,%s' % (self.seq, pts[0][1:])
        else:
            body = '{"type":"locations","seq":%d,"points":[%s]}' % (self.seq, ",".join(pts))
        return frame(body.encode())

    async def run(self, stop_at: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.args.port, limit=1 << 20)
        writer.write((f"GET /api/v1/device/ws HTTP/1.1\r\nHost: 127.0.0.1:{self.args.port}\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {self.token}\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(head[:200].decode(errors="replace"))
        read_task = asyncio.create_task(self.read(reader))
        window = self.args.window
        try:
            while time.monotonic() < stop_at:
                room = window - (self.seq - self.acked)
                if room <= 0:
                    self.credit.clear()
                    try:
                        await asyncio.wait_for(self.credit.wait(), 1.0)
                    except TimeoutError:
                        pass
                    continue
                now = time.perf_counter()
                buf = []
                for _ in range(min(room, 64)):
                    buf.append(self.build())
                    self.sent_at[self.seq] = now
                writer.write(b"".join(buf))
                await writer.drain()
        finally:
            read_task.cancel()
            writer.close()

    async def read(self, reader: asyncio.StreamReader) -> None:
        while True:
            b0, b1 = await reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await reader.readexactly(8))[0]
            payload = await reader.readexactly(n)
            if b0 & 0x0F != 1 or b'"ack"' not in payload:
                continue
            seq = int(payload[payload.index(b'"seq":') + 6:].rstrip(b"}").split(b",")[0])
            now = time.perf_counter()
            mono = time.monotonic()
            for s in range(self.acked + 1, seq + 1):
                t = self.sent_at.pop(s, None)
                if t is not None and mono >= self.measure_from:
                    self.lat.append((now - t) * 1000)
                    self.acked_points += self.args.points
            self.acked = max(self.acked, seq)
            self.credit.set()


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tokens", required=True)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--window", type=int, default=100)
    p.add_argument("--points", type=int, default=1)
    p.add_argument("--base-us", type=int, default=0)
    args = p.parse_args()
    tokens = json.load(open(args.tokens))
    base_us = args.base_us or (time.time_ns() // 1000 - 6 * 3600 * 1_000_000)
    conns = [Conn(i, t, args, base_us + i * 10**11 // 10**6) for i, t in enumerate(tokens)]
    cpu0 = time.process_time()
    start = time.monotonic()
    for c in conns:
        c.measure_from = start + args.warmup
    stop_at = start + args.warmup + args.duration
    results = await asyncio.gather(*(c.run(stop_at) for c in conns), return_exceptions=True)
    wall, cpu = time.monotonic() - start, time.process_time() - cpu0
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    lat = sorted(x for c in conns for x in c.lat)
    acked = sum(c.acked_points for c in conns)

    def pct(q: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(len(lat) * q / 100))], 2) if lat else None
    print(json.dumps({"acked_points": acked, "points_per_s": acked / args.duration,
                      "messages_per_s": len(lat) / args.duration, "ack_p50_ms": pct(50), "ack_p99_ms": pct(99),
                      "errors": errors[:5], "connections": len(conns),
                      # this client's own CPU over the whole run (warm-up included), in cores
                      "client_cpu_s": round(cpu, 3), "wall_s": round(wall, 3), "client_cores": round(cpu / wall, 3)}))


if __name__ == "__main__":
    asyncio.run(main())
