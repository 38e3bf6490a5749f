#!/usr/bin/env python3
"""Time and memory of `seqcls convert` against `cp -r` and a full-load baseline, on synthetic checkpoints of the
real Qwen3-Reranker shapes, plus what a verify run costs.

    .venv/bin/python scripts/bench_convert.py              # all shapes, 3 runs; writes docs/benchmarks.{md,png}
    .venv/bin/python scripts/bench_convert.py --quick      # tiny shape, 1 run, outputs in --workdir (the smoke test)

Checkpoints are synthesized once (random finite bf16, shards of at most 4 GB in model order, lm_head last) into
--workdir (default bench/, git-ignored) and reused. Methods run interleaved in an order rotated every run, each in
its own process, with `sync` after every run; tables report medians, min-max, and ratios measured side by side in
the same run. Peak RSS is the largest resident set of any process in the method's process tree (wait4 on the
reaped children); bytes written count output files that are not hard links to the source.
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

import numpy as np
from bench_common import du, machine, run_once, write_keeping_sections, write_section
from bench_shapes import SHAPES, VL_SHAPES, shape_tensors, synthesize, synthesize_vl


def _bytes_written(out: Path, src: Path) -> int:
    shared = {p.stat().st_ino for p in src.iterdir() if p.is_file()}
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and p.stat().st_ino not in shared)


# The usual approach, as vLLM's examples/pooling/score/convert_model_to_seq_cls.py does it: load the causal LM,
# take the two rows, load the model again as a classifier, set its head, save_pretrained.
FULL_LOAD = """
import sys, torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
src, out = sys.argv[1:3]
tok = AutoTokenizer.from_pretrained(src)
no, yes = tok.convert_tokens_to_ids(["no", "yes"])
causal = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16)
w = causal.get_output_embeddings().weight
score = (w[yes].float() - w[no].float()).unsqueeze(0)
del causal
seq = AutoModelForSequenceClassification.from_pretrained(src, num_labels=1, dtype=torch.bfloat16)
seq.score.weight.data = score.to(seq.score.weight.dtype)
seq.config.pad_token_id = tok.pad_token_id
seq.save_pretrained(out)
tok.save_pretrained(out)
"""


def bench(name: str, src: Path, workdir: Path, runs: int, baseline: bool) -> dict:
    out = workdir / "out"
    convert = [sys.executable, "-m", "converter", "convert", str(src), "-o", str(out)]
    methods = {
        "seqcls convert": convert,
        "seqcls convert --copy": [*convert, "--copy"],
        "cp -r": ["cp", "-r", str(src), str(out)],
    }
    if baseline:
        methods["full load (transformers)"] = [sys.executable, "-c", FULL_LOAD, str(src), str(out)]
    results: dict[str, dict[str, list]] = {m: {"seconds": [], "rss": [], "written": []} for m in methods}
    order = list(methods)
    for i in range(runs):
        # Rotated every run, so no method always follows the same one (whose writes evict the page cache).
        for method in order[i % len(order) :] + order[: i % len(order)]:
            cmd = methods[method]
            shutil.rmtree(out, ignore_errors=True)
            subprocess.run(["sync"], check=True)
            seconds, rss = run_once(cmd, workdir)
            results[method]["seconds"].append(seconds)
            results[method]["rss"].append(rss)
            results[method]["written"].append(_bytes_written(out, src))
            print(f"{name} run {i + 1}/{runs}: {method} {seconds:.2f} s, {rss / 2**20:.0f} MiB", file=sys.stderr)
    shutil.rmtree(out, ignore_errors=True)
    return {"shape": name, "source_bytes": du(src), "runs": runs, "methods": results}


def bench_verify(src: Path, workdir: Path, backends: list[str], n_pairs: int) -> list[dict]:
    """One verify per backend on the shape's converted checkpoint: model (or engine) start-up apart from scoring.
    Weights are random, so the verdict is meaningless here; only the timings count."""
    from converter.pairs import RANKING, SEED_PAIRS

    out = workdir / "verify-out"
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "converter", "convert", str(src), "-o", str(out)], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    pairs = [*SEED_PAIRS, *RANKING] * (n_pairs // (len(SEED_PAIRS) + len(RANKING)) + 1)
    pairs_file = workdir / "verify-pairs.jsonl"
    pairs_file.write_text(
        "".join(json.dumps({"query": p.query, "document": p.document}) + "\n" for p in pairs[:n_pairs])
    )
    rows = []
    for backend in backends:
        report = workdir / f"verify-{backend}.json"
        cmd = [sys.executable, "-m", "converter", "verify", str(out), "--original", str(src), "--backend", backend,
               "--dtype", "bfloat16", "--pairs", str(pairs_file), "--max-length", "512", "--report", str(report),
               "--no-cache", "--log-dir", str(workdir / "logs")]  # fmt: skip
        t0 = time.perf_counter()
        code = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        wall = time.perf_counter() - t0
        if code not in (0, 1):
            raise SystemExit(f"verify --backend {backend} failed (exit {code}); logs in {workdir / 'logs'}")
        timings = json.loads(report.read_text())["timings"]
        rows.append({"backend": backend, "pairs": n_pairs, "wall_seconds": wall, "timings": timings})
    shutil.rmtree(out, ignore_errors=True)
    return rows


TARGETS = (
    ("8B", "seqcls convert", "cp -r", 0.10, "convert ≤ 0.10× cp -r"),
    ("8B", "seqcls convert --copy", "cp -r", 1.10, "--copy ≤ 1.1× cp -r"),
)


def _median(r: dict, method: str, key: str = "seconds") -> float:
    return statistics.median(r["methods"][method][key])


def table(all_results: list[dict]) -> str:
    lines = [
        "| shape | method | median s | min–max s | × cp -r | peak RSS MiB | written MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in all_results:
        cp = _median(r, "cp -r")
        for method, m in r["methods"].items():
            med = statistics.median(m["seconds"])
            lines.append(
                f"| {r['shape']} ({r['source_bytes'] / 1e9:.1f} GB) | {method} | {med:.2f} | "
                f"{min(m['seconds']):.2f}–{max(m['seconds']):.2f} | {med / cp:.3f} | {max(m['rss']) / 2**20:.0f} | "
                f"{statistics.median(m['written']) / 1e6:,.1f} |"
            )
    return "\n".join(lines)


def targets(all_results: list[dict]) -> str:
    by_shape = {r["shape"]: r for r in all_results}
    lines = ["| target | measured | holds |", "|---|---|---|"]
    for shape, method, base, limit, label in TARGETS:
        if shape in by_shape:
            ratio = _median(by_shape[shape], method) / _median(by_shape[shape], base)
            lines.append(f"| {label} | {ratio:.3f}× | {'yes' if ratio <= limit else 'NO'} |")
    worst = max(max(r["methods"][m]["rss"]) for r in all_results for m in ("seqcls convert", "seqcls convert --copy"))
    lines.append(
        f"| peak RSS ≤ 256 MiB at every shape | {worst / 2**20:.0f} MiB | {'yes' if worst <= 256 << 20 else 'NO'} |"
    )
    for r in all_results:
        if "full load (transformers)" in r["methods"]:
            speed = _median(r, "full load (transformers)") / _median(r, "seqcls convert")
            mem = max(r["methods"]["full load (transformers)"]["rss"]) / max(r["methods"]["seqcls convert"]["rss"])
            lines.append(
                f"| {r['shape']}: ≥ 30× faster than full load | {speed:.0f}× | {'yes' if speed >= 30 else 'NO'} |"
            )
            lines.append(
                f"| {r['shape']}: ≥ 60× less memory than full load | {mem:.0f}× | {'yes' if mem >= 60 else 'NO'} |"
            )
    return "\n".join(lines)


def vl_section(results: list[dict], runs: int) -> str:
    worst = max(max(r["methods"][m]["rss"]) for r in results for m in ("seqcls convert", "seqcls convert --copy"))
    return f"""## Qwen3-VL-Reranker conversion

