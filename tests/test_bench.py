"""The benchmark script's --quick mode runs end to end on the tiny shape, so the script cannot rot (its numbers are
not checked). Its verify timing runs the transformers backend only: the vLLM backend's timings are checked through
the real engine in test_verify_vllm, and the script passes the backend name through unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Shared by both scripts' smoke runs, so the tiny shape is synthesized once."""
    return tmp_path_factory.mktemp("bench")


@pytest.mark.slow
@pytest.mark.xdist_group("bench")
def test_bench_quick(workdir):
    docs = ROOT / "docs" / "benchmarks.md"
    before = docs.read_bytes() if docs.exists() else None
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench_convert.py"),
            "--quick",
            "--workdir",
            str(workdir),
            "--verify-backends",
            "transformers",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((workdir / "results.json").read_text())
    [shape] = data["convert"]
    assert shape["shape"] == "tiny" and set(shape["methods"]) == {
        "seqcls convert", "seqcls convert --copy", "cp -r", "full load (transformers)",
    }  # fmt: skip
    for m in shape["methods"].values():
        assert len(m["seconds"]) == 1 and m["seconds"][0] > 0 and m["rss"][0] > 0
    assert shape["methods"]["seqcls convert"]["written"][0] < shape["methods"]["cp -r"]["written"][0] / 4
    assert [r["backend"] for r in data["verify"]] == ["transformers"]
    assert all(r["timings"]["converted"]["load_seconds"] > 0 for r in data["verify"])
    text = (workdir / "benchmarks.md").read_text()
    assert "| tiny (0.1 GB) | seqcls convert |" in text and "## Targets" in text and "benchmarks.png" in text
    assert (workdir / "benchmarks.png").read_bytes()[:4] == b"\x89PNG"
    assert (docs.read_bytes() if docs.exists() else None) == before, "--quick must not touch docs/"


@pytest.mark.slow
@pytest.mark.xdist_group("bench")
def test_bench_scoring_quick(workdir):
    """scripts/bench_scoring.py --quick: the three scoring methods, each in its own process, on the tiny shape (the
    table's numbers are not checked)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_scoring.py"), "--quick", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = (workdir / "scoring.md").read_text()
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ") and "GiB" in line]
    assert [r[0] for r in rows] == ["| model card", "| logits_to_keep=1", "| converted"]
    assert all(float(r[1]) > 0 for r in rows) and rows[0][3] == "1.00"


@pytest.mark.xdist_group("bench")
def test_bench_verify_memory_small(workdir):
    """scripts/bench_verify_memory.py on one small size: the pair file, a verify in its own process, the table (the
    numbers are not checked; one size keeps CI short, the growth column needs two)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_verify_memory.py"), "--sizes", "40", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len((workdir / "pairs-40.jsonl").read_text().splitlines()) == 40
    assert json.loads((workdir / "report-40.json").read_text())["pair_count"] == 40
    rows = [line for line in (workdir / "verify-memory.md").read_text().splitlines() if line.startswith("| 40 |")]
    assert len(rows) == 1 and " MiB |" in rows[0]


@pytest.mark.slow
@pytest.mark.llamacpp
@pytest.mark.xdist_group("bench")
def test_bench_gguf_quick(workdir):
    """scripts/bench_gguf.py --quick: export against cp -r and the five scoring engines on the tiny shape (numbers
    not checked), nothing written to docs/."""
    docs = ROOT / "docs" / "benchmarks.md"
    before = docs.read_bytes()
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_gguf.py"), "--quick", "--workdir", str(workdir)],
        capture_output=True, text=True, cwd=ROOT, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((workdir / "gguf-results.json").read_text())
    assert set(data["export"][0]["methods"]) == {"seqcls export gguf --type f16", "cp -r"}
    assert set(data["scoring"]["seconds"]) == {"llama.cpp f16", "llama.cpp q8_0", "llama.cpp q4_k_m",
                                               "transformers float32", "transformers bfloat16"}  # fmt: skip
    assert "| llama.cpp q4_k_m |" in (workdir / "benchmarks.md").read_text() and docs.read_bytes() == before


