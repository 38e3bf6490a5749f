#!/usr/bin/env python3
"""The converter's token table (``converter/tokenizer.py``) against reading the whole ``tokenizer.json`` with
``json.loads``, as it did before: time and peak memory of building the table, each way in its own process, the ways
alternated; medians. Every ``convert``, ``inspect`` and ``verify`` reads it at least once.

    .venv/bin/python scripts/bench_tokenizer_table.py path/to/tokenizer.json [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WAYS = ("json.loads", "converter")
CHILD = r"""
import json, resource, sys, time
from pathlib import Path

path, way = Path(sys.argv[1]), sys.argv[2]
from converter import tokenizer  # imported before the baseline: both ways pay the same imports

before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
if way == "json.loads":
    data = json.loads(path.read_bytes())
    ids = dict(data["model"]["vocab"].items())
    ids |= {t["content"]: t["id"] for t in data.get("added_tokens") or []}
else:
    ids = tokenizer._TokenTable(path).ids
seconds = time.perf_counter() - started
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
print(json.dumps({"seconds": seconds, "peak_growth_bytes": grown, "entries": len(ids)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tokenizer_json", type=Path)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {way: [] for way in WAYS}
    for run in range(args.runs):
        for way in WAYS if run % 2 == 0 else WAYS[::-1]:
            out = subprocess.run([sys.executable, "-c", CHILD, str(args.tokenizer_json), way], cwd=ROOT,
                                 capture_output=True, text=True, check=True)  # fmt: skip
            results[way].append(json.loads(out.stdout))
    entries = {r["entries"] for runs in results.values() for r in runs}
    if len(entries) != 1:
        raise SystemExit(f"the two ways read different tables: {sorted(entries)} entries")
    print(f"{args.tokenizer_json} ({args.tokenizer_json.stat().st_size / 1e6:.1f} MB, {entries.pop():,} entries), "
          f"{args.runs} run(s) each, medians:")  # fmt: skip
    print("| way | seconds | peak RSS growth |\n|---|---:|---:|")
    for way, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        grown = statistics.median(r["peak_growth_bytes"] for r in runs) / 2**20
        print(f"| {way} | {seconds:.3f} | {grown:.0f} MiB |")


if __name__ == "__main__":
    main()