`scripts/bench_convert.py --shapes VL-2B,VL-8B`: synthetic checkpoints of Qwen3-VL-Reranker-2B (tied) and -8B
(untied), vision tower and language model, random bf16, the tensors' names and shapes from transformers' own
`Qwen3VLForConditionalGeneration`; {runs} runs each, interleaved, `sync` after every run; medians. No full-load
baseline: transformers has no Qwen3-VL sequence-classification class to load into.

{machine()}

{table(results)}

Largest peak RSS of a conversion: {worst / 2**20:.0f} MiB, the same at both sizes: conversion reads headers and two
rows, links the untouched shards and streams the one it rewrites. With `--copy` it writes what `cp -r` writes, less
`lm_head` (8B), at about the disk's speed; this machine's disk is shared, hence the spread.
"""


def verify_table(rows: list[dict]) -> str:
    lines = [
        "| backend | side | start-up s | scoring s | pairs/s |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        for side, t in row["timings"].items():
            score = t.get("score_seconds") or float("nan")
            lines.append(
                f"| {row['backend']} | {side} | {t.get('load_seconds', float('nan')):.1f} | {score:.2f} | "
                f"{row['pairs'] / score:.1f} |"
            )
        lines.append(f"| {row['backend']} | whole `seqcls verify` (wall) | | {row['wall_seconds']:.1f} | |")
    return "\n".join(lines)


def chart(all_results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(all_results[0]["methods"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    width = 0.8 / len(methods)
    for ax, key, label, scale in (
        (axes[0], "seconds", "median wall time (s)", 1),
        (axes[1], "rss", "peak RSS (MiB)", 2**20),
    ):
        for i, method in enumerate(methods):
            pick = statistics.median if key == "seconds" else max
            values = [pick(r["methods"][method][key]) / scale for r in all_results]
            ax.bar([x + i * width for x in range(len(all_results))], values, width, label=method)
        ax.set_xticks([x + width * (len(methods) - 1) / 2 for x in range(len(all_results))])
        ax.set_xticklabels([r["shape"] for r in all_results])
        ax.set_yscale("log")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    fig.suptitle("seqcls convert vs cp -r vs full load (log scale)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


NOTES = """
## Notes

