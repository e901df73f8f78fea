"""Video metadata and thumbnails with PyAV (FFmpeg), made in a separate, bounded process.

A file a device uploaded is hostile until proven otherwise, and FFmpeg is a large C library: so it is
never opened in the server process. :class:`MediaProber` runs one short-lived child process per file
(``python -m truckx_server.media``) that

- reads the file **through the parent**, which reads it from the video store (``VideoStore.iter_range``,
  any store: directory tree or S3) in pieces of at most :data:`READ_MAX` bytes on request. The child
  sees no path and no store, only ``read(offset, size)`` answers; the file is never held whole in
  memory on either side. The parent stops a child that asks for more than :data:`READ_BUDGET` bytes in
  all (a file made to be read end to end).
- runs under resource limits set before FFmpeg is loaded: address space (:data:`MEMORY_BYTES`), CPU
  seconds, no file writes, one decoding thread; the parent kills it at the wall-clock time limit.
- answers ``duration_s, width, height, codec`` (FFmpeg's codec name: ``h264``, ``vp9``, ...) and one
  JPEG frame from about one second in, scaled to :data:`THUMB_WIDTH` pixels wide (encoded by FFmpeg's
  own ``mjpeg`` encoder: no imaging library needed). A file that is not a decodable video, a child that
  crashes, runs out of memory or time: all nulls and no thumbnail.

Concurrency is bounded (``workers`` children at once) and so is the queue of files waiting
(``queue_limit``; past it :class:`ProbeSkipped`, and the periodic sweep in ``domain/videos.py`` catches
up). Memory in the server per running probe: one read answer (at most :data:`READ_MAX` bytes) and the
result (at most :data:`RESULT_MAX`).

Wire protocol between the two (binary, over the child's stdin/stdout)::

    child -> parent   b"R" + u32 12 + u64 offset + u32 size         read request
                      b"D" + u32 n  + u32 json_len + json + jpeg    the result, then the child exits
    parent -> child   u32 n + n bytes                               the answer to a read (n = 0: EOF)
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import math
import os
import struct
import sys
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

log = logging.getLogger("truckx.media")

#: the largest piece of the file one read request may ask for
READ_MAX = 1024 * 1024
#: bytes the child may read in all before it is stopped (a normal clip needs its header and ~1 s of frames)
READ_BUDGET = 64 * 1024 * 1024
#: the child's address-space limit (FFmpeg and Python need ~160 MiB for a 640x360 H.264 clip)
MEMORY_BYTES = 768 * 1024 * 1024
#: the largest result the parent accepts from a child (JSON and JPEG)
RESULT_MAX = 2 * 1024 * 1024
#: thumbnail width in pixels (never upscaled); the height keeps the aspect ratio
THUMB_WIDTH = 320
#: the thumbnail is the first frame at or after this many seconds (the first frame of a shorter clip)
THUMB_AT_S = 1.0
#: frames decoded at most while looking for the thumbnail's frame
MAX_FRAMES = 600
#: FFmpeg reads through the child's file object in pieces of this size
IO_BUFFER = 256 * 1024
#: sanity bounds of what is stored
MAX_DIMENSION = 32768
MAX_DURATION_S = 10 * 24 * 3600.0

_HEAD = struct.Struct(">cI")
_READ = struct.Struct(">QI")
_LEN = struct.Struct(">I")

#: (start, end) -> the bytes start <= i < end of the file, in chunks
ReadRange = Callable[[int, int], AsyncIterator[bytes]]


@dataclass(frozen=True)
class MediaInfo:
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    codec: str | None = None
    #: the JPEG frame, or None
    thumbnail: bytes | None = None

    @property
    def is_video(self) -> bool:
        return self.codec is not None


class ProbeSkipped(Exception):
    """Not probed now (the queue is full, or the prober is closing): try again later."""


class _Abandon(Exception):
    """The child misbehaved (asked for too much, broke the protocol): treat the file as not a video."""


def _child_env() -> dict[str, str]:
    """What the child inherits: no secret of the server's environment, only what Python needs."""
    keep = ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "VIRTUAL_ENV")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # the child may not write files
    return env


