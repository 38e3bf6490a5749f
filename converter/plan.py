"""Decide everything about the output before writing a byte: new config, new head, and what each shard becomes.

The plan reads safetensors headers and the two label rows, nothing else, so it costs the same for 0.6B and 8B.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import SeqclsError
from .io.checkpoint import Checkpoint, open_checkpoint
from .io.safetensors_format import NewTensor, TensorInfo, read_row
from .package import loader_files
from .recipes import FROM_2_WAY_SOFTMAX, Recipe, known_architectures, recipe_for
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


def make_plan(source: Source) -> Plan:
    ckpt = open_checkpoint(source.folder, source.root)
    recipe = _recipe(ckpt)
    carried = _carried_files(source)
    tokenizer_config = read_tokenizer_config(source.folder)
    vocab = read_vocabulary(source.folder, recipe.label_tokens, ckpt.config, tokenizer_config)
    tied = bool(ckpt.config.get("tie_word_embeddings", recipe.tie_default))
    head = _head_tensor(ckpt, recipe, tied)
    score = _score(head, vocab.label_ids, recipe)
    return Plan(
        source=source,
        recipe=recipe,
        config=_new_config(ckpt.config, recipe, vocab),
        shards=_output_shards(ckpt, drop={recipe.head_tensor}, score=score),
        carried_files=carried,
        new_files=loader_files(recipe, vocab, tokenizer_config),
        vocabulary=vocab,
        head_name=head.name,
        tied=tied,
        score=score,
    )


def _recipe(ckpt: Checkpoint) -> Recipe:
    archs = ckpt.config.get("architectures") or []
    if not (isinstance(archs, list) and all(isinstance(a, str) for a in archs)):
        raise SeqclsError("config.json: 'architectures' must be a list of names; fix the config")
    if any(a.endswith("ForSequenceClassification") for a in archs) or "score.weight" in ckpt.tensors:
        raise SeqclsError(f"{ckpt.folder} is already a sequence-classification checkpoint; nothing to convert")
    recipe = recipe_for(archs)
    if recipe is None:
        raise SeqclsError(
            f"no conversion recipe for architectures {archs or '(none)'}; known: {', '.join(known_architectures())}"
        )
    return recipe


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
    hidden = ckpt.config.get("hidden_size")
    if hidden is not None and head.shape[1] != hidden:
        raise SeqclsError(f"{name} has width {head.shape[1]} but config.json says hidden_size {hidden}")
    return head


def _row_f32(head: TensorInfo, row: int) -> np.ndarray:
    raw = np.frombuffer(read_row(head, row), FLOAT_DTYPES[head.dtype])
    if head.dtype == "BF16":
        return (raw.astype("<u4") << 16).view("<f4")
    return raw.astype("<f4")


def _score(head: TensorInfo, label_ids: tuple[int, ...], recipe: Recipe) -> NewTensor:
    """``fp32(W[true]) - fp32(W[false])``: rounding the difference to the model dtype would cost ~1e-4 in score."""
    if recipe.method != FROM_2_WAY_SOFTMAX:
        raise SeqclsError(f"method {recipe.method!r} is not supported")
    rows = [_row_f32(head, i) for i in label_ids]
    for token, row in zip(recipe.label_tokens, rows):
        if not np.isfinite(row).all():
            raise SeqclsError(f"row of label token {token!r} in {head.name} holds NaN or Inf; the weights are damaged")
    false_row, true_row = rows
    diff = (true_row - false_row).astype("<f4")
    return NewTensor(recipe.score_tensor, "F32", (1, head.shape[1]), diff.tobytes())


def _new_config(config: dict, recipe: Recipe, vocab: Vocabulary) -> dict:
    new = {k: v for k, v in config.items() if k not in recipe.drop_config_keys}
    new.update(
        architectures=[recipe.target_architecture],
        id2label={"0": "LABEL_0"},
        label2id={"LABEL_0": 0},
        pad_token_id=vocab.pad_token_id,
        use_sep_token=False,
    )
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


def _carried_files(source: Source) -> tuple[Path, ...]:
    """The files copied as they are. Also checks the files that are read but not carried (the tokenizer config, and
    the source's card for its license) for links out of the source."""
    read_only = (TOKENIZER_CONFIG, "README.md")
    found = tuple(p for name in (*CARRIED_FILES, *read_only) if (p := source.folder / name).is_file())
    for p in found:
        if not p.resolve().is_relative_to(source.root.resolve()):
            raise SeqclsError(f"{p.name} is a link that leads outside {source.root}; refusing to read it")
    return tuple(p for p in found if p.name not in read_only)
