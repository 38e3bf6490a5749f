"""Decide everything about the output before writing a byte: new config, new head, and what each shard becomes.

The plan reads safetensors headers and the two label rows, nothing else, so it costs the same for 0.6B and 8B.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .errors import SeqclsError
from .io.checkpoint import Checkpoint, open_checkpoint
from .io.safetensors_format import NewTensor, TensorInfo, read_row
from .package import IMAGE_PROCESSOR_CONFIG, bounded_image_processor, loader_files
from .recipes import (
    CONFIG_KEY,
    FROM_2_WAY_SOFTMAX,
    PRESET_NAMES,
    Recipe,
    generic_recipe,
    known_architectures,
    original_recipe,
    presets_by_architecture,
)
from .reference import reference_length
from .source import Source
from .tokenizer import TOKENIZER_CONFIG, Vocabulary, read_tokenizer_config, read_vocabulary

CARRIED_FILES = (
    "generation_config.json",
    "tokenizer.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "LICENSE",
    "LICENSE.txt",
    "NOTICE",
)
PROCESSOR_FILES = (
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "processor_config.json",
    "chat_template.json",
    "chat_template.jinja",
)
"""What a multimodal model's processor reads, carried as they are: its chat template is the one that turns image
and video parts into placeholders, which the score template cannot replace."""
FLOAT_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}


@dataclass(frozen=True)
class OutputShard:
    name: str
    entries: tuple[TensorInfo | NewTensor, ...]
    link_from: Path | None
    """Set when the shard is the source file unchanged: it is hard-linked (or copied) whole."""


@dataclass(frozen=True)
class Plan:
    source: Source
    recipe: Recipe
    config: dict
    shards: tuple[OutputShard, ...]
    carried_files: tuple[Path, ...]
    new_files: dict[str, str]
    """Files the output gains: the score template and what each loader reads (see ``package``)."""
    vocabulary: Vocabulary
    head_name: str
    tied: bool
    score: NewTensor

    @property
    def weight_map(self) -> dict[str, str]:
        return {e.name: s.name for s in self.shards for e in s.entries}

    @property
    def index(self) -> dict | None:
        """The sharded index, or None when one file holds everything."""
        if len(self.shards) == 1:
            return None
        total = sum(e.nbytes for s in self.shards for e in s.entries)
        return {"metadata": {"total_size": total}, "weight_map": dict(sorted(self.weight_map.items()))}


def make_plan(
    source: Source,
    *,
    preset_name: str | None = None,
    tokens: tuple[str, ...] | None = None,
    method: str | None = None,
    raw_logit: bool = False,
) -> Plan:
    """``preset_name`` forces a preset; ``tokens`` with ``method`` build a generic recipe (see ``recipes``);
    ``raw_logit`` keeps a calibrated family's logit instead of its calibrated score."""
    ckpt = open_checkpoint(source.folder, source.root)
    _check_not_converted(ckpt)
    recipe = choose_recipe(ckpt.config, source, preset_name, tokens, method)
    recipe = recipe.raw() if raw_logit else recipe
    carried = _carried_files(source, recipe)
    tokenizer_config = read_tokenizer_config(source.folder)
    vocab = read_vocabulary(source.folder, recipe.label_tokens, ckpt.config, tokenizer_config)
    _check_family_ids(recipe, vocab.label_ids)
    tied = recipe.tied(ckpt.config)
    head = _head_tensor(ckpt, recipe, tied)
    score = _score(head, vocab.label_ids, recipe)
    return Plan(
        source=source,
        recipe=recipe,
        config=_new_config(ckpt.config, recipe, vocab, head.name),
        shards=_output_shards(ckpt, drop={recipe.head_tensor}, score=score),
        carried_files=carried,
        new_files=loader_files(recipe, vocab, tokenizer_config, reference_length(recipe, ckpt.config))
        | bounded_image_processor(recipe, source.folder),
        vocabulary=vocab,
        head_name=head.name,
        tied=tied,
        score=score,
    )


