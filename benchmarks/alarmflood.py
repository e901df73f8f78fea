"""A lean alarm load generator for scenario 7 (one process, asyncio streams, raw keep-alive HTTP/1.1).

``--devices`` connections (one per device token) each post alarms back to back, one at a time
(``POST /api/v1/device/alarms`` with a fresh UUID ``id``, one file name), for ``--duration`` seconds after
``--warmup``; the same client drives the bare JSON POST handler (bare_ws.py) and the real server.
Prints one JSON object: accepted alarms per second (201), latency p50/p99, status counts, the client's
own CPU, the statuses of the whole run (warm-up included: ``all_statuses``), and the first accepted
alarm of each device (for the idempotency check). Usage:
    python alarmflood.py --port P --tokens FILE --duration S --warmup S
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
import uuid
from collections import Counter

TYPES = ("VIBRATION", "OVERSPEED", "CRASH", "HARD_ACCELERATION", "HARD_BRAKE", "SHARP_TURN")
_LENGTH = re.compile(rb"(?im)^content-length:\s*(\d+)")


def alarm(i: int) -> dict:
    aid = str(uuid.uuid4())
    now = time.time()
    return {"id": aid, "type": TYPES[i % len(TYPES)],
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%06dZ" % int(now % 1 * 1e6),
            "lat": 40.0 + (i % 1000) / 1e4, "lon": -90.0 - (i % 1000) / 1e4, "speed_kmh": 55.5,
            "files": [f"{aid}-front.mp4"], "details": {"g_force": 1.2}}


class Client:
    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: dict) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        payload = json.dumps(body, separators=(",", ":")).encode()
        self.writer.write(b"POST /api/v1/device/alarms HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                          b"Authorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                          % (self.port, self.token.encode(), len(payload), payload))
        head = await self.reader.readuntil(b"\r\n\r\n")
        m = _LENGTH.search(head)
        data = await self.reader.readexactly(int(m.group(1))) if m else b""
        return int(head.split(b" ", 2)[1]), data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def device(idx: int, client: Client, measure_from: float, stop_at: float, lat: list[float],
                 statuses: Counter, everything: Counter, first: dict) -> None:
    i = idx * 1_000_000
    while time.monotonic() < stop_at:
        body = alarm(i)
        i += 1
        t = time.perf_counter()
        status, _ = await client.post(body)
        el = (time.perf_counter() - t) * 1000
        everything[status] += 1
        if time.monotonic() >= measure_from:
            statuses[status] += 1
            if status == 201:
                lat.append(el)
        if status == 201 and idx not in first:
            first[idx] = body
    client.close()


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tokens", required=True)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--warmup", type=float, default=2)
    args = p.parse_args()
    tokens = json.load(open(args.tokens))
    lat: list[float] = []
    statuses: Counter = Counter()
    everything: Counter = Counter()
    first: dict[int, dict] = {}
    cpu0, start = time.process_time(), time.monotonic()
    measure_from, stop_at = start + args.warmup, start + args.warmup + args.duration
    results = await asyncio.gather(*(device(i, Client(args.port, t), measure_from, stop_at, lat, statuses,
                                            everything, first) for i, t in enumerate(tokens)),
                                   return_exceptions=True)
    wall, cpu = time.monotonic() - start, time.process_time() - cpu0
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    lat.sort()

    def pct(q: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(len(lat) * q / 100))], 2) if lat else None
    print(json.dumps({"accepted": statuses[201], "accepted_per_s": statuses[201] / args.duration,
                      "p50_ms": pct(50), "p99_ms": pct(99), "statuses": {str(k): v for k, v in statuses.items()},
                      "all_statuses": {str(k): v for k, v in everything.items()},
                      "errors": errors[:5], "devices": len(tokens), "first": {str(k): v for k, v in first.items()},
                      "client_cores": round(cpu / wall, 3)}))


if __name__ == "__main__":
    asyncio.run(main())
