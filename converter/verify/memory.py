"""Will a model fit before it is loaded? An 8B model in float32 needs about 32 GB; finding out from the OOM killer
half-way through a verify wastes minutes of an accelerator and says nothing. The estimate is the weights in the
scoring dtype plus the activations of one batch; the check refuses in one line with the need, what the device has,
and the fix."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import SeqclsError
from ..io.checkpoint import open_checkpoint
from ..reference import batch_tokens
from ..source import snapshot_root

ITEMSIZE = {"float32": 4, "bfloat16": 2, "float16": 2}
LIMIT_ENV = "SEQCLS_MEMORY_LIMIT"
"""Bytes (or ``16GiB``, ``512MiB``) to take as the device's available memory: for a shared host, or a test."""
GiB = 1024**3


@dataclass(frozen=True)
class Need:
    weights: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.activations


def estimate(folder: Path, dtype: str, batch_size: int, longest: int, logits_width: int = 1) -> Need:
    """``longest``: tokens of the longest prompt; ``logits_width``: output columns per row (the vocabulary for an
    original scored at its last position, the labels for a classifier). Batches are cut by length and padded tokens
    (``reference.batch_tokens``), so a long prompt does not count ``batch_size`` times."""
    checkpoint = open_checkpoint(folder, snapshot_root(Path(folder)))
    config = checkpoint.config.get("text_config", checkpoint.config)
    numel = 0
    for info in checkpoint.tensors.values():
        count = 1
        for dim in info.shape:
            count *= dim
        numel += count
    hidden = int(config.get("hidden_size") or 0)
    intermediate = int(config.get("intermediate_size") or 4 * hidden)
    rows = min(batch_size * longest, max(batch_tokens(batch_size), longest))
    # one layer's hidden states, attention projections and MLP at a time (no KV cache kept), and the logits in fp32
    activations = rows * (4 * hidden + 3 * intermediate) * ITEMSIZE[dtype] + batch_size * logits_width * 4
    return Need(numel * ITEMSIZE[dtype], activations)


def available(device: str) -> int:
    """Free memory of ``device`` (``cpu``: what the kernel and the cgroup allow), or ``SEQCLS_MEMORY_LIMIT``."""
    if limit := os.environ.get(LIMIT_ENV):
        return parse_size(limit)
    if device == "cuda":
        import torch

        return torch.cuda.mem_get_info()[0]
    if device == "npu":
        import torch

        return torch.npu.mem_get_info()[0]
    return _cpu_available()


def check(what: str, need: Need, dtype: str, device: str, margin: float = 1.1) -> None:
    """Refuses when ``need`` (with a margin for the framework's own buffers) exceeds what ``device`` has free."""
    have = available(device)
    if need.total * margin <= have:
        return
    half = Need(need.weights * 2 // ITEMSIZE[dtype], need.activations * 2 // ITEMSIZE[dtype])
    fix = f"pass --dtype bfloat16 (about {_gb(half.total)})" if dtype == "float32" else "pass a smaller --batch-size"
    raise SeqclsError(
        f"{what} in {dtype} needs about {_gb(need.total)} on {device} (weights {_gb(need.weights)} + one batch "
        f"{_gb(need.activations)}), and {device} has {_gb(have)} available: {fix}, or verify on another --device"
    )


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?)?\s*", text, re.IGNORECASE)
    if not match:
        raise SeqclsError(f"{LIMIT_ENV}={text!r} is not a size; write bytes, or a number with MiB or GiB")
    unit = (match.group(2) or "").upper().rstrip("B").rstrip("I")
    return int(float(match.group(1)) * 1024 ** " KMGT".index(unit or " "))


def _cpu_available() -> int:
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            free = min(free if free is not None else 1 << 62, int(limit) - used)
    except (OSError, ValueError):
        pass
    if free is None:
        import psutil

        free = psutil.virtual_memory().available
    return free


def _gb(n: int) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / 1024**2:.0f} MiB"
