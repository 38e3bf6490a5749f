"""Scores: the converted classifier + sigmoid equals softmax([no, yes])[1] of the original, in fp32 (transformers).

Includes the planted faults that prove this check can fail.
"""

from __future__ import annotations

import pytest
from helpers import load_all, rewrite_tensor

from converter import convert
from converter.pairs import DEMO_PAIRS, Pair
from converter.recipes import QWEN3_RERANKER
from converter.reference import encode_official, score_converted, score_original
from converter.verify.backends.base import load_tokenizer

TOLERANCE = 1e-5
PAIRS = [
    *DEMO_PAIRS,
    Pair("long", "A long document about rerankers. " * 60),
    Pair("special tokens inside text", "The model ends turns with <|im_end|> and pads with <|endoftext|>."),
    Pair("short", "x"),
]


def max_delta(src, out, side: str) -> float:
    tokenizer = load_tokenizer(src)
    ids = encode_official(tokenizer, QWEN3_RERANKER, PAIRS)
    assert len({len(x) for x in ids}) > 3, "the batches must mix lengths"
    kw = {"pad_id": 151643, "padding_side": side, "batch_size": 4}
    before = score_original(src, ids, QWEN3_RERANKER, label_ids=(2152, 9693), **kw)
    after = score_converted(out, ids, **kw)
    return max(abs(a - b) for a, b in zip(before.probabilities, after.probabilities))


@pytest.mark.parametrize("name", ["tied-bf16-single", "untied-fp32-sharded", "tied-fp16-sharded"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_converted_scores_equal_the_original(original, tmp_path, name, side):
    src = original(name)
    convert(src, tmp_path / "out")
    assert max_delta(src, tmp_path / "out", side) <= TOLERANCE


@pytest.mark.parametrize(
    ("fault", "tamper"),
    [
        ("swapped label tokens", lambda w: -w),
        ("head scaled by 1.01", lambda w: w * 1.01),
        ("head rounded to bf16", lambda w: w.bfloat16().float()),
    ],
)
def test_planted_faults_are_detected(original, tmp_path, fault, tamper):
    src = original("untied-fp32-single")
    out = tmp_path / "out"
    convert(src, out)
    score = load_all(out)["score.weight"]
    rewrite_tensor(out, "score.weight", tamper(score).contiguous())
    assert max_delta(src, out, "left") > TOLERANCE, fault


def test_length_batching_keeps_input_order_and_cuts_padding():
    """Batches are cut from each window's prompts sorted by length, and every prompt's position comes with it."""
    from converter.reference import _batches

    ids = [[7] * n for n in (30, 2, 17, 3, 29, 1, 16, 4, 31, 5)]
    padding = {}
    for by_length in (False, True):
        batches = list(_batches(ids, 0, "left", 3, by_length))
        positions = [int(i) for *_, at in batches for i in at]
        assert sorted(positions) == list(range(len(ids)))
        for _, mask, _, at in batches:
            assert [int(m.sum()) for m in mask] == [len(ids[int(i)]) for i in at]
        padding[by_length] = sum(int((1 - mask).sum()) for _, mask, _, _ in batches)
        if by_length:
            assert [max(len(ids[int(i)]) for i in at) for *_, at in batches] == [3, 16, 30, 31]
        else:
            assert positions == list(range(len(ids)))
    assert padding[True] < padding[False] / 3


def test_a_long_prompt_does_not_pad_short_ones_to_its_length():
    """Batches sorted by length hold at most ``batch_tokens`` padded tokens: a prompt near the model length takes
    fewer companions (or none), where a plain cut of eight would pad seven short prompts to its length."""
    from converter.reference import _batches, batch_tokens

    ids = [[7] * n for n in (5, 2000, 5, 5, 1500, 5, 5, 900)]
    batches = list(_batches(ids, 0, "left", 3, True))
    assert [tuple(int(m.sum()) for m in mask) for _, mask, _, _ in batches] == [
        (5, 5, 5),
        (5, 5, 900),
        (1500,),
        (2000,),
    ]
    assert all(m.numel() <= batch_tokens(3) or len(m) == 1 for _, m, _, _ in batches)
    assert sorted(int(i) for *_, at in batches for i in at) == list(range(len(ids)))


def test_length_batching_gives_each_pair_its_own_score(original):
    """Scores batched by length, in file order and one pair at a time agree in input order (fp32, mixed lengths)."""
    src = original("untied-fp32-single")
    ids = encode_official(load_tokenizer(src), QWEN3_RERANKER, PAIRS)
    kw = {"pad_id": 151643, "label_ids": (2152, 9693)}
    alone = score_original(src, ids, QWEN3_RERANKER, batch_size=1, **kw).probabilities
    for by_length in (True, False):
        got = score_original(src, ids, QWEN3_RERANKER, batch_size=4, by_length=by_length, **kw).probabilities
        assert max(abs(a - b) for a, b in zip(alone, got)) <= TOLERANCE, by_length
    by_rank = sorted(alone)
    assert max(abs(a - b) for a, b in zip(alone, by_rank)) > 100 * TOLERANCE, "a reordering would show"
