"""``export_gguf``: a converted checkpoint as GGUF files that llama.cpp serves as a reranker with ``--reranking``.

llama.cpp's own converter refuses ``score.weight`` (it has no mapping) and builds the head only from an original
whose folder or README looks like a reranker. Here the head comes from the converted checkpoint: its one row ``w``
is written as ``[w; 0]`` in float32 whatever the type, because rank pooling softmaxes the head's rows and returns
the first (``Recipe.llamacpp``). Tensors stream a slice at a time through the ``gguf`` package's writer; quantized
types come from llama.cpp's own quantizer, fed an intermediate file in the source's float type. All files of a run
appear together, or none does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import SeqclsError
from ..io.checkpoint import Checkpoint, open_checkpoint
from ..io.safetensors_format import DTYPE_BYTES, TensorInfo
from ..recipes import CONFIG_KEY, Recipe, recipe_for_converted
from ..write import check_output, staged_folder

SLICE_BYTES = 32 << 20
"""What one tensor holds in memory at a time while it is converted."""
FLOAT_TYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16"}
"""Written here, each 2-D weight in that ggml type (1-D norms stay F32)."""
QUANTIZED_TYPES = ("q8_0", "q6_k", "q5_k_m", "q4_k_m")
"""Made by llama.cpp's quantizer."""
TYPES = (*FLOAT_TYPES, *QUANTIZED_TYPES)
DEFAULT_TYPES = ("f16",)
SOURCE_FLOAT = {"F32": "f32", "F16": "f16", "BF16": "bf16"}
HEAD = "score.weight"
HEAD_GGUF = "cls.output.weight"
KEY_RECIPE = "seqcls.recipe"
KEY_INSTRUCTION = "seqcls.instruction"
KEY_SOURCE = "seqcls.source"
KEY_TEMPERATURE = "seqcls.temperature"
"""A calibrated family's temperature in the head (1: the raw logit, ``--raw-logit``), as text."""


@dataclass(frozen=True)
class Exported:
    path: Path
    type: str


def default_output(converted: Path) -> Path:
    converted = Path(converted).resolve()
    return converted.parent / f"{converted.name}-GGUF"


def file_name(converted: Path, type_: str) -> str:
    return f"{Path(converted).resolve().name}-{type_.upper()}.gguf"


def export_gguf(
    converted: str | Path,
    out: str | Path | None = None,
    *,
    types: Sequence[str] = DEFAULT_TYPES,
    instruction: str | None = None,
    overwrite: bool = False,
    threads: int | None = None,
) -> list[Exported]:
    """Write one GGUF file per type into ``out`` (default: ``CONVERTED-GGUF`` beside it). ``instruction`` goes
    into the rerank template (default: the family's). Raises ``SeqclsError`` for bad input, leaving nothing."""
    converted = Path(converted)
    types = _check_types(types)
    try:
        import gguf  # noqa: F401  (the writer; llama.cpp's library is checked when first used)
    except ImportError:
        from .llamacpp import INSTALL_HINT

        raise SeqclsError(f"GGUF export needs the gguf package: {INSTALL_HINT}") from None
    checkpoint = _open_converted(converted)
    recipe = recipe_for_converted(checkpoint.config)
    if recipe.llamacpp is None:
        raise SeqclsError(f"llama.cpp cannot score {recipe.title} as its authors do: {recipe.llamacpp_refusal}")
    target = Path(out) if out is not None else default_output(converted)
    check_output(converted, target, overwrite, f"the checkpoint folder {converted}")
    with staged_folder(target) as tmp:
        made = _write_all(checkpoint, recipe, converted, tmp, types, instruction, threads)
    return [Exported(target / e.path.name, e.type) for e in made]


def _check_types(types: Sequence[str]) -> list[str]:
    wanted = list(dict.fromkeys(t.lower() for t in types))
    unknown = [t for t in wanted if t not in TYPES]
    if unknown or not wanted:
        raise SeqclsError(f"unknown GGUF type {', '.join(unknown) or '(none)'}; choose from {', '.join(TYPES)}")
    return wanted


