"""Synthetic checkpoints of the real Qwen3-Reranker and Qwen3-VL-Reranker shapes (random finite bf16, the real
vocabulary, shards of at most 4 GB in model order, lm_head last), made once into a benchmark's workdir: the
benchmarks measure I/O and compute at the published sizes without downloading them."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converter.io.safetensors_format import encode_header

VOCAB, HEAD_DIM, SHARD_LIMIT = 151669, 128, 4_000_000_000


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    tied: bool


SHAPES = {
    "tiny": Shape(256, 2, 2, 1, 512, tied=True),  # the real vocabulary, two layers: the --quick smoke run
    "0.6B": Shape(1024, 28, 16, 8, 3072, tied=True),
    "4B": Shape(2560, 36, 32, 8, 9728, tied=True),
    "8B": Shape(4096, 36, 32, 8, 12288, tied=False),
}


def tensor_shapes(s: Shape) -> list[tuple[str, tuple[int, ...]]]:
    q, kv = s.heads * HEAD_DIM, s.kv_heads * HEAD_DIM
    out = [("model.embed_tokens.weight", (VOCAB, s.hidden))]
    for i in range(s.layers):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", (s.hidden,)),
            (p + "self_attn.q_proj.weight", (q, s.hidden)),
            (p + "self_attn.k_proj.weight", (kv, s.hidden)),
            (p + "self_attn.v_proj.weight", (kv, s.hidden)),
            (p + "self_attn.o_proj.weight", (s.hidden, q)),
            (p + "self_attn.q_norm.weight", (HEAD_DIM,)),
            (p + "self_attn.k_norm.weight", (HEAD_DIM,)),
            (p + "post_attention_layernorm.weight", (s.hidden,)),
            (p + "mlp.gate_proj.weight", (s.intermediate, s.hidden)),
            (p + "mlp.up_proj.weight", (s.intermediate, s.hidden)),
            (p + "mlp.down_proj.weight", (s.hidden, s.intermediate)),
        ]
    out.append(("model.norm.weight", (s.hidden,)))
    if not s.tied:
        out.append(("lm_head.weight", (VOCAB, s.hidden)))
    return out


VL_SHAPES = {
    "VL-2B": {
        "text": {"hidden_size": 2048, "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
                 "head_dim": 128, "intermediate_size": 6144, "vocab_size": 151936},
        "vision": {"depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16,
                   "out_hidden_size": 2048, "deepstack_visual_indexes": [5, 11, 17]},
        "tied": True,
    },
    "VL-8B": {
        "text": {"hidden_size": 4096, "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8,
                 "head_dim": 128, "intermediate_size": 12288, "vocab_size": 151936},
        "vision": {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "num_heads": 16,
                   "out_hidden_size": 4096, "deepstack_visual_indexes": [8, 16, 24]},
        "tied": False,
    },
}  # fmt: skip
"""Qwen3-VL-Reranker-2B (tied) and -8B (untied): the sizes of the published Qwen3-VL-2B/8B configurations they are
built on. Their tensors' names and shapes come from transformers' own model, built on the meta device."""


def vl_layout(name: str) -> tuple[list[tuple[str, tuple[int, ...]]], dict]:
    """(tensor names and shapes in the model's order, lm_head last and absent when tied; config.json)."""
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    spec = VL_SHAPES[name]
    text = spec["text"] | {"tie_word_embeddings": spec["tied"], "max_position_embeddings": 262144,
                           "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0,
                                               "mrope_section": [24, 20, 20], "mrope_interleaved": True}}  # fmt: skip
    config = Qwen3VLConfig(text_config=text, vision_config=spec["vision"], tie_word_embeddings=spec["tied"])
    config.architectures = ["Qwen3VLForConditionalGeneration"]
    with torch.device("meta"):
        model = Qwen3VLForConditionalGeneration(config)
    shapes = [(n, tuple(t.shape)) for n, t in model.state_dict().items() if n != "lm_head.weight"]
    if not spec["tied"]:
        shapes.append(("lm_head.weight", tuple(model.lm_head.weight.shape)))
    return shapes, config.to_dict()


def shape_tensors(name: str) -> list[tuple[str, tuple[int, ...]]]:
    return vl_layout(name)[0] if name in VL_SHAPES else tensor_shapes(SHAPES[name])


