"""Compare two sides' scores: deltas, rankings (``rankings.py``), prompt token ids and input forms."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..pairs import Pair, Qrels
from .backends import BackendRun
from .rankings import QueryRanking, RankingGate, rank_queries, summarize

DEFAULT_ATOL = {"float32": 1e-4, "bfloat16": 2e-2, "float16": 5e-3}
"""fp32 is the contract. The half-precision bounds cover the original path's rounding of each logit to the model
dtype before the softmax, which the converted single-logit head does not do; see the README for measurements."""


@dataclass(frozen=True)
class EndpointComparison:
    endpoint: str
    original: list[float]
    converted: list[float]
    deltas: list[float]
    failed: list[int]

    @property
    def max_abs_delta(self) -> float:
        return max(self.deltas, default=0.0)

    @property
    def mean_abs_delta(self) -> float:
        return sum(self.deltas) / len(self.deltas) if self.deltas else 0.0


@dataclass(frozen=True)
class FormComparison:
    scores: list[EndpointComparison]
    """Raw pairs (``original`` here) against the same pairs sent in this form (``converted``), per endpoint."""
    token_mismatches: list[int]


@dataclass(frozen=True)
class Verdict:
    atol: float
    endpoints: list[EndpointComparison]
    """Original path against converted, per endpoint."""
    max_abs_logit_delta: float | None
    rankings: list[QueryRanking]
    ranking_summary: dict | None
    """Overall ranking figures; with judgements, ``ndcg_ok`` is part of the verdict."""
    token_mismatches: list[int]
    """Pairs whose prompt token ids differ between the two paths: a failure of its own."""
    official_token_mismatches: list[int] | None
    """Pairs where the backend's ids differ from the official reference formatting (reported, not failed)."""
    original_token_deviations: list[int] = field(default_factory=list)
    """With a reference: pairs the original path tokenizes unlike the official formatting while the converted path
    matches it (Qwen3-VL's original processor sizes images unlike Qwen's scorer): the original path's finding."""
    converted_vs_reference: list[EndpointComparison] | None = None
    original_vs_reference: list[EndpointComparison] | None = None
    """With a reference, the verdict is the converted side's against it; the original path only adds a finding."""
    input_forms: dict[str, FormComparison] = field(default_factory=dict)
    """The converted side's other input forms (seed-formatted, mixed) against its raw pairs: any difference fails."""
    video_inputs: dict[int, dict[str, list[str] | None]] = field(default_factory=dict)
    """Per pair with video, per side judged: what of its videos' model inputs differs from the reference's (``grid``,
    ``pixels``, ``normalization``, ``video count``; empty: nothing), None where the side cannot tell
    (``video_inputs``)."""

    @property
    def forms_failed(self) -> list[str]:
        return [name for name, f in self.input_forms.items() if f.token_mismatches or any(e.failed for e in f.scores)]

    @property
    def judged(self) -> list[EndpointComparison]:
        return self.endpoints if self.converted_vs_reference is None else self.converted_vs_reference

    @property
    def ndcg_failed(self) -> bool:
        return bool(self.ranking_summary) and self.ranking_summary.get("ndcg_ok") is False

    @property
    def gate_failed(self) -> bool:
        return bool(self.ranking_summary) and self.ranking_summary.get("gate_ok") is False

    @property
    def passed(self) -> bool:
        return (
            not self.token_mismatches
            and not any(e.failed for e in self.judged)
            and not self.forms_failed
            and not self.ndcg_failed
            and not self.gate_failed
        )

    @property
    def failed_pairs(self) -> list[int]:
        return sorted({i for e in self.judged for i in e.failed} | set(self.token_mismatches))

    @property
    def original_deviates(self) -> bool:
        return bool(self.original_vs_reference) and any(e.failed for e in self.original_vs_reference)


def _logit(p: float) -> float | None:
    return math.log(p) - math.log1p(-p) if 0.0 < p < 1.0 else None


def _compare(name: str, before: list[float], after: list[float], atol: float) -> EndpointComparison:
    deltas = [abs(a - b) for a, b in zip(before, after)]
    return EndpointComparison(name, before, after, deltas, [i for i, d in enumerate(deltas) if not d <= atol])


