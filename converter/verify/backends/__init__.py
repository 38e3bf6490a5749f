"""The ways to score a checkpoint, one module each, by name: ``transformers`` in-process, ``vllm``'s offline
engine, a vLLM ``server``, and ``llamacpp`` for an exported GGUF. A backend is imported only when it is chosen, so
that an engine's packages are needed only where that engine is used."""

from __future__ import annotations

import importlib

from .base import BackendRun, Settings, Side

BACKENDS = {
    "transformers": "transformers:TransformersBackend",
    "vllm": "vllm:VllmBackend",
    "server": "server:ServerBackend",
    "llamacpp": "llamacpp:LlamacppBackend",
}
ENGINE_BACKENDS = ("vllm", "server")
"""Backends that score the original through vLLM's online conversion, with transformers as the third opinion."""
MULTIMODAL = {"transformers": "transformers_vision:TransformersVisionBackend"}
"""Where a multimodal family needs another class; the others take images as they come."""


def backend_class(name: str, multimodal: bool = False) -> type:
    spec = (MULTIMODAL.get(name) if multimodal else None) or BACKENDS[name]
    module, cls = spec.split(":")
    return getattr(importlib.import_module(f".{module}", __name__), cls)


__all__ = ["BACKENDS", "ENGINE_BACKENDS", "BackendRun", "Settings", "Side", "backend_class"]
