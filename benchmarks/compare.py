"""Compare two benchmark runs side by side: ``python benchmarks/compare.py A.json B.json``.

Rows are matched on their key. For every row with a ratio (value / its same-run baseline) it prints
both ratios and the change from A to B, and calls the change "worse" or "better" only when the ratio
moved by more than its noise factor in that direction; within it, "~" (noise). The noise factors per
kind of figure are in common.NOISE and README.md says where they come from; ``--noise tail=0.5``
overrides one. Rows without a ratio are listed with both values; a target that was met in A and is
missed in B is shown in the "met" column either way. Load averages per scenario of both runs are
printed first: a "worse" on a scenario whose load average differed a lot is worth a re-run.

Exit status: 0, or 1 when any row got worse beyond its noise (for scripts); 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import NOISE  # noqa: E402


def load(path: str) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or "rows" not in data:
        raise SystemExit(f"{path}: not a results.json written by run_all.py")
    return data


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.3g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def verdict(a: dict, b: dict, noise: dict[str, float]) -> tuple[str, str]:
    """(change text, verdict) of row ``a`` -> ``b``."""
    ra, rb = a.get("ratio"), b.get("ratio")
    if ra is None or rb is None or not ra:
        return "-", "-"
    factor = rb / ra
    change = f"{factor - 1:+.0%}"
    better, kind = b.get("better") or a.get("better"), b.get("kind") or a.get("kind")
    if not better or kind not in noise:
        return change, "-"
    limit = 1 + noise[kind]
    if better == "lower":
        factor = 1 / factor  # > 1 now means better
    if factor < 1 / limit:
        return change, "WORSE"
    if factor > limit:
        return change, "better"
    return change, "~"


def loads(scenario: dict | None) -> str:
    return f"{scenario['start'][0]} / {scenario['end'][0]}" if scenario else "-"


def met(row: dict | None) -> str:
    if row is None:
        return ""
    if row.get("status") == "unsupported":
        return "n/a"
    return {True: "yes", False: "no", None: "-"}[row.get("met")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", help="results.json of the earlier run")
    p.add_argument("b", help="results.json of the later run")
    p.add_argument("--noise", default="", help="override noise factors, e.g. tail=0.5,rate=0.15")
    args = p.parse_args(argv)
    noise = dict(NOISE)
    for item in filter(None, args.noise.split(",")):
        k, _, v = item.partition("=")
        try:
            noise[k.strip()] = float(v)
        except ValueError:
            p.error(f"--noise: {item!r} is not kind=number")
    a, b = load(args.a), load(args.b)
    out = ["| | A | B |", "|---|---|---|"]
    for label, key in (("date", "date"), ("command", "command"), ("minutes", "elapsed_s")):
        va, vb = a.get(key), b.get(key)
        if key == "elapsed_s":
            va, vb = va and round(va / 60, 1), vb and round(vb / 60, 1)
        out.append(f"| {label} | {va} | {vb} |")
    out.append(f"| commit | {a.get('machine', {}).get('git_commit')} | {b.get('machine', {}).get('git_commit')} |")
    out.append(f"| machine | {a.get('machine', {}).get('cpu')} | {b.get('machine', {}).get('cpu')} |")
    for sc in sorted(set(a.get("scenarios", {})) | set(b.get("scenarios", {}))):
        la, lb = a.get("scenarios", {}).get(sc), b.get("scenarios", {}).get(sc)
        out.append(f"| load avg, scenario {sc} (start / end) | {loads(la)} | {loads(lb)} |")
    print("\n".join(out))
    print()
    cores = min(a.get("machine", {}).get("cores") or 2, b.get("machine", {}).get("cores") or 2)
    busy = sorted(sc for run in (a, b) for sc, v in run.get("scenarios", {}).items()
                  if max(v["start"][0], v["end"][0]) > cores)
    if busy:
        print(f"WARNING: the load average exceeded the {cores} cores during scenario(s) "
              f"{', '.join(sorted(set(busy)))} in at least one run: the machine was shared, the noise factors below "
              "assume comparable, quiet runs, so re-run those before trusting a verdict there.")
        print()
    print("noise factors: " + ", ".join(f"{k} {v:.0%}" for k, v in noise.items())
          + " (a ratio must move by more than this factor to count as a change)")
    print()
    rows_a = {r["key"] or r["metric"]: r for r in a["rows"]}
    rows_b = {r["key"] or r["metric"]: r for r in b["rows"]}
    keys = list(rows_b) + [k for k in rows_a if k not in rows_b]
    table = ["| figure | A value | A ratio | B value | B ratio | change | verdict | met A -> B |",
             "|---|---|---|---|---|---|---|---|"]
    worse = 0
    for k in keys:
        ra, rb = rows_a.get(k), rows_b.get(k)
        row = rb or ra
        assert row is not None
        name = f"{row['scenario']}: {row['metric']}"
        if ra is None or rb is None:
            change, v = "-", "only in B" if ra is None else "only in A"
        else:
            change, v = verdict(ra, rb, noise)
        worse += v == "WORSE"

        def val(r: dict | None) -> str:
            return "" if r is None else f"{fmt(r['value'])} {r.get('unit') or ''}".strip()

        def rat(r: dict | None) -> str:
            return "" if r is None or r.get("ratio") is None else f"{r['ratio']:.2f}x"
        table.append(f"| {name} | {val(ra)} | {rat(ra)} | {val(rb)} | {rat(rb)} | {change} | {v} | "
                     f"{met(ra)} -> {met(rb)} |")
    print("\n".join(table))
    print()
    print(f"{worse} figure(s) worse beyond noise" if worse else "nothing worse beyond noise")
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main())
