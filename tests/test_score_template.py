"""The score template shipped with every converted checkpoint gives the official prompt, token for token."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from converter.pairs import Pair, builtin_pairs
from converter.recipes import QWEN3_RERANKER
from converter.reference import encode_official
from converter.templates import SCORE_TEMPLATE_FILE, score_template

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
    tokenizer = AutoTokenizer.from_pretrained(out)
    template = (out / SCORE_TEMPLATE_FILE).read_text()
    official = encode_official(tokenizer, QWEN3_RERANKER, PAIRS)
    for p, want in zip(PAIRS, official):
        kwargs = {"instruction": p.instruction} if p.instruction else {}
        text = tokenizer.apply_chat_template(_messages(p), chat_template=template, tokenize=False, **kwargs)
        assert text.endswith("</think>\n\n"), "the suffix lost its last newline"
        assert tokenizer(text)["input_ids"] == want, p


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_with_the_template_scores_raw_pairs_like_the_official_format(pair_of, tmp_path):
    """Raw (query, document) pairs through vLLM with the shipped template: the same token ids as Qwen's reference
    formatting, and the original model's scores."""
    from converter.reference import score_original
    from converter.verify.backends import run_engine
    from converter.vllm_compat import EngineSpec, engine_kwargs, require

    src, out = pair_of("tied-bf16-single")
    tokenizer = AutoTokenizer.from_pretrained(src)
    official = encode_official(tokenizer, QWEN3_RERANKER, PAIRS)
    expected = score_original(src, official, QWEN3_RERANKER, pad_id=151643, label_ids=(2152, 9693)).probabilities
    job = {
        "engine": engine_kwargs(EngineSpec(str(out), "float32", "cpu", max_model_len=4096), require()),
        "queries": [p.query for p in PAIRS],
        "documents": [p.document for p in PAIRS],
        "chat_template": (out / SCORE_TEMPLATE_FILE).read_text(),
        "chat_template_kwargs": [{"instruction": p.instruction} if p.instruction else None for p in PAIRS],
    }
    result = run_engine(job, "template", tmp_path, "cpu")
    assert result["prompt_token_ids"] == official
    assert max(abs(a - b) for a, b in zip(result["scores"], expected)) <= 1e-4