- How it is measured: synthetic checkpoints of the real Qwen3-Reranker shapes (random finite bf16, shards of at
  most 4 GB in model order, `lm_head` last), each method in its own process, interleaved in an order rotated every
  run, `sync` after every run; medians with min–max, ratios measured side by side in the same run. The 8B shape
  needs about 34 GB free disk (43 GB for all three shapes); the script checks first. `--quick` (a two-layer shape
  with the real vocabulary, one run) is smoke-tested by the test suite.
- `cp -r` is the floor for a copy: it moves every byte. `seqcls convert` hard-links untouched shards and writes
  only the shard that held `lm_head` (8B) or a small head shard (tied shapes), so its time and memory do not grow
  with the model. The full-load baseline loads the model twice (as vLLM's example converter does) and writes every
  byte again, so it grows linearly. The ratios to it therefore grow with size: the targets were set for 8B-class
  models, where they hold; below that the converter's fixed cost (next point) dominates, and at 0.6B they cannot
  hold (60× less than the baseline's 1.9–2.3 GB would be about 35 MiB, the bare interpreter with numpy).
- Where the converter's own time and memory go (profile of `seqcls convert` at 0.6B, cProfile and `ru_maxrss`):
  Python start-up and imports about 0.35 s (of which `huggingface_hub`, for the model card, 0.17 s) and 28 MiB; the
  token table of `tokenizer.json` 0.27 s and about 130 MiB (this fixture's file is 18.7 MB; Qwen's own is 11 MB).
  Before this run the converter built the whole tokenizer with the `tokenizers` library to look up three ids:
  0.51 s and about 200 MiB (0.9 s and 237 MiB in total); it now reads the token table from the JSON and loads
  `tokenizers` only to encode a label that is not a vocabulary entry.
- `--copy` against `cp -r`: both copy in the kernel (`copy_file_range`); at 8B `--copy` writes 1.2 GB less (no
  `lm_head`) and adds a read-back of the headers it wrote and one `fsync` pass before its rename. Timing the phases
  of an 8B `--copy` (2026-11-25) gave 12.6–13.2 s copying and 0.9 s of `fsync`, against 13.2 s for `cp -r` + `sync`
  in the same minute: no extra work to remove. Across runs of this script the median ratio moved between 1.10 and
  1.36; the 1.36 came from a fixed method order (`--copy` always right after a full load's 15 GB of writes had
  evicted the source from the page cache), and the order now rotates every run. Whether the 1.1 target holds at
  the median is decided by this machine's noise: compare the min–max columns.
- This machine is shared and its disk is virtual: the run-to-run spread of I/O-bound methods is large; read the
  min–max column next to the medians.
"""


def write_docs(results: list[dict], verify_rows: list[dict], docs: Path, runs: int) -> None:
    docs.mkdir(parents=True, exist_ok=True)
    chart(results, docs / "benchmarks.png")
    text = [
        "# Benchmarks",
        "",
        f"Generated by `scripts/bench_convert.py` on {time.strftime('%Y-%m-%d')}: {machine()}. "
        f"{runs} interleaved run(s) per method, medians; page cache warm; `sync` after every run.",
        "",
        "![time and memory per shape and method](benchmarks.png)",
        "",
        "## Conversion",
        "",
        table(results),
        "",
        "## Targets",
        "",
        targets(results),
        "",
    ]
    if verify_rows:
        text += [
            f"## What a verify run costs ({results[0]['shape']} shape, {verify_rows[0]['pairs']} short pairs, "
            "bfloat16, CPU)",
            "",
            verify_table(verify_rows),
            "",
        ]
    write_keeping_sections(docs / "benchmarks.md", "\n".join(text) + NOTES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="0.6B,4B,8B")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("bench"))
    parser.add_argument("--docs", type=Path, help="where benchmarks.md and .png go (default docs/; --quick: workdir)")
    parser.add_argument("--verify-backends", default="transformers,vllm", help="timed on the first shape; '' skips")
    parser.add_argument("--verify-pairs", type=int, default=32, help="pairs per timed verify (--quick: 4)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the full-load baseline")
    parser.add_argument("--quick", action="store_true", help="the tiny shape, one run: the smoke test")
    args = parser.parse_args()
    if args.quick:
        args.shapes, args.runs, args.verify_pairs = "tiny", 1, 4
    docs = args.docs or (args.workdir if args.quick else Path("docs"))
    names = args.shapes.split(",")
    if unknown := [n for n in names if n not in SHAPES and n not in VL_SHAPES]:
        raise SystemExit(f"unknown shape(s) {unknown}; choose from {', '.join([*SHAPES, *VL_SHAPES])}")
    vision = [n for n in names if n in VL_SHAPES]
    if vision and len(vision) != len(names):
        raise SystemExit("run the Qwen3-VL shapes on their own: --shapes VL-2B,VL-8B")
    args.workdir.mkdir(parents=True, exist_ok=True)
    folders = {n: args.workdir / (f"Qwen3-VL-Reranker-{n[3:]}" if n in VL_SHAPES else n) for n in names}
    sizes = {n: sum(int(np.prod(sh)) * 2 for _, sh in shape_tensors(n)) for n in names}
    cached = sum(du(folders[n]) for n in names if (folders[n] / "config.json").is_file())
    need = sum(sizes.values()) - cached + max(sizes.values()) + (1 << 30)
    have = shutil.disk_usage(args.workdir).free
    if need > have:
        raise SystemExit(
            f"need about {need / 1e9:.0f} GB free in {args.workdir} for {args.shapes}, have {have / 1e9:.0f} GB"
        )
    if vision:
        sources = {n: synthesize_vl(n, folders[n]) for n in names}
        results = [bench(n, sources[n], args.workdir, args.runs, baseline=False) for n in names]
        print(machine())
        print(table(results))
        (args.workdir / "results-vl.json").write_text(json.dumps({"convert": results}, indent=2))
        write_section(docs / "benchmarks.md", "qwen3-vl-convert", vl_section(results, args.runs))
        print(f"wrote {docs / 'benchmarks.md'}", file=sys.stderr)
        return
    sources = {n: synthesize(n, SHAPES[n], folders[n]) for n in names}
    results = [bench(n, sources[n], args.workdir, args.runs, not args.no_baseline) for n in names]
    backends = [b for b in args.verify_backends.split(",") if b]
    verify_rows = bench_verify(sources[names[0]], args.workdir, backends, args.verify_pairs) if backends else []
    print(machine())
    print(table(results))
    print(targets(results))
    if verify_rows:
        print(verify_table(verify_rows))
    (args.workdir / "results.json").write_text(json.dumps({"convert": results, "verify": verify_rows}, indent=2))
    write_docs(results, verify_rows, docs, args.runs)
    print(f"wrote {docs / 'benchmarks.md'} and {docs / 'benchmarks.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
