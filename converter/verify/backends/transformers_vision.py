"""transformers in-process for multimodal rerankers (Qwen3-VL-Reranker): the original scored as Qwen's own scorer
does, the converted checkpoint as its base model and head, each on its own processor's inputs (see ``vision``).
Also the third opinion (the reference) of the vLLM backend for such models."""

from __future__ import annotations

import functools
from collections.abc import Iterable

import transformers

from ..digests import PromptDigests
from ..vision import processed, score_vision
from .base import (
    OFFICIAL,
    Settings,
    Side,
    endpoint_names,
    official_ids,
    original_label_ids,
    pairs_digest,
    prepare_device,
)

PROCESSOR_SIZED = "the processor's prompts, images sized as vLLM sizes them"


class TransformersVisionBackend:
    name = "transformers"
    timing = (
        "model forward passes, one pair at a time as Qwen's scorer runs them, with the processor (chat template, "
        "image preprocessing, tokenization) included; model load excluded"
    )

    def __init__(
        self, s: Settings, original_ids: Iterable[list[int]] | None = None, engine_sizing: bool = False
    ) -> None:
        """``engine_sizing``: this is an engine backend's reference, so images are sized as vLLM sizes them.
        ``original_ids``: the ids that backend's converted path used, where it has them (a server's ``/tokenize``
        cannot expand images); the original is scored on them (with the processor's pixels) where each has the
        length of the processor's prompt, so that a difference is the model path's. Where lengths differ (the
        images were cut into other tiles), the ids cannot carry those pixels: the processor's inputs are scored and
        the report's id check names the pairs."""
        import torch
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        prepare_device(s.device)
        self.s = s
        self.original_ids = original_ids
        self.official = not (engine_sizing or original_ids is not None)
        """Images sized as Qwen's scorer sizes them; else as vLLM does (by the checkpoint's processor)."""
        self.environment = {"backend": self.name, "transformers": transformers.__version__, "torch": torch.__version__}

    @functools.cached_property
    def reference_ids(self) -> PromptDigests:
        return PromptDigests.of(official_ids(self.s))

    @functools.cached_property
    def label_ids(self) -> tuple[int, ...]:
        return original_label_ids(self.s)

    def cache_inputs(self, which: str) -> dict | None:
        """The images' bytes enter through the pairs' digest, and how they were sized: ids alone do not change when a
        picture does, nor when two resizers make the same grid of different pixels."""
        s = self.s
        given = None if self.original_ids is None else PromptDigests.of(self.original_ids).key()
        return {
            "token_ids": given or self.reference_ids.key(), "pairs": pairs_digest(s.pairs),
            "sizing": "official" if self.official else _processor_digest(s.converted),
            "label_ids": list(self.label_ids), "method": s.recipe.method, "dtype": s.dtype,
        }  # fmt: skip

    def _inputs(self, which: str, videos: dict | None = None) -> Iterable[dict]:
        """Each side through its own checkpoint's processor. Alone, both sides get the official inputs (images sized
        as Qwen's scorer sizes them). As an engine backend's reference, the original gets its images sized as vLLM
        sizes them for the converted checkpoint (the conversion's image bounds, the scorer's:
        ``package.bounded_image_processor``), and the ids that backend used where it has them, so that a difference
        is the model path's; where Qwen's sizing differs, the official ids differ, which the report names where the
        engine's ids are known. ``videos``: filled with each video pair's model inputs (``vision.processed``)."""
        s = self.s
        inputs = processed(s.folder(which), s.recipe, s.pairs, s.max_length, official=self.official,
                           sizing=s.converted, videos=videos)  # fmt: skip
        if which != "original" or self.original_ids is None:
            return inputs
        return (
            x | {"input_ids": list(given)} if len(given) == len(x["input_ids"]) else x
            for x, given in zip(inputs, self.original_ids)
        )

    def score(self, which: str) -> Side:
        s, seen, videos = self.s, PromptDigests(), {}

        def recorded(inputs: Iterable[dict]):
            for x in inputs:
                seen.add(x["input_ids"])
                yield x

        scores = score_vision(
            which, s.folder(which), recorded(self._inputs(which, videos)), s.recipe, label_ids=self.label_ids,
            dtype=s.dtype, device=s.device,
        )  # fmt: skip
        timings = {"load_seconds": scores.load_seconds, "score_seconds": scores.score_seconds}
        prompts = OFFICIAL if self.official else PROCESSOR_SIZED
        return Side(
            dict(zip(endpoint_names(s.recipe), scores.per_label)),
            scores.logits,
            seen,
            prompts,
            timings,
            videos=videos if s.recipe.video else None,
        )


def _processor_digest(folder) -> str:
    """What sizes the images where they are not sized officially: the converted checkpoint's image processor."""
    import hashlib

    path = folder / "preprocessor_config.json"
    return "processor " + (hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "none")
