"""Run the benchmark scenarios, print the table, write RESULTS.md and results.json.

    python benchmarks/run_all.py                 # all of them (make bench), < 20 minutes on 2 cores
    python benchmarks/run_all.py --only 1,5      # some of them
    python benchmarks/run_all.py --quick         # smaller sizes, for a smoke run
    python benchmarks/run_all.py --only 6 --profile   # py-spy flame graphs under benchmarks/.data/profiles/

A full run (all scenarios, not quick, not profiled) writes benchmarks/RESULTS.md and
benchmarks/results.json; any other run writes the same two files under benchmarks/.data/last-run/
(so a partial run never replaces the full figures; ``--output DIR`` chooses another folder).
Compare two runs with ``python benchmarks/compare.py A.json B.json``.

Each scenario starts its own servers (the real one as ``python -m truckx_server`` in its own process,
the bare baselines from this folder) on free 127.0.0.1 ports and stops them; nothing outlives the run.
Other processes on the machine skew the figures: the load average is recorded next to each scenario.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import BENCH, DATA, Context, Row, loadavg, machine, machine_info, raise_fd_limit  # noqa: E402

SCENARIOS = {"1": "s1_ingest", "2": "s2_sessions", "4": "s4_commands", "3": "s3_storm", "5": "s5_upload",
             "6": "s6_queries", "7": "s7_alarms", "8": "s8_retention", "9": "s9_geofences"}
RESULTS_VERSION = 1


def fmt(v: object) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 1 else f"{v:,.2f}".rstrip("0").rstrip(".")
    if isinstance(v, int):
        return f"{v:,}"
    return "-" if v is None else str(v)


def ratio_text(r: Row) -> str:
    return f"{r.ratio:.2f}x" if r.ratio is not None else "-"


def met_text(r: Row, md: bool = True) -> str:
    if r.status == "unsupported":
        return "n/a"
    return {True: "yes", False: "**no**" if md else "NO", None: "-"}[r.met]


def markdown(rows: list[Row], ctx: Context, started: str, elapsed: float, loads: dict[str, dict],
             argv: str) -> str:
    out = [
        "# truckx benchmark results", "",
        f"- date: {started} (took {elapsed / 60:.1f} min)",
        f"- machine: {machine()}",
        "- load generator on the same machine; everything over 127.0.0.0/8",
        f"- command: `{argv}`",
        "- load average (1 min) when each scenario started / ended: "
        + ", ".join(f"{k}: {v['start'][0]} / {v['end'][0]}" for k, v in loads.items()),
        "", "Other work on this machine (tests of other engineers, builds) shares the 2 cores, so absolute "
        "figures are noisy; every target is a ratio to a baseline measured by the same client in the same run "
        "(value / baseline). Rows marked n/a need a server feature this server does not have yet.", "",
        "| scenario | metric | value | baseline (same run) | ratio | target | met | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = f"{fmt(r.baseline)} ({r.baseline_name})" if r.baseline is not None else "-"
        val = f"{fmt(r.value)} {r.unit}".strip()
        out.append(f"| {r.scenario} | {r.metric} | {val} | {base} | {ratio_text(r)} | {r.target} | {met_text(r)} "
                   f"| {r.note} |")
    out += ["", "## Commands", ""] + [f"- `{c}`" for c in ctx.commands]
    out += ["", "## Log", "", "```"] + ctx.log + ["```", ""]
    notes = BENCH / "NOTES.md"
    if notes.exists():
        out += ["", notes.read_text()]
    return "\n".join(out)


def results_json(rows: list[Row], row_runs: list[str], started: str, elapsed: float, loads: dict[str, dict],
                 argv: str, args: argparse.Namespace) -> dict:
    out = []
    for r, run in zip(rows, row_runs):
        d = r.to_json()
        # which scenario run measured it, and the 1-minute load average at its start and end
        d.update(run=run, load=[loads[run]["start"][0], loads[run]["end"][0]])
        out.append(d)
    return {"version": RESULTS_VERSION, "date": started, "elapsed_s": round(elapsed, 1), "command": argv,
            "quick": args.quick, "profile": args.profile, "scenarios_run": list(loads),
            "machine": machine_info(), "scenarios": loads, "rows": out}


def print_table(rows: list[Row]) -> None:
    from rich.console import Console
    from rich.table import Table
    table = Table(title="truckx benchmarks (ratio = value / baseline, same run)")
    for col in ("scenario", "metric", "value", "baseline", "ratio", "target", "met"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.scenario, r.metric, f"{fmt(r.value)} {r.unit}".strip(),
                      f"{fmt(r.baseline)}" if r.baseline is not None else "-", ratio_text(r), r.target,
                      met_text(r, md=False))
    Console(width=max(170, Console().width)).print(table)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--only", default="", help="comma-separated scenario numbers (default: all, in the order "
                   + ",".join(SCENARIOS) + ")")
    p.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    p.add_argument("--profile", action="store_true",
                   help="record the server with py-spy under each scenario's load (pip install py-spy); "
                        "writes benchmarks/.data/profiles/")
    p.add_argument("--output", default="", help="folder for RESULTS.md and results.json (default: benchmarks/ "
                   "for a full run, benchmarks/.data/last-run/ otherwise)")
    args = p.parse_args()
    raise_fd_limit()
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or list(SCENARIOS)
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    full = set(chosen) == set(SCENARIOS) and not args.quick and not args.profile
    out_dir = Path(args.output) if args.output else (BENCH if full else DATA / "last-run")
    ctx = Context(quick=args.quick, profile=args.profile)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    t0 = time.monotonic()
    rows: list[Row] = []
    row_runs: list[str] = []
    loads: dict[str, dict] = {}
    for key in chosen:
        name = SCENARIOS[key]
        ctx.scenario = f"s{key}"
        loads[key] = {"name": name, "start": loadavg()}
        ctx.say(f"== scenario {key}: {name} (load average {loads[key]['start'][0]})")
        t = time.monotonic()
        try:
            got = importlib.import_module(name).run(ctx)
        except Exception as exc:  # one broken scenario must not hide the others
            traceback.print_exc()
            got = [Row(name, "scenario failed", f"{type(exc).__name__}: {exc}"[:200], "", None, "", "", False,
                       key=f"s{key}.failed", status="failed")]
        loads[key].update(end=loadavg(), seconds=round(time.monotonic() - t, 1))
        for r in got:
            r.note = (r.note + "; " if r.note else "") + f"load {loads[key]['start'][0]}"
        rows += got
        row_runs += [key] * len(got)
        ctx.say(f"== scenario {key} took {time.monotonic() - t:.0f}s (load average {loads[key]['end'][0]})")
    elapsed = time.monotonic() - t0

    print_table(rows)
    argv = ("python benchmarks/run_all.py " + " ".join(sys.argv[1:])).strip()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "RESULTS.md").write_text(markdown(rows, ctx, started, elapsed, loads, argv))
    (out_dir / "results.json").write_text(json.dumps(results_json(rows, row_runs, started, elapsed, loads, argv, args),
                                                     indent=1, default=str) + "\n")
    print(f"wrote {out_dir / 'RESULTS.md'} and results.json ({elapsed / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