def synthesize_vl(name: str, folder: Path) -> Path:
    """A Qwen3-VL-Reranker of the shape, with the Qwen3 vocabulary and Qwen3-VL's processor files (the folder's name
    is how convert recognises the family)."""
    if (folder / "config.json").is_file():
        return folder
    from converter.tiny_model import QWEN3_VL_IMAGE_PROCESSOR, QWEN3_VL_TEMPLATE, QWEN3_VL_VIDEO_PROCESSOR

    shapes, config = vl_layout(name)
    processor = {"preprocessor_config.json": QWEN3_VL_IMAGE_PROCESSOR,
                 "video_preprocessor_config.json": QWEN3_VL_VIDEO_PROCESSOR}  # fmt: skip
    return _synthesize(name, folder, shapes, config | {"torch_dtype": "bfloat16"}, QWEN3_VL_TEMPLATE, processor)


def synthesized_conversion(shape: str, workdir: Path) -> tuple[Path, Path]:
    """The shape's synthesized original and its conversion by seqcls, each made once in ``workdir``."""
    from converter import convert

    original = synthesize(shape, SHAPES[shape], workdir / shape)
    converted = workdir / f"{shape}-seq-cls"
    if not (converted / "config.json").is_file():
        convert(original, converted)
    return original, converted


def synthesize(name: str, s: Shape, folder: Path) -> Path:
    if (folder / "config.json").is_file():
        return folder
    config = {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": s.hidden,
        "num_hidden_layers": s.layers, "num_attention_heads": s.heads, "num_key_value_heads": s.kv_heads,
        "head_dim": HEAD_DIM, "intermediate_size": s.intermediate, "vocab_size": VOCAB,
        "tie_word_embeddings": s.tied, "torch_dtype": "bfloat16", "bos_token_id": 151643, "eos_token_id": 151645,
        "max_position_embeddings": 40960, "rms_norm_eps": 1e-6, "rope_theta": 1000000, "transformers_version": "4.51.0",
    }  # fmt: skip
    return _synthesize(name, folder, tensor_shapes(s), config)


def _synthesize(name: str, folder: Path, shapes, config: dict, chat_template: str | None = None,
                extra: dict | None = None) -> Path:  # fmt: skip
    """Shards of at most 4 GB in model order, lm_head last, as the published checkpoints are laid out."""
    from converter.tiny_model import build_qwen3_tokenizer

    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    groups: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for tname, shape in shapes:
        n = int(np.prod(shape)) * 2
        if groups[-1] and (size + n > SHARD_LIMIT or tname == "lm_head.weight"):
            groups.append([])
            size = 0
        groups[-1].append((tname, shape))
        size += n
    rng = np.random.default_rng(0)
    weight_map = {}
    for i, group in enumerate(groups, 1):
        fname = f"model-{i:05d}-of-{len(groups):05d}.safetensors" if len(groups) > 1 else "model.safetensors"
        _write_random_shard(tmp / fname, group, rng)
        weight_map |= {t: fname for t, _ in group}
    if len(groups) > 1:
        index = {"metadata": {"total_size": sum(int(np.prod(sh)) * 2 for _, sh in shapes)}}
        (tmp / "model.safetensors.index.json").write_text(json.dumps(index | {"weight_map": weight_map}))
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    tokenizer = build_qwen3_tokenizer()
    default_template, tokenizer.chat_template = tokenizer.chat_template, chat_template or tokenizer.chat_template
    try:
        tokenizer.save_pretrained(tmp)
    finally:
        tokenizer.chat_template = default_template
    for file, data in (extra or {}).items():
        (tmp / file).write_text(json.dumps(data, indent=2))
    tmp.rename(folder)
    print(f"synthesized {name} in {folder}", file=sys.stderr)
    return folder


@dataclass(frozen=True)
class _Planned:
    name: str
    shape: tuple[int, ...]
    dtype: str = "BF16"

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * 2


def _write_random_shard(path: Path, group, rng) -> None:
    """Random finite bf16 (the exponent's top bit cleared), written in chunks to keep memory flat."""
    entries = [_Planned(t, shape) for t, shape in group]
    left = sum(e.nbytes for e in entries)
    with open(path, "wb") as f:
        f.write(encode_header(entries, {"format": "pt"}))
        while left:
            n = min(256 << 20, left)
            f.write((np.frombuffer(rng.bytes(n), "<u2") & np.uint16(0xBFFF)).tobytes())
            left -= n
