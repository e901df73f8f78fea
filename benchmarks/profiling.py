"""``run_all.py --profile``: record the server process with py-spy while a scenario's load runs.

For each profiled load window this writes, under ``benchmarks/.data/profiles/``:

- ``<scenario>-<label>.raw.txt``: py-spy's collapsed stacks (one ``frame;frame;... count`` line each,
  rooted at the process and thread), the input of any flame graph tool;
- ``<scenario>-<label>.svg``: a flame graph of them (icicle layout: callers on top; hover for counts);
- ``<scenario>-<label>.top.txt``: busy samples per thread, then the functions with the most samples
  on the CPU themselves ("self") and under them ("total"), as the summary to paste into NOTES.md.
  Samples whose innermost frame is a blocking wait (the event loop's ``select``, an aiosqlite or
  executor thread's queue ``get``, a condition ``wait``; recognised from the source line) are counted
  apart and left out of the percentages.

py-spy is not a project dependency: ``pip install py-spy`` (into the venv). It samples at 100 Hz with
``--nonblocking`` (the server is not paused per sample) and ``--subprocesses`` (``--workers``
children too). The figures of a profiled run are perturbed by the sampler;
``run_all.py`` does not write RESULTS.md or benchmarks/results.json for one.

Also usable on its own on a raw file: ``python benchmarks/profiling.py FILE.raw.txt [SECONDS]`` prints the
summary.
"""

from __future__ import annotations

import functools
import html
import linecache
import re
import shutil
import signal
import subprocess
import sys
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

PROFILES = Path(__file__).resolve().parent / ".data" / "profiles"
RATE = 100


def py_spy() -> str | None:
    return shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")


