"""transformers and sentence-transformers score raw pairs on a converted checkpoint as the original scores the
official format, using only the files the converter ships."""

from __future__ import annotations

import itertools
import json
import shutil

import pytest
import torch
from conftest import FAMILY_ORIGINALS
from helpers import official_scores
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from converter.pairs import Pair, builtin_pairs
from converter.recipes import QWEN3_RERANKER, preset, recipe_for_converted
from converter.templates import INPUT_FORMS, as_sent, input_forms, score_template
from converter.tiny_model import CHATML_TEMPLATE

PAIRS = builtin_pairs("A long document about rerankers. " * 40)
INSTRUCTION = "Given a question about planets, retrieve passages that name the planet"


def max_delta(a, b) -> float:
    assert len(a) == len(b)
    return max(abs(float(x) - float(y)) for x, y in zip(a, b))


def test_tokenizer_config_pads_left_and_carries_the_score_template(pair_of):
    src, out = pair_of("tied-fp32-single")
    config = json.loads((out / "tokenizer_config.json").read_text())
    source = json.loads((src / "tokenizer_config.json").read_text())
    # model_max_length: the reference's length for this model (its 4,096 positions; 8,192 for the real ones).
    assert config == {**source, "padding_side": "left", "pad_token": "<|endoftext|>", "model_max_length": 4096}
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.padding_side == "left" and tokenizer.pad_token_id == 151643
    assert tokenizer.chat_template == score_template(QWEN3_RERANKER, for_tokenizer=True)
    assert AutoTokenizer.from_pretrained(src).chat_template == CHATML_TEMPLATE


def test_a_generation_template_inside_tokenizer_config_is_replaced(copy_of, tmp_path):
    """Qwen's published tokenizer_config.json holds its chat template as a key rather than a file."""
    from converter import convert

    src = copy_of("tied-bf16-single")
    config = json.loads((src / "tokenizer_config.json").read_text())
    config["chat_template"] = (src / "chat_template.jinja").read_text()
    (src / "tokenizer_config.json").write_text(json.dumps(config))
    (src / "chat_template.jinja").unlink()
    convert(src, tmp_path / "out")
    assert "chat_template" not in json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
    expected = score_template(QWEN3_RERANKER, for_tokenizer=True)
    assert AutoTokenizer.from_pretrained(tmp_path / "out").chat_template == expected


@pytest.mark.parametrize("name", list(dict.fromkeys(["untied-fp32-sharded", *FAMILY_ORIGINALS.values()])))
def test_transformers_batched_pairs_match_the_original(pair_of, name):
    """What the model card shows: the tokenizer's own template, padded batches, a sigmoid; raw pairs, pairs
    formatted by hand as the seed's clients do, and a mix of the two where the query comes first."""
    src, out = pair_of(name)
    recipe = recipe_for_converted(json.loads((out / "config.json").read_text()))
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out, dtype=torch.float32).eval()
    expected = official_scores(src, PAIRS, recipe, rendered=recipe.name == "mxbai-rerank-v2")  # see test_presets
    for form in input_forms(recipe):
        scores = []
        for instruction, chunk in itertools.groupby(enumerate(PAIRS), key=lambda x: x[1].instruction):
            sent = [as_sent(recipe, p.query, p.document, p.instruction, form, i) for i, p in chunk]
            messages = [[{"role": "query", "content": q}, {"role": "document", "content": d}] for q, d in sent]
            kwargs = {"instruction": instruction} if instruction else {}
            batch = tokenizer.apply_chat_template(
                messages, padding=True, return_tensors="pt", return_dict=True, **kwargs
            )
            assert (batch["attention_mask"][:, -1] == 1).all(), "rows must end in a real token"
            with torch.no_grad():
                scores += torch.sigmoid(model(**batch).logits[:, 0]).tolist()
        assert max_delta(scores, expected) <= 1e-4, form


@pytest.fixture(scope="module")
def cross_encoder_pair(pair_of):
    from sentence_transformers import CrossEncoder

    src, out = pair_of("untied-fp32-single")
    return src, out, CrossEncoder(str(out), device="cpu")


