"""How the card's commands refer to the checkpoint: a hub id, or a local folder."""

from __future__ import annotations

from pathlib import Path

from ..source import REPO_ID
from .facts import CardFacts


def is_hub_id(ref: str) -> bool:
    return bool(REPO_ID.match(ref)) and not Path(ref).exists()


def local_copy(f: CardFacts, ref: str) -> tuple[str, str]:
    """Where the card's commands find the checkpoint, and the command that puts it there (none for a local path)."""
    if not is_hub_id(ref):
        return ref, ""
    return f"./{f.name}", f"hf download {ref} --local-dir ./{f.name}"
