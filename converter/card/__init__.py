"""The model card (``README.md``) of a converted checkpoint: what was converted and how, usage for each loader, and
the parity that ``seqcls verify --update-card`` measured. The YAML metadata goes through ``huggingface_hub``.

The card is always rendered whole from facts about the checkpoint plus a small state (the model reference the
snippets use, and one parity row per backend/device/dtype) kept as JSON in an HTML comment at its end, so a later
verify run adds its row and a publish can point the snippets at the repo id without editing Markdown by hand.
Each section is written by the module named for it: ``converted``, ``usage`` (``vision`` for images),
``results`` and ``gguf``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from .converted import what_was_converted
from .facts import CARD_FILE, CardFacts, facts_from_folder, facts_from_plan
from .gguf import gguf_row, gguf_section
from .references import is_hub_id
from .results import parity_row, parity_section, row_key
from .usage import usage

__all__ = ["CARD_FILE", "CardFacts", "card_for", "facts_from_plan", "read_state", "render_card", "update_card",
           "write_card"]  # fmt: skip

STATE = re.compile(r"<!-- seqcls-card (\{.*?\}) -->", re.DOTALL)
TAGS = ["seqcls", "reranker", "cross-encoder", "text-ranking", "sequence-classification", "vllm", "transformers"]


def render_card(
    facts: CardFacts, model_ref: str, parity: list[dict] | None = None, gguf: list[dict] | None = None
) -> str:
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        base_model=facts.base_model,
        license=facts.license,
        library_name="transformers" if facts.recipe.multimodal else "sentence-transformers",
        pipeline_tag="text-ranking",
        tags=[*TAGS, facts.recipe.name],
    )
    state = {"model_ref": model_ref, "parity": parity or [], "gguf": gguf or []}
    state = json.dumps(state, ensure_ascii=True).replace(">", "\\u003e")
    body = _body(facts, model_ref, parity or []) + gguf_section(gguf or [])
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n<!-- seqcls-card {state} -->\n"))


def read_state(folder: Path) -> dict:
    path = Path(folder) / CARD_FILE
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    m = STATE.search(text)
    return json.loads(m[1]) if m else {"model_ref": str(folder), "parity": []}


def card_for(
    folder: Path, report: dict | None = None, model_ref: str | None = None, *, hub_base_only: bool = False,
    gguf_reports: list[dict] = (),
) -> str:  # fmt: skip
    """The card re-rendered with a verify report's parity row (replacing the row of the same backend, device and
    dtype) and/or a new model reference. ``hub_base_only`` drops a ``base_model`` that is no hub id (a local path
    means nothing on a hub, and the Hub rejects it)."""
    folder = Path(folder)
    state = read_state(folder)
    rows, gguf = state.get("parity", []), state.get("gguf", [])
    for verified in [*gguf_reports, *([report] if report and report["backend"] == "llamacpp" else [])]:
        row = gguf_row(verified)
        gguf = sorted([r for r in gguf if r["file"] != row["file"]] + [row], key=lambda r: r["file"])
    if report is not None and report["backend"] != "llamacpp":
        row = parity_row(report)
        rows = [r for r in rows if row_key(r) != row_key(row)] + [row]
    facts = facts_from_folder(folder)
    if hub_base_only and facts.base_model and not is_hub_id(facts.base_model):
        facts = dataclasses.replace(facts, base_model=None)
    return render_card(facts, model_ref or state.get("model_ref") or str(folder), rows, gguf)


def update_card(folder: Path, report: dict | None = None, model_ref: str | None = None) -> Path:
    """Write ``card_for(...)`` in place of the card. Returns its path."""
    return write_card(folder, card_for(folder, report, model_ref))


def write_card(folder: Path, text: str) -> Path:
    """Replace the card in one rename, so a reader never sees half of it."""
    path = Path(folder) / CARD_FILE
    tmp = path.with_name(f".{CARD_FILE}.seqcls-tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def _body(f: CardFacts, ref: str, parity: list[dict]) -> str:
    return f"{what_was_converted(f)}{usage(f, ref)}\n## Parity\n\n{parity_section(parity, ref)}\n"
