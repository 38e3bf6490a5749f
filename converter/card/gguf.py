"""The card's GGUF section: each exported file with its ``verify --backend llamacpp`` result."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ..report import markdown_table


def gguf_row(report: dict) -> dict:
    """A GGUF's entry in the card, from its ``verify --backend llamacpp`` report."""
    path = Path(report["inputs"]["converted"]["path"])
    summary = report.get("ranking_summary") or {}
    gate = summary.get("gate")
    return {
        "file": path.name,
        "type": report["gguf_type"],
        "bytes": path.stat().st_size,
        "sha256": report["inputs"]["converted"]["files"][path.name],
        "verdict": report["verdict"],
        "pairs": report["pair_count"],
        "max_abs_delta": report["metrics"]["max_abs_delta"],
        "kendall_tau_median": (summary.get("kendall_tau") or {}).get("median"),
        "top1_agreement": summary.get("top1_agreement"),
        "delta_ndcg10": summary.get("delta_ndcg10"),
        "judged": (f"rankings: median τ ≥ {gate['median_tau']}, top-1 ≥ {gate['top1_agreement']}, "
                   f"|ΔNDCG@10| ≤ {gate['ndcg_atol']}") if gate else f"per pair: |Δ| ≤ {report['atol']:.0e}",
        "llama_cpp": report["environment"].get("llama-cpp-python", "?"),
        "date": datetime.now(UTC).date().isoformat(),
    }  # fmt: skip


def gguf_section(rows: list[dict]) -> str:
    if not rows:
        return ""

    def number(value, spec):
        return "n/a" if value is None else format(value, spec)

    table = markdown_table(
        ("file", "type", "size", "sha256", "max abs Δ", "median τ", "top-1", "ΔNDCG@10", "judged on", "verdict"),
        [
            (f"`{r['file']}`", r["type"], f"{r['bytes'] / 2**20:.1f} MiB", f"`{r['sha256'][:16]}…`",
             f"{r['max_abs_delta']:.1e}", number(r["kendall_tau_median"], ".3f"), number(r["top1_agreement"], ".2f"),
             number(r["delta_ndcg10"], "+.1e"), r["judged"], r["verdict"].upper())
            for r in rows
        ],
    )  # fmt: skip
    first = rows[0]["file"]
    return f"""
## GGUF for llama.cpp

Exported by `seqcls export gguf` and scored through llama.cpp's library as `llama-server --reranking` scores
`/v1/rerank`, against the transformers reference of the original on {rows[0]["pairs"]} pairs (`seqcls verify FILE.gguf
--backend llamacpp`). The head is written as the two float32 rows `[w; 0]` in every type: llama.cpp's rank pooling
takes a softmax over the rows and returns the first, `sigmoid(h · w)`. Float types are judged pair by pair;
quantized ones on rankings, their |Δ| reported.

{table}

```bash
llama-server -m {first} --reranking --ctx-size 8192 --batch-size 8192 --ubatch-size 8192 --parallel 1
```

The file carries the prompt as its `rerank` template (the instruction baked in), so `/v1/rerank` takes raw text.
"""