class MediaProber:
    def __init__(self, workers: int = 1, timeout_s: float = 20.0, queue_limit: int = 1000,
                 memory_bytes: int = MEMORY_BYTES, read_budget: int = READ_BUDGET,
                 thumb_width: int = THUMB_WIDTH, on_outcome: Callable[[str], None] | None = None) -> None:
        self.workers = workers
        self.timeout_s = timeout_s
        self.queue_limit = queue_limit
        self.memory_bytes = memory_bytes
        self.read_budget = read_budget
        self.thumb_width = thumb_width
        self._slots = asyncio.Semaphore(max(1, workers))
        self._waiting = 0
        self._running = 0
        self._children: set[asyncio.subprocess.Process] = set()
        self.closed = False
        #: outcomes so far: "video", "not_video", "timeout", "failed" (each also told to ``on_outcome``)
        self.outcomes: dict[str, int] = {}
        self._on_outcome = on_outcome

    @property
    def enabled(self) -> bool:
        return self.workers > 0

    @property
    def pending(self) -> int:
        """Probes waiting for a slot or running."""
        return self._waiting + self._running

    async def probe(self, size: int, read: ReadRange) -> MediaInfo:
        """Metadata and thumbnail of a file of ``size`` bytes read through ``read``. Raises
        :class:`ProbeSkipped` when it cannot run now, and what ``read`` raises (the store failed:
        nothing is known about the file); every fault of the file itself gives an empty result."""
        if self.closed or not self.enabled:
            raise ProbeSkipped("media probing is off or closing")
        if self._waiting >= self.queue_limit:
            raise ProbeSkipped("too many files waiting to be probed")
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        self._running += 1
        try:
            if self.closed:
                raise ProbeSkipped("closing")
            return await self._run(size, read)
        finally:
            self._running -= 1
            self._slots.release()

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    async def _run(self, size: int, read: ReadRange) -> MediaInfo:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "truckx_server.media", str(size), str(self.memory_bytes),
            str(math.ceil(self.timeout_s) + 1), str(self.thumb_width),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            env=_child_env(), cwd="/", start_new_session=True)
        self._children.add(proc)
        try:
            async with asyncio.timeout(self.timeout_s):
                info = await self._converse(proc, size, read)
            self._count("video" if info.is_video else "not_video")
            return info
        except TimeoutError:
            self._count("timeout")
            log.info("media probe stopped after %.0f s", self.timeout_s)
            return MediaInfo()
        except (_Abandon, asyncio.IncompleteReadError, ConnectionError, ValueError, struct.error) as exc:
            self._count("failed")
            log.info("media probe failed: %s", exc if isinstance(exc, _Abandon) else type(exc).__name__)
            return MediaInfo()
        finally:
            self._children.discard(proc)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.shield(proc.wait())

    async def _converse(self, proc: asyncio.subprocess.Process, size: int, read: ReadRange) -> MediaInfo:
        assert proc.stdin is not None and proc.stdout is not None
        served = 0
        while True:
            kind, length = _HEAD.unpack(await proc.stdout.readexactly(_HEAD.size))
            if kind == b"R":
                if length != _READ.size:
                    raise _Abandon("bad read request")
                offset, wanted = _READ.unpack(await proc.stdout.readexactly(length))
                if wanted > READ_MAX or offset > size:
                    raise _Abandon("read request out of bounds")
                end = min(size, offset + wanted)
                served += end - offset
                if served > self.read_budget:
                    raise _Abandon(f"the file needs more than {self.read_budget} bytes read")
                data = b"".join([chunk async for chunk in read(offset, end)]) if end > offset else b""
                proc.stdin.write(_LEN.pack(len(data)))
                proc.stdin.write(data)
                await proc.stdin.drain()
            elif kind == b"D":
                if length > RESULT_MAX:
                    raise _Abandon("result too large")
                return _parse_result(await proc.stdout.readexactly(length))
            else:
                raise _Abandon("unknown message")

    def close(self) -> None:
        """Stop: refuse new probes, kill the running children."""
        self.closed = True
        for proc in list(self._children):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()


def _parse_result(payload: bytes) -> MediaInfo:
    (json_len,) = _LEN.unpack_from(payload)
    meta = json.loads(payload[_LEN.size:_LEN.size + json_len])
    jpeg = payload[_LEN.size + json_len:] or None
    if not isinstance(meta, dict) or meta.get("codec") is None:
        return MediaInfo()

    def dimension(value: Any) -> int | None:
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_DIMENSION
        return value if ok else None

    duration = meta.get("duration_s")
    if not isinstance(duration, (int, float)) or isinstance(duration, bool) or not (
            math.isfinite(duration) and 0 <= duration <= MAX_DURATION_S):
        duration = None
    codec = meta.get("codec")
    if not isinstance(codec, str) or not codec.isascii() or not 0 < len(codec) <= 32:
        return MediaInfo()
    if jpeg is not None and not jpeg.startswith(b"\xff\xd8\xff"):
        jpeg = None
    return MediaInfo(duration_s=None if duration is None else round(float(duration), 3),
                     width=dimension(meta.get("width")), height=dimension(meta.get("height")), codec=codec,
                     thumbnail=jpeg)