class Profiler:
    """Context manager: py-spy records ``pid`` (and its children) from ``__enter__`` to ``__exit__``."""

    def __init__(self, ctx: Any, pid: int, name: str) -> None:
        self.ctx, self.pid = ctx, pid
        self.name = re.sub(r"[^\w.-]+", "-", name).strip("-") or "profile"
        self.proc: subprocess.Popen | None = None
        self.raw = PROFILES / f"{self.name}.raw.txt"
        self.t0 = 0.0

    def __enter__(self) -> "Profiler":
        exe = py_spy()
        if exe is None:
            self.ctx.say("profile: py-spy is not installed (pip install py-spy); not profiling")
            return self
        PROFILES.mkdir(parents=True, exist_ok=True)
        self.raw.unlink(missing_ok=True)
        self.log = open(PROFILES / f"{self.name}.py-spy.log", "wb")
        self.proc = subprocess.Popen([exe, "record", "--pid", str(self.pid), "--rate", str(RATE), "--format", "raw",
                                      "--output", str(self.raw), "--threads", "--subprocesses", "--nonblocking"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.t0 = time.monotonic()
        self.ctx.say(f"profile: recording pid {self.pid} as {self.name}")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is None:
            return
        seconds = time.monotonic() - self.t0
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        if not self.raw.exists():
            self.ctx.say(f"profile: py-spy wrote nothing; see {self.log.name}")
            return
        stacks = read_raw(self.raw)
        (PROFILES / f"{self.name}.top.txt").write_text(summary(stacks, seconds, self.name))
        (PROFILES / f"{self.name}.svg").write_text(flamegraph(stacks, self.name))
        self.ctx.say(f"profile: {sum(stacks.values())} samples over {seconds:.0f}s -> "
                     f"{(PROFILES / self.name).relative_to(PROFILES.parent.parent)}.{{svg,top.txt,raw.txt}}")


def read_raw(path: Path) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


_FRAME = re.compile(r"^(.*) \(([^()]*?)(?::\d+)?\)$")


def function_of(frame: str) -> str:
    """``name (file.py:123)`` -> ``name (file.py)``: samples of one function at any line together."""
    m = _FRAME.match(frame)
    return f"{m.group(1)} ({m.group(2)})" if m else frame


def _split(stack: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """(thread label, Python frames) of a py-spy stack rooted at ``process ...;thread ...``."""
    i = 0
    label = []
    while i < len(stack) and (stack[i].startswith("process ") or stack[i].startswith("thread (")):
        label.append(stack[i].split(":", 1)[0] if stack[i].startswith("process ") else stack[i])
        i += 1
    return " / ".join(label) or "-", stack[i:]


_LOCATED = re.compile(r"^.* \(([^()]*?):(\d+)\)$")
#: a leaf frame on one of these source lines is a thread waiting (py-spy's idle detection misses them
#: with --nonblocking): the event loop's select, a worker thread's queue get, a condition wait
_WAITING = re.compile(r"\.(select|get|wait|poll|acquire|recv|accept)\(|\bsleep\(")


@functools.cache
def _source_line(short: str, line: int) -> str:
    """The source line of a py-spy frame's short file name (``aiosqlite/core.py``, ``selectors.py``)."""
    for base in sys.path:
        path = Path(base or ".") / short
        if path.is_file():
            return linecache.getline(str(path), line)
    return ""


def waiting(frame: str) -> bool:
    m = _LOCATED.match(frame)
    return bool(m) and bool(_WAITING.search(_source_line(m.group(1), int(m.group(2)))))


def summary(stacks: Counter[tuple[str, ...]], seconds: float, name: str, top: int = 30) -> str:
    per_thread: Counter[str] = Counter()
    idle_thread: Counter[str] = Counter()
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    for stack, n in stacks.items():
        thread, frames = _split(stack)
        if frames and waiting(frames[-1]):
            idle_thread[thread] += n
            continue
        per_thread[thread] += n
        if frames:
            self_t[function_of(frames[-1])] += n
        for f in {function_of(f) for f in frames}:
            incl[f] += n
    total = sum(per_thread.values()) or 1
    ticks = max(1, round(seconds * RATE))
    out = [f"# {name}: {sum(stacks.values())} samples in {seconds:.1f}s at {RATE} Hz ({ticks} ticks per thread)",
           f"{sum(idle_thread.values())} samples of threads waiting in a blocking call (select, queue get, wait) are "
           f"left out; {total} busy samples remain.", "",
           "## busy samples per thread (share of the ticks: how busy the thread was)"]
    for t, n in per_thread.most_common(12):
        out.append(f"{n:8d}  {n / ticks:6.1%}  {t}")
    out += ["", f"## top {top} functions by self samples (% of the busy samples)"]
    for f, n in self_t.most_common(top):
        out.append(f"{n:8d}  {n / total:6.1%}  {f}")
    out += ["", f"## top {top} functions by total samples (the function or anything it called)"]
    for f, n in incl.most_common(top):
        out.append(f"{n:8d}  {n / total:6.1%}  {f}")
    return "\n".join(out) + "\n"


def flamegraph(stacks: Counter[tuple[str, ...]], title: str, width: int = 1600, row: int = 17) -> str:
    """A self-contained SVG flame graph (icicle: root on top) of collapsed stacks."""
    def node() -> dict[str, Any]:
        return {"n": 0, "c": {}}
    tree = node()
    for stack, n in stacks.items():
        tree["n"] += n
        cur = tree
        for f in stack:
            cur = cur["c"].setdefault(f, node())
            cur["n"] += n
    total = tree["n"] or 1
    rects: list[str] = []
    depth_max = 0

    def walk(t: dict[str, Any], x: float, depth: int) -> None:
        nonlocal depth_max
        for name, child in sorted(t["c"].items(), key=lambda kv: -kv[1]["n"]):
            w = child["n"] / total * width
            if w < 0.5:
                x += w
                continue
            depth_max = max(depth_max, depth)
            y = 24 + depth * row
            hue = 10 + zlib.crc32(function_of(name).encode()) % 40
            label = html.escape(name)
            text = label if w > 40 else ""
            if text and len(name) * 6.5 > w - 6:
                text = html.escape(name[:max(0, int((w - 6) / 6.5) - 2)]) + ".."
            rects.append(f'<g><title>{label} ({child["n"]} samples, {child["n"] / total:.2%})</title>'
                         f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 1}" fill="hsl({hue},85%,60%)"/>'
                         + (f'<text x="{x + 3:.1f}" y="{y + row - 5}">{text}</text>' if text and len(text) > 2 else "")
                         + "</g>")
            walk(child, x, depth + 1)
            x += w
    walk(tree, 0.0, 0)
    height = 24 + (depth_max + 2) * row
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'style="font: 11px monospace"><rect width="100%" height="100%" fill="#fff"/>'
            f'<text x="4" y="16">{html.escape(title)}: {total} samples (hover a frame for its count)</text>'
            + "".join(rects) + "</svg>\n")


if __name__ == "__main__":
    raw = Path(sys.argv[1])
    s = read_raw(raw)
    # the recording's length: given, or at least the busiest thread's samples
    per_thread: Counter[str] = Counter()
    for k, v in s.items():
        per_thread[_split(k)[0]] += v
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else max(per_thread.values(), default=0) / RATE
    print(summary(s, secs, raw.stem))
