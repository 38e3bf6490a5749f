"""Session fixtures: tiny originals of every preset (real Qwen vocabularies), built once and shared."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from converter.tiny_model import build_tiny_reranker

ORIGINALS = {
    "tied-bf16-single": {"tied": True, "dtype": "bfloat16"},
    "tied-fp16-sharded": {"tied": True, "dtype": "float16", "max_shard_size": "30MB"},
    "tied-fp32-single": {"tied": True, "dtype": "float32"},
    "untied-fp32-single": {"tied": False, "dtype": "float32"},
    "untied-bf16-sharded": {"tied": False, "dtype": "bfloat16", "max_shard_size": "30MB"},
    "untied-fp32-sharded": {"tied": False, "dtype": "float32", "max_shard_size": "60MB"},
    # Other presets; their folder names are how convert recognises the family.
    "tiny-mxbai-rerank-base-v2": {"family": "mxbai-rerank-v2", "tied": True, "dtype": "float32"},
    "tiny-bge-reranker-v2-gemma": {"family": "bge-reranker-v2-gemma", "tied": True, "dtype": "float32"},
}
QWEN3_ORIGINALS = [name for name, options in ORIGINALS.items() if "family" not in options]
FAMILY_ORIGINALS = {"qwen3-reranker": "tied-fp32-single", "mxbai-rerank-v2": "tiny-mxbai-rerank-base-v2",
                    "bge-reranker-v2-gemma": "tiny-bge-reranker-v2-gemma"}  # fmt: skip
"""One fp32 original per preset, for tests that run every family."""


@pytest.fixture(scope="session")
def original(tmp_path_factory):
    """``original(name)`` builds (once per session) and returns the folder of a tiny original."""
    root = tmp_path_factory.mktemp("originals")
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = build_tiny_reranker(root / name, seed=len(built), **ORIGINALS[name])
        return built[name]

    return get


@pytest.fixture(scope="session")
def pair_of(original, tmp_path_factory):
    """``pair_of(name)``: (original, converted), converted once per session. Do not modify either."""
    from converter import convert

    done: dict[str, tuple[Path, Path]] = {}

    def get(name: str) -> tuple[Path, Path]:
        if name not in done:
            out = tmp_path_factory.mktemp("converted") / f"{name}-seq-cls"
            convert(original(name), out)
            done[name] = (original(name), out)
        return done[name]

    return get


@pytest.fixture
def copy_of(original, tmp_path):
    """``copy_of(name)``: a private, writable copy of an original, for tests that damage it."""

    def get(name: str) -> Path:
        dst = tmp_path / f"src-{name}"
        shutil.copytree(original(name), dst)
        return dst

    return get


def pytest_collection_modifyitems(config, items):
    has = {
        "vllm": importlib.util.find_spec("vllm") is not None,
        "cuda": _cuda(),
        "npu": importlib.util.find_spec("torch_npu") is not None,
    }
    for item in items:
        for marker, available in has.items():
            if marker in item.keywords and not available:
                if marker == "vllm" and os.environ.get("CI"):
                    raise pytest.UsageError("CI must run the vLLM tests, but vLLM is not installed")
                item.add_marker(pytest.mark.skip(reason=f"needs {marker}"))


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False