def choose_recipe(
    config: dict, source: Source, preset_name: str | None, tokens: tuple[str, ...] | None, method: str | None
) -> Recipe:
    archs = _architectures(config)
    if preset_name and (tokens or method):
        raise SeqclsError("--preset fixes the tokens and the method; give either --preset or --tokens/--method")
    if tokens or method:
        if not (tokens and method):
            raise SeqclsError("--tokens and --method go together, e.g. --tokens no,yes --method from_2_way_softmax")
        if len(archs) != 1:
            raise SeqclsError(f"--tokens/--method need one architecture in config.json, found {archs}")
        recipe = generic_recipe(archs[0], tokens, method)
        return replace(recipe, tie_default=_check_counterpart(recipe, config))
    recipe = original_recipe(config, source.folder, source.name, source.spec, preset_name=preset_name)
    if recipe is not None:
        return recipe
    if maybe := presets_by_architecture(archs):
        names = ", ".join(r.name for r in maybe)
        raise SeqclsError(
            f"{archs[0]} is a common LLM architecture and the name {source.name!r} names no reranker family; "
            f"pass --preset ({names}) or --tokens/--method"
        )
    raise SeqclsError(
        f"no conversion recipe for architectures {archs or '(none)'}; known: {', '.join(known_architectures())}; "
        f"or pass --tokens/--method (presets: {', '.join(PRESET_NAMES)})"
    )


def _check_family_ids(recipe: Recipe, label_ids: tuple[int, ...]) -> None:
    """A look-alike (another base vocabulary under the family's name) would get a head of the wrong rows."""
    if recipe.label_ids is not None and label_ids != recipe.label_ids:
        got = ", ".join(f"{t!r} = {i}" for t, i in zip(recipe.label_tokens, label_ids))
        want = ", ".join(map(str, recipe.label_ids))
        raise SeqclsError(
            f"this checkpoint's vocabulary gives {got}, but {recipe.name} scores id {want}: it is not a {recipe.name} "
            "checkpoint (another base vocabulary); convert it with --preset or --tokens/--method for what it is"
        )


def _check_counterpart(recipe: Recipe, config: dict) -> bool:
    """The seq-cls class must exist in transformers, or no loader could build the output. Returns the config
    class default of ``tie_word_embeddings`` for configs that leave it out."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    if recipe.target_architecture not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES.values():
        raise SeqclsError(
            f"{recipe.source_architectures[0]} has no {recipe.target_architecture} in transformers; "
            "only architectures with a sequence-classification counterpart can be converted"
        )
    model_type = config.get("model_type")
    try:
        return bool(AutoConfig.for_model(model_type).tie_word_embeddings)
    except (ValueError, KeyError, TypeError, AttributeError):  # no such model_type here: assume untied
        return False


def _architectures(config: dict) -> list[str]:
    archs = config.get("architectures") or []
    if not (isinstance(archs, list) and all(isinstance(a, str) for a in archs)):
        raise SeqclsError("config.json: 'architectures' must be a list of names; fix the config")
    return archs


def _check_not_converted(ckpt: Checkpoint) -> None:
    archs = _architectures(ckpt.config)
    if "score.weight" in ckpt.tensors or any(a.endswith("ForSequenceClassification") for a in archs):
        raise SeqclsError(f"{ckpt.folder} is already a sequence-classification checkpoint; nothing to convert")


def _head_tensor(ckpt: Checkpoint, recipe: Recipe, tied: bool) -> TensorInfo:
    name = recipe.embed_tensor if tied else recipe.head_tensor
    head = ckpt.tensors.get(name)
    if head is None:
        why = "tie_word_embeddings is true" if tied else "tie_word_embeddings is false (untied)"
        raise SeqclsError(
            f"config.json says {why}, but the weights hold no {name}; "
            "the checkpoint is incomplete or its config is wrong"
        )
    if head.dtype not in FLOAT_DTYPES or len(head.shape) != 2:
        raise SeqclsError(f"{name} is {head.dtype} {list(head.shape)}; expected a 2-D float matrix")
    hidden = recipe.language_settings(ckpt.config).get("hidden_size")
    if hidden is not None and head.shape[1] != hidden:
        raise SeqclsError(f"{name} has width {head.shape[1]} but config.json says hidden_size {hidden}")
    return head


def _row_f32(head: TensorInfo, row: int) -> np.ndarray:
    raw = np.frombuffer(read_row(head, row), FLOAT_DTYPES[head.dtype])
    if head.dtype == "BF16":
        return (raw.astype("<u4") << 16).view("<f4")
    return raw.astype("<f4")


def _score(head: TensorInfo, label_ids: tuple[int, ...], recipe: Recipe) -> NewTensor:
    """``from_2_way_softmax``: ``fp32(W[true]) - fp32(W[false])``, as rounding the difference to the model dtype
    would cost ~1e-4 in score. ``no_post_processing``: the rows themselves, one label each, widened to fp32
    (exactly), and divided by a calibrated family's temperature in fp32."""
    for token, i in zip(recipe.label_tokens, label_ids):
        if not 0 <= i < head.shape[0]:
            raise SeqclsError(f"label token {token!r} has id {i}, outside {head.name} ({head.shape[0]} rows)")
    rows = [_row_f32(head, i) for i in label_ids]
    for token, row in zip(recipe.label_tokens, rows):
        if not np.isfinite(row).all():
            raise SeqclsError(f"row of label token {token!r} in {head.name} holds NaN or Inf; the weights are damaged")
    if recipe.method == FROM_2_WAY_SOFTMAX:
        false_row, true_row = rows
        rows = [true_row - false_row]
    matrix = np.stack(rows).astype("<f4")
    if recipe.temperature != 1:
        matrix = matrix / np.float32(recipe.temperature)
    return NewTensor(recipe.score_tensor, "F32", matrix.shape, matrix.tobytes())


