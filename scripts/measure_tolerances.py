#!/usr/bin/env python3
"""Measure original-vs-converted score differences per dtype and backend, to ground verify's default tolerances.

    .venv/bin/python scripts/measure_tolerances.py [--workdir bench/tolerances] [--backends transformers,vllm]

Builds tiny originals with the real vocabulary, converts them, and runs ``verify`` with a tolerance of 1 so that
nothing fails, then prints max and mean abs Δscore and max abs Δlogit for each (fixture, dtype, backend).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from converter import convert
from converter.report import markdown_table
from converter.tiny_model import build_tiny_reranker
from converter.verify import verify

FIXTURES = {"tied-bf16": {"tied": True, "dtype": "bfloat16"}, "untied-fp16": {"tied": False, "dtype": "float16"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("bench/tolerances"))
    parser.add_argument("--backends", default="transformers,vllm")
    parser.add_argument("--dtypes", default="float32,bfloat16,float16")
    args = parser.parse_args()
    rows = []
    for name, options in FIXTURES.items():
        src = args.workdir / name
        if not (src / "config.json").is_file():
            build_tiny_reranker(src, **options)
        out = args.workdir / f"{name}-seq-cls"
        convert(src, out, overwrite=True)
        for backend in args.backends.split(","):
            for dtype in args.dtypes.split(","):
                report = verify(out, src, backend=backend, dtype=dtype, atol=1.0, log_dir=args.workdir / "logs")
                m = report["metrics"]
                logit = "n/a" if m["max_abs_logit_delta"] is None else f"{m['max_abs_logit_delta']:.2e}"
                rows.append((name, backend, dtype, f"{m['max_abs_delta']:.2e}", f"{m['mean_abs_delta']:.2e}", logit))
                print(rows[-1], file=sys.stderr)
    print(markdown_table(("fixture", "backend", "dtype", "max abs Δscore", "mean abs Δscore", "max abs Δlogit"), rows))


if __name__ == "__main__":
    main()
