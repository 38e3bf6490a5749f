"""The offline demo: build a tiny original of a preset family (Qwen3-Reranker by default), convert it, and show the
scores agree."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .convert import DEFAULT_OUTPUT_DIR, convert
from .pairs import DEMO_PAIRS
from .recipes import QWEN3_RERANKER
from .report import conversion_summary, markdown_table, shorten
from .verify import verify

FP32_TOLERANCE = 1e-5


def demo(workdir: Path = DEFAULT_OUTPUT_DIR, *, rebuild: bool = False, preset: str = QWEN3_RERANKER.name) -> int:
    """Returns the exit code: 0 when every pair agrees within 1e-5 in fp32, 1 otherwise. The folder is named after
    the preset, which is how ``convert`` recognises the family."""
    original = Path(workdir) / "demo" / f"tiny-{preset}"
    converted = Path(workdir) / "demo" / f"tiny-{preset}-seq-cls"
    if rebuild or not (original / "config.json").is_file():
        _build_original(original, preset)
    plan, written = convert(original, converted, overwrite=True)
    print(conversion_summary(plan, written))

    report_path = converted.parent / f"{converted.name}.verify.json"
    report = verify(
        converted, original, pairs=list(DEMO_PAIRS), atol=FP32_TOLERANCE, report=report_path, update_card=True
    )
    rows = [
        (shorten(p["query"], 36), shorten(p["document"], 36) or "(empty)", f"{p['original']:.6f}",
         f"{p['converted']:.6f}", f"{p['abs_delta']:.1e}")
        for p in report["pairs"]
    ]  # fmt: skip
    print()
    print(markdown_table(("query", "document", "original", "converted", "abs Δ"), rows))
    worst, ok = report["metrics"]["max_abs_delta"], report["verdict"] == "pass"
    print(f"\nmax abs Δ = {worst:.2e} (fp32 tolerance {FP32_TOLERANCE:.0e}): {'PARITY OK' if ok else 'MISMATCH'}")
    print(f"report {report_path}; card {converted / 'README.md'}")
    print(f"next: seqcls serve {converted} --print  |  seqcls publish {converted} --repo-id ME/NAME --dry-run")
    return 0 if ok else 1


def _build_original(target: Path, family: str) -> None:
    from .tiny_model import build_tiny_reranker

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.build-", dir=target.parent))
    try:
        build_tiny_reranker(tmp / "model", family=family, tied=True, dtype="float32")
        shutil.rmtree(target, ignore_errors=True)
        (tmp / "model").rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