def _against_reference(side, reference, atol: float) -> list[EndpointComparison]:
    """Each endpoint of ``side`` against the reference's label of the same name (a server's /v1/rerank and /score
    both against its one score)."""
    return [
        _compare(name, reference.scores.get(name, reference.scores.get("score")), scores, atol)
        for name, scores in side.scores.items()
    ]


def compare(
    pairs: list[Pair], run: BackendRun, atol: float, dtype: str = "float32", qrels: Qrels | None = None,
    gate: RankingGate | None = None,
) -> Verdict:  # fmt: skip
    """``dtype`` sets the ranking tolerance (``NDCG_ATOL``) where ``qrels`` judge the rankings; a ``gate`` (a lossy
    file's) replaces it and judges τ and top-1 agreement too."""
    endpoints = [
        _compare(name, before, run.converted.scores[name], atol) for name, before in run.original.scores.items()
    ]

    primary = endpoints[0]
    if run.original.logits is not None and run.converted.logits is not None:
        logit_deltas = [abs(a - b) for a, b in zip(run.original.logits, run.converted.logits)]
    else:
        as_logits = [(_logit(a), _logit(b)) for a, b in zip(primary.original, primary.converted)]
        logit_deltas = [abs(a - b) for a, b in as_logits if a is not None and b is not None]

    sides = {"original": primary.original, "converted": primary.converted}
    if run.reference is not None:
        sides = {"reference": next(iter(run.reference.scores.values())), **sides}
    rankings = rank_queries(pairs, sides, qrels)

    ids_a, ids_b = run.original.token_ids, run.converted.token_ids
    token_mismatches = ids_a.mismatches(ids_b) if ids_a and ids_b else []
    official = None if ids_a is None else ids_a.mismatches(run.reference_ids)
    originals_own = []
    if run.reference is not None and token_mismatches:
        unofficial = set(ids_b.mismatches(run.reference_ids))
        originals_own = [i for i in token_mismatches if i not in unofficial]
        token_mismatches = [i for i in token_mismatches if i in unofficial]
    against = {}
    if run.reference is not None:
        against = {
            "converted_vs_reference": _against_reference(run.converted, run.reference, atol),
            "original_vs_reference": _against_reference(run.original, run.reference, atol),
        }
    forms = {name: _compare_form(run.converted, side, atol) for name, side in run.converted.forms.items()}
    return Verdict(
        atol, endpoints, max(logit_deltas, default=None), rankings, summarize(rankings, dtype, gate), token_mismatches,
        official, originals_own, **against,
        input_forms=forms, video_inputs=video_inputs(run),
    )  # fmt: skip


def video_inputs(run: BackendRun) -> dict[int, dict[str, list[str] | None]]:
    """Each engine side's videos against the reference's, as their processors handed them to the model: the same
    frames and ids can still meet another grid or other pixels (a processor that resizes again). Without a
    reference (the transformers backend, whose original side is the reference), the converted side against the
    original. A side that stands in for the reference (``--reference-only``) is not judged."""
    base = run.reference if run.reference is not None else run.original
    if base is None or base.videos is None:
        return {}
    sides = {name: side for name, side in (("original", run.original), ("converted", run.converted))
             if side.videos is not base.videos}  # fmt: skip
    found = {}
    for number, expected in sorted(base.videos.items()):
        found[number] = {}
        for name, side in sides.items():
            got = None if side.videos is None else side.videos.get(number)
            found[number][name] = None if got is None else _video_differences(expected, got)
    return found


def _video_differences(expected: list[dict], got: list[dict]) -> list[str]:
    if len(expected) != len(got):
        return ["video count"]
    keys = ("grid", "pixels", "normalization")
    return [key for key in keys if any(a.get(key) != b.get(key) for a, b in zip(expected, got))]


def _compare_form(raw, form, atol: float) -> FormComparison:
    """``form`` covers the pairs ``form.indices`` of ``raw``; differences are reported by pair number."""
    at = form.indices

    def same_pairs(values: list) -> list:
        return [values[i] for i in at]

    scores = [_compare(name, same_pairs(raw.scores[name]), got, atol) for name, got in form.scores.items()]
    scores = [dataclasses.replace(e, failed=[at[i] for i in e.failed]) for e in scores]
    mismatches = raw.token_ids.select(at).mismatches(form.token_ids) if raw.token_ids and form.token_ids else []
    return FormComparison(scores, [at[i] for i in mismatches])
