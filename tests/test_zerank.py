"""zerank-2: one ``Yes`` logit (id 9454 in Qwen3's vocabulary) at the last token, its calibrated score
``sigmoid(logit / 5)`` folded into the float32 head, or the raw logit kept (``--raw-logit``); a look-alike with
another vocabulary is refused. Reference: the family's own formatting (helpers.zerank_reference_ids) and logit."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from helpers import load_all, rewrite_tensor, zerank_reference_ids
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from converter.cli import run
from converter.inspection import inspect_checkpoint
from converter.pairs import DEMO_PAIRS, Pair
from converter.recipes import ZERANK_2, recipe_for_converted
from converter.verify import verify
from converter.verify.backends.base import load_tokenizer

ORIGINAL = "tiny-zerank-2"
PAIRS = [*DEMO_PAIRS, *(Pair(p.query, "Not related at all.") for p in DEMO_PAIRS[:2])]


def raw_logits(src) -> torch.Tensor:
    """The family's score: the ``Yes`` logit at the last token of its own prompt, pair by pair."""
    tokenizer = load_tokenizer(src)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    out = []
    with torch.inference_mode():
        for p in PAIRS:
            ids = torch.tensor([zerank_reference_ids(tokenizer, p.query, p.document)])
            out.append(model(input_ids=ids).logits[0, -1, 9454])
    return torch.stack(out).double()


def classifier_logits(out) -> torch.Tensor:
    """The converted checkpoint as its card's transformers example runs it (the chat template, one pair at a time)."""
    tokenizer = load_tokenizer(out)
    model = AutoModelForSequenceClassification.from_pretrained(out, dtype=torch.float32).eval()
    got = []
    with torch.inference_mode():
        for p in PAIRS:
            messages = [[{"role": "query", "content": p.query}, {"role": "document", "content": p.document}]]
            batch = tokenizer.apply_chat_template(messages, return_tensors="pt", return_dict=True)
            got.append(model(**batch).logits[0, 0])
    return torch.stack(got).double()


@pytest.mark.slow  # inner loop: see docs/testing.md
def test_the_converted_score_is_the_cards_calibrated_score(pair_of):
    """transformers and sentence-transformers give sigmoid(logit / 5) as they load the checkpoint, with no option;
    the fixture's logits are large enough that the calibration changes every score."""
    from sentence_transformers import CrossEncoder

    src, out = pair_of(ORIGINAL)
    raw = raw_logits(src)
    want = torch.sigmoid(raw / 5)
    assert (torch.sigmoid(raw) - want).abs().min() > 1e-3, "the fixture cannot tell the calibration apart"
    assert torch.allclose(torch.sigmoid(classifier_logits(out)), want, atol=1e-5)
    predicted = CrossEncoder(str(out), device="cpu").predict([(p.query, p.document) for p in PAIRS])
    assert torch.allclose(torch.tensor(predicted).double(), want, atol=1e-5)
    config = json.loads((out / "config.json").read_text())
    assert config["seqcls"]["temperature"] == 5.0 and recipe_for_converted(config) == ZERANK_2
    assert inspect_checkpoint(out)["score"].startswith("sigmoid(logit / 5): the family's calibrated score")
    card = (out / "README.md").read_text()
    assert "p = sigmoid(logit_Yes / 5)" in card and "`fp32(W[9454]) / 5`" in card and "--raw-logit" in card


@pytest.mark.slow  # inner loop: see docs/testing.md
def test_raw_logit_keeps_the_logit_and_says_so(original, tmp_path, capsys):
    src = original(ORIGINAL)
    out = tmp_path / "zerank-2-raw"
    assert run(["convert", str(src), "-o", str(out), "--raw-logit"]) == 0
    w = load_all(src)["model.embed_tokens.weight"].float()
    assert torch.equal(load_all(out)["score.weight"], w[9454].reshape(1, -1))
    config = json.loads((out / "config.json").read_text())
    assert config["seqcls"]["temperature"] == 1.0 and recipe_for_converted(config).temperature == 1.0
    assert torch.allclose(classifier_logits(out), raw_logits(src), atol=1e-5)
    assert inspect_checkpoint(out)["score"].startswith("the raw logit (--raw-logit)")
    card = (out / "README.md").read_text()
    assert "Converted with `--raw-logit`" in card and "sigmoid(logit / 5)" in card
    report = verify(out, src, pairs=PAIRS)
    assert report["verdict"] == "pass" and report["token_ids"]["official_mismatched_pairs"] == []


def test_verify_judges_the_calibration_and_catches_a_head_without_it(pair_of, tmp_path):
    """The planted fault: a calibrated checkpoint whose head holds the raw row (scores sigmoid(logit), not the
    card's score)."""
    src, out = pair_of(ORIGINAL)
    report = verify(out, src, pairs=PAIRS)
    assert report["verdict"] == "pass" and report["metrics"]["max_abs_delta"] <= 1e-5
    assert report["token_ids"] == {"mismatched_pairs": [], "official_mismatched_pairs": []}
    bad = tmp_path / "uncalibrated"
    shutil.copytree(out, bad)
    rewrite_tensor(bad, "score.weight", load_all(out)["score.weight"] * 5)
    report = verify(bad, src, pairs=PAIRS)
    assert report["verdict"] == "fail" and len(report["failed_pairs"]) == len(PAIRS)


def _retokenized(src, tmp_path, change) -> object:
    """A copy of the original under zerank's name whose tokenizer.json vocabulary ``change`` edits."""
    look = tmp_path / "zerank-2-lookalike"
    shutil.copytree(src, look)
    data = json.loads((look / "tokenizer.json").read_text())
    change(data["model"]["vocab"])
    (look / "tokenizer.json").write_text(json.dumps(data))
    return look


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda v: v.update({"Yes": v["No"], "No": v["Yes"]}), "but zerank-2 scores id 9454: it is not a zerank-2"),
        (lambda v: v.pop("Yes"), "Yes"),
    ],
    ids=["another-vocabulary", "no-yes-token"],
)
def test_bad_input_is_one_line_and_writes_nothing(original, tmp_path, capsys, change, message):
    src = _retokenized(original(ORIGINAL), tmp_path, change)
    out = tmp_path / "out"
    assert run(["convert", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_raw_logit_for_a_family_without_a_calibration_is_refused(original, tmp_path, capsys):
    assert run(["convert", str(original("tied-fp32-single")), "-o", str(tmp_path / "out"), "--raw-logit"]) == 2
    err = capsys.readouterr().err
    assert "--raw-logit applies to families with a calibrated score" in err and not (tmp_path / "out").exists()
