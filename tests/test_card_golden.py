"""Model cards of every family rendered from fixed facts, compared byte for byte with the cards in tests/cards/: a
change to the card's text is then a deliberate edit of those files, never a side effect of moving code around.

``SEQCLS_UPDATE_CARDS=1 pytest tests/test_card_golden.py`` rewrites them (review the diff before committing)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from converter.card import CardFacts, render_card
from converter.recipes import FROM_2_WAY_SOFTMAX, NO_POST_PROCESSING, PRESETS, ZERANK_2, generic_recipe

CARDS = Path(__file__).resolve().parent / "cards"
DATE = "2026-12-03"
PARITY = [
    {"backend": "transformers", "device": "cpu", "dtype": "float32", "verdict": "pass", "pairs": 23,
     "max_abs_delta": 1.2e-7, "against": "original", "atol": 1e-4, "kendall_tau_min": None, "findings": [],
     "environment": "torch 2.13.0+cpu, transformers 5.19.0, Python 3.11.7, Linux", "date": DATE},
    {"backend": "vllm", "device": "npu", "dtype": "bfloat16", "verdict": "pass", "pairs": 23,
     "max_abs_delta": 3.1e-3, "against": "reference", "atol": 2e-2, "kendall_tau_min": 0.987,
     "findings": ["vllm 0.11.1's online conversion of the original deviates from the reference by 5.0e-1 (in 23 of "
                  "23 pairs); the converted checkpoint does not"],
     "environment": "vllm-ascend 0.19.1, torch-npu 2.9.0, Python 3.11.7, Linux", "date": DATE},
]  # fmt: skip
GGUF = [
    {"file": "x-F32.gguf", "type": "f32", "bytes": 3 * 2**20, "sha256": "ab" * 32, "verdict": "pass", "pairs": 23,
     "max_abs_delta": 1.7e-4, "kendall_tau_median": None, "top1_agreement": None, "delta_ndcg10": None,
     "judged": "per pair: |Δ| ≤ 5e-04", "llama_cpp": "0.3.36", "date": DATE},
    {"file": "x-Q4_K_M.gguf", "type": "q4_k_m", "bytes": 2**20, "sha256": "cd" * 32, "verdict": "pass", "pairs": 120,
     "max_abs_delta": 4.2e-2, "kendall_tau_median": 0.95, "top1_agreement": 0.9, "delta_ndcg10": -1.0e-3,
     "judged": "rankings: median τ ≥ 0.9, top-1 ≥ 0.8, |ΔNDCG@10| ≤ 0.02", "llama_cpp": "0.3.36", "date": DATE},
]  # fmt: skip


def _facts(recipe, *, tied: bool, label_ids: tuple[int, ...], name: str, base: str | None) -> CardFacts:
    return CardFacts(
        name=name, recipe=recipe, label_ids=label_ids, tied=tied, dtype="bfloat16", pad_token="<|endoftext|>",
        pad_token_id=151643, hidden_size=1024, base_model=base, license="apache-2.0" if base else None,
        max_length=8192,
    )  # fmt: skip


def cases() -> dict[str, str]:
    """Card name -> rendered text: each preset tied and untied, local and hub references, with and without results;
    zerank-2 converted with --raw-logit; the generic conversions with one, two and three labels."""
    ids = {("no", "yes"): (2152, 9693), ("0", "1"): (15, 16), ("Yes",): (9454,), ("!",): (0,)}
    out = {}
    for recipe in PRESETS:
        label_ids = ids[recipe.label_tokens]
        fresh = _facts(recipe, tied=True, label_ids=label_ids, name=f"{recipe.name}-seq-cls", base=None)
        out[f"{recipe.name}-local"] = render_card(fresh, "converted/x-seq-cls")
        verified = _facts(recipe, tied=False, label_ids=label_ids, name=f"{recipe.name}-seq-cls", base="Org/x")
        out[f"{recipe.name}-hub"] = render_card(verified, "ORG/x-seq-cls", PARITY, GGUF)
    raw = _facts(ZERANK_2.raw(), tied=True, label_ids=(9454,), name="zerank-2-raw-seq-cls", base=None)
    out["zerank-2-raw-logit"] = render_card(raw, "converted/x-seq-cls")
    generic = {
        "generic-2-way": (("no", "yes"), FROM_2_WAY_SOFTMAX, (2152, 9693)),
        "generic-1-label": (("Yes",), NO_POST_PROCESSING, (9454,)),
        "generic-3-labels": (("no", "yes", "maybe"), NO_POST_PROCESSING, (2152, 9693, 49838)),
    }
    for name, (tokens, method, label_ids) in generic.items():
        recipe = generic_recipe("Qwen3ForCausalLM", tokens, method)
        out[name] = render_card(_facts(recipe, tied=True, label_ids=label_ids, name=name, base=None), "./x", PARITY)
    return out


@pytest.mark.parametrize("name", list(cases()))
def test_cards_are_byte_identical_to_the_recorded_ones(name):
    text = cases()[name]
    path = CARDS / f"{name}.md"
    if os.environ.get("SEQCLS_UPDATE_CARDS"):
        CARDS.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, f"{path.name} changed; see this file's docstring"
