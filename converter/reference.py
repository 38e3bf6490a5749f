"""Ground truth in transformers: the original scored as its authors do, and the converted model as a classifier.

The original follows each family's reference code: the prompt's pieces tokenized one by one and concatenated
(after BOS where the reference starts with it), then the method at the last real token:
``softmax([logit_false, logit_true])[1]`` (``from_2_way_softmax``) or the label tokens' logits
(``no_post_processing``). The converted model gets the very same ids, so any difference is the conversion's.
Probabilities are what vLLM's classifier returns: a sigmoid for one label, a softmax across several.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import itertools
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .pairs import Pair
from .recipes import FROM_2_WAY_SOFTMAX, Recipe

if TYPE_CHECKING:
    import torch

MAX_LENGTH = 8192
"""Qwen's reference code cuts a pair's prompt to 8,192 tokens (by its document); the other families' the same."""


def reference_length(recipe: Recipe, config: dict) -> int:
    """The longest prompt the reference scores for this model: the family's (``MAX_LENGTH`` for most), or the model's
    own length if shorter."""
    longest = recipe.language_settings(config).get("max_position_embeddings")
    return min(longest or recipe.max_length, recipe.max_length)


@dataclass(frozen=True)
class Scores:
    rows: torch.Tensor
    """(pairs, labels), float32. Per pair, one logit per label: ``logit_true - logit_false`` for a
    ``from_2_way_softmax`` original, the label tokens' logits for a ``no_post_processing`` one (over a calibrated
    family's temperature), the classifier's logits for the converted model."""
    load_seconds: float = 0.0
    score_seconds: float = 0.0

    @property
    def per_label(self) -> list[list[float]]:
        """Probabilities, per label then per pair."""
        import torch

        logits = self.rows.to(torch.float64)
        probs = torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=-1)
        return probs.T.tolist()

    @property
    def probabilities(self) -> list[float]:
        """The first label's probabilities: the score of a single-label head."""
        return self.per_label[0]

    @property
    def logits(self) -> list[float]:
        return self.rows.flatten().tolist()


CHUNK = 256
"""Pairs tokenized (and scored) at a time: each piece is tokenized for a chunk of pairs in one call, and only a
chunk's ids are held, so memory does not grow with the pair set."""


def encode_official(tokenizer, recipe: Recipe, pairs: Iterable[Pair], max_length: int = MAX_LENGTH) -> list[list[int]]:
    return list(iter_official(tokenizer, recipe, pairs, max_length))


def iter_official(
    tokenizer, recipe: Recipe, pairs: Iterable[Pair], max_length: int = MAX_LENGTH
) -> Iterator[list[int]]:
    """The document's piece is cut to make the whole fit ``max_length``, as the references truncate the document.
    A ``joined`` recipe's prompt is tokenized whole, as its reference does, a cut one too (with its document cut as
    text), so that the text around the cut joins as the family's tokenizer joins it.
    A recipe without a prompt format gets ``query + document`` tokenized as vLLM does for such a model."""
    pairs = iter(pairs)
    while chunk := list(itertools.islice(pairs, CHUNK)):
        if not recipe.has_prompt:
            yield from tokenizer([p.query + p.document for p in chunk], truncation=True, max_length=max_length)[
                "input_ids"
            ]
            continue
        bos = [tokenizer.bos_token_id] if recipe.bos else []
        rendered = [recipe.render_pieces(p.query, p.document, p.instruction) for p in chunk]
        whole = []
        if recipe.joined:
            whole = tokenizer(["".join(t) for t in rendered], add_special_tokens=False)["input_ids"]
        fits = {n for n, ids in enumerate(whole) if len(bos) + len(ids) <= max_length}
        pieced = [n for n in range(len(chunk)) if n not in fits]
        if recipe.joined:
            cut = {n: _cut_joined(tokenizer, recipe, chunk[n], max_length) for n in pieced}
        else:
            by_piece = [
                tokenizer([rendered[n][k] for n in pieced], add_special_tokens=False)["input_ids"] if pieced else []
                for k in range(len(recipe.pieces))
            ]
            cut = {
                n: _cut(list(pieces), recipe.document_piece, max_length - len(bos))
                for n, pieces in zip(pieced, zip(*by_piece))
            }
        for n in range(len(chunk)):
            yield bos + (cut[n] if n in cut else whole[n])


def _cut_joined(tokenizer, recipe: Recipe, pair: Pair, max_length: int) -> list[int]:
    """A joined recipe's prompt with the document cut as ``truncation.cut_document`` cuts it, tokenized whole."""
    from .truncation import cut_document

    document = cut_document(tokenizer, recipe, pair.query, pair.document, pair.instruction, max_length)
    text = recipe.format_pair(pair.query, document, pair.instruction)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _cut(pieces: list[list[int]], document_piece: int, budget: int) -> list[int]:
    """The pieces' ids with the document's cut so that the whole takes at most ``budget`` tokens."""
    room = budget - sum(len(x) for i, x in enumerate(pieces) if i != document_piece)
    pieces[document_piece] = pieces[document_piece][: max(room, 0)]
    return [i for x in pieces for i in x]


def batch_tokens(batch_size: int) -> int:
    """The padded tokens a batch of prompts sorted by length may hold: ``batch_size`` rows of
    ``TOKENS_PER_ROW``. Short prompts fill ``batch_size`` rows; a long one takes fewer companions, so one document
    of 8,192 tokens does not pad seven short ones to its length (the work and memory of eight)."""
    return batch_size * TOKENS_PER_ROW


