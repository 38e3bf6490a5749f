"""Human-readable output shared by the commands."""

from __future__ import annotations

import unicodedata

from .plan import Plan
from .write import WriteReport


def markdown_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    cells = [header, *(tuple(str(c).replace("|", "\\|") for c in r) for r in rows)]
    widths = [max(_width(r[i]) for r in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c + " " * (w - _width(c)) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def shorten(text: str, width: int = 32) -> str:
    """One line of at most ``width`` characters, for table cells."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _width(text: str) -> int:
    """Terminal columns: CJK characters take two, so tables of multilingual pairs stay aligned."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def conversion_summary(plan: Plan, report: WriteReport) -> str:
    source_arch = ", ".join(a for a in plan.recipe.source_architectures)
    parts = [f"{len(report.linked)} linked", f"{len(report.copied)} copied", f"{len(report.rewritten)} written"]
    return "\n".join(
        [
            f"converted {plan.source.spec} ({source_arch}) -> {plan.recipe.target_architecture}",
            f"  recipe  {plan.recipe.name}, {plan.recipe.method}, {plan.recipe.num_labels} label(s)",
            f"  head    {plan.score.name} = {plan.recipe.head_formula(plan.vocabulary.label_ids)},"
            f" W = {plan.head_name}{' (tied)' if plan.tied else ''}",
            f"  pad     pad_token_id = {plan.vocabulary.pad_token_id}",
            f"  shards  {', '.join(parts)}; {report.bytes_copied / 1e6:.1f} MB copied",
            f"  output  {report.out}",
        ]
    )
