"""Real video clips for the tests, made with PyAV (its wheels bundle FFmpeg and libx264 / libvpx):
an H.264 MP4 with a moving bar on a gradient, so that a thumbnail has something to show."""

from __future__ import annotations

import functools
import io
from fractions import Fraction

import av


def _frame(i: int, width: int, height: int) -> av.VideoFrame:
    """A YUV 4:2:0 frame: a horizontal luma gradient, a bright bar moving right, colour changing slowly."""
    bar = (i * 8) % width
    row = bytes(min(255, 40 + x * 160 // width) if not bar <= x < bar + width // 10 else 235 for x in range(width))
    frame = av.VideoFrame(width, height, "yuv420p")
    y_plane, u_plane, v_plane = frame.planes
    y_plane.update((row + b"\x00" * (y_plane.line_size - width)) * height)
    for plane, value in ((u_plane, 90 + i % 60), (v_plane, 160 - i % 60)):
        plane.update(bytes([value]) * plane.buffer_size)
    return frame


@functools.lru_cache(maxsize=8)
def h264_mp4(seconds: float = 3.0, width: int = 640, height: int = 360, fps: int = 25) -> bytes:
    """An H.264 MP4 (moov at the end, as a camera writes it) of ``seconds``."""
    out_buf = io.BytesIO()
    with av.open(out_buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        for i in range(round(seconds * fps)):
            for packet in stream.encode(_frame(i, width, height)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return out_buf.getvalue()


@functools.lru_cache(maxsize=4)
def vp9_webm(seconds: float = 2.0, width: int = 320, height: int = 240, fps: int = 10) -> bytes:
    """A VP9 WebM of ``seconds``."""
    out_buf = io.BytesIO()
    with av.open(out_buf, "w", format="webm") as out:
        stream = out.add_stream("libvpx-vp9", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"deadline": "realtime", "cpu-used": "8"}
        stream.codec_context.time_base = Fraction(1, fps)
        for i in range(round(seconds * fps)):
            for packet in stream.encode(_frame(i, width, height)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return out_buf.getvalue()
