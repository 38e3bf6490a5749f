#!/usr/bin/env python3
"""`seqcls export gguf` against `cp -r` (time, peak RSS) at the real Qwen3-Reranker shapes, and llama.cpp's scoring
throughput of the exported types against transformers on the converted checkpoint, side by side in one run.

    .venv/bin/python scripts/bench_gguf.py                 # 0.6B and 8B export, 0.6B scoring; writes docs/benchmarks.md
    .venv/bin/python scripts/bench_gguf.py --quick         # tiny shape, 1 run, outputs in --workdir (the smoke test)

Checkpoints are synthesized once (random bf16, scripts/bench_shapes.py) into --workdir (default bench/) and
converted by seqcls. Export and copy run interleaved, each in its own process with `sync` after it; peak RSS is the
largest resident set of the process tree. Scoring runs each engine on the same pairs in an order rotated every run;
tables report medians and ratios from the same run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import du, machine, run_once, write_section
from bench_shapes import synthesized_conversion

ROOT = Path(__file__).resolve().parents[1]
SCORED_TYPES = ("f16", "q8_0", "q4_k_m")
DOCUMENT = "Reranking orders candidate passages by how well they answer a query, so a search system shows the best. "


def bench_export(shape: str, workdir: Path, runs: int) -> dict:
    _, converted = synthesized_conversion(shape, workdir)
    out = workdir / "gguf-out"
    methods = {
        "seqcls export gguf --type f16": [sys.executable, "-m", "converter", "export", "gguf", str(converted), "-o",
                                          str(out), "--type", "f16"],
        "cp -r": ["cp", "-r", str(converted), str(out)],
    }  # fmt: skip
    results = {m: {"seconds": [], "rss": [], "bytes": []} for m in methods}
    order = list(methods)
    for i in range(runs):
        for method in order[i % len(order) :] + order[: i % len(order)]:
            shutil.rmtree(out, ignore_errors=True)
            subprocess.run(["sync"], check=True)
            seconds, rss = run_once(methods[method], workdir)
            results[method]["seconds"].append(seconds)
            results[method]["rss"].append(rss)
            results[method]["bytes"].append(du(out))
            print(f"{shape} run {i + 1}/{runs}: {method} {seconds:.1f} s, {rss / 2**20:.0f} MiB", file=sys.stderr)
    shutil.rmtree(out, ignore_errors=True)
    return {"shape": shape, "source_bytes": du(converted), "runs": runs, "methods": results}


def pairs(n: int, words: int) -> list[tuple[str, str]]:
    body = (DOCUMENT * (words // len(DOCUMENT.split()) + 1)).split()[:words]
    return [(f"What does reranking do? ({i})", " ".join(body[i % 7 :])) for i in range(n)]


def bench_scoring(shape: str, workdir: Path, runs: int, n_pairs: int, words: int) -> dict:
    """Pairs/s and tokens/s of llama.cpp on each type and of transformers (float32 and bfloat16) on the converted
    checkpoint, on the same official prompts, 4 threads or the machine's cores."""
    import torch

    from converter.export import export_gguf
    from converter.export.llamacpp import RankModel
    from converter.recipes import QWEN3_RERANKER
    from converter.reference import score_converted
    from converter.verify.backends.base import load_tokenizer

    _, converted = synthesized_conversion(shape, workdir)
    folder = workdir / f"{shape}-gguf"
    if not all((folder / f"{converted.name}-{t.upper()}.gguf").is_file() for t in SCORED_TYPES):
        export_gguf(converted, folder, types=SCORED_TYPES, overwrite=True)
    tokenizer = load_tokenizer(converted)
    prompts = [
        tokenizer.encode(QWEN3_RERANKER.format_pair(q, d), add_special_tokens=False) for q, d in pairs(n_pairs, words)
    ]
    tokens = sum(map(len, prompts))
    pad = tokenizer.pad_token_id

    def llama(type_: str):
        def run() -> float:
            with RankModel(folder / f"{converted.name}-{type_.upper()}.gguf", n_ctx=4096) as model:
                started = time.perf_counter()
                list(model.scores(prompts))
                return time.perf_counter() - started

        return run

    def hf(dtype: str):
        def run() -> float:
            result = score_converted(converted, prompts, pad_id=pad, dtype=dtype, batch_size=8, device="cpu")
            return result.score_seconds

        return run

    methods = {f"llama.cpp {t}": llama(t) for t in SCORED_TYPES}
    methods |= {"transformers float32": hf("float32"), "transformers bfloat16": hf("bfloat16")}
    seconds = {m: [] for m in methods}
    order = list(methods)
    torch.set_num_threads(torch.get_num_threads())
    for i in range(runs):
        for method in order[i % len(order) :] + order[: i % len(order)]:
            seconds[method].append(methods[method]())
            print(f"{shape} scoring run {i + 1}/{runs}: {method} {seconds[method][-1]:.1f} s", file=sys.stderr)
    sizes = {t: (folder / f"{converted.name}-{t.upper()}.gguf").stat().st_size for t in SCORED_TYPES}
    return {"shape": shape, "pairs": n_pairs, "tokens": tokens, "runs": runs, "seconds": seconds, "gguf_bytes": sizes}


