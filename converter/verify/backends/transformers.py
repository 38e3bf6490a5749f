"""transformers in-process: the family's reference scoring of the original, and the converted model as a
classifier, on the same ids. Also the third opinion (the reference) of the engine backends."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from ...io.checkpoint import read_config
from ...reference import batch_tokens
from ..digests import PromptDigests
from .base import (
    OFFICIAL,
    Settings,
    Side,
    endpoint_names,
    load_tokenizer,
    official_ids,
    original_label_ids,
    prepare_device,
)


class TransformersBackend:
    """The family's reference scoring of the original, and the converted model as a classifier, on the same ids."""

    name = "transformers"
    timing = (
        "model forward passes with tokenization included (prompts are tokenized as they are scored, 256 at a time), "
        "model load excluded"
    )

    def __init__(self, s: Settings, original_ids: Iterable[list[int]] | None = None) -> None:
        """``original_ids``: score the original on these ids instead of the official ones (as the reference of
        another backend, on the ids its converted path used). Otherwise ids are tokenized as they are scored, a
        chunk at a time, and only their digests are kept."""
        import torch
        import transformers
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        prepare_device(s.device)
        self.s = s
        self.original_ids = original_ids
        self.pad_id = _pad_id(s)
        if original_ids is None:
            # now, while memory is lowest: a load's passing peak is ~400 MiB at 151k tokens
            for folder in [f for f in (s.original, s.converted) if f.is_dir()]:
                load_tokenizer(folder)
        self.environment = {"backend": self.name, "transformers": transformers.__version__, "torch": torch.__version__}

    @functools.cached_property
    def reference_ids(self) -> PromptDigests:
        """A first pass of the tokenizer over the pairs: the prompts' lengths size the memory check before a model
        loads, and their digests key the cache."""
        return PromptDigests.of(official_ids(self.s))

    @functools.cached_property
    def label_ids(self) -> tuple[int, ...]:
        return original_label_ids(self.s)

    @functools.cached_property
    def _given(self) -> PromptDigests | None:
        return None if self.original_ids is None else PromptDigests.of(self.original_ids)

    def _ids(self, which: str) -> Iterable[list[int]]:
        if which == "original" and self.original_ids is not None:
            return self.original_ids
        return official_ids(self.s, self.s.original if which == "original" else self.s.converted)

    def _prompts(self, which: str) -> PromptDigests:
        """The prompts' lengths and digests before scoring: the given ids', else the official ones (the converted
        tokenizer's are compared with them after scoring)."""
        return self._given if which == "original" and self._given is not None else self.reference_ids

    def cache_inputs(self, which: str) -> dict | None:
        s = self.s
        return {
            "token_ids": self._prompts(which).key(), "label_ids": list(self.label_ids), "method": s.recipe.method,
            "pad_id": self.pad_id, "dtype": s.dtype, "batch_size": s.batch_size,
            "batch_tokens": batch_tokens(s.batch_size),
        }  # fmt: skip

    def score(self, which: str) -> Side:
        from ...reference import score_converted, score_original

        s, seen = self.s, PromptDigests()
        self._check_memory(which, self._prompts(which))
        ids = seen.recording(self._ids(which))
        common = {"pad_id": self.pad_id, "dtype": s.dtype, "batch_size": s.batch_size, "device": s.device}
        if which == "original":
            scores = score_original(s.original, ids, s.recipe, label_ids=self.label_ids, **common)
        else:
            scores = score_converted(s.converted, ids, **common)
        timings = {"load_seconds": scores.load_seconds, "score_seconds": scores.score_seconds}
        per_label = dict(zip(endpoint_names(s.recipe), scores.per_label))
        return Side(per_label, scores.logits, seen, OFFICIAL, timings)

    def _check_memory(self, which: str, prompts: PromptDigests) -> None:
        """Before loading: refuse in one line a model that would not fit (see ``memory.py``)."""
        from ..memory import check, estimate

        s, folder = self.s, self.s.folder(which)
        width = int(read_config(folder).get("vocab_size") or 1) if which == "original" else s.recipe.num_labels
        need = estimate(folder, s.dtype, min(s.batch_size, len(prompts)), max(prompts.longest, 1), width)
        what = "the original" if which == "original" else "the converted checkpoint"
        check(f"{what} ({folder.name})", need, s.dtype, s.device)


def _pad_id(s: Settings) -> int:
    """The converted checkpoint's pad id; beside a GGUF (no config), the original's, else its tokenizer's."""
    if s.converted.is_dir():
        return read_config(s.converted)["pad_token_id"]
    pad = read_config(s.original).get("pad_token_id")
    return pad if pad is not None else load_tokenizer(s.original).pad_token_id
