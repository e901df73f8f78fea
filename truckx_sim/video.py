"""Alarm videos: a real H.264 clip (:mod:`truckx_sim.clips`) or deterministic random bytes per file name,
streamed with PUT and resumed with HEAD + PATCH (``Upload-Offset`` / ``Upload-Complete``) after an
interruption."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncIterator, Iterator, Protocol

import httpx

from .clips import Clip, ClipCache, ClipSpec

if TYPE_CHECKING:
    from .config import SimConfig
    from .device import SimDevice

CHUNK = 64 * 1024
#: clips in the fleet-wide pool (``video_labels="pool"``)
POOL_CLIPS = 8
#: ``video_labels="auto"``: one clip per device (its IMEI burned in) up to this many devices, else the pool
AUTO_DEVICE_LABELS = 20


class _Interrupted(Exception):
    """The simulated connection loss in the middle of an upload."""


class Source(Protocol):
    """What an upload sends: ``size`` bytes whose SHA-256 is ``sha256``, readable from any offset."""

    size: int
    sha256: str

    def chunks(self, start: int, end: int) -> Iterator[bytes]: ...


@dataclass
class ClipSource:
    clip: Clip

    @property
    def size(self) -> int:
        return self.clip.size

    @property
    def sha256(self) -> str:
        return self.clip.sha256

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        view = memoryview(self.clip.data)
        for pos in range(start, end, CHUNK):
            yield bytes(view[pos:min(pos + CHUNK, end)])


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


class RandomSource:
    """``size`` bytes made from the file name (any size, never held whole in memory)."""

    def __init__(self, name: str, size: int, sha256: str) -> None:
        self.name, self.size, self.sha256 = name, size, sha256
        self._block = content_block(name)

    @classmethod
    async def make(cls, name: str, size: int) -> "RandomSource":
        digest = await asyncio.to_thread(sha256_of, name, size) if size > 4 * 1024 * 1024 else sha256_of(name, size)
        return cls(name, size, digest)

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        pos = start
        while pos < end:
            off = pos % CHUNK
            n = min(CHUNK - off, end - pos)
            yield self._block[off:off + n]
            pos += n


def clip_spec(config: "SimConfig", imei: str) -> ClipSpec:
    """The clip a device's alarms carry: its own (IMEI burned in) or one of the fleet-wide pool."""
    if config.video_labels == "device":
        label = f"IMEI {imei}"
    else:
        label = f"TRUCKX-SIM CLIP {zlib.crc32(imei.encode()) % POOL_CLIPS + 1}"
    return ClipSpec(label=label, width=config.video_width, height=config.video_height, fps=config.video_fps,
                    seconds=config.video_seconds)


async def source_for(config: "SimConfig", clips: ClipCache, imei: str, name: str,
                     fallback_size: int = 0) -> Source | None:
    """What to upload as ``name``: None when the simulator uploads no videos (``video="none"``, or
    ``video_size=0`` and no ``fallback_size``)."""
    if config.video == "none" or (config.video_size == 0 and not fallback_size):
        return None
    if config.video == "mp4":
        return ClipSource(await clips.get(clip_spec(config, imei)))
    return await RandomSource.make(name, config.video_size or fallback_size)


async def body(source: Source, start: int, end: int, stop_at: int | None = None) -> AsyncIterator[bytes]:
    """Bytes ``start..end`` of the file; raises at ``stop_at`` to simulate a dropped connection."""
    pos = start
    for chunk in source.chunks(start, end):
        if stop_at is not None and pos + len(chunk) > stop_at:
            if stop_at > pos:
                yield chunk[:stop_at - pos]
            raise _Interrupted()
        yield chunk
        pos += len(chunk)
        await asyncio.sleep(0)


async def upload_video(device: "SimDevice", name: str, source: Source) -> tuple[bool, str]:
    env, stats = device.env, device.stats
    url = f"/api/v1/device/videos/{name}"
    size, digest = source.size, source.sha256
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
                kind = "video/mp4" if isinstance(source, ClipSource) else "application/octet-stream"
                headers = {**device.auth_headers(), "X-Content-SHA256": digest, "Content-Type": kind}
                stop_at = size // 2 if interrupt and attempt == 0 else None
                if offset == 0:
                    headers["Content-Length"] = str(size)
                    r = await env.http.put(url, content=body(source, 0, size, stop_at), headers=headers)
                else:
                    headers.update({"Upload-Offset": str(offset), "Upload-Complete": "?1",
                                    "Content-Length": str(size - offset)})
                    r = await env.http.patch(url, content=body(source, offset, size), headers=headers)
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
