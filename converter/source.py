"""Where a checkpoint comes from. Today: a local folder. Hub ids plug in here and hand back the same thing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import SeqclsError


@dataclass(frozen=True)
class Source:
    spec: str
    """What the user passed; safe to record in outputs (never expanded to an absolute path)."""
    folder: Path
    root: Path
    """Symlinks in ``folder`` may lead anywhere under this (a hub cache keeps its blobs beside the snapshot)."""

    @property
    def name(self) -> str:
        return self.folder.resolve().name


def resolve_source(spec: str | Path) -> Source:
    folder = Path(spec).expanduser()
    if folder.is_dir():
        return Source(spec=str(spec), folder=folder, root=folder)
    if folder.exists():
        raise SeqclsError(f"{spec} is a file; pass the checkpoint folder that holds config.json")
    raise SeqclsError(f"{spec} does not exist; pass a local checkpoint folder")
