"""ctxl-rerank-v2: the logit of vocabulary id 0 (``!`` in Qwen3's vocabulary) at the last token of a prompt whose
document comes before its query; the logit is the family's published score. Reference: the family's own formatting
(helpers.ctxl_reference_ids) and logit; a look-alike vocabulary and a converted checkpoint without its template are
refused."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from helpers import ctxl_reference_ids, load_all, rewrite_tensor
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from converter.cli import run
from converter.inspection import inspect_checkpoint
from converter.pairs import DEMO_PAIRS, Pair
from converter.recipes import CTXL_RERANK_V2, recipe_for_converted
from converter.templates import SCORE_TEMPLATE_FILE
from converter.verify import verify
from converter.verify.backends.base import load_tokenizer

ORIGINAL = "tiny-ctxl-rerank-v2"
INSTRUCTION = "Prioritize recent medical research"
PAIRS = [
    *DEMO_PAIRS,
    Pair(DEMO_PAIRS[0].query, "Not related at all.", INSTRUCTION),
    Pair("What are the health benefits of exercise?", "A 2024 study shows exercise helps.\n", INSTRUCTION),
]


def family_logits(src) -> torch.Tensor:
    """The family's score: the logit of id 0 at the last token of its own prompt, pair by pair."""
    tokenizer = load_tokenizer(src)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    out = []
    with torch.inference_mode():
        for p in PAIRS:
            ids = torch.tensor([ctxl_reference_ids(tokenizer, p.query, p.document, p.instruction)])
            out.append(model(input_ids=ids).logits[0, -1, 0])
    return torch.stack(out).double()


def classifier_logits(out) -> torch.Tensor:
    """The converted checkpoint as its card's transformers example runs it: the chat template (an instruction as its
    keyword), each instruction's pairs as one left-padded batch; in the pairs' order."""
    tokenizer = load_tokenizer(out)
    model = AutoModelForSequenceClassification.from_pretrained(out, dtype=torch.float32).eval()
    got = torch.zeros(len(PAIRS), dtype=torch.float64)
    with torch.inference_mode():
        for instruction in {p.instruction for p in PAIRS}:
            chosen = [i for i, p in enumerate(PAIRS) if p.instruction == instruction]
            messages = [[{"role": "query", "content": p.query}, {"role": "document", "content": p.document}]
                        for p in (PAIRS[i] for i in chosen)]  # fmt: skip
            kwargs = {"instruction": instruction} if instruction else {}
            batch = tokenizer.apply_chat_template(messages, padding=True, return_tensors="pt", return_dict=True,
                                                  **kwargs)  # fmt: skip
            got[chosen] = model(**batch).logits[:, 0].double()
    return got


def test_the_converted_logit_is_the_familys_score(pair_of):
    """transformers gives the family's logit through the checkpoint's own template (document first, the instruction
    after the query), batched with left padding; sentence-transformers gives it with the identity activation and its
    sigmoid by default; the card and inspect say which is which."""
    from sentence_transformers import CrossEncoder

    src, out = pair_of(ORIGINAL)
    want = family_logits(src)
    assert PAIRS[-1].instruction and len({round(x, 4) for x in want.tolist()}) == len(PAIRS)
    assert torch.allclose(classifier_logits(out), want, atol=1e-5)
    model = CrossEncoder(str(out), device="cpu")
    plain = [i for i, p in enumerate(PAIRS) if not p.instruction]
    prompted = [i for i, p in enumerate(PAIRS) if p.instruction == INSTRUCTION]
    logits = model.predict([(PAIRS[i].query, PAIRS[i].document) for i in plain], activation_fn=torch.nn.Identity())
    assert torch.allclose(torch.tensor(logits).double(), want[plain], atol=1e-5)
    scores = model.predict([(PAIRS[i].query, PAIRS[i].document) for i in prompted], prompt=INSTRUCTION)
    assert torch.allclose(torch.tensor(scores).double(), torch.sigmoid(want[prompted]), atol=1e-5)
    w = load_all(src)["model.embed_tokens.weight"].float()
    assert torch.equal(load_all(out)["score.weight"], w[0].reshape(1, -1))
    config = json.loads((out / "config.json").read_text())
    assert config["seqcls"]["recipe"] == "ctxl-rerank-v2" and config["seqcls"]["label_tokens"] == ["!"]
    assert recipe_for_converted(config) == CTXL_RERANK_V2
    assert inspect_checkpoint(out)["score"].startswith("the logit, the family's own score")
    card = (out / "README.md").read_text()
    assert "original:  logit_!   at the last token (the family's score is the raw logit)" in card
    assert "<Document> {document}\\n\n<Query> {query} {instruction} ??" in card


def test_verify_passes_and_catches_another_row(pair_of, tmp_path):
    """The official ids are the family's own (a document ending with a newline included: tokenized whole, ``\\n\\n``
    is one token). The planted fault: a head that holds the row of id 1 (``"``) instead of id 0."""
    src, out = pair_of(ORIGINAL)
    report = verify(out, src, pairs=PAIRS)
    assert report["verdict"] == "pass" and report["metrics"]["max_abs_delta"] <= 1e-5
    assert report["token_ids"] == {"mismatched_pairs": [], "official_mismatched_pairs": []}
    bad = tmp_path / "ctxl-rerank-v2-wrong-row"
    shutil.copytree(out, bad)
    rewrite_tensor(bad, "score.weight", load_all(src)["model.embed_tokens.weight"].float()[1].reshape(1, -1))
    report = verify(bad, src, pairs=PAIRS)
    assert report["verdict"] == "fail" and len(report["failed_pairs"]) == len(PAIRS)


def _retokenized(src, tmp_path, change) -> object:
    """A copy of the original under ctxl's name whose tokenizer.json vocabulary ``change`` edits."""
    look = tmp_path / "ctxl-rerank-v2-lookalike"
    shutil.copytree(src, look)
    data = json.loads((look / "tokenizer.json").read_text())
    change(data["model"]["vocab"])
    (look / "tokenizer.json").write_text(json.dumps(data))
    return look


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda v: v.update({"!": v['"'], '"': v["!"]}), "but ctxl-rerank-v2 scores id 0: it is not a ctxl-rerank-v2"),
        (lambda v: v.pop("!"), "tokenizer.json is not a readable tokenizer (Token `!` out of vocabulary"),
    ],
    ids=["another-vocabulary", "no-label-token"],
)
def test_bad_input_is_one_line_and_writes_nothing(original, tmp_path, capsys, change, message):
    src = _retokenized(original(ORIGINAL), tmp_path, change)
    out = tmp_path / "out"
    assert run(["convert", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("command", ["verify", "serve"])
def test_a_conversion_without_its_template_is_refused(pair_of, tmp_path, capsys, command):
    """Without its template a ctxl checkpoint scores raw pairs with no prompt (its base model's chat template is no
    substitute): verify and serve say so in one line and stop."""
    src, out = pair_of(ORIGINAL)
    bare = tmp_path / "ctxl-rerank-v2-bare"
    shutil.copytree(out, bare)
    (bare / SCORE_TEMPLATE_FILE).unlink()
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = ["verify", str(bare), "--original", str(src)] if command == "verify" else ["serve", str(bare), "--print"]
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert SCORE_TEMPLATE_FILE in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "nothing written beside it"
