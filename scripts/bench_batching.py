#!/usr/bin/env python3
"""Does batching by length pay on real data? verify's transformers scoring of a mixed-length pair set, batched by
length against batched in file order, side by side.

    .venv/bin/python scripts/bench_batching.py            # 0.6B shape on this machine's CPU (about 10 minutes)
    .venv/bin/python scripts/bench_batching.py --quick    # tiny shape, one run each (the smoke test)

Real evaluation sets mix documents whose lengths vary by 10x or more; batches cut in file order pad every prompt to
the longest of its batch. seqcls' reference scoring (``converter.reference``) sorts each window of 256 prompts by
length before it cuts batches, and puts the scores back in input order. Both ways score the same converted checkpoint
(synthesized, random weights of the real shape, see bench_shapes.py) on the same ids: official prompts whose
documents are drawn log-uniform between --shortest and --longest tokens. Each way runs in its own process, the two
interleaved in an order that alternates every run. Reported: medians of real (unpadded) tokens/s and pairs/s, the
padding share, peak RSS, and the largest score difference between the two (it must be within float32 noise).
Results as Markdown: a section of --out (default: docs/benchmarks.md; --quick: the workdir's batching.md).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WAYS = ("file order", "by length")


def worker(args: argparse.Namespace) -> None:
    """One way in this process: prints one JSON line."""
    from converter.reference import score_converted

    ids = json.loads(Path(args.ids).read_text())
    by_length = args.way == "by length"
    score_converted(args.converted, ids[: args.batch], pad_id=args.pad, batch_size=args.batch)  # warm-up
    started = time.perf_counter()
    scores = score_converted(args.converted, ids, pad_id=args.pad, batch_size=args.batch, by_length=by_length)
    seconds = scores.score_seconds
    print(json.dumps({"seconds": seconds, "wall": time.perf_counter() - started, "scores": scores.probabilities,
                      "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))  # fmt: skip


def padded_tokens(ids: list[list[int]], batch: int, by_length: bool) -> int:
    from converter.reference import _batches

    return sum(int(mask.numel()) for _, mask, _, _ in _batches(ids, 0, "left", batch, by_length))


def prepare(args: argparse.Namespace) -> tuple[Path, Path, int]:
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_shapes
    from transformers import AutoTokenizer

    from converter.pairs import LONG_FILLER, RANKING, Pair
    from converter.recipes import QWEN3_RERANKER
    from converter.reference import encode_official

    original, converted = bench_shapes.synthesized_conversion(args.shape, args.workdir)
    tokenizer = AutoTokenizer.from_pretrained(original)
    filler = tokenizer.encode(LONG_FILLER * (args.longest // 30 + 2))
    rng = random.Random(0)
    pairs = []
    for i in range(args.pairs):
        n = round(math.exp(rng.uniform(math.log(args.shortest), math.log(args.longest))))
        pairs.append(Pair(RANKING[i % len(RANKING)].query, tokenizer.decode(filler[:n])))
    ids = encode_official(tokenizer, QWEN3_RERANKER, pairs)
    ids_file = args.workdir / "batching-ids.json"
    ids_file.write_text(json.dumps(ids))
    return converted, ids_file, tokenizer.pad_token_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="0.6B", help="tiny, 0.6B, 4B or 8B (default: %(default)s)")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--shortest", type=int, default=24, help="document tokens, at least")
    parser.add_argument("--longest", type=int, default=480, help="document tokens, at most")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench")
    parser.add_argument("--out", type=Path, help="the Markdown results (default: docs/benchmarks.md; --quick: workdir)")
    parser.add_argument("--quick", action="store_true", help="tiny shape, 32 pairs, one run each")
    parser.add_argument("--worker", dest="way", help=argparse.SUPPRESS)
    for hidden in ("--converted", "--ids"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--pad", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way:
        return worker(args)
    if args.quick:
        args.shape, args.pairs, args.runs = "tiny", 32, 1
    args.workdir.mkdir(parents=True, exist_ok=True)
    converted, ids_file, pad = prepare(args)
    common = ["--converted", str(converted), "--ids", str(ids_file), "--batch", str(args.batch), "--pad", str(pad)]
    results: dict[str, list[dict]] = {w: [] for w in WAYS}
    for run in range(args.runs):
        for way in WAYS[run % 2 :] + WAYS[: run % 2]:
            cmd = [sys.executable, __file__, "--worker", way, *common]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise SystemExit(f"{way} failed:\n{out.stderr[-3000:]}")
            results[way].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"run {run + 1}/{args.runs}: {way} {results[way][-1]['seconds']:.1f} s", file=sys.stderr)
    text = report(args, json.loads(ids_file.read_text()), results)
    out = args.out or (args.workdir / "batching.md" if args.quick else ROOT / "docs" / "benchmarks.md")
    from bench_common import write_section

    write_section(out, "batching", text)
    print(text)
    print(f"wrote {out}", file=sys.stderr)


def report(args: argparse.Namespace, ids: list[list[int]], results: dict[str, list[dict]]) -> str:
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_common import machine

    real = sum(map(len, ids))
    lengths = sorted(map(len, ids))
    rows = ["| batching | tokens/s (median) | pairs/s | padding share | peak RSS |", "|---|---|---|---|---|"]
    rate = {}
    for way, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        rate[way] = real / seconds
        padded = padded_tokens(ids, args.batch, way == "by length")
        peak = statistics.median(r["peak_bytes"] for r in runs)
        rows.append(
            f"| {way} | {rate[way]:,.0f} | {len(ids) / seconds:.2f} | {1 - real / padded:.0%} | "
            f"{peak / 2**30:.2f} GiB |"
        )
    a, b = (results[w][0]["scores"] for w in WAYS)
    return "\n".join(
        [
            "## Batching by length",
            "",
            f"Generated by `scripts/bench_batching.py` on {time.strftime('%Y-%m-%d')}: {machine()}. Shape "
            f"{args.shape} converted (random weights, real vocabulary), float32, CPU, batch {args.batch}; {len(ids)} "
            f"official prompts of {lengths[0]}–{lengths[-1]} tokens (median {statistics.median(lengths):.0f}; "
            f"documents log-uniform {args.shortest}–{args.longest}), {args.runs} interleaved run(s) per way, "
            "each in its own process after a warm-up batch. tokens/s counts real tokens, not padding.",
            "",
            *rows,
            "",
            f"By length: {rate['by length'] / rate['file order']:.2f}× the tokens/s of file order. Largest |Δscore| "
            f"between the two: {max(abs(x - y) for x, y in zip(a, b)):.1e} (float32).",
            "",
        ]
    )


if __name__ == "__main__":
    main()
