"""A checkpoint folder as the converter sees it: config, weight files, and where every tensor lives.

Everything here is checked before anything is written: index entries must stay inside the folder, the index must
agree with the shards' real contents, and pickle weights are refused without being opened.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import SeqclsError
from .safetensors_format import SafetensorsFile, TensorInfo, read_header

CONFIG = "config.json"
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


@dataclass(frozen=True)
class Checkpoint:
    folder: Path
    config: dict
    files: tuple[SafetensorsFile, ...]
    """In shard order."""
    tensors: dict[str, TensorInfo]


def open_checkpoint(folder: Path, root: Path | None = None) -> Checkpoint:
    """Read config and safetensors headers only. ``root`` bounds where symlinks may point (default: ``folder``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SeqclsError(f"{folder} is not a folder; pass a checkpoint folder")
    root = (root or folder).resolve()
    config = read_config(folder)
    names = _weight_file_names(folder)
    files = tuple(read_header(_inside(folder, name, root)) for name in names)

    tensors: dict[str, TensorInfo] = {}
    for f in files:
        for name, info in f.tensors.items():
            if name in tensors:
                raise SeqclsError(
                    f"tensor {name!r} is in both {tensors[name].path.name} and {f.path.name}; "
                    "the checkpoint is inconsistent, re-download it"
                )
            tensors[name] = info
    if (folder / INDEX).exists():
        _check_index_matches(folder, tensors)
    return Checkpoint(folder=folder, config=config, files=files, tensors=tensors)


def read_config(folder: Path) -> dict:
    path = Path(folder) / CONFIG
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SeqclsError(f"{folder} has no {CONFIG}; pass a Hugging Face checkpoint folder") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise SeqclsError(f"{path} is not valid JSON ({e}); fix or re-download it") from None
    if not isinstance(config, dict):
        raise SeqclsError(f"{path} must hold a JSON object")
    return config


SERVING_DTYPES = ("float32", "bfloat16", "float16")


def config_dtype(config: dict) -> str:
    """The weights' dtype as config.json states it (``dtype``, formerly ``torch_dtype``), as a name vLLM and
    transformers accept; bfloat16 when it is missing or unusual."""
    dtype = config.get("dtype") or config.get("torch_dtype") or "bfloat16"
    return dtype if dtype in SERVING_DTYPES else "bfloat16"


def read_index(folder: Path) -> dict[str, str]:
    path = Path(folder) / INDEX
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise SeqclsError(f"{path} is not valid JSON ({e}); fix or re-download it") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not (isinstance(weight_map, dict) and all(isinstance(v, str) for v in weight_map.values())):
        raise SeqclsError(f"{path} has no valid weight_map; fix or re-download it")
    return weight_map


def _weight_file_names(folder: Path) -> list[str]:
    has_index, has_single = (folder / INDEX).exists(), (folder / SINGLE).exists()
    if has_index and has_single:
        raise SeqclsError(
            f"{folder} holds both {SINGLE} and {INDEX}; loaders disagree on which one wins, "
            "remove the one that is stale"
        )
    if has_index:
        return sorted(set(read_index(folder).values()))
    if has_single:
        return [SINGLE]
    pickles = sorted(p.name for pattern in PICKLE_PATTERNS for p in folder.glob(pattern))
    if pickles:
        raise SeqclsError(
            f"{folder} holds only pickle weights ({', '.join(pickles)}), which are never unpickled here; "
            "convert them to safetensors with a tool you trust first"
        )
    stray = sorted(p.name for p in folder.glob("*.safetensors"))
    if stray:
        raise SeqclsError(f"{folder} has {', '.join(stray)} but no {INDEX}; restore the index")
    raise SeqclsError(f"{folder} holds no safetensors weights")


def _inside(folder: Path, name: str, root: Path) -> Path:
    """Resolve an index entry, refusing anything that leads out of the checkpoint."""
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts or not name:
        raise SeqclsError(f"{INDEX} names {name!r}, which is outside the checkpoint folder; refusing to read it")
    path = folder / rel
    if not path.exists():
        raise SeqclsError(f"{INDEX} names {name}, which is missing from {folder}; download the missing shard")
    if not path.resolve().is_relative_to(root):
        raise SeqclsError(f"{name} is a link that leads outside {root}; refusing to read it")
    return path


def _check_index_matches(folder: Path, tensors: dict[str, TensorInfo]) -> None:
    """The index must name exactly the tensors the shards hold, each in the shard that holds it."""
    weight_map = read_index(folder)
    missing = sorted(set(weight_map) - set(tensors))
    unlisted = sorted(set(tensors) - set(weight_map))
    misplaced = sorted(n for n in weight_map if n in tensors and Path(weight_map[n]) != _rel(folder, tensors[n]))
    for what, names in (
        ("names tensors no shard holds", missing),
        ("omits tensors the shards hold", unlisted),
        ("puts tensors in the wrong shard", misplaced),
    ):
        if names:
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            raise SeqclsError(f"{INDEX} {what}: {shown}; the checkpoint is inconsistent, re-download it")


def _rel(folder: Path, t: TensorInfo) -> Path:
    return t.path.relative_to(folder)
