"""The score template shipped with every converted checkpoint gives the official prompt, token for token. Through
vLLM itself it is checked in test_verify_vllm (``test_vllm_backend_tied_fp32``)."""

from __future__ import annotations

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