def _open_converted(converted: Path) -> Checkpoint:
    if not converted.is_dir():
        raise SeqclsError(f"{converted} is not a folder; pass a checkpoint converted by seqcls convert")
    checkpoint = open_checkpoint(converted)
    recipe = recipe_for_converted(checkpoint.config)
    if recipe is None or CONFIG_KEY not in checkpoint.config or HEAD not in checkpoint.tensors:
        raise SeqclsError(f"{converted} is not a checkpoint converted by seqcls; run seqcls convert on the original")
    head = checkpoint.tensors[HEAD]
    if recipe.num_labels != 1 or head.shape[0] != 1 or head.dtype != "F32":
        raise SeqclsError(f"{converted}: {HEAD} is {head.dtype} {list(head.shape)}, not one float32 row")
    return checkpoint


def _write_all(
    checkpoint: Checkpoint, recipe: Recipe, converted: Path, tmp: Path, types: list[str], instruction: str | None,
    threads: int | None,
) -> list[Exported]:  # fmt: skip
    """Float types are written directly; quantized ones from the float type the weights have (no rounding twice)."""
    from . import llamacpp

    made, floats = [], {}
    vocab = _vocabulary(converted, checkpoint.config)
    source_float = SOURCE_FLOAT.get(checkpoint.tensors[recipe.embed_tensor].dtype, "f32")
    quantized = [t for t in types if t in QUANTIZED_TYPES]
    llamacpp.library()
    for type_ in [t for t in types if t in FLOAT_TYPES] + ([source_float] if quantized else []):
        if type_ in floats:
            continue
        name = file_name(converted, type_) if type_ in types else f".intermediate-{type_}.gguf"
        floats[type_] = tmp / name
        _write_float(checkpoint, recipe, converted, floats[type_], type_, instruction, vocab)
        if type_ in types:
            made.append(Exported(floats[type_], type_))
    for type_ in quantized:
        path = tmp / file_name(converted, type_)
        llamacpp.quantize(floats[source_float], path, file_type(type_), threads)
        made.append(Exported(path, type_))
    for path in tmp.glob(".intermediate-*"):
        path.unlink()
    _check_written(made, _Head(checkpoint.tensors[HEAD]).array[0])
    return made


