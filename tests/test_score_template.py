"""The score template shipped with every converted checkpoint gives the official prompt, token for token. Through
vLLM itself it is checked in test_verify_vllm (``test_vllm_backend_tied_fp32``)."""

from __future__ import annotations

import pytest
from conftest import FAMILY_ORIGINALS

from converter.pairs import Pair, builtin_pairs
from converter.recipes import QWEN3_RERANKER, preset
from converter.reference import encode_official
from converter.templates import SCORE_TEMPLATE_FILE, as_sent, half_marks, input_forms, score_template
from converter.verify.backends.base import load_tokenizer

PAIRS = [
    *builtin_pairs("A long document. " * 200),
    Pair("trailing newline in a document", "ends with a newline\n"),
    Pair("instruction given", "document", "Retrieve passages that contradict the query"),
]


def _messages(p: Pair) -> list[dict]:
    return [{"role": "query", "content": p.query}, {"role": "document", "content": p.document}]


def test_every_converted_checkpoint_carries_the_template(pair_of):
    for name in ("tied-bf16-single", "untied-fp32-sharded"):
        _, out = pair_of(name)
        assert (out / SCORE_TEMPLATE_FILE).read_text() == score_template(QWEN3_RERANKER)


def test_rendered_template_tokenizes_to_the_official_ids(pair_of):
    _, out = pair_of("tied-bf16-single")
    tokenizer = load_tokenizer(out)
    template = (out / SCORE_TEMPLATE_FILE).read_text()
    official = encode_official(tokenizer, QWEN3_RERANKER, PAIRS)
    for p, want in zip(PAIRS, official):
        kwargs = {"instruction": p.instruction} if p.instruction else {}
        text = tokenizer.apply_chat_template(_messages(p), chat_template=template, tokenize=False, **kwargs)
        assert text.endswith("</think>\n\n"), "the suffix lost its last newline"
        assert tokenizer(text)["input_ids"] == want, p


@pytest.mark.parametrize("family", list(FAMILY_ORIGINALS))
def test_seed_formatted_and_mixed_input_is_not_wrapped_twice(pair_of, family):
    """Every form a client may send (raw, formatted by hand as the seed does, a mix where the query comes first)
    renders the same prompt, in the score template (vLLM) and the tokenizer's chat template: the official ids for
    all but mxbai (whose template ids differ from its piecewise reference at two newlines, see test_presets, and equal
    the raw form's). ctxl-rerank-v2's seed sends the document's half as vLLM's query: it has no mixed form."""
    assert ("mixed" in input_forms(preset(family))) is (family != "ctxl-rerank-v2")
    recipe = preset(family)
    _, out = pair_of(FAMILY_ORIGINALS[family])
    tokenizer = load_tokenizer(out)
    pairs = [*PAIRS, Pair("instruction given", "second document", "Retrieve passages that contradict the query")]
    for for_tokenizer in (False, True):
        _check_forms(tokenizer, recipe, pairs, score_template(recipe, for_tokenizer=for_tokenizer), for_tokenizer)


def _check_forms(tokenizer, recipe, pairs, template, for_tokenizer):
    special = {"add_special_tokens": not for_tokenizer}
    ids = {}
    for form in input_forms(recipe):
        ids[form] = []
        for i, p in enumerate(pairs):
            query, document = as_sent(recipe, p.query, p.document, p.instruction, form, i)
            kwargs = {"instruction": p.instruction} if p.instruction else {}
            messages = [{"role": "query", "content": query}, {"role": "document", "content": document}]
            text = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False, **kwargs)
            ids[form].append(tokenizer(text, **special)["input_ids"])
    assert ids["seed-formatted"] == ids["raw"] and ids.get("mixed", ids["raw"]) == ids["raw"]
    if recipe.name != "mxbai-rerank-v2":
        assert ids["raw"] == encode_official(tokenizer, recipe, pairs)


@pytest.mark.parametrize("family", list(FAMILY_ORIGINALS))
def test_formatting_is_recognised_only_whole(pair_of, family):
    """A raw part that merely opens like a formatted one, or only closes like one, is still formatted; the one
    ambiguity (opening and closing both) is the documented one."""
    recipe = preset(family)
    _, out = pair_of(FAMILY_ORIGINALS[family])
    tokenizer = load_tokenizer(out)
    template = score_template(recipe)
    halves = recipe.pieces[: recipe.document_from], recipe.pieces[recipe.document_from :]
    (q_open, q_close), (d_open, d_close) = map(half_marks, halves)

    def render(query: str, document: str) -> str:
        messages = [{"role": "query", "content": query}, {"role": "document", "content": document}]
        return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False)

    # A half with no opening text (zerank-2's document) is taken as formatted by its closing alone, and one with no
    # closing text (ctxl-rerank-v2's first) by its opening alone: their ambiguity.
    opening_only = q_open + "q" if q_close else "q"
    closing_only = "d" + d_close if d_open else "d"
    exact = q_open if q_close else q_open[:-1]
    for query, document in [(opening_only, d_open + "d"), ("q" + q_close, closing_only), (exact, d_open)]:
        assert render(query, document) == recipe.format_pair(query, document), (query, document)
    assert render(q_open + "q" + q_close, d_open + "d" + d_close) == q_open + "q" + q_close + d_open + "d" + d_close
    if not d_open:
        assert render("q", "d" + d_close) == recipe.halves("q", "")[0] + "d" + d_close
