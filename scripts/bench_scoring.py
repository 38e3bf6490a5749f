#!/usr/bin/env python3
"""Why convert at all, outside vLLM: transformers throughput and peak memory of three ways to score the same pairs.

    .venv/bin/python scripts/bench_scoring.py                       # 0.6B shape on this machine's CPU
    .venv/bin/python scripts/bench_scoring.py --device cuda --shape 8B --pairs 128 --tokens 590 --batch 32
    .venv/bin/python scripts/bench_scoring.py --quick               # tiny shape, one run (the smoke test)

Methods, on the same pairs (the official prompt, padded left), batch and dtype:
- ``model card``: the original as Qwen's model card scores it, ``model(**inputs).logits[:, -1, :]``: logits for every
  position, of which one is used;
- ``logits_to_keep=1``: the original computing the last position's logits only;
- ``converted``: the converted ``*ForSequenceClassification`` checkpoint and a sigmoid.

Checkpoints are synthesized (random finite bf16 of the real Qwen3-Reranker shape, see bench_shapes.py) into
--workdir and converted with seqcls. Each method runs in its own process, the methods interleaved in an order rotated
every run; one warm-up batch is not timed. Peak memory is the process's peak RSS on CPU, and
``torch.cuda.max_memory_allocated`` on CUDA. Results: medians (pairs/s) with min-max, ratios to the model card's
method measured in the same run, written as Markdown to --out (default: docs/scoring.md; --quick: the workdir).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("model card", "logits_to_keep=1", "converted")

NOTES = """
## Notes

- What the model card's snippet pays for: `model(**inputs).logits[:, -1, :]` computes the vocabulary's logits at
  every position (151,669 columns × every token of the batch) and keeps one row. `logits_to_keep=1` and the converted
  classifier (one column) skip that, and so run at the same speed: on this CPU an in-process A/B of the two on the
  same batch took 5.3–6.4 s each, so the 0.7 against 0.8 pairs/s above is this shared machine's noise.
- On a GPU the gap is larger, as the model card's logits are a larger share of the work. Measured on one NVIDIA H200
  (torch 2.11+cu130, transformers 5.17; same script design, random-weight shapes with the real vocabulary, bf16,
  SDPA, 128 pairs of about 590 tokens, batch 32):

  | shape | method | pairs/s | peak GPU memory |
  |---|---|---|---|
  | 0.6B | model card | 71.8 | 11.2 GiB |
  | 0.6B | `logits_to_keep=1` | 182.9 | 4.6 GiB |
  | 0.6B | converted | 179.3 | 4.6 GiB |
  | 8B | model card | 27.3 | 28.5 GiB |
  | 8B | `logits_to_keep=1` | 38.4 | 23.6 GiB |
  | 8B | converted | 38.2 | 23.6 GiB |

  That is 2.5× (0.6B) and 1.4× (8B) the model card's throughput with 2.4× and 1.2× less memory. Rerun with
  `--device cuda --shape 8B --pairs 128 --tokens 590 --batch 32` where a GPU is present.
