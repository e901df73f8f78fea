"""Alarm videos: deterministic content per file name, streamed with PUT and resumed with HEAD + PATCH
(``Upload-Offset`` / ``Upload-Complete``) after an interruption."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from typing import TYPE_CHECKING, AsyncIterator

import httpx

if TYPE_CHECKING:
    from .device import SimDevice

CHUNK = 64 * 1024


class _Interrupted(Exception):
    """The simulated connection loss in the middle of an upload."""


def content_block(name: str) -> bytes:
    return random.Random(name).randbytes(CHUNK)


def sha256_of(name: str, size: int) -> str:
    block = content_block(name)
    h = hashlib.sha256()
    full, rest = divmod(size, CHUNK)
    for _ in range(full):
        h.update(block)
    h.update(block[:rest])
    return h.hexdigest()


async def body(name: str, start: int, end: int, stop_at: int | None = None) -> AsyncIterator[bytes]:
    """Bytes ``start..end`` of the file; raises at ``stop_at`` to simulate a dropped connection."""
    block = content_block(name)
    pos = start
    while pos < end:
        if stop_at is not None and pos >= stop_at:
            raise _Interrupted()
        off = pos % CHUNK
        n = min(CHUNK - off, end - pos)
        yield block[off:off + n]
        pos += n
        await asyncio.sleep(0)


async def upload_video(device: "SimDevice", name: str, size: int) -> tuple[bool, str]:
    env, stats = device.env, device.stats
    url = f"/api/v1/device/videos/{name}"
    digest = await asyncio.to_thread(sha256_of, name, size) if size > 4 * 1024 * 1024 else sha256_of(name, size)
    interrupt = device.rng.random() < env.config.upload_interrupt_rate and size > 1
    started = time.perf_counter()
    async with env.upload_slots:
        offset = 0
        for attempt in range(8):
            if env.stopped.is_set():
                return False, "stopped"
            try:
                if attempt > 0:
                    h = await env.http.head(url, headers=device.auth_headers())
                    if h.status_code == 401:
                        await device.login()
                        continue
                    if h.headers.get("Upload-Complete") == "?1":
                        break
                    offset = int(h.headers.get("Upload-Offset", "0") or 0) if h.status_code == 200 else 0
                    if offset:
                        stats.incr("upload_resumes")
                headers = {**device.auth_headers(), "X-Content-SHA256": digest,
                           "Content-Type": "application/octet-stream"}
                stop_at = size // 2 if interrupt and attempt == 0 else None
                if offset == 0:
                    headers["Content-Length"] = str(size)
                    r = await env.http.put(url, content=body(name, 0, size, stop_at), headers=headers)
                else:
                    headers.update({"Upload-Offset": str(offset), "Upload-Complete": "?1",
                                    "Content-Length": str(size - offset)})
                    r = await env.http.patch(url, content=body(name, offset, size), headers=headers)
            except (_Interrupted, httpx.HTTPError) as exc:
                if not isinstance(exc, _Interrupted):
                    stats.error("upload_" + type(exc).__name__)
                await asyncio.sleep(device.backoff(attempt) if not isinstance(exc, _Interrupted) else 0.05)
                continue
            if r.status_code in (200, 201):
                break
            if r.status_code == 401:
                await device.login()
                continue
            stats.error(f"upload_http_{r.status_code}")
            if r.status_code in (404, 405, 400, 413) or (r.status_code == 409 and offset == 0):
                return False, f"upload refused: HTTP {r.status_code}"
            await asyncio.sleep(device.backoff(attempt))
        else:
            return False, "upload failed after retries"
    stats.incr("uploads")
    stats.incr("upload_bytes", size)
    stats.measure("upload", (time.perf_counter() - started) * 1000)
    device.video_names.append(name)
    return True, "uploaded"
