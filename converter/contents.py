"""What a converted checkpoint folder consists of, and what else lies in it.

``publish`` uploads exactly the checkpoint: the files a verify report fingerprints, the model card, and the loader
files a conversion writes or carries. Anything else in the folder (notes, scratch scripts, logs) is left out unless
the user includes it by name; a symbolic link that leaves the folder is refused outright, since uploading it would
publish a file from elsewhere. ``inspect`` applies the same rules. Hidden entries are never uploaded by either hub
and are not listed.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

from .card import CARD_FILE
from .io.fingerprint import FINGERPRINTED

LOADER_FILES = (
    CARD_FILE,
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "generation_config.json",
    "LICENSE*",
    "LICENCE*",
    "NOTICE*",
)
"""Beside what scoring depends on (``FINGERPRINTED``): the card, sentence-transformers' files, licence files."""
CHECKPOINT_FILES = (*FINGERPRINTED, *LOADER_FILES)
"""Top-level names (shell patterns) that make up a converted checkpoint."""


@dataclass
class Contents:
    files: list[str] = field(default_factory=list)
    """Paths relative to the folder, sorted: what an upload sends."""
    included: list[str] = field(default_factory=list)
    """Of ``files``, those only ``include`` brought in."""
    left_out: list[str] = field(default_factory=list)
    """Stray files: in the folder, not part of the checkpoint, not included."""
    outside_links: list[str] = field(default_factory=list)
    """Symbolic links (to files or folders) whose target lies outside the folder, or nowhere."""


def checkpoint_contents(folder: Path, include: tuple[str, ...] | list[str] = ()) -> Contents:
    """``include``: shell patterns matched against paths relative to the folder (``notes.md``, ``extra/*``)."""
    root = Path(folder).resolve()
    contents = Contents()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in [*dirnames, *filenames]:
            path = here / name
            rel = path.relative_to(folder).as_posix()
            if name.startswith(".") or not (path.is_symlink() or path.is_file()):
                continue
            if path.is_symlink() and not _inside(path, root):
                contents.outside_links.append(rel)
            elif path.is_file():
                _sort(contents, rel, include)
            else:  # a link to a folder inside: neither hub is told to upload what lies behind it
                contents.left_out.append(f"{rel}/")
    for listing in (contents.files, contents.included, contents.left_out, contents.outside_links):
        listing.sort()
    return contents


def _inside(link: Path, root: Path) -> bool:
    try:
        target = link.resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    return target == root or root in target.parents


def _sort(contents: Contents, rel: str, include: tuple[str, ...] | list[str]) -> None:
    top_level = "/" not in rel
    if top_level and any(fnmatch.fnmatchcase(rel, pattern) for pattern in CHECKPOINT_FILES):
        contents.files.append(rel)
    elif any(fnmatch.fnmatchcase(rel, pattern) for pattern in include):
        contents.files.append(rel)
        contents.included.append(rel)
    else:
        contents.left_out.append(rel)
