"""Long documents cut as the reference cuts them (issue 35, first part): ``cut_document`` gives the text whose prompt
is the reference's truncated prompt, id for id, on the real Qwen3 vocabulary; ``document_token_limit`` gives vLLM a
``max_tokens_per_doc`` whose prompts always fit and keep the suffix; lengths the template cannot fit are refused."""

from __future__ import annotations

import random

import pytest
from test_bad_input import refuse

from converter.errors import SeqclsError
from converter.pairs import LONG_FILLER, Pair
from converter.recipes import MXBAI_RERANK_V2, QWEN3_RERANKER, generic_recipe
from converter.reference import iter_official
from converter.truncation import cut_document, document_token_limit, fit_pairs, template_length
from converter.verify.backends.base import load_tokenizer

QUERY = "What is the capital of China?"
WORDS = (LONG_FILLER + " internationalization Beijing naïve café, e.g. x=3.14; (see §2)").split(" ")


@pytest.fixture(scope="module")
def tokenizer(original):
    return load_tokenizer(original("tied-fp32-single"))


def _documents(count: int, seed: int = 0) -> list[str]:
    draw = random.Random(seed)
    return [" ".join(draw.choice(WORDS) for _ in range(draw.randint(40, 2500))) for _ in range(count)]


def _prompt(tokenizer, recipe, document: str, max_length: int = 10**6, instruction: str | None = None) -> list[int]:
    return next(iter_official(tokenizer, recipe, [Pair(QUERY, document, instruction)], max_length))


@pytest.mark.parametrize("recipe", [QWEN3_RERANKER, MXBAI_RERANK_V2], ids=lambda r: r.name)
def test_the_cut_document_gives_the_references_truncated_prompt(tokenizer, recipe):
    """Forty documents cut at lengths from just above the template to 600 tokens: the prompt of the cut text is the
    reference's truncated prompt exactly (instruction, query and suffix whole), and a document that fits comes back
    unchanged."""
    draw = random.Random(1)
    cut_any = 0
    for document in _documents(40):
        max_length = draw.randint(template_length(tokenizer, recipe) + 8, 600)
        cut = cut_document(tokenizer, recipe, QUERY, document, max_length=max_length)
        reference = _prompt(tokenizer, recipe, document, max_length)
        assert _prompt(tokenizer, recipe, cut) == reference
        assert len(reference) <= max_length and document.startswith(cut)
        cut_any += cut != document
    assert cut_any >= 30
    short = "The capital of China is Beijing."
    assert cut_document(tokenizer, recipe, QUERY, short, max_length=200) == short


def test_a_cut_inside_a_character_keeps_the_character_out(tokenizer):
    """Where the reference keeps the first byte of a character (a byte-level token), no text can: the character is
    left out, and the prompt still fits with its suffix."""
    document = "北京是中国的首都。" * 200
    for max_length in range(120, 140):
        cut = cut_document(tokenizer, QWEN3_RERANKER, QUERY, document, max_length=max_length)
        got = _prompt(tokenizer, QWEN3_RERANKER, cut)
        reference = _prompt(tokenizer, QWEN3_RERANKER, document, max_length)
        assert len(got) <= max_length and got[-9:] == reference[-9:], "the suffix is kept"
        assert len(reference) - len(got) <= 2


def test_a_query_that_leaves_no_room_is_an_error(tokenizer):
    with pytest.raises(SeqclsError, match="leaving no room for a document in 100; shorten the query"):
        cut_document(tokenizer, QWEN3_RERANKER, "why " * 200, "a document", max_length=100)
    with pytest.raises(SeqclsError, match="must be a positive number of tokens"):
        cut_document(tokenizer, QWEN3_RERANKER, QUERY, "a document", max_length=0)
    generic = generic_recipe("Qwen3ForCausalLM", ("yes",), "no_post_processing")
    with pytest.raises(SeqclsError, match="no known prompt format"):
        cut_document(tokenizer, generic, QUERY, "a document", max_length=100)


@pytest.mark.vllm
def test_vllms_max_tokens_per_doc_fits_and_keeps_the_suffix(tokenizer):
    """vLLM's own document cut (the function behind ``max_tokens_per_doc`` in /score and /v1/rerank), given
    ``document_token_limit``: every prompt fits and keeps its suffix, and the cut falls at most two tokens before the
    reference's (vLLM counts a document without the ``<Document>: `` before it)."""
    from vllm.entrypoints.pooling.scoring.utils import truncate_text_to_tokens

    draw, early = random.Random(2), []
    suffix = tokenizer(QWEN3_RERANKER.pieces[-1], add_special_tokens=False)["input_ids"]
    for document in _documents(30, seed=3):
        max_length = draw.randint(150, 600)
        limit = document_token_limit(tokenizer, QWEN3_RERANKER, QUERY, max_length=max_length)
        got = _prompt(tokenizer, QWEN3_RERANKER, truncate_text_to_tokens(document, tokenizer, limit))
        reference = _prompt(tokenizer, QWEN3_RERANKER, document, max_length)
        assert len(got) <= max_length and got[-len(suffix) :] == suffix
        early.append(len(reference) - len(got))
    assert all(0 <= n <= 2 for n in early) and any(early), early


@pytest.mark.parametrize("length", ["0", "-3", "20"])
def test_verify_refuses_a_length_the_template_cannot_fit(pair_of, capsys, length):
    src, out = pair_of("tied-fp32-single")
    match = "positive number of tokens" if length != "20" else "prompt's own 73 tokens; give at least 74"
    refuse(["verify", str(out), "--original", str(src), "--max-length", length], capsys, match)


def test_serve_refuses_a_length_that_is_not_positive(pair_of, capsys):
    _, out = pair_of("tied-fp32-single")
    refuse(["serve", str(out), "--max-model-len", "0", "--print"], capsys, "--max-model-len must be a positive")


def test_pairs_are_sent_with_the_documents_the_reference_cuts(tokenizer):
    """What verify's engine backends send: a pair over the length gets the cut document (its prompt is the
    reference's truncated one), every other pair is passed on as it is, and the cut pairs are named."""
    long, short = " ".join(WORDS * 40), "The capital of China is Beijing."
    pairs = [Pair(QUERY, short), Pair(QUERY, long), Pair(QUERY, long, "Judge whether the passage is long")]
    sent, cut = fit_pairs(tokenizer, QWEN3_RERANKER, pairs, 300)
    assert cut == [1, 2] and sent[0] is pairs[0]
    for p, s in zip(pairs[1:], sent[1:]):
        want = next(iter_official(tokenizer, QWEN3_RERANKER, [p], 300))
        assert len(want) == 300 and p.document.startswith(s.document) and s.instruction == p.instruction
        assert next(iter_official(tokenizer, QWEN3_RERANKER, [s], 10**6)) == want
    assert fit_pairs(tokenizer, QWEN3_RERANKER, pairs, 10**5) == (pairs, [])
    with pytest.raises(SeqclsError, match=r"^pair 1: the query and the prompt around it take"):
        fit_pairs(tokenizer, QWEN3_RERANKER, [pairs[0], Pair(long, long)], 300)
