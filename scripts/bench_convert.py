#!/usr/bin/env python3
"""Time and memory of `seqcls convert` against `cp -r` on synthetic checkpoints of the real Qwen3-Reranker shapes.

    .venv/bin/python scripts/bench_convert.py [--shapes 0.6B,4B,8B] [--runs 3] [--workdir bench]

Checkpoints are synthesized once (random bf16, finite) into --workdir and reused. Methods run interleaved, each
in its own process, with `sync` after every run; the table reports medians, min-max, and ratios to `cp -r`
measured in the same run. Peak RSS is the converter process's own maximum resident set (from wait4).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converter.io.safetensors_format import encode_header

VOCAB, HEAD_DIM, SHARD_LIMIT = 151669, 128, 4_000_000_000


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    tied: bool


SHAPES = {
    "0.6B": Shape(1024, 28, 16, 8, 3072, tied=True),
    "4B": Shape(2560, 36, 32, 8, 9728, tied=True),
    "8B": Shape(4096, 36, 32, 8, 12288, tied=False),
}


def tensor_shapes(s: Shape) -> list[tuple[str, tuple[int, ...]]]:
    q, kv = s.heads * HEAD_DIM, s.kv_heads * HEAD_DIM
    out = [("model.embed_tokens.weight", (VOCAB, s.hidden))]
    for i in range(s.layers):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", (s.hidden,)),
            (p + "self_attn.q_proj.weight", (q, s.hidden)),
            (p + "self_attn.k_proj.weight", (kv, s.hidden)),
            (p + "self_attn.v_proj.weight", (kv, s.hidden)),
            (p + "self_attn.o_proj.weight", (s.hidden, q)),
            (p + "self_attn.q_norm.weight", (HEAD_DIM,)),
            (p + "self_attn.k_norm.weight", (HEAD_DIM,)),
            (p + "post_attention_layernorm.weight", (s.hidden,)),
            (p + "mlp.gate_proj.weight", (s.intermediate, s.hidden)),
            (p + "mlp.up_proj.weight", (s.intermediate, s.hidden)),
            (p + "mlp.down_proj.weight", (s.hidden, s.intermediate)),
        ]
    out.append(("model.norm.weight", (s.hidden,)))
    if not s.tied:
        out.append(("lm_head.weight", (VOCAB, s.hidden)))
    return out


def synthesize(name: str, s: Shape, folder: Path) -> Path:
    """Shards of at most 4 GB in model order, lm_head last, as the published checkpoints are laid out."""
    if (folder / "config.json").is_file():
        return folder
    from converter.tiny_model import build_qwen3_tokenizer

    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    groups: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for tname, shape in tensor_shapes(s):
        n = int(np.prod(shape)) * 2
        if groups[-1] and (size + n > SHARD_LIMIT or tname == "lm_head.weight"):
            groups.append([])
            size = 0
        groups[-1].append((tname, shape))
        size += n
    rng = np.random.default_rng(0)
    weight_map = {}
    for i, group in enumerate(groups, 1):
        fname = f"model-{i:05d}-of-{len(groups):05d}.safetensors" if len(groups) > 1 else "model.safetensors"
        _write_random_shard(tmp / fname, group, rng)
        weight_map |= {t: fname for t, _ in group}
    if len(groups) > 1:
        index = {"metadata": {"total_size": sum(int(np.prod(sh)) * 2 for _, sh in tensor_shapes(s))}}
        (tmp / "model.safetensors.index.json").write_text(json.dumps(index | {"weight_map": weight_map}))
    config = {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": s.hidden,
        "num_hidden_layers": s.layers, "num_attention_heads": s.heads, "num_key_value_heads": s.kv_heads,
        "head_dim": HEAD_DIM, "intermediate_size": s.intermediate, "vocab_size": VOCAB,
        "tie_word_embeddings": s.tied, "torch_dtype": "bfloat16", "bos_token_id": 151643, "eos_token_id": 151645,
        "max_position_embeddings": 40960, "rms_norm_eps": 1e-6, "rope_theta": 1000000,
    }  # fmt: skip
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    build_qwen3_tokenizer().save_pretrained(tmp)
    tmp.rename(folder)
    print(f"synthesized {name} in {folder}", file=sys.stderr)
    return folder


@dataclass(frozen=True)
class _Planned:
    name: str
    shape: tuple[int, ...]
    dtype: str = "BF16"

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * 2


def _write_random_shard(path: Path, group, rng) -> None:
    """Random finite bf16 (the exponent's top bit cleared), written in chunks to keep memory flat."""
    entries = [_Planned(t, shape) for t, shape in group]
    left = sum(e.nbytes for e in entries)
    with open(path, "wb") as f:
        f.write(encode_header(entries, {"format": "pt"}))
        while left:
            n = min(256 << 20, left)
            f.write((np.frombuffer(rng.bytes(n), "<u2") & np.uint16(0xBFFF)).tobytes())
            left -= n


def _du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


# Forking this (large) process would charge its pages to the child's peak RSS, so a lean wrapper starts the command
# and reports the peak RSS of its child alone.
RSS_WRAPPER = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[2:]).returncode
open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024))
sys.exit(code)
"""


def run_once(cmd: list[str], workdir: Path) -> tuple[float, int]:
    """Wall time including a final sync, and the command's peak RSS in bytes."""
    rss_file = workdir / "rss.txt"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", RSS_WRAPPER, str(rss_file), *cmd], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["sync"], check=True)
    elapsed = time.perf_counter() - t0
    return elapsed, int(rss_file.read_text())