@pytest.mark.parametrize("family", ["mxbai-rerank-v2", "bge-reranker-v2-gemma", "zerank-2"])
def test_sentence_transformers_pairs_match_the_original_for_every_preset(pair_of, family):
    """Gemma's BOS comes from the tokenizer's chat template here, as ST tokenizes without special tokens. Raw,
    seed-formatted and mixed pairs alike."""
    from sentence_transformers import CrossEncoder

    src, out = pair_of(FAMILY_ORIGINALS[family])
    recipe, model = preset(family), CrossEncoder(str(out), device="cpu")
    plain = [p for p in PAIRS if p.instruction is None]
    expected = official_scores(src, plain, recipe, rendered=family == "mxbai-rerank-v2")  # see test_presets
    for form in input_forms(recipe):
        sent = [as_sent(recipe, p.query, p.document, None, form, i) for i, p in enumerate(plain)]
        assert max_delta(model.predict(sent, batch_size=5), expected) <= 1e-4, form


def test_sentence_transformers_pairs_match_the_original(cross_encoder_pair):
    src, _, model = cross_encoder_pair
    plain = [p for p in PAIRS if p.instruction is None]
    expected = official_scores(src, plain)
    for form in INPUT_FORMS:
        sent = [as_sent(QWEN3_RERANKER, p.query, p.document, None, form, i) for i, p in enumerate(plain)]
        assert max_delta(model.predict(sent, batch_size=5), expected) <= 1e-4, form
    assert type(model.activation_fn).__name__ == "Sigmoid"


def test_sentence_transformers_prompt_is_the_instruction(cross_encoder_pair):
    src, _, model = cross_encoder_pair
    pairs = [Pair(p.query, p.document, INSTRUCTION) for p in PAIRS[:6]]
    expected = official_scores(src, pairs)
    for form in INPUT_FORMS:
        sent = [as_sent(QWEN3_RERANKER, p.query, p.document, INSTRUCTION, form, i) for i, p in enumerate(pairs)]
        assert max_delta(model.predict(sent, prompt=INSTRUCTION), expected) <= 1e-4, form
    scores = model.predict([(p.query, p.document) for p in pairs], prompt=INSTRUCTION)
    default = model.predict([(p.query, p.document) for p in pairs])
    assert max_delta(default, scores) > 1e-4, "the instruction must change the scores"


@pytest.mark.slow  # inner loop: see docs/testing.md
def test_sentence_transformers_cuts_an_over_length_document_as_the_reference_does(cross_encoder_pair, tmp_path):
    """sentence-transformers (6.3 or newer) cuts a prompt at the tokenizer's ``model_max_length`` and puts the
    template's end back: with the length the converter writes, the reference's cut (the document's end), exactly.
    Planted fault: the same checkpoint with another length (as a real Qwen3-Reranker's 131,072, capped by its 40,960
    positions, would be) cuts elsewhere: another score."""
    from sentence_transformers import CrossEncoder

    from converter.verify.parity import _long_document

    src, out, model = cross_encoder_pair
    long = Pair("What do long documents test?", _long_document(src, QWEN3_RERANKER, 4096))
    pairs = [long, Pair(long.query, long.document[: len(long.document) // 2]), PAIRS[0]]
    assert max_delta(model.predict([(p.query, p.document) for p in pairs]), official_scores(src, pairs)) <= 1e-6
    other = tmp_path / "other-length"
    shutil.copytree(out, other)
    config = json.loads((other / "tokenizer_config.json").read_text())
    (other / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 2048}))
    elsewhere = CrossEncoder(str(other), device="cpu").predict([(long.query, long.document)])
    assert max_delta(elsewhere, official_scores(src, [long])) > 1e-3


@pytest.mark.slow  # inner loop: see docs/testing.md
def test_sentence_transformers_without_the_score_template_is_caught(cross_encoder_pair, tmp_path):
    """Planted fault: the original's generation template in place of the score template."""
    from sentence_transformers import CrossEncoder

    src, out, _ = cross_encoder_pair
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "chat_template.jinja").write_text(CHATML_TEMPLATE)
    plain = PAIRS[:6]
    scores = CrossEncoder(str(broken), device="cpu").predict([(p.query, p.document) for p in plain])
    assert max_delta(scores, official_scores(src, plain)) > 1e-3