# -- the child -------------------------------------------------------------------------------------


class _RemoteFile(io.RawIOBase):
    """The file being probed, read from the parent on request (``read``/``seek``/``tell``)."""

    def __init__(self, size: int, requests: Any, answers: Any) -> None:
        super().__init__()
        self.size = size
        self.pos = 0
        self._requests = requests
        self._answers = answers

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = READ_MAX
        n = min(n, READ_MAX, self.size - self.pos)
        if n <= 0:
            return b""
        self._requests.write(_HEAD.pack(b"R", _READ.size) + _READ.pack(self.pos, n))
        self._requests.flush()
        (length,) = _LEN.unpack(_read_exactly(self._answers, _LEN.size))
        data = _read_exactly(self._answers, length) if length else b""
        self.pos += len(data)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos


def _read_exactly(stream: Any, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = stream.read(n - len(out))
        if not chunk:
            raise EOFError("the parent went away")
        out += chunk
    return bytes(out)


def _limit_resources(memory_bytes: int, cpu_s: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def extract(file: Any, thumb_width: int = THUMB_WIDTH) -> tuple[dict[str, Any], bytes | None]:
    """(metadata, JPEG) of a file object, in the child. Nulls when no video frame can be decoded."""
    from fractions import Fraction

    import av

    av.logging.set_level(None)  # FFmpeg says nothing
    nothing: dict[str, Any] = {"duration_s": None, "width": None, "height": None, "codec": None}
    try:
        container = av.open(file, "r", buffer_size=IO_BUFFER)
    except (av.FFmpegError, ValueError, OSError, EOFError):
        return nothing, None
    with container:
        video = next((s for s in container.streams if s.type == "video"), None)
        if video is None:
            return nothing, None
        video.thread_type = "NONE"  # one decoding thread
        frame = _frame_near(container, video, THUMB_AT_S)
        if frame is None:
            return nothing, None
        duration = None
        if video.duration is not None and video.time_base is not None:
            duration = float(video.duration * video.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        meta = {"duration_s": duration, "width": frame.width, "height": frame.height,
                "codec": video.codec_context.codec.canonical_name}
        width = min(thumb_width, frame.width)
        height = max(2, round(frame.height * width / frame.width / 2) * 2)
        width -= width % 2
        scaled = frame.reformat(width=width, height=height, format="yuvj420p")
        encoder = av.CodecContext.create("mjpeg", "w")
        encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuvj420p"
        encoder.time_base = Fraction(1, 25)
        encoder.qmin, encoder.qmax = 2, 5
        jpeg = b"".join(bytes(p) for p in [*encoder.encode(scaled), *encoder.encode(None)])
        return meta, jpeg or None


def _frame_near(container: Any, video: Any, at_s: float) -> Any:
    """The first frame at or after ``at_s`` (the last one decoded when the clip is shorter), or None."""
    import av

    def decode_from(seek: bool) -> Any:
        found = None
        try:
            if seek:
                container.seek(int(at_s / video.time_base), stream=video, backward=True)
            for n, frame in enumerate(container.decode(video)):
                found = frame
                if (frame.time is not None and frame.time >= at_s) or n >= MAX_FRAMES:
                    break
        except (av.FFmpegError, ValueError, OSError, EOFError, ZeroDivisionError, TypeError):
            pass
        return found

    seekable = video.time_base is not None and (video.duration or container.duration or 0)
    return (decode_from(True) if seekable else None) or decode_from(False)


def _child_main(argv: list[str]) -> int:
    size, memory_bytes, cpu_s, thumb_width = (int(a) for a in argv)
    # the protocol gets its own descriptors; fd 1 goes to stderr so that a stray print cannot corrupt it
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    answers = os.fdopen(os.dup(0), "rb", buffering=0)
    _limit_resources(memory_bytes, cpu_s)
    try:
        meta, jpeg = extract(_RemoteFile(size, out, answers), thumb_width)
    except MemoryError:
        meta, jpeg = {"codec": None}, None
    body = json.dumps(meta).encode()
    payload = _LEN.pack(len(body)) + body + (jpeg or b"")
    out.write(_HEAD.pack(b"D", len(payload)) + payload)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
