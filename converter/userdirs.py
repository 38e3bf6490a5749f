"""Where seqcls keeps files of its own between runs: the verify cache and ModelScope's upload resume state."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$SEQCLS_CACHE``, else ``$XDG_CACHE_HOME/seqcls``, else ``~/.cache/seqcls``."""
    if os.environ.get("SEQCLS_CACHE"):
        return Path(os.environ["SEQCLS_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "seqcls"
