"""llama.cpp: a GGUF exported by ``seqcls export gguf``, scored through llama.cpp's library exactly as
``llama-server --reranking`` scores ``/v1/rerank`` (its rerank template filled by string replacement, special tokens
parsed), against the original scored the family's official way in transformers (the reference)."""

from __future__ import annotations

import functools
import time

from ...export.gguf import GgufReranker, read_exported
from ...export.llamacpp import RankModel, version
from ..digests import PromptDigests
from .base import Settings, Side, endpoint_names
from .transformers import TransformersBackend

TEMPLATE = "the GGUF's rerank template, filled as llama-server fills it"
MIXED = TEMPLATE + "; pairs with another instruction formatted by hand"
CONTEXT_MARGIN = 64


class LlamacppBackend:
    name = "llamacpp"
    timing = (
        "original: transformers forward passes with tokenization included; converted: llama.cpp decoding with its "
        "tokenization included; model loads excluded. Two engines, so the two rates are not comparable"
    )

    def __init__(self, s: Settings) -> None:
        self.s = s
        self.gguf: GgufReranker = read_exported(s.converted)
        self.reference = TransformersBackend(s)
        self.environment = self.reference.environment | {"backend": self.name, "llama-cpp-python": version() or "?"}
        self.used_ids: dict = {}

    @functools.cached_property
    def reference_ids(self) -> PromptDigests:
        return self.reference.reference_ids

    def cache_inputs(self, which: str) -> dict | None:
        return self.reference.cache_inputs("original") if which == "original" else None

    def score(self, which: str) -> Side:
        if which == "original":
            return self.reference.score("original")
        s, seen = self.s, PromptDigests()
        started = time.monotonic()
        context = max(self.reference_ids.longest, 1) + CONTEXT_MARGIN
        with RankModel(s.converted, n_ctx=context) as model:
            loaded = time.monotonic()
            prompts = (model.tokenize(self.prompt(p)) for p in s.sent_pairs)
            scores = [values[0] for values in model.scores(seen.recording(prompts))]
            done = time.monotonic()
        mixed = any(self._own_instruction(p) for p in s.pairs)
        timings = {"load_seconds": loaded - started, "score_seconds": done - loaded}
        return Side(dict(zip(endpoint_names(s.recipe), [scores])), None, seen, MIXED if mixed else TEMPLATE, timings)

    def prompt(self, pair) -> str:
        """What llama-server sends to the model for this pair: the rerank template with ``{query}`` and
        ``{document}`` replaced. A pair with an instruction other than the template's cannot be sent so; it is
        formatted by hand with its own, as a client that bypasses the template would."""
        if self._own_instruction(pair):
            return self.s.recipe.format_pair(pair.query, pair.document, pair.instruction)
        return self.gguf.rerank_template.replace("{query}", pair.query).replace("{document}", pair.document)

    def _own_instruction(self, pair) -> bool:
        return pair.instruction is not None and pair.instruction != self.gguf.instruction