def _write_float(
    checkpoint: Checkpoint, recipe: Recipe, converted: Path, path: Path, type_: str, instruction: str | None,
    vocab: _Vocabulary,
) -> None:  # fmt: skip
    import gguf

    config = checkpoint.config
    family = recipe.llamacpp
    writer = gguf.GGUFWriter(path, family.arch)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(converted.resolve().name)
    writer.add_file_type(file_type(type_))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_hyperparameters(writer, config)
    writer.add_pooling_type(gguf.PoolingType.RANK)
    writer.add_classifier_output_labels(list(family.labels))
    vocab.add_to(writer, family.pre_tokenizer)
    chosen = instruction if instruction is not None else recipe.default_instruction
    writer.add_chat_template([{"name": "rerank", "template": rerank_template(recipe, chosen)}])
    writer.add_string(KEY_RECIPE, recipe.name)
    writer.add_string(KEY_INSTRUCTION, chosen or "")
    writer.add_string(KEY_SOURCE, converted.resolve().name)
    if recipe.calibration:
        writer.add_string(KEY_TEMPERATURE, repr(recipe.temperature))

    names = gguf.TensorNameMap(gguf.MODEL_ARCH[family.arch.upper()], int(config["num_hidden_layers"]))
    tensors = []
    for t in checkpoint.tensors.values():
        if t.name == HEAD:
            tensors.append((HEAD_GGUF, _Head(t)))
            continue
        mapped = names.get_name(t.name, try_suffixes=(".weight", ".bias"))
        if mapped is None:
            raise SeqclsError(f"{t.name} has no llama.cpp name for {family.arch}; this checkpoint cannot be exported")
        target = "F32" if len(t.shape) == 1 else FLOAT_TYPES[type_]
        tensors.append((mapped, _Slices(t, target)))
    for name, data in tensors:
        writer.add_tensor_info(name, data.shape, data.dtype, data.nbytes, raw_dtype=data.raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _, data in tensors:
        writer.write_tensor_data(data)
    writer.close()


def file_type(type_: str) -> int:
    """The type's ``general.file_type`` (llama.cpp's ``llama_ftype``), as the ``gguf`` package names them."""
    import gguf

    return int(getattr(gguf.LlamaFileType, "ALL_F32" if type_ == "f32" else f"MOSTLY_{type_.upper()}"))


def rerank_template(recipe: Recipe, instruction: str | None) -> str:
    """The official prompt with ``{query}`` and ``{document}`` left for llama-server to fill by string
    replacement (it adds no BOS: the family needs none)."""
    if recipe.bos:
        raise SeqclsError(f"{recipe.title} starts with a BOS token, which llama-server's rerank template cannot add")
    return recipe.format_pair("{query}", "{document}", instruction)


def _add_hyperparameters(writer, config: dict) -> None:
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", "default") != "default":
        raise SeqclsError(f"rope scaling {rope.get('rope_type')!r} is not exported to GGUF yet")
    theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_head_count_kv(int(config.get("num_key_value_heads") or config["num_attention_heads"]))
    writer.add_rope_freq_base(float(theta))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    writer.add_key_length(int(head_dim))
    writer.add_value_length(int(head_dim))


@dataclass(frozen=True)
class _Vocabulary:
    tokens: list[str]
    types: list[int]
    special: object
    """``gguf.SpecialVocab``: merges and special token ids."""

    def add_to(self, writer, pre_tokenizer: str) -> None:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre_tokenizer)
        writer.add_token_list(self.tokens)
        writer.add_token_types(self.types)
        self.special.add_to_gguf(writer, quiet=True)


def _vocabulary(folder: Path, config: dict) -> _Vocabulary:
    """The byte-level BPE vocabulary as llama.cpp's converter writes it: every id up to the embedding's rows
    (unused ids as ``[PADn]``), added special tokens as control tokens, other added tokens as user-defined, the
    merges and special ids by the ``gguf`` package's ``SpecialVocab``. The score template is not carried: it is
    vLLM's, and llama.cpp would take it for a chat template."""
    import gguf
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    rows = int(config.get("vocab_size") or len(tokenizer))
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    if max(by_id) >= rows:
        raise SeqclsError(f"{folder}: the tokenizer has ids beyond the embedding's {rows} rows")
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(rows):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(by_id[i])
            kind = gguf.TokenType.NORMAL
            if i in added:
                kind = gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED
            types.append(kind)
    special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=rows)
    special.chat_template = None
    return _Vocabulary(tokens, types, special)


