"""Each query's ranking on each side: how far the sides agree (Kendall τ, top-1, top-10), and with relevance
judgements how good each ranking is (NDCG@10, MRR@10). Rerankers are judged on rankings, so a release engineer sees
whether a difference in scores changes what users get.

NDCG and MRR follow trec_eval (which BEIR's numbers come from): linear gain, the ideal ranking from every judged
document of the query, and ties in score broken by document id."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

from ..media import as_json
from ..pairs import Pair, Qrels

K = 10
NDCG_ATOL = {"float32": 1e-4, "bfloat16": 2e-3, "float16": 2e-3}
"""The largest |ΔNDCG@10| (judged side against its baseline, over all queries) that passes, on top of the
per-pair tolerance."""


@dataclass(frozen=True)
class RankingGate:
    """What a lossy file (a quantized GGUF) must keep of the reference's rankings, where a per-pair tolerance is
    the wrong judge: Kendall τ (median over queries), top-1 agreement, and |ΔNDCG@10| with judgements."""

    median_tau: float
    top1_agreement: float
    ndcg_atol: float


RANKING_GATES = {
    "q8_0": RankingGate(0.95, 0.9, 0.01),
    "q6_k": RankingGate(0.9, 0.85, 0.015),
    "q5_k_m": RankingGate(0.85, 0.8, 0.02),
    "q4_k_m": RankingGate(0.8, 0.75, 0.03),
}
"""Gates per GGUF quantization type (docs/gguf.md says how they were chosen)."""


@dataclass(frozen=True)
class QueryRanking:
    query: str | list[dict]
    query_id: str | None
    documents: int
    kendall_tau: float | None
    """The converted side's order against the baseline's (the reference where there is one, else the original)."""
    top1_equal: bool
    top10_overlap: float
    """Shared documents among the two top-10s, as a fraction of min(10, documents)."""
    ndcg10: dict[str, float] | None = None
    """Per side, with judgements."""
    mrr10: dict[str, float] | None = None

    @property
    def delta_ndcg10(self) -> float | None:
        return None if self.ndcg10 is None else self.ndcg10["converted"] - self.ndcg10[baseline_of(self.ndcg10)]


def baseline_of(sides: dict) -> str:
    return "reference" if "reference" in sides else "original"


def kendall_tau(a: list[float], b: list[float]) -> float | None:
    """Kendall's tau-b, which handles ties; None for fewer than two items or no untied pair."""
    concordant = discordant = ties_a = ties_b = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif (da > 0) == (db > 0):
                concordant += 1
            else:
                discordant += 1
    n0 = concordant + discordant
    denominator = math.sqrt((n0 + ties_a) * (n0 + ties_b))
    return (concordant - discordant) / denominator if denominator else None


def ranked(scores: list[float], doc_ids: list[str]) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], doc_ids[i]))


def ndcg_at(order: list[int], doc_ids: list[str], judged: dict[str, int], k: int = K) -> float:
    dcg = sum(judged.get(doc_ids[i], 0) / math.log2(rank + 2) for rank, i in enumerate(order[:k]))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def mrr_at(order: list[int], doc_ids: list[str], judged: dict[str, int], k: int = K) -> float:
    return next((1 / (rank + 1) for rank, i in enumerate(order[:k]) if judged.get(doc_ids[i], 0) > 0), 0.0)


def rank_queries(pairs: list[Pair], sides: dict[str, list[float]], qrels: Qrels | None) -> list[QueryRanking]:
    """``sides``: scores per side (``original``, ``converted`` and maybe ``reference``), in pair order. A query is
    ranked when it has two documents or more, or judgements."""
    groups: dict[tuple[str, str | None], list[int]] = {}
    for i, p in enumerate(pairs):
        groups.setdefault((p.query_id or p.query, p.instruction), []).append(i)
    baseline = baseline_of(sides)
    found = []
    for (key, _), members in groups.items():
        judged = qrels.get(key) if qrels else None
        if len(members) < 2 and judged is None:
            continue
        doc_ids = [pairs[i].document_id or str(i) for i in members]
        per_side = {name: [scores[i] for i in members] for name, scores in sides.items()}
        orders = {name: ranked(s, doc_ids) for name, s in per_side.items()}
        top = min(K, len(members))
        shared = set(orders["converted"][:top]) & set(orders[baseline][:top])
        found.append(
            QueryRanking(
                query=as_json(pairs[members[0]].query),
                query_id=pairs[members[0]].query_id,
                documents=len(members),
                kendall_tau=kendall_tau(per_side[baseline], per_side["converted"]),
                top1_equal=orders[baseline][0] == orders["converted"][0],
                top10_overlap=len(shared) / top,
                ndcg10={n: ndcg_at(o, doc_ids, judged) for n, o in orders.items()} if judged is not None else None,
                mrr10={n: mrr_at(o, doc_ids, judged) for n, o in orders.items()} if judged is not None else None,
            )
        )
    return found


def summarize(rankings: list[QueryRanking], dtype: str, gate: RankingGate | None = None) -> dict | None:
    """Overall figures, and whether ΔNDCG@10 is within ``NDCG_ATOL`` (None without judgements); with a ``gate``,
    whether τ and top-1 agreement keep to it too (``gate_ok``)."""
    if not rankings:
        return None if gate is None else {"queries": 0, "gate": asdict(gate), "gate_ok": False}
    taus = [r.kendall_tau for r in rankings if r.kendall_tau is not None]
    summary = {
        "queries": len(rankings),
        "kendall_tau": {"min": min(taus), "median": statistics.median(taus)} if taus else None,
        "top1_agreement": sum(r.top1_equal for r in rankings) / len(rankings),
        "top10_overlap": statistics.fmean(r.top10_overlap for r in rankings),
    }
    judged = [r for r in rankings if r.ndcg10 is not None]
    if judged:
        sides = list(judged[0].ndcg10)
        ndcg = {s: statistics.fmean(r.ndcg10[s] for r in judged) for s in sides}
        mrr = {s: statistics.fmean(r.mrr10[s] for r in judged) for s in sides}
        delta = ndcg["converted"] - ndcg[baseline_of(ndcg)]
        summary |= {
            "judged_queries": len(judged),
            "ndcg10": ndcg,
            "mrr10": mrr,
            "delta_ndcg10": delta,
            "delta_mrr10": mrr["converted"] - mrr[baseline_of(mrr)],
            "max_abs_query_delta_ndcg10": max(abs(r.delta_ndcg10) for r in judged),
            "baseline": baseline_of(ndcg),
            "ndcg_atol": gate.ndcg_atol if gate else NDCG_ATOL[dtype],
            "ndcg_ok": abs(delta) <= (gate.ndcg_atol if gate else NDCG_ATOL[dtype]),
        }
    if gate is not None:
        median = summary["kendall_tau"]["median"] if taus else None
        summary["gate"] = asdict(gate)
        summary["gate_ok"] = (
            median is not None and median >= gate.median_tau and summary["top1_agreement"] >= gate.top1_agreement
        )
    return summary
