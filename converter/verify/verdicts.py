"""The verdict in words: how close is close enough (per dtype, per GGUF type), and which side a failure or finding
names, said once for the summary, the report and the card."""

from __future__ import annotations

from .backends import BackendRun
from .comparison import DEFAULT_ATOL, Verdict
from .rankings import RANKING_GATES

GGUF_ATOL = {"f32": 5e-4, "f16": 5e-3, "bf16": 2e-2}
"""Per-pair tolerance of a float GGUF against the reference: llama.cpp's kernels accumulate differently from
torch's, 2.5e-4 at most in float32 on the tiny fixtures' built-in pairs (docs/gguf.md); half-precision weights as for
the dtypes."""
LOSSY_ATOL = 1.0
"""A quantized GGUF is judged on rankings (``RANKING_GATES``); |Δscore| is reported, and no pair fails on it."""


def tolerance(dtype: str, atol: float | None, gguf_type: str | None) -> tuple[float, dict | None]:
    """(per-pair tolerance, ranking gate or None): ``--atol`` wins; a GGUF's type decides otherwise."""
    if gguf_type is None:
        return (DEFAULT_ATOL[dtype] if atol is None else atol), None
    if gguf_type in RANKING_GATES:
        return (LOSSY_ATOL if atol is None else atol), RANKING_GATES[gguf_type]
    return (GGUF_ATOL[gguf_type] if atol is None else atol), None


def judgement(v: Verdict, run: BackendRun, n: int, cut: list[int] = ()) -> tuple[list[str], str | None]:
    """(findings, the failure in words): which side is wrong, said once, for the summary, the report and the card.
    ``cut``: the pairs over the model length, whose document the reference cuts."""

    def deviation(comparisons) -> str:
        worst = max(e.max_abs_delta for e in comparisons)
        failed = len({i for e in comparisons for i in e.failed})
        return f"by {worst:.1e} (in {failed} of {n} pairs)"

    findings, failures = [], []
    engine = run.environment.get("vllm", "vLLM")
    if v.original_deviates:
        what = f"{engine}'s online conversion of the original" if run.environment.get("backend") == "vllm" else (
            f"the original's server ({engine})"
        )  # fmt: skip
        if v.passed:
            findings.append(
                f"{what} deviates from the reference {deviation(v.original_vs_reference)}; the converted checkpoint "
                "does not"
            )
    if v.original_token_deviations and v.passed:
        findings.append(
            f"the original path tokenizes {_pairs(v.original_token_deviations)} unlike the official formatting (its "
            "own processor or template); the converted checkpoint matches it"
        )
    for side in ("original", "converted"):
        differing = {i: d[side] for i, d in v.video_inputs.items() if d.get(side)}
        if differing:
            what = sorted({x for d in differing.values() for x in d})
            findings.append(
                f"the {side} path hands the model other video inputs than the reference ({', '.join(what)}) in "
                f"{_pairs(sorted(differing))}: the same frames met another processor"
            )
    judged_failed = any(e.failed for e in v.judged)
    if v.token_mismatches:
        failures.append(f"the two paths tokenize {len(v.token_mismatches)} of {n} prompts differently")
    elif judged_failed and v.converted_vs_reference is not None:
        failures.append(f"the converted checkpoint deviates from the reference {deviation(v.converted_vs_reference)}")
        if v.original_deviates:
            failures.append(f"the original path deviates too {deviation(v.original_vs_reference)}")
    elif judged_failed:
        failures.append(f"the converted checkpoint deviates from the original path {deviation(v.endpoints)}")
    if v.ndcg_failed:
        summary = v.ranking_summary
        failures.append(
            f"NDCG@10 moves by {summary['delta_ndcg10']:+.1e} against the {summary['baseline']} "
            f"(tolerance {summary['ndcg_atol']:.0e}, {summary['judged_queries']} judged queries)"
        )
    if v.gate_failed:
        summary, gate = v.ranking_summary, v.ranking_summary["gate"]
        tau = (summary.get("kendall_tau") or {}).get("median")
        failures.append(
            f"the rankings move more than this type's gate allows: median τ {'n/a' if tau is None else f'{tau:.3f}'} "
            f"(≥ {gate['median_tau']}), top-1 agreement {summary.get('top1_agreement', 0):.2f} "
            f"(≥ {gate['top1_agreement']}) over {summary['queries']} queries"
        )
    converted_ids, cut = run.converted.token_ids, set(cut)
    official = {
        "the original path": v.official_token_mismatches or [],
        "the converted path": converted_ids.mismatches(run.reference_ids) if converted_ids else [],
    }
    for label, mismatched in official.items():
        if elsewhere := [i for i in mismatched if i in cut]:
            failures.append(
                f"{label} cut {_pairs(elsewhere)} over the model length elsewhere than the reference, which cuts the "
                "document and keeps the prompt's end (a path that cuts the end drops the question the head reads)"
            )
    if v.forms_failed:
        failures.append(
            f"its score template gives {' and '.join(v.forms_failed)} input other prompts or scores than raw pairs "
            "(clients that format pairs by hand would get wrong scores)"
        )
    return findings, "; ".join(failures) or None


def _pairs(indices: list[int]) -> str:
    return f"pair {indices[0]}" if len(indices) == 1 else f"pairs {', '.join(map(str, indices))}"
