#!/usr/bin/env python3
"""Video for Qwen3-VL-Reranker: how fast seqcls samples a video as Qwen's scorer does, how long each engine takes to
score a pair with video (tiny fixture, CPU), and how many times a verify run decodes each video.

    .venv-vision/bin/python scripts/bench_video.py            # 3 runs; the `video` section of docs/benchmarks.md
    .venv-vision/bin/python scripts/bench_video.py --quick    # 1 run, a short clip; the workdir's benchmarks.md

Runs in the vision venv (torchvision, qwen-vl-utils and vLLM's Qwen3-VL code). Sampling: clips drawn here (moving
shapes, H.264 through PyAV, 640x360 at 24 frames a second), each sampled from scratch (the per-process clip store
cleared) as a file: the whole decode, qwen-vl-utils' frame choice and the resize; medians. Scoring: one verify each
of the tiny tied fixture with ``--backend transformers``, ``--backend vllm`` (engines in-process) and ``--backend
server --reference-only`` (one server of the conversion, /classify) on the built-in video pairs only (four pairs,
one clip); the engines' own time per pair from the report (model load, engine and server start excluded; the
server's is the requests' wall time), and the decodes counted in the process over each whole verify.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def draw_clip(seconds: int, rate: int = 24, width: int = 640, height: int = 360) -> bytes:
    import av
    import numpy as np

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate, options={"crf": "23", "preset": "fast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(seconds * rate):
            frame = np.empty((height, width, 3), np.uint8)
            frame[:] = (20 + i % 50, 30, 60)
            x = (7 * i) % (width - 80)
            frame[100:180, x : x + 80] = (230, 40, 40)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()


def sampling(seconds_list: list[int], runs: int, workdir: Path) -> list[dict]:
    from converter import video
    from converter.media import Part
    from converter.recipes import QWEN3_VL_RERANKER as recipe

    rows = []
    for seconds in seconds_list:
        path = workdir / f"clip-{seconds}s.mp4"
        path.write_bytes(draw_clip(seconds))
        times = []
        for _ in range(runs):
            video._CLIPS.__init__()
            started = time.perf_counter()
            clip = video.sample(Part("video", str(path)), recipe.video, recipe.image_patch)
            times.append(time.perf_counter() - started)
        decoded = seconds * 24
        median = statistics.median(times)
        count, height, width, _ = clip.frames.shape
        rows.append({"seconds": seconds, "decoded_frames": decoded, "frames": count, "size": f"{width}x{height}",
                     "tokens": clip.tokens(recipe.image_patch), "sample_seconds": median,
                     "decoded_per_second": decoded / median})  # fmt: skip
    return rows


def engines(runs: int, workdir: Path) -> list[dict]:
    """The tiny tied fixture, built here; a verify per backend per run on the built-in video pairs."""
    from converter import convert, video
    from converter.drawn import video_pairs
    from converter.tiny_model import build_tiny_vl_reranker
    from converter.verify import verify

    src, out = workdir / "tiny-qwen3-vl-reranker-2b", workdir / "tiny-qwen3-vl-reranker-2b-seq-cls"
    if not src.exists():
        build_tiny_vl_reranker(src, tied=True, seed=7)
    if not out.exists():
        convert(src, out)
    rows = []
    for backend in ("transformers", "vllm", "server"):
        per_pair, decodes = [], []
        for run in range(runs):
            video._CLIPS.__init__()
            before = video.DECODES["count"]
            report = verify(out, src, pairs=video_pairs(), backend=backend, use_cache=False,
                            log_dir=workdir / f"logs-{backend}-{run}", reference_only=backend == "server")  # fmt: skip
            assert report["verdict"] == "pass", report["failure"]
            decodes.append(video.DECODES["count"] - before)
            timings = [t for side, t in report["timings"].items() if side in ("original", "converted")]
            per_pair.append(statistics.mean(t["score_seconds"] / len(report["pairs"]) for t in timings))
        delta = report["metrics"]["max_abs_delta"]
        rows.append({"backend": backend, "seconds_per_pair": statistics.median(per_pair),
                     "decodes_per_verify": max(decodes), "max_abs_delta": delta})  # fmt: skip
    return rows


def report(sample_rows: list[dict], engine_rows: list[dict], runs: int) -> str:
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')}, this machine (2 cores, CPU), median of {runs} run(s).",
        "",
        "| clip (640x360, 24 fps) | frames decoded | frames kept | kept size | video tokens | sampling s | "
        "decoded frames/s |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in sample_rows:
        lines.append(f"| {r['seconds']} s | {r['decoded_frames']:,} | {r['frames']} | {r['size']} | {r['tokens']:,} | "
                     f"{r['sample_seconds']:.2f} | {r['decoded_per_second']:,.0f} |")  # fmt: skip
    from converter.drawn import video_pairs

    pairs = f"{len(video_pairs())} video pairs"
    lines += ["", f"| backend (tiny fixture, {pairs}) | s per pair, each side | decodes per verify | max abs Δ* |",
              "|---|---:|---:|---:|"]  # fmt: skip
    for r in engine_rows:
        lines.append(f"| {r['backend']} | {r['seconds_per_pair']:.3f} | {r['decodes_per_verify']} | "
                     f"{r['max_abs_delta']:.1e} |")  # fmt: skip
    lines += ["", "\\* between the sides; the server's (`--reference-only`) against the reference."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run, short clips; results in the workdir")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "seqcls-bench-video")
    parser.add_argument("--out", type=Path, help="default: docs/benchmarks.md (--quick: the workdir's)")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    args.workdir.mkdir(parents=True, exist_ok=True)
    sample_rows = sampling([2] if args.quick else [5, 30, 120], runs, args.workdir)
    engine_rows = engines(runs, args.workdir)
    text = report(sample_rows, engine_rows, runs)
    (args.workdir / "video-results.json").write_text(json.dumps({"sampling": sample_rows, "engines": engine_rows}))
    from bench_common import write_section

    out = args.out or (args.workdir / "benchmarks.md" if args.quick else ROOT / "docs" / "benchmarks.md")
    write_section(out, "video", "## Video: sampling and scoring (Qwen3-VL-Reranker)\n\n" + text)
    print(text)
    os._exit(0)  # vLLM's in-process engine teardown can abort after the work is done


if __name__ == "__main__":
    main()
