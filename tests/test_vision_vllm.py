"""Qwen3-VL-Reranker through vLLM's real engine (CPU build), with images: ``seqcls verify --backend vllm`` runs the
original through the documented overrides and the converted checkpoint as-is, and the official ids come from Qwen3-VL's
processor over Qwen's own messages. vLLM's Qwen3-VL code needs torchvision, so these run in the vision venv
(``scripts/setup vision``, docs/testing.md), one engine core in-process each."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from helpers import rewrite_tensor

pytestmark = [pytest.mark.vision, pytest.mark.xdist_group("vision")]
VISION_PYTHON = Path(__file__).resolve().parent.parent / ".venv-vision" / "bin" / "python"
TIED = "tiny-qwen3-vl-reranker-2b"


def verify(converted: Path, original: Path, report: Path, *extra: str) -> subprocess.CompletedProcess:
    env = os.environ | {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    command = [str(VISION_PYTHON), "-m", "converter", "verify", str(converted), "--original", str(original),
               "--backend", "vllm", "--no-reference", "--report", str(report), *extra]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)


def test_images_score_the_same_through_the_documented_overrides_and_as_converted(vl_pair_of, tmp_path):
    """Every built-in pair, nine of them with images (as the document, the query, both, beside text, an empty
    query): the converted checkpoint as-is against the original through vLLM's documented overrides, both through
    the score template, and both sides' prompt ids against the processor's rendering of Qwen's messages."""
    src, out = vl_pair_of(TIED)
    run = verify(out, src, tmp_path / "report.json")
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["verdict"] == "pass" and report["findings"] == []
    assert report["token_ids"] == {"mismatched_pairs": [], "official_mismatched_pairs": []}
    rows = report["pairs"]
    with_images = [r for r in rows if any(isinstance(s, list) for s in (r["query"], r["document"]))]
    assert len(with_images) >= 6
    assert max(r["abs_delta"] for r in rows) <= 1e-6
    assert len({round(r["converted"], 6) for r in with_images}) > 3, "images must change the score"
    assert "[image]" in run.stdout


def test_a_tampered_head_is_rejected(vl_pair_of, tmp_path):
    """The planted fault: the converted head's sign flipped; the original side comes from the verify cache."""
    src, out = vl_pair_of(TIED)
    bad = tmp_path / "tampered"
    shutil.copytree(out, bad)
    shard = json.loads((bad / "model.safetensors.index.json").read_text())["weight_map"]["score.weight"]
    from safetensors import safe_open

    with safe_open(bad / shard, "pt") as f:
        head = f.get_tensor("score.weight")
    rewrite_tensor(bad, "score.weight", -head)
    run = verify(bad, src, tmp_path / "report.json")
    assert run.returncode == 1, run.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["verdict"] == "fail" and report["cache"]["original"] == "hit"
    assert torch.tensor([r["abs_delta"] for r in report["pairs"]]).max() > 0.05