def _new_config(config: dict, recipe: Recipe, vocab: Vocabulary, head_name: str) -> dict:
    """A multimodal model's language config gets the labels too, and both levels are untied: vLLM builds its
    classifier from the language config's ``num_labels`` and would tie a head to the embeddings."""
    new = {k: v for k, v in config.items() if k not in recipe.drop_config_keys}
    labels = ["LABEL_0"] if recipe.num_labels == 1 else list(recipe.label_tokens)
    label_keys = {
        "id2label": {str(i): label for i, label in enumerate(labels)},
        "label2id": {label: i for i, label in enumerate(labels)},
    }
    new.update(label_keys, architectures=[recipe.target_architecture], pad_token_id=vocab.pad_token_id)
    new["use_sep_token"] = False
    if recipe.multimodal:
        inner = {k: v for k, v in recipe.language_settings(config).items() if k not in recipe.drop_config_keys}
        new[recipe.language_config] = inner | label_keys | {"num_labels": len(labels), "tie_word_embeddings": False}
        new["num_labels"] = len(labels)
        new["tie_word_embeddings"] = False
    new[CONFIG_KEY] = recipe.record() | {"head_from": head_name}
    return new


def _output_shards(ckpt: Checkpoint, drop: set[str], score: NewTensor) -> tuple[OutputShard, ...]:
    """Untouched shards are linked whole; the shard holding the dropped head is rewritten, with the new head
    first (fp32, so it stays aligned). Without one, the head gets a small shard of its own at the end."""
    kept: list[tuple[tuple, Path | None]] = []
    placed = False
    for f in ckpt.files:
        entries = tuple(t for t in f.tensors.values() if t.name not in drop)
        if len(entries) == len(f.tensors):
            kept.append((entries, f.path))
        elif not placed:
            kept.append(((score, *entries), None))
            placed = True
        else:
            kept.append((entries, None))
    if not placed:
        kept.append(((score,), None))
    n = len(kept)
    names = ["model.safetensors"] if n == 1 else [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    return tuple(OutputShard(name, entries, link) for name, (entries, link) in zip(names, kept))


def _carried_files(source: Source, recipe: Recipe) -> tuple[Path, ...]:
    """The files copied as they are. Also checks the files that are read but not carried (the tokenizer config, and
    the source's card for its license) for links out of the source."""
    read_only = (TOKENIZER_CONFIG, "README.md", *((IMAGE_PROCESSOR_CONFIG,) if recipe.image_pixels else ()))
    carried = (*CARRIED_FILES, *(PROCESSOR_FILES if recipe.multimodal else ()))
    found = tuple(p for name in (*carried, *read_only) if (p := source.folder / name).is_file())
    for p in found:
        if not p.resolve().is_relative_to(source.root.resolve()):
            raise SeqclsError(f"{p.name} is a link that leads outside {source.root}; refusing to read it")
    return tuple(p for p in found if p.name not in read_only)
