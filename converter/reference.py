"""Ground truth in transformers: the original scored as its authors do, and the converted model as a classifier.

The original follows each family's reference code: the prompt's pieces tokenized one by one and concatenated
(after BOS where the reference starts with it), then the method at the last real token:
``softmax([logit_false, logit_true])[1]`` (``from_2_way_softmax``) or the label tokens' logits
(``no_post_processing``). The converted model gets the very same ids, so any difference is the conversion's.
Probabilities are what vLLM's classifier returns: a sigmoid for one label, a softmax across several.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .pairs import Pair
from .recipes import FROM_2_WAY_SOFTMAX, Recipe

MAX_LENGTH = 8192


@dataclass(frozen=True)
class Scores:
    rows: list[list[float]]
    """Per pair, one logit per label: ``logit_true - logit_false`` for a ``from_2_way_softmax`` original, the label
    tokens' logits for a ``no_post_processing`` one, the classifier's logits for the converted model."""
    load_seconds: float = 0.0
    score_seconds: float = 0.0

    @property
    def per_label(self) -> list[list[float]]:
        """Probabilities, per label then per pair."""
        import torch

        logits = torch.tensor(self.rows, dtype=torch.float64)
        probs = torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=-1)
        return probs.T.tolist()

    @property
    def probabilities(self) -> list[float]:
        """The first label's probabilities: the score of a single-label head."""
        return self.per_label[0]

    @property
    def logits(self) -> list[float]:
        return [x for row in self.rows for x in row]


def encode_official(tokenizer, recipe: Recipe, pairs: list[Pair], max_length: int = MAX_LENGTH) -> list[list[int]]:
    """The document's piece is cut to make the whole fit ``max_length``, as the references truncate the document.
    A recipe without a prompt format gets ``query + document`` tokenized as vLLM does for such a model."""
    if not recipe.has_prompt:
        return [tokenizer(p.query + p.document, truncation=True, max_length=max_length)["input_ids"] for p in pairs]
    bos = [tokenizer.bos_token_id] if recipe.bos else []
    document_piece = next(i for i, piece in enumerate(recipe.pieces) if "{document}" in piece)
    encoded = []
    for p in pairs:
        pieces = [
            tokenizer.encode(t, add_special_tokens=False)
            for t in recipe.render_pieces(p.query, p.document, p.instruction)
        ]
        budget = max_length - len(bos) - sum(len(x) for i, x in enumerate(pieces) if i != document_piece)
        pieces[document_piece] = pieces[document_piece][: max(budget, 0)]
        encoded.append(bos + [i for x in pieces for i in x])
    return encoded


def _batches(ids: list[list[int]], pad_id: int, side: str, batch_size: int):
    import torch

    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        width = max(len(x) for x in chunk)
        input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, x in enumerate(chunk):
            cols = slice(width - len(x), width) if side == "left" else slice(0, len(x))
            input_ids[row, cols] = torch.tensor(x)
            mask[row, cols] = 1
        last = width - 1 - mask.flip(-1).argmax(-1)
        yield input_ids, mask, last


def score_original(
    folder: Path, ids: list[list[int]], recipe: Recipe, *, pad_id: int, label_ids: tuple[int, ...],
    dtype: str = "float32", padding_side: str = "left", batch_size: int = 8, device: str = "cpu",
) -> Scores:  # fmt: skip
    import torch
    from transformers import AutoModelForCausalLM

    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype), device_map=device).eval()
    loaded = time.perf_counter()
    rows = []
    with torch.inference_mode():
        for input_ids, mask, last in _batches(ids, pad_id, padding_side, batch_size):
            keep = torch.unique(last)
            out = model(input_ids=input_ids.to(device), attention_mask=mask.to(device), logits_to_keep=keep.to(device))
            at_last = out.logits[torch.arange(len(last)), torch.searchsorted(keep, last)].float()
            chosen = at_last[:, list(label_ids)]
            if recipe.method == FROM_2_WAY_SOFTMAX:
                chosen = chosen[:, 1:] - chosen[:, :1]
            rows += chosen.tolist()
    return Scores(rows, loaded - started, time.perf_counter() - loaded)


def score_converted(
    folder: Path, ids: list[list[int]], *, pad_id: int, dtype: str = "float32", padding_side: str = "left",
    batch_size: int = 8, device: str = "cpu",
) -> Scores:  # fmt: skip
    import torch
    from transformers import AutoModelForSequenceClassification

    started = time.perf_counter()
    model = AutoModelForSequenceClassification.from_pretrained(
        folder, dtype=getattr(torch, dtype), device_map=device
    ).eval()
    loaded = time.perf_counter()
    rows = []
    with torch.inference_mode():
        for input_ids, mask, _ in _batches(ids, pad_id, padding_side, batch_size):
            rows += model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits.float().tolist()
    return Scores(rows, loaded - started, time.perf_counter() - loaded)