@pytest.mark.slow
@pytest.mark.xdist_group("bench")
def test_bench_long_inputs_parts(workdir):
    """scripts/bench_long_inputs.py's own parts, in this process (its worker processes only run them): documents
    whose whole prompt is exactly the asked length, the transformers scorer as the card's snippet runs it, and the
    table with both engines' columns. Its vLLM scorer is the same loop over ``LLM.score`` (an engine start would cost
    this test 25 s)."""
    import argparse
    import importlib

    sys.path.insert(0, str(ROOT / "scripts"))
    bench = importlib.import_module("bench_long_inputs")
    from bench_shapes import synthesized_conversion

    from converter.pairs import Pair
    from converter.recipes import QWEN3_RERANKER
    from converter.reference import encode_official
    from converter.verify.backends.base import load_tokenizer

    _, converted = synthesized_conversion("tiny", workdir)
    tokenizer = load_tokenizer(converted)
    docs = bench.documents(tokenizer, [512, 1024], seed=1)
    lengths = [len(ids) for ids in encode_official(tokenizer, QWEN3_RERANKER, [Pair(bench.QUERY, d) for d in docs])]
    assert lengths == [512, 1024] and docs != bench.documents(tokenizer, [512, 1024], seed=2)
    score = bench.transformers_scorer(converted)
    assert all(0 < score(d) < 1 for d in docs)
    run = {"loaded_peak_bytes": 2**30, "lengths": [{"tokens": n, "seconds": n / 1e4, "peak_bytes": 2**30, "score": 0.5}
                                                   for n in (512, 1024)]}  # fmt: skip
    args = argparse.Namespace(lengths=[512, 1024], engines=["transformers", "vllm"], runs=1)
    text = bench.report(args, {"tiny": {"transformers": [run], "vllm": [run]}})
    assert "| 1,024 | 0.102 | 1,024 MiB (+0) | 0.102 | 1,024 MiB (+0) | 1.00 | 0.0e+00 |" in text


def test_bench_long_inputs_mixed_pairs_and_table(tmp_path):
    """scripts/bench_long_inputs.py --mixed's own parts, in this process: its pair file (every Nth document long,
    each its own, the rest bench_verify_memory.py's set unchanged) and its table, with and without long pairs. The
    verify processes it runs are bench_verify_memory.py's worker, smoke-tested above."""
    import argparse
    import importlib

    sys.path.insert(0, str(ROOT / "scripts"))
    bench = importlib.import_module("bench_long_inputs")
    plain = [json.loads(line) for line in bench.mixed_pairs(tmp_path, 40, 0).read_text().splitlines()]
    mixed = [json.loads(line) for line in bench.mixed_pairs(tmp_path, 40, 20).read_text().splitlines()]
    changed = [i for i, (a, b) in enumerate(zip(plain, mixed)) if a != b]
    assert len(mixed) == 40 and changed == [19, 39] and mixed[19]["document"] != mixed[39]["document"]
    assert all(len(mixed[i]["document"].split()) == 6000 and mixed[i]["query"] == plain[i]["query"] for i in changed)
    run = {"tree_peak_bytes": 900 * 2**20, "peak_bytes": 800 * 2**20, "seconds": 3.0}
    results = {(40, 0): [run | {"cut_pairs": 0}], (40, 20): [run | {"cut_pairs": 2}]}
    args = argparse.Namespace(mixed=[40], long_every=20, backend="transformers", runs=1)
    rows = [r for r in bench.mixed_report(args, list(results), results).splitlines() if r.startswith("| 40 |")]
    assert [r.split(" | ")[1] for r in rows] == ["none", "2 (2 cut)"] and all("| 900 MiB | +0 MiB |" in r for r in rows)


def test_bench_video_parts(tmp_path):
    """scripts/bench_video.py's own parts that need no vision venv, in this process: its clip (24 frames a second of
    PyAV's H.264, readable by seqcls' decoder) and its table. Its sampling and engine runs are seqcls' own functions,
    tested in test_video.py and test_vision_vllm.py."""
    import importlib

    from converter.media import Part
    from converter.video import decode

    sys.path.insert(0, str(ROOT / "scripts"))
    bench = importlib.import_module("bench_video")
    (tmp_path / "clip.mp4").write_bytes(bench.draw_clip(1, width=160, height=96))
    frames, fps = decode(Part("video", str(tmp_path / "clip.mp4")))
    assert frames.shape == (24, 96, 160, 3) and fps == 24
    sampled = [{"seconds": 1, "decoded_frames": 24, "frames": 4, "size": "480x288", "tokens": 270,
                "sample_seconds": 0.5, "decoded_per_second": 48.0}]  # fmt: skip
    engines = [{"backend": "vllm", "seconds_per_pair": 0.02, "decodes_per_verify": 1, "max_abs_delta": 0.0}]
    text = bench.report(sampled, engines, 1)
    assert "| 1 s | 24 | 4 | 480x288 | 270 | 0.50 | 48 |" in text and "| vllm | 0.020 | 1 | 0.0e+00 |" in text


def test_bench_tokenizer_table_runs(original):
    """scripts/bench_tokenizer_table.py, one run of each way on a fixture's real Qwen3 tokenizer.json: both ways read
    the same table (the script checks), and the table has a row for each (its numbers are not checked)."""
    path = original("tied-fp32-single") / "tokenizer.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_tokenizer_table.py"), str(path), "--runs", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "151,669 entries" in result.stdout
    assert [line.split(" | ")[0] for line in result.stdout.splitlines() if " MiB |" in line] == [
        "| json.loads", "| converter",
    ]  # fmt: skip
