"""``seqcls demo``: offline, end to end, and a readable table."""

from __future__ import annotations

import pytest

from converter.cli import run
from converter.pairs import DEMO_PAIRS


@pytest.mark.slow  # inner loop: see docs/testing.md
def test_demo_builds_converts_and_shows_parity(tmp_path, capsys):
    assert run(["demo", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "score.weight = fp32(W['yes'=9693]) - fp32(W['no'=2152])" in out
    assert "| query" in out and "| original" in out and "| abs Δ" in out
    assert out.count("\n| ") >= len(DEMO_PAIRS) + 1
    assert "PARITY OK" in out
    assert (tmp_path / "demo" / "tiny-qwen3-reranker-seq-cls" / "config.json").is_file()
    assert run(["demo", "--workdir", str(tmp_path)]) == 0, "a second run must reuse and overwrite cleanly"


def test_demo_of_another_preset(tmp_path, capsys):
    assert run(["demo", "--workdir", str(tmp_path), "--preset", "bge-reranker-v2-gemma"]) == 0
    out = capsys.readouterr().out
    assert "PARITY OK" in out and "recipe  bge-reranker-v2-gemma, no_post_processing, 1 label(s)" in out
