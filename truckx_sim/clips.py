"""Real dashcam-like video for the simulated alarms: short H.264 MP4 clips made with PyAV (its wheels
bundle FFmpeg with libx264), a moving test pattern with a label (the device's IMEI) and a running time
code burned in, so thumbnails and playback can be checked by eye.

Encoding costs tens of milliseconds of CPU, so each clip is made once per :class:`ClipSpec` and kept: on
disk under the simulator's cache dir (``<cache>/clips/<key>.mp4``, the key a hash of the spec, the PyAV
version and this module's format version) and in memory (a bounded LRU map). A load test with thousands of
alarms uploads the same few clips again and again under new names, so the content, its size and its
SHA-256 are fixed per clip and interrupted uploads resume byte for byte.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path

#: bump when the picture or the encoding changes, so that cached clips are made again
FORMAT_VERSION = 1
MAX_LABEL = 40

# a 5x7 bitmap font for the burned-in text (upper case, digits and a little punctuation)
_FONT = {
    "0": ("01110", "10001", "10011", "10101", "11001", "10001", "01110"),
    "1": ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
    "2": ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
    "3": ("11111", "00010", "00100", "00010", "00001", "10001", "01110"),
    "4": ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
    "5": ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
    "6": ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
    "7": ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
    "8": ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
    "9": ("01110", "10001", "10001", "01111", "00001", "00010", "01100"),
    "A": ("01110", "10001", "10001", "11111", "10001", "10001", "10001"),
    "B": ("11110", "10001", "10001", "11110", "10001", "10001", "11110"),
    "C": ("01110", "10001", "10000", "10000", "10000", "10001", "01110"),
    "D": ("11100", "10010", "10001", "10001", "10001", "10010", "11100"),
    "E": ("11111", "10000", "10000", "11110", "10000", "10000", "11111"),
    "F": ("11111", "10000", "10000", "11110", "10000", "10000", "10000"),
    "G": ("01110", "10001", "10000", "10111", "10001", "10001", "01111"),
    "H": ("10001", "10001", "10001", "11111", "10001", "10001", "10001"),
    "I": ("01110", "00100", "00100", "00100", "00100", "00100", "01110"),
    "J": ("00111", "00010", "00010", "00010", "00010", "10010", "01100"),
    "K": ("10001", "10010", "10100", "11000", "10100", "10010", "10001"),
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
    "M": ("10001", "11011", "10101", "10101", "10001", "10001", "10001"),
    "N": ("10001", "10001", "11001", "10101", "10011", "10001", "10001"),
    "O": ("01110", "10001", "10001", "10001", "10001", "10001", "01110"),
    "P": ("11110", "10001", "10001", "11110", "10000", "10000", "10000"),
    "Q": ("01110", "10001", "10001", "10001", "10101", "10010", "01101"),
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
    "S": ("01111", "10000", "10000", "01110", "00001", "00001", "11110"),
    "T": ("11111", "00100", "00100", "00100", "00100", "00100", "00100"),
    "U": ("10001", "10001", "10001", "10001", "10001", "10001", "01110"),
    "V": ("10001", "10001", "10001", "10001", "10001", "01010", "00100"),
    "W": ("10001", "10001", "10001", "10101", "10101", "10101", "01010"),
    "X": ("10001", "10001", "01010", "00100", "01010", "10001", "10001"),
    "Y": ("10001", "10001", "10001", "01010", "00100", "00100", "00100"),
    "Z": ("11111", "00001", "00010", "00100", "01000", "10000", "11111"),
    ":": ("00000", "01100", "01100", "00000", "01100", "01100", "00000"),
    ".": ("00000", "00000", "00000", "00000", "00000", "01100", "01100"),
    "-": ("00000", "00000", "00000", "11111", "00000", "00000", "00000"),
    "+": ("00000", "00100", "00100", "11111", "00100", "00100", "00000"),
    "/": ("00001", "00010", "00010", "00100", "01000", "01000", "10000"),
    " ": ("00000",) * 7,
}
_UNKNOWN = ("11111", "10001", "10001", "10001", "10001", "10001", "11111")

# 75 % colour bars as (Y, U, V), BT.601 limited range
_BARS = ((180, 128, 128), (162, 44, 142), (131, 156, 44), (112, 72, 58), (84, 184, 198), (65, 100, 212),
         (35, 212, 114), (16, 128, 128))
WHITE, BLACK, GREY = 235, 16, 128


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """What a clip looks like. ``label`` is burned in (the device's IMEI, or a pool name)."""

    label: str = "TRUCKX-SIM"
    width: int = 480
    height: int = 270
    fps: int = 15
    seconds: float = 4.0
    crf: int = 30

    def __post_init__(self) -> None:
        if not (64 <= self.width <= 1920 and 64 <= self.height <= 1080 and self.width % 16 == 0
                and self.height % 2 == 0):
            raise ValueError("clip size must be within 64x64..1920x1080, the width a multiple of 16, "
                             "the height even")
        if not (1 <= self.fps <= 60 and 0.2 <= self.seconds <= 60 and 0 <= self.crf <= 51):
            raise ValueError("clip fps must be 1..60, seconds 0.2..60, crf 0..51")
        if len(self.label) > MAX_LABEL:
            raise ValueError(f"clip label longer than {MAX_LABEL} characters")

    def key(self) -> str:
        import av

        blob = json.dumps({**dataclasses.asdict(self), "av": av.__version__, "format": FORMAT_VERSION},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _text_rows(text: str, scale: int) -> list[bytes]:
    """``text`` as rows of luma bytes (white on black), ``scale`` pixels per font pixel, 1 pixel apart."""
    glyphs = [_FONT.get(ch, _UNKNOWN) for ch in text.upper()]
    rows = []
    for r in range(7):
        line = bytearray()
        for g in glyphs:
            for bit in g[r] + "0":
                line += (b"\xeb" if bit == "1" else b"\x10") * scale
        for _ in range(scale):
            rows.append(bytes(line))
    return rows


class _Painter:
    """Draws frame ``i``: colour bars scrolling left, a box bouncing across, and the text block."""

    def __init__(self, spec: ClipSpec) -> None:
        self.spec = spec
        w, h = spec.width, spec.height
        bar_w = w // len(_BARS)
        luma = bytearray()
        cb = bytearray()
        cr = bytearray()
        for y, u, v in _BARS:
            luma += bytes([y]) * bar_w
            cb += bytes([u]) * (bar_w // 2)
            cr += bytes([v]) * (bar_w // 2)
        self.bar_w = bar_w
        # twice over, so that any window of one width is a slice
        self.luma, self.cb, self.cr = bytes(luma * 2), bytes(cb * 2), bytes(cr * 2)
        self.scale = max(1, h // 90)
        self.box = max(8, h // 8) // 2 * 2

    def frame(self, i: int) -> tuple[bytes, bytes, bytes]:
        spec = self.spec
        w, h, cw, ch = spec.width, spec.height, spec.width // 2, spec.height // 2
        period = self.bar_w * len(_BARS)
        shift = (i * 4) % period
        yrow = self.luma[shift:shift + w].ljust(w, b"\x10")
        urow = self.cb[shift // 2:shift // 2 + cw].ljust(cw, b"\x80")
        vrow = self.cr[shift // 2:shift // 2 + cw].ljust(cw, b"\x80")
        y_plane = bytearray(yrow * h)
        u_plane = bytearray(urow * ch)
        v_plane = bytearray(vrow * ch)
        # the bouncing box
        b = self.box
        span_x, span_y = max(1, w - b), max(1, h - b)
        x = abs((i * 7) % (2 * span_x) - span_x) // 2 * 2
        y = abs((i * 5) % (2 * span_y) - span_y) // 2 * 2
        for r in range(y, y + b):
            y_plane[r * w + x:r * w + x + b] = b"\xeb" * b
        for r in range(y // 2, (y + b) // 2):
            u_plane[r * cw + x // 2:r * cw + (x + b) // 2] = b"\x80" * (b // 2)
            v_plane[r * cw + x // 2:r * cw + (x + b) // 2] = b"\x80" * (b // 2)
        # the text: label, then the time code and frame number
        t = i / spec.fps
        lines = [spec.label, f"T+{int(t // 60):02d}:{t % 60:05.2f} F{i:04d}"]
        top = 2 * self.scale
        for text in lines:
            rows = _text_rows(text, self.scale)
            tw = min(len(rows[0]), w - 4 * self.scale)
            left = 2 * self.scale
            for k, row in enumerate(rows):
                r = top + k
                if r >= h:
                    break
                y_plane[r * w + left:r * w + left + tw] = row[:tw]
            for r in range(top // 2, min(ch, (top + len(rows) + 1) // 2)):
                u_plane[r * cw + left // 2:r * cw + (left + tw) // 2] = b"\x80" * (tw // 2)
                v_plane[r * cw + left // 2:r * cw + (left + tw) // 2] = b"\x80" * (tw // 2)
            top += len(rows) + 3 * self.scale
        return bytes(y_plane), bytes(u_plane), bytes(v_plane)


def _fill(plane: object, data: bytes, width: int, height: int) -> None:
    line = plane.line_size  # type: ignore[attr-defined]
    if line != width:  # rows padded in the frame's buffer
        data = b"".join(data[r * width:(r + 1) * width].ljust(line, b"\0") for r in range(height))
    plane.update(data)  # type: ignore[attr-defined]


def encode(spec: ClipSpec, path: Path) -> None:
    """Write the clip to ``path`` (H.264 in MP4, moov atom first so browsers can play it while loading)."""
    import av

    painter = _Painter(spec)
    frames = max(1, round(spec.seconds * spec.fps))
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=spec.fps)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        stream.thread_count = 1  # one thread: the same bytes on every run
        stream.options = {"preset": "veryfast", "crf": str(spec.crf), "g": str(spec.fps), "profile": "main"}
        for i in range(frames):
            frame = av.VideoFrame(spec.width, spec.height, "yuv420p")
            for plane, data, w, h in zip(frame.planes, painter.frame(i),
                                         (spec.width, spec.width // 2, spec.width // 2),
                                         (spec.height, spec.height // 2, spec.height // 2)):
                _fill(plane, data, w, h)
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@dataclasses.dataclass(frozen=True)
class Clip:
    spec: ClipSpec
    data: bytes
    sha256: str

    @property
    def size(self) -> int:
        return len(self.data)


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "truckx-sim"


class ClipCache:
    """Clips by spec: from memory (at most ``max_in_memory``, least recently used go first), else from
    ``<directory>/<key>.mp4``, else encoded (in a thread) and written there atomically."""

    def __init__(self, directory: Path, max_in_memory: int = 64) -> None:
        self.directory = Path(directory)
        self.max_in_memory = max_in_memory
        self._clips: collections.OrderedDict[ClipSpec, Clip] = collections.OrderedDict()
        self._making: dict[ClipSpec, asyncio.Future[Clip]] = {}
        self.encoded = 0
        self.read_from_disk = 0

    def path(self, spec: ClipSpec) -> Path:
        return self.directory / f"{spec.key()}.mp4"

    def _remember(self, clip: Clip) -> Clip:
        self._clips[clip.spec] = clip
        self._clips.move_to_end(clip.spec)
        while len(self._clips) > self.max_in_memory:
            self._clips.popitem(last=False)
        return clip

    def load_or_make(self, spec: ClipSpec) -> Clip:
        """Blocking: the clip from disk, or encoded and saved."""
        path = self.path(spec)
        try:
            data = path.read_bytes()
            self.read_from_disk += 1
        except FileNotFoundError:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".clip-", suffix=".mp4", dir=self.directory)
            os.close(fd)
            try:
                encode(spec, Path(tmp))
                os.replace(tmp, path)  # other processes see the whole file or none
            finally:
                Path(tmp).unlink(missing_ok=True)
            self.encoded += 1
            data = path.read_bytes()
        return Clip(spec, data, hashlib.sha256(data).hexdigest())

    def get_now(self, spec: ClipSpec) -> Clip:
        clip = self._clips.get(spec)
        if clip is not None:
            self._clips.move_to_end(spec)
            return clip
        return self._remember(self.load_or_make(spec))

    async def get(self, spec: ClipSpec) -> Clip:
        clip = self._clips.get(spec)
        if clip is not None:
            self._clips.move_to_end(spec)
            return clip
        making = self._making.get(spec)
        if making is None:  # one encode per spec, however many devices ask at once
            making = self._making[spec] = asyncio.ensure_future(asyncio.to_thread(self.load_or_make, spec))
            making.add_done_callback(lambda _f: self._making.pop(spec, None))
        return self._remember(await asyncio.shield(making))