def export_table(results: list[dict]) -> str:
    rows = ["| shape | method | median s (min–max) | vs cp -r | peak RSS | output |", "|---|---|---|---|---|---|"]
    for r in results:
        cp = statistics.median(r["methods"]["cp -r"]["seconds"])
        for method, m in r["methods"].items():
            s = statistics.median(m["seconds"])
            rows.append(
                f"| {r['shape']} ({r['source_bytes'] / 1e9:.1f} GB) | {method} | {s:.2f} ({min(m['seconds']):.2f}–"
                f"{max(m['seconds']):.2f}) | {s / cp:.2f}× | {statistics.median(m['rss']) / 2**20:,.0f} MiB | "
                f"{statistics.median(m['bytes']) / 1e9:.2f} GB |"
            )
    return "\n".join(rows)


def scoring_table(r: dict) -> str:
    base = statistics.median(r["seconds"]["transformers float32"])
    rows = ["| engine | file | median s | pairs/s | tokens/s | vs transformers float32 |", "|---|---|---|---|---|---|"]
    for method, runs in r["seconds"].items():
        s = statistics.median(runs)
        size = next((f"{b / 2**20:,.0f} MiB" for t, b in r["gguf_bytes"].items() if method.endswith(t)), "safetensors")
        rows.append(
            f"| {method} | {size} | {s:.2f} | {r['pairs'] / s:.2f} | {r['tokens'] / s:,.0f} | {base / s:.2f}× |"
        )
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, default=ROOT / "bench")
    p.add_argument("--quick", action="store_true", help="tiny shape, 1 run, nothing written to docs/")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--export-shapes", nargs="+", default=["0.6B", "8B"])
    p.add_argument("--pairs", type=int, default=32)
    p.add_argument("--words", type=int, default=180)
    args = p.parse_args()
    shapes, runs, scored = (["tiny"], 1, "tiny") if args.quick else (args.export_shapes, args.runs, "0.6B")
    args.workdir.mkdir(parents=True, exist_ok=True)
    exports = [bench_export(s, args.workdir, runs if s != "8B" else 1) for s in shapes]
    n_pairs, words = (4, 40) if args.quick else (args.pairs, args.words)
    scoring = bench_scoring(scored, args.workdir, runs, n_pairs, words)
    (args.workdir / "gguf-results.json").write_text(json.dumps({"export": exports, "scoring": scoring}, indent=2))
    text = f"""## GGUF export and llama.cpp scoring (scripts/bench_gguf.py)

{machine()}. Synthetic checkpoints of the real shapes (random bf16), converted by seqcls, then exported to f16 GGUF
against a plain copy of the converted folder; 8B measured once (its 16 GB each way), smaller shapes {runs} runs.

{export_table(exports)}

Scoring at the {scored} shape: {scoring["pairs"]} official prompts ({scoring["tokens"]:,} tokens), each engine on
all of them, {runs} runs in rotated order, medians; llama.cpp through its library with rank pooling (prompts packed
up to 4,096 tokens a batch), transformers on the converted checkpoint in batches of 8. Peak RSS of the export is
the vocabulary (Qwen's 151k tokens and 294k merges as Python strings), the same at both shapes: tensors stream a
32 MiB slice at a time. In embeddings mode llama.cpp outputs every token (`output_all` in `llama-context.cpp`), so
its graph multiplies every token's state by the 151,669-row output matrix that rank pooling then ignores, about a
quarter of the 0.6B model's work per token; llama-server pays the same.

{scoring_table(scoring)}
"""
    target = args.workdir / "benchmarks.md" if args.quick else ROOT / "docs" / "benchmarks.md"
    write_section(target, "gguf", text)
    print(text)


if __name__ == "__main__":
    main()
