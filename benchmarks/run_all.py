"""Run every benchmark scenario, print the table and write benchmarks/RESULTS.md.

    python benchmarks/run_all.py                 # all six (make bench), < 15 minutes
    python benchmarks/run_all.py --only 1,5      # some of them
    python benchmarks/run_all.py --quick         # smaller sizes, for a smoke run

Each scenario starts its own servers (the real one as ``python -m truckx_server`` in its own process,
the bare baselines from this folder) on free 127.0.0.1 ports and stops them; nothing outlives the run.
Other processes on the machine skew the figures: the load average is recorded next to each scenario.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import BENCH, Context, Row, machine, raise_fd_limit  # noqa: E402

SCENARIOS = {"1": "s1_ingest", "2": "s2_sessions", "4": "s4_commands", "3": "s3_storm", "5": "s5_upload",
             "6": "s6_queries"}


def fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}".rstrip("0").rstrip(".") if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return "-" if v is None else str(v)


def markdown(rows: list[Row], ctx: Context, started: str, elapsed: float, loads: dict[str, str], argv: str) -> str:
    out = [
        "# truckx benchmark results", "",
        f"- date: {started} (took {elapsed / 60:.1f} min)",
        f"- machine: {machine()}",
        "- load generator on the same machine; everything over 127.0.0.0/8",
        f"- command: `{argv}`",
        "- load average (1 min) when each scenario started: " + ", ".join(f"{k}: {v}" for k, v in loads.items()),
        "", "Other work on this machine (tests of other engineers, builds) shares the 2 cores, so absolute "
        "figures are noisy; the ratios compare runs made minutes apart in the same conditions.", "",
        "| scenario | metric | value | baseline (same run) | ratio | target | met | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = f"{fmt(r.baseline)} ({r.baseline_name})" if r.baseline is not None else "-"
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        met = {True: "yes", False: "**no**", None: "-"}[r.met]
        val = f"{fmt(r.value)} {r.unit}".strip()
        out.append(f"| {r.scenario} | {r.metric} | {val} | {base} | {ratio} | {r.target} | {met} | {r.note} |")
    out += ["", "## Commands", ""] + [f"- `{c}`" for c in ctx.commands]
    out += ["", "## Log", "", "```"] + ctx.log + ["```", ""]
    notes = BENCH / "NOTES.md"
    if notes.exists():
        out += ["", notes.read_text()]
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--only", default="", help="comma-separated scenario numbers (default: all)")
    p.add_argument("--quick", action="store_true", help="smaller sizes (smoke run; not for RESULTS.md)")
    p.add_argument("--output", default=str(BENCH / "RESULTS.md"))
    args = p.parse_args()
    raise_fd_limit()
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or list(SCENARIOS)
    ctx = Context(quick=args.quick)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    t0 = time.monotonic()
    rows: list[Row] = []
    loads: dict[str, str] = {}
    for key in chosen:
        name = SCENARIOS[key]
        loads[key] = f"{os.getloadavg()[0]:.1f}"
        ctx.say(f"== scenario {key}: {name} (load average {loads[key]})")
        t = time.monotonic()
        try:
            rows += importlib.import_module(name).run(ctx)
        except Exception as exc:  # one broken scenario must not hide the others
            traceback.print_exc()
            rows.append(Row(name, "scenario failed", f"{type(exc).__name__}: {exc}"[:200], "", None, "", "", False))
        ctx.say(f"== scenario {key} took {time.monotonic() - t:.0f}s")
    elapsed = time.monotonic() - t0

    from rich.console import Console
    from rich.table import Table
    table = Table(title="truckx benchmarks")
    for col in ("scenario", "metric", "value", "baseline", "ratio", "target", "met"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.scenario, r.metric, f"{fmt(r.value)} {r.unit}".strip(),
                      f"{fmt(r.baseline)}" if r.baseline is not None else "-",
                      f"{r.ratio:.2f}x" if r.ratio is not None else "-", r.target,
                      {True: "yes", False: "NO", None: "-"}[r.met])
    Console(width=max(160, Console().width)).print(table)
    argv = "python benchmarks/run_all.py " + " ".join(sys.argv[1:])
    if not args.quick:
        Path(args.output).write_text(markdown(rows, ctx, started, elapsed, loads, argv.strip()))
        print(f"wrote {args.output} ({elapsed / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
