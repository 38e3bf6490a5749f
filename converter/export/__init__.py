"""Exports of a converted checkpoint to other engines' formats, one module per format (``gguf`` for llama.cpp),
with the engine's own library beside it (``llamacpp``) for what only the engine can do: quantize, and score."""

from __future__ import annotations

from .gguf import DEFAULT_TYPES, TYPES, Exported, export_gguf

FORMATS = {"gguf": export_gguf}

__all__ = ["DEFAULT_TYPES", "FORMATS", "TYPES", "Exported", "export_gguf"]