TOKENS_PER_ROW = 1024


def _batches(ids: Iterable[list[int]], pad_id: int, side: str, batch_size: int, by_length: bool = True):
    """Padded batches, each with its prompts' positions in ``ids``. ``by_length``: within each window of ``CHUNK``
    prompts, batches are cut from the prompts sorted by length, so that a batch pads to a length its prompts
    share (documents of real data vary by 10x), and holds at most ``batch_tokens`` padded tokens (a prompt longer
    than that alone); memory stays bounded by the window. Else ``batch_size`` prompts at a time, in input order."""
    import torch

    ids, start = iter(ids), 0
    while window := list(itertools.islice(ids, CHUNK if by_length else batch_size)):
        if by_length:
            order = sorted(range(len(window)), key=lambda i: len(window[i]))
            groups = _by_budget(order, [len(x) for x in window], batch_size, batch_tokens(batch_size))
        else:
            groups = [list(range(len(window)))]
        for members in groups:
            _trim_heap()
            chunk = [window[i] for i in members]
            width = max(len(x) for x in chunk)
            input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, x in enumerate(chunk):
                cols = slice(width - len(x), width) if side == "left" else slice(0, len(x))
                input_ids[row, cols] = torch.tensor(x)
                mask[row, cols] = 1
            last = width - 1 - mask.flip(-1).argmax(-1)
            yield input_ids, mask, last, torch.tensor(members, dtype=torch.long) + start
        start += len(window)


def _by_budget(order: list[int], lengths: list[int], batch_size: int, budget: int) -> list[list[int]]:
    """``order`` (ascending length) cut into batches of at most ``batch_size`` rows and ``budget`` padded tokens."""
    groups: list[list[int]] = []
    for i in order:
        group = groups[-1] if groups else None
        if group is None or len(group) == batch_size or (len(group) + 1) * lengths[i] > budget:
            groups.append([i])
        else:
            group.append(i)
    return groups


def _in_input_order(rows: list, positions: list, labels: int):
    """The batches' rows put back where their prompts were in the input."""
    import torch

    if not rows:
        return torch.zeros((0, labels))
    stacked, at = torch.cat(rows), torch.cat(positions)
    ordered = torch.empty_like(stacked)
    ordered[at] = stacked
    return ordered


M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 * 2**20


@functools.cache
def _glibc():
    """glibc's allocator controls, set up once: None elsewhere (where none of this applies).

    Each batch's activations differ in size with its longest prompt. By default glibc raises its mmap threshold each
    time a large block is freed, so such blocks come from its heaps afterwards, which then grow with the number of
    batches rather than their size: +170 MiB per 2,000 pairs on the tiny fixture (CPU), for ever. A fixed threshold
    keeps blocks above 4 MiB in mmap, handed back when freed, and ``malloc_trim`` before each batch returns what
    the heaps freed (every 256 pairs was not enough at 50,000). The trims cost the tiny fixture, whose batches take
    milliseconds, about a fifth of its time (scripts/bench_verify_memory.py). The threshold is the process's from
    then on."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        return libc
    except (OSError, AttributeError):
        return None


def _trim_heap() -> None:
    if libc := _glibc():
        libc.malloc_trim(0)


def score_original(
    folder: Path, ids: Iterable[list[int]], recipe: Recipe, *, pad_id: int, label_ids: tuple[int, ...],
    dtype: str = "float32", padding_side: str = "left", batch_size: int = 8, device: str = "cpu",
    by_length: bool = True,
) -> Scores:  # fmt: skip
    import torch
    from transformers import AutoModelForCausalLM

    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype), device_map=device).eval()
    loaded = time.perf_counter()
    rows, positions = [], []
    with torch.inference_mode():
        for input_ids, mask, last, at in _batches(ids, pad_id, padding_side, batch_size, by_length):
            keep = torch.unique(last)
            out = model(input_ids=input_ids.to(device), attention_mask=mask.to(device), logits_to_keep=keep.to(device))
            at_last = out.logits[torch.arange(len(last)), torch.searchsorted(keep, last)].float()
            chosen = at_last[:, list(label_ids)]
            if recipe.method == FROM_2_WAY_SOFTMAX:
                chosen = chosen[:, 1:] - chosen[:, :1]
            if recipe.temperature != 1:
                chosen = chosen / recipe.temperature
            rows.append(chosen.cpu())
            positions.append(at)
    return Scores(
        _in_input_order(rows, positions, len(label_ids) - (recipe.method == FROM_2_WAY_SOFTMAX)),
        loaded - started,
        time.perf_counter() - loaded,
    )


def score_converted(
    folder: Path, ids: Iterable[list[int]], *, pad_id: int, dtype: str = "float32", padding_side: str = "left",
    batch_size: int = 8, device: str = "cpu", by_length: bool = True,
) -> Scores:  # fmt: skip
    import torch
    from transformers import AutoModelForSequenceClassification

    started = time.perf_counter()
    model = AutoModelForSequenceClassification.from_pretrained(
        folder, dtype=getattr(torch, dtype), device_map=device
    ).eval()
    loaded = time.perf_counter()
    rows, positions = [], []
    with torch.inference_mode():
        for input_ids, mask, _, at in _batches(ids, pad_id, padding_side, batch_size, by_length):
            rows.append(model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits.float().cpu())
            positions.append(at)
    return Scores(_in_input_order(rows, positions, model.config.num_labels), loaded - started,
                  time.perf_counter() - loaded)  # fmt: skip