class _Slices:
    """A tensor converted to ``target`` a slice of rows at a time as the writer asks for its bytes (``tofile``),
    so that memory holds one slice, not the tensor."""

    def __init__(self, t: TensorInfo, target: str) -> None:
        import gguf

        self.t, self.target, self.shape = t, target, t.shape
        self.raw_dtype = getattr(gguf.GGMLQuantizationType, target)
        self.dtype = {"F32": np.float32, "F16": np.float16, "BF16": np.uint8}[target]
        elements = int(np.prod(t.shape))
        self.nbytes = elements * {"F32": 4, "F16": 2, "BF16": 2}[target]
        if target == "BF16":
            self.shape = (*t.shape[:-1], t.shape[-1] * 2)

    def tofile(self, fout) -> None:
        t = self.t
        row = int(np.prod(t.shape[1:])) * DTYPE_BYTES[t.dtype] if len(t.shape) > 1 else t.nbytes
        step = max(1, SLICE_BYTES // row) * row
        with open(t.path, "rb") as f:
            for begin in range(t.begin, t.end, step):
                data = os.pread(f.fileno(), min(step, t.end - begin), begin)
                fout.write(convert_bytes(data, t.dtype, self.target))


class _Head:
    """``score.weight`` ``[1, hidden]`` as the two float32 rows ``[w; 0]``."""

    def __init__(self, t: TensorInfo) -> None:
        with open(t.path, "rb") as f:
            w = np.frombuffer(os.pread(f.fileno(), t.nbytes, t.begin), dtype="<f4")
        self.array = np.stack([w, np.zeros_like(w)])
        self.shape, self.dtype, self.nbytes, self.raw_dtype = self.array.shape, np.float32, self.array.nbytes, None

    def tofile(self, fout) -> None:
        fout.write(self.array.tobytes())


def convert_bytes(data: bytes, source: str, target: str) -> bytes:
    """Little-endian tensor bytes from one float type to another, rounding to nearest even as ggml does. torch
    converts with SIMD kernels: numpy's float16 cast took 35 of the 55 s of a 0.6B export."""
    if source == target:
        return data
    import torch

    names = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
    values = torch.frombuffer(bytearray(data), dtype=names[source])
    return values.to(names[target]).view(torch.uint8).numpy().tobytes()


def _check_written(made: list[Exported], head: np.ndarray) -> None:
    """Read every file back with ggml's parser: the head must be ``[w; 0]`` in float32, bit for bit, and every
    tensor inside the file."""
    from .llamacpp import GgufFile

    want = np.stack([head, np.zeros_like(head)]).astype("<f4").tobytes()
    for e in made:
        with GgufFile(e.path) as f:
            if f.truncated() or HEAD_GGUF not in f.tensors:
                raise SeqclsError(f"{e.path.name} is incomplete; the output disk may be failing")
            if f.tensors[HEAD_GGUF][0] != 0 or f.read(HEAD_GGUF) != want:
                raise SeqclsError(f"{e.path.name} does not hold the head as [w; 0] in float32; the export is broken")


@dataclass(frozen=True)
class GgufReranker:
    """What a GGUF exported by seqcls says about itself."""

    path: Path
    type: str
    recipe: Recipe
    instruction: str | None
    rerank_template: str


def read_exported(path: str | Path) -> GgufReranker:
    """The GGUF's type, family and rerank template; ``SeqclsError`` for a file that is not a complete reranker
    GGUF exported by seqcls."""
    import gguf

    from ..recipes import preset
    from .llamacpp import GgufFile

    path = Path(path)
    if not path.is_file():
        raise SeqclsError(f"{path} is not a file; pass a .gguf file written by seqcls export gguf")
    with GgufFile(path) as f:
        if f.truncated():
            raise SeqclsError(f"{path} is truncated; export it again")
        arch, name = f.string("general.architecture"), f.string(KEY_RECIPE)
        template, ftype = f.string("tokenizer.chat_template.rerank"), f.u32("general.file_type")
        pooling = f.u32(f"{arch}.pooling_type")
        head = f.tensors.get(HEAD_GGUF)
        instruction = f.string(KEY_INSTRUCTION)
        temperature = f.string(KEY_TEMPERATURE)
    if pooling != int(gguf.PoolingType.RANK) or head is None or template is None:
        raise SeqclsError(f"{path} is not a reranker GGUF (no rank pooling, head or rerank template)")
    if name is None:
        raise SeqclsError(f"{path} was not exported by seqcls export gguf; export the converted checkpoint with it")
    types = {file_type(t): t for t in TYPES}
    if ftype not in types:
        raise SeqclsError(f"{path} has a GGUF file type ({ftype}) that seqcls does not verify; choose one of {TYPES}")
    recipe = preset(name)
    if temperature is not None and recipe.calibration:
        recipe = replace(recipe, raw_logit=float(temperature) == 1)
    return GgufReranker(path, types[ftype], recipe, instruction or None, template)
