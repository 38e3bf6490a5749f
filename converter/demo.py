"""The offline demo: build a tiny Qwen3-Reranker-shaped original, convert it, and show the scores agree."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .convert import DEFAULT_OUTPUT_DIR, convert
from .pairs import DEMO_PAIRS
from .reference import encode_official, score_converted, score_original
from .report import conversion_summary, markdown_table

FP32_TOLERANCE = 1e-5


def demo(workdir: Path = DEFAULT_OUTPUT_DIR, *, rebuild: bool = False) -> int:
    """Returns the exit code: 0 when every pair agrees within 1e-5 in fp32, 1 otherwise."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    original = Path(workdir) / "demo" / "tiny-qwen3-reranker"
    converted = Path(workdir) / "demo" / "tiny-qwen3-reranker-seq-cls"
    if rebuild or not (original / "config.json").is_file():
        _build_original(original)
    plan, report = convert(original, converted, overwrite=True)
    print(conversion_summary(plan, report))

    tokenizer = AutoTokenizer.from_pretrained(original)
    ids = encode_official(tokenizer, plan.recipe, list(DEMO_PAIRS))
    pad, labels = plan.vocabulary.pad_token_id, plan.vocabulary.label_ids
    before = score_original(original, ids, plan.recipe, pad_id=pad, label_ids=labels)
    after = score_converted(converted, ids, pad_id=pad)

    deltas = [abs(a - b) for a, b in zip(before.probabilities, after.probabilities)]
    rows = [
        (_short(p.query), _short(p.document) or "(empty)", f"{a:.6f}", f"{b:.6f}", f"{d:.1e}")
        for p, a, b, d in zip(DEMO_PAIRS, before.probabilities, after.probabilities, deltas)
    ]
    print()
    print(markdown_table(("query", "document", "original", "converted", "abs Δ"), rows))
    worst = max(deltas)
    ok = worst <= FP32_TOLERANCE
    print(f"\nmax |Δ| = {worst:.2e} (fp32 tolerance {FP32_TOLERANCE:.0e}): {'PARITY OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


def _build_original(target: Path) -> None:
    from .tiny_model import build_tiny_reranker

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.build-", dir=target.parent))
    try:
        build_tiny_reranker(tmp / "model", tied=True, dtype="float32")
        shutil.rmtree(target, ignore_errors=True)
        (tmp / "model").rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _short(text: str, width: int = 36) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