def bench(name: str, src: Path, workdir: Path, runs: int) -> dict:
    out = workdir / "out"
    methods = {
        "seqcls convert": [sys.executable, "-m", "converter", "convert", str(src), "-o", str(out)],
        "seqcls convert --copy": [sys.executable, "-m", "converter", "convert", str(src), "-o", str(out), "--copy"],
        "cp -r": ["cp", "-r", str(src), str(out)],
    }
    results: dict[str, dict[str, list]] = {m: {"seconds": [], "rss": []} for m in methods}
    for _ in range(runs):
        for method, cmd in methods.items():
            shutil.rmtree(out, ignore_errors=True)
            subprocess.run(["sync"], check=True)
            seconds, rss = run_once(cmd, workdir)
            results[method]["seconds"].append(seconds)
            results[method]["rss"].append(rss)
    shutil.rmtree(out, ignore_errors=True)
    return {"shape": name, "source_bytes": _du(src), "runs": runs, "methods": results}


def table(all_results: list[dict]) -> str:
    lines = [
        "| shape | method | median s | min–max s | × cp -r | peak RSS MiB |",
        "|---|---|---|---|---|---|",
    ]
    for r in all_results:
        cp = statistics.median(r["methods"]["cp -r"]["seconds"])
        for method, m in r["methods"].items():
            med = statistics.median(m["seconds"])
            lines.append(
                f"| {r['shape']} ({r['source_bytes'] / 1e9:.1f} GB) | {method} | {med:.2f} | "
                f"{min(m['seconds']):.2f}–{max(m['seconds']):.2f} | {med / cp:.3f} | {max(m['rss']) / 2**20:.0f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="0.6B,4B,8B")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("bench"))
    args = parser.parse_args()
    names = args.shapes.split(",")
    need = sum(sum(int(np.prod(sh)) * 2 for _, sh in tensor_shapes(SHAPES[n])) for n in names)
    need += max(sum(int(np.prod(sh)) * 2 for _, sh in tensor_shapes(SHAPES[n])) for n in names)
    have = shutil.disk_usage(args.workdir if args.workdir.exists() else Path.cwd()).free
    cached = sum(_du(args.workdir / n) for n in names if (args.workdir / n / "config.json").is_file())
    if need - cached > have:
        raise SystemExit(f"need about {(need - cached) / 1e9:.0f} GB free for {args.shapes}, have {have / 1e9:.0f} GB")
    results = [bench(n, synthesize(n, SHAPES[n], args.workdir / n), args.workdir, args.runs) for n in names]
    print(f"{platform.platform()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(table(results))
    (args.workdir / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