"""


def worker(args: argparse.Namespace) -> None:
    """One method in this process: prints one JSON line of timings and peak memory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    ids = json.loads(Path(args.ids).read_text())
    no, yes = args.label_ids
    dtype, device = getattr(torch, args.dtype), args.device
    if args.method == "converted":
        model = AutoModelForSequenceClassification.from_pretrained(args.converted, dtype=dtype, device_map=device)
    else:
        model = AutoModelForCausalLM.from_pretrained(args.original, dtype=dtype, device_map=device)
    model.eval()

    def batches():
        for start in range(0, len(ids), args.batch):
            chunk = ids[start : start + args.batch]
            width = max(map(len, chunk))
            input_ids = torch.tensor([[args.pad] * (width - len(x)) + x for x in chunk], device=device)
            mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in chunk], device=device)
            yield input_ids, mask

    def score(input_ids, mask) -> torch.Tensor:
        if args.method == "converted":
            return torch.sigmoid(model(input_ids=input_ids, attention_mask=mask).logits[:, 0].float())
        keep = {"logits_to_keep": 1} if args.method == "logits_to_keep=1" else {}
        logits = model(input_ids=input_ids, attention_mask=mask, **keep).logits[:, -1, :]
        return torch.softmax(torch.stack([logits[:, no], logits[:, yes]], 1).float(), 1)[:, 1]

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    with torch.inference_mode():
        first = next(batches())
        score(*first)  # warm-up
        sync()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        scores = [s for batch in batches() for s in score(*batch).tolist()]
        sync()
        seconds = time.perf_counter() - started
    peak = (
        torch.cuda.max_memory_allocated()
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    print(json.dumps({"seconds": seconds, "peak_bytes": peak, "pairs": len(scores)}))


def prepare(args: argparse.Namespace) -> tuple[Path, Path, Path, list[int], int]:
    """The shape's original and its conversion, and the pairs' token ids (official prompt, ~``tokens`` each)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_shapes
    from transformers import AutoTokenizer

    from converter.pairs import RANKING
    from converter.recipes import QWEN3_RERANKER
    from converter.reference import encode_official

    original, converted = bench_shapes.synthesized_conversion(args.shape, args.workdir)
    tokenizer = AutoTokenizer.from_pretrained(original)
    filler = " ".join(p.document for p in RANKING)
    pairs = []
    for i in range(args.pairs):
        document = tokenizer.decode(tokenizer.encode((filler + " ") * 40)[: max(args.tokens - 110, 8) + i % 8])
        pairs.append(type(RANKING[0])(RANKING[i % len(RANKING)].query, document))
    ids = encode_official(tokenizer, QWEN3_RERANKER, pairs)
    ids_file = args.workdir / "scoring-ids.json"
    ids_file.write_text(json.dumps(ids))
    label_ids = tokenizer.convert_tokens_to_ids(["no", "yes"])
    return original, converted, ids_file, label_ids, tokenizer.pad_token_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="0.6B", help="tiny, 0.6B, 4B or 8B (default: %(default)s)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--dtype", default=None, help="default: float32 on cpu, bfloat16 on cuda")
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=256, help="about this many tokens per prompt")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench")
    parser.add_argument("--out", type=Path, help="the Markdown results (default: docs/scoring.md)")
    parser.add_argument("--quick", action="store_true", help="tiny shape, 4 pairs of 128 tokens, batch 2, 1 run")
    parser.add_argument("--worker", dest="method", help=argparse.SUPPRESS)
    for hidden in ("--original", "--converted", "--ids"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--label-ids", type=int, nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--pad", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    if args.method:
        return worker(args)
    if args.quick:
        args.shape, args.pairs, args.tokens, args.batch, args.runs = "tiny", 4, 128, 2, 1
    args.workdir.mkdir(parents=True, exist_ok=True)
    original, converted, ids_file, label_ids, pad = prepare(args)
    common = [
        "--original", str(original), "--converted", str(converted), "--ids", str(ids_file), "--device", args.device,
        "--dtype", args.dtype, "--batch", str(args.batch), "--label-ids", *map(str, label_ids), "--pad", str(pad),
    ]  # fmt: skip
    results: dict[str, list[dict]] = {m: [] for m in METHODS}
    for run in range(args.runs):
        for method in METHODS[run % 3 :] + METHODS[: run % 3]:
            out = subprocess.run(
                [sys.executable, __file__, "--worker", method, *common], capture_output=True, text=True, check=False
            )
            if out.returncode != 0:
                raise SystemExit(f"{method} failed:\n{out.stderr[-3000:]}")
            results[method].append(json.loads(out.stdout.strip().splitlines()[-1]))
            got = results[method][-1]
            print(f"run {run + 1}/{args.runs}: {method} {args.pairs / got['seconds']:.1f} pairs/s", file=sys.stderr)
    text = report(args, results)
    out = args.out or (args.workdir / "scoring.md" if args.quick else ROOT / "docs" / "scoring.md")
    out.write_text(text)
    print(text)
    print(f"wrote {out}", file=sys.stderr)


def report(args: argparse.Namespace, results: dict[str, list[dict]]) -> str:
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_common import machine

    def rate(r: dict) -> float:
        return args.pairs / r["seconds"]

    base = statistics.median(rate(r) for r in results["model card"])
    base_peak = statistics.median(r["peak_bytes"] for r in results["model card"])
    memory = "peak GPU memory (allocated)" if args.device == "cuda" else "peak RSS"
    rows = [
        f"| method | pairs/s (median) | min–max | × model card | {memory} | × less memory |",
        "|---|---|---|---|---|---|",
    ]
    for method, runs in results.items():
        rates = [rate(r) for r in runs]
        peak = statistics.median(r["peak_bytes"] for r in runs)
        rows.append(
            f"| {method} | {statistics.median(rates):.1f} | {min(rates):.1f}–{max(rates):.1f} | "
            f"{statistics.median(rates) / base:.2f} | {peak / 2**30:.2f} GiB | {base_peak / peak:.2f} |"
        )
    header = (
        f"Generated by `scripts/bench_scoring.py` on {time.strftime('%Y-%m-%d')}: {machine()}; device {args.device}. "
        f"Shape {args.shape} (random weights, real vocabulary), {args.pairs} pairs of about {args.tokens} tokens in "
        f"the official prompt format, batch {args.batch}, {args.dtype}, {args.runs} interleaved run(s) per method, "
        "each in its own process after one warm-up batch."
    )
    caveat = "Random weights saturate the scores, so they say nothing about exactness: that is `seqcls verify`'s job."
    return "\n".join(["# Scoring speed in transformers", "", header, "", *rows, "", caveat]) + "\n" + NOTES


if __name__ == "__main__":
    main()
