"""The library API: ``convert(src, out)``. The CLI is a thin shell around it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .card import CARD_FILE, facts_from_plan, render_card
from .plan import Plan, make_plan
from .source import resolve_source
from .write import WriteReport, write_plan

DEFAULT_OUTPUT_DIR = Path("converted")


def default_output(src_name: str) -> Path:
    return DEFAULT_OUTPUT_DIR / f"{src_name}-seq-cls"


def convert(
    src: str | Path,
    out: str | Path | None = None,
    *,
    copy: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    base_model: str | None = None,
    hub: str | None = None,
    offline: bool = False,
    preset: str | None = None,
    tokens: tuple[str, ...] | list[str] | None = None,
    method: str | None = None,
    raw_logit: bool = False,
) -> tuple[Plan, WriteReport]:
    """Turn an LLM-as-reranker checkpoint into a sequence-classification one, streaming, without loading it.

    ``src`` is a local folder or a hub id (see ``source``); ``hub`` picks the hub for a bare id, ``offline`` uses the
    local cache only. ``preset`` names the family (default: recognised); ``tokens`` with ``method`` convert any
    ``*ForCausalLM`` that has a ``*ForSequenceClassification`` counterpart (see ``recipes``). A family with a
    calibrated score (zerank-2) gets it folded into the head; ``raw_logit`` keeps the logit instead.

    Shards that do not hold the LM head are hard-linked (``copy=True`` copies them); the one that does is rewritten
    by byte range without it. ``base_model`` is what the model card records as the source (default: the hub id
    of a cache snapshot, else ``src`` as given). Raises ``SeqclsError`` for bad input, leaving nothing at ``out``.
    """
    source = resolve_source(src, hub=hub, offline=offline)
    plan = make_plan(
        source, preset_name=preset, tokens=tuple(tokens) if tokens else None, method=method, raw_logit=raw_logit
    )
    target = Path(out) if out is not None else default_output(source.name)
    card = render_card(facts_from_plan(plan, target.name, base_model), model_ref=str(target))
    plan = dataclasses.replace(plan, new_files={**plan.new_files, CARD_FILE: card})
    return plan, write_plan(plan, target, copy=copy, overwrite=overwrite, progress=progress)
