"""sha256 of a checkpoint's files: how a verify report is tied to the exact weights it measured."""

from __future__ import annotations

import hashlib
from pathlib import Path

FINGERPRINTED = (
    "*.safetensors",
    "model.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "*.jinja",
    "chat_template.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "processor_config.json",
)
"""What scoring depends on (a multimodal processor's files too: they size the images). Reports and model cards are
left out, so writing them does not change the identity."""
_cache: dict[tuple[int, int, int, int], str] = {}


def sha256_file(path: Path) -> str:
    """Hard-linked shards share an inode, so a shard linked into the output is hashed once."""
    st = path.stat()
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(8 << 20):
                h.update(block)
        _cache[key] = h.hexdigest()
    return _cache[key]


def fingerprint(folder: Path) -> dict[str, str]:
    """A checkpoint folder's files, or one file (a GGUF)."""
    if Path(folder).is_file():
        return {Path(folder).name: sha256_file(Path(folder))}
    files = sorted({p for pattern in FINGERPRINTED for p in Path(folder).glob(pattern) if p.is_file()})
    return {p.name: sha256_file(p) for p in files}
