"""The three ways to score a checkpoint: transformers in-process, vLLM's offline engine, and vLLM's server.

Each backend scores the same pairs through the original (served the documented way) and the converted checkpoint
(served as-is) and returns both sides; comparing them is someone else's job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SeqclsError
from ..io.checkpoint import read_config
from ..pairs import Pair
from ..recipes import Recipe
from ..templates import SCORE_TEMPLATE_FILE
from ..vllm_compat import EngineSpec, device_env, engine_kwargs, require
from .server import last_error, stop_process_group


@dataclass(frozen=True)
class Side:
    scores: dict[str, list[float]]
    """Probabilities per endpoint, e.g. {"score": [...]} or {"/v1/rerank": [...], "/score": [...]}."""
    logits: list[float] | None = None
    token_ids: list[list[int]] | None = None


@dataclass(frozen=True)
class Settings:
    original: Path
    converted: Path
    recipe: Recipe
    pairs: list[Pair]
    dtype: str = "float32"
    device: str = "cpu"
    max_length: int = 8192
    batch_size: int = 8
    prefix_caching: bool | None = None
    memory_fraction: float | None = None
    original_url: str | None = None
    converted_url: str | None = None
    log_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))

    def spec(self, which: str) -> EngineSpec:
        return EngineSpec(
            model=str(self.original if which == "original" else self.converted),
            dtype=self.dtype,
            device=self.device,
            hf_overrides=self.recipe.vllm_hf_overrides() if which == "original" else None,
            max_model_len=self.max_length,
            prefix_caching=self.prefix_caching,
            memory_fraction=self.memory_fraction,
        )


MANUAL = "manual (the seed's formatting)"
TEMPLATE = "raw pairs + score_template.jinja"
JOINED = "query + document, classified (vLLM's score API takes one label)"


@dataclass(frozen=True)
class BackendRun:
    original: Side
    converted: Side
    reference_ids: list[list[int]]
    """The official token ids (the prompt's pieces, tokenized as the family's reference code does)."""
    environment: dict[str, str]
    prompts: dict[str, str] = field(default_factory=lambda: {"original": MANUAL, "converted": MANUAL})
    """How each side's prompts were built."""
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per side: ``load_seconds`` (model or engine start-up) and ``score_seconds``."""


def official_ids(settings: Settings, folder: Path | None = None) -> list[list[int]]:
    from transformers import AutoTokenizer

    from ..reference import encode_official

    tokenizer = AutoTokenizer.from_pretrained(folder or settings.original)
    return encode_official(tokenizer, settings.recipe, settings.pairs, settings.max_length)


def prepare_device(device: str) -> None:
    os.environ.update(device_env(device))
    if device == "npu":
        try:
            import torch_npu  # noqa: F401  (registers the "npu" device with torch)
        except ImportError:
            raise SeqclsError("--device npu needs torch_npu; install seqcls[npu] on the Ascend host") from None
    elif device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SeqclsError("--device cuda, but torch sees no CUDA device")


def run_transformers(s: Settings) -> BackendRun:
    import torch
    import transformers
    from transformers.utils import logging as hf_logging

    from ..reference import score_converted, score_original

    hf_logging.disable_progress_bar()
    prepare_device(s.device)
    ids_original = official_ids(s)
    ids_converted = official_ids(s, s.converted)
    pad_id = read_config(s.converted)["pad_token_id"]
    common = {"pad_id": pad_id, "dtype": s.dtype, "batch_size": s.batch_size, "device": s.device}
    before = score_original(s.original, ids_original, s.recipe, label_ids=_label_ids(s), **common)
    after = score_converted(s.converted, ids_converted, **common)
    env = {"backend": "transformers", "transformers": transformers.__version__, "torch": torch.__version__}
    official = "the official token ids"
    names = endpoint_names(s.recipe)
    return BackendRun(
        original=Side(dict(zip(names, before.per_label)), before.logits, ids_original),
        converted=Side(dict(zip(names, after.per_label)), after.logits, ids_converted),
        reference_ids=ids_original,
        environment=env,
        prompts={"original": official, "converted": official},
        timings={
            "original": {"load_seconds": before.load_seconds, "score_seconds": before.score_seconds},
            "converted": {"load_seconds": after.load_seconds, "score_seconds": after.score_seconds},
        },
    )


def endpoint_names(recipe: Recipe) -> list[str]:
    """One "endpoint" per label: a multi-label head is judged label by label."""
    return ["score"] if recipe.num_labels == 1 else [f"label {t}" for t in recipe.label_tokens]


def _label_ids(s: Settings) -> tuple[int, ...]:
    from ..tokenizer import read_tokenizer_config, read_vocabulary

    config, tokenizer_config = read_config(s.original), read_tokenizer_config(s.original)
    return read_vocabulary(s.original, s.recipe.label_tokens, config, tokenizer_config).label_ids


def run_vllm(s: Settings) -> BackendRun:
    """The original gets the seed's manual formatting; the converted model gets raw pairs and its shipped template
    where the installed vLLM renders score templates exactly, else the same manual formatting. A multi-label head
    (generic, no prompt format) is classified on ``query + document`` on both sides."""
    install = require()
    prepare_device(s.device)
    use_template = install.generation.score_template and s.recipe.has_prompt
    sides, prompts, timings = {}, {}, {}
    for which in ("original", "converted"):
        job = {"engine": engine_kwargs(s.spec(which), install)}
        if s.recipe.num_labels > 1:
            job["prompts"] = [p.query + p.document for p in s.pairs]
        elif which == "converted" and use_template:
            job |= {
                "queries": [p.query for p in s.pairs],
                "documents": [p.document for p in s.pairs],
                "chat_template": (s.converted / SCORE_TEMPLATE_FILE).read_text(encoding="utf-8"),
                "chat_template_kwargs": [{"instruction": p.instruction} if p.instruction else None for p in s.pairs],
            }
        else:
            job |= {
                "queries": [s.recipe.format_query(p.query, p.instruction) for p in s.pairs],
                "documents": [s.recipe.format_document(p.document) for p in s.pairs],
            }
        prompts[which] = TEMPLATE if "chat_template" in job else JOINED if "prompts" in job else MANUAL
        result = run_engine(job, which, s.log_dir, s.device)
        per_label = [list(x) for x in zip(*result["scores"])] if "prompts" in job else [result["scores"]]
        sides[which] = Side(dict(zip(endpoint_names(s.recipe), per_label)), None, result["prompt_token_ids"])
        timings[which] = result.get("timings", {})
    env = {"backend": "vllm", "vllm": install.describe(), "vllm_api": install.generation.name}
    return BackendRun(sides["original"], sides["converted"], official_ids(s), env, prompts, timings)


def run_engine(job: dict, which: str, log_dir: Path, device: str) -> dict:
    """Run one engine job in its own process session (see ``engine.py``); the log goes to ``log_dir``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"vllm-{which}.log"
    with tempfile.TemporaryDirectory(prefix="seqcls-engine-") as tmp:
        job_path, result_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_path.write_text(json.dumps(job))
        cmd = [sys.executable, "-m", "converter.verify.engine", str(job_path), str(result_path)]
        env = os.environ | device_env(device)
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            try:
                code = _wait_for_engine(proc, log)
            finally:
                stop_process_group(proc, grace=0)
        if code != 0 or not result_path.exists():
            status = "its engine died" if code is None else f"exit {code}"
            raise SeqclsError(f"vLLM failed on the {which} model ({status}): {last_error(log)}; log: {log}")
        return json.loads(result_path.read_text())


ENGINE_DIED = ("died unexpectedly", "EngineCore encountered a fatal error")
"""What vLLM logs when a worker or its engine core dies (a worker killed for memory, say); its client can then
wait forever for a reply."""


def _wait_for_engine(proc: subprocess.Popen, log: Path) -> int | None:
    """The exit code, or None when the log says the engine died under a client that would wait forever."""
    while True:
        try:
            return proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            with open(log, "rb") as f:
                f.seek(max(f.seek(0, os.SEEK_END) - 65536, 0))
                tail = f.read().decode(errors="replace")
            if any(marker in tail for marker in ENGINE_DIED):
                try:
                    return proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    return None


def run_server(s: Settings) -> BackendRun:
    from .server import query_server, running_server

    if s.recipe.num_labels > 1:
        raise SeqclsError(
            f"{s.converted} has {s.recipe.num_labels} labels, and a server's /rerank and /score give one score per "
            "pair; verify it with --backend transformers or vllm"
        )
    install = require() if not (s.original_url and s.converted_url) else None
    if install:
        prepare_device(s.device)
    sides, prompts = {}, {}
    for which, url in (("original", s.original_url), ("converted", s.converted_url)):
        template = None
        if which == "converted" and not url and install.generation.score_template and s.recipe.has_prompt:
            template = str(s.converted / SCORE_TEMPLATE_FILE)
        prompts[which] = TEMPLATE if template else MANUAL
        if url:
            sides[which] = query_server(url, s.recipe, s.pairs)
        else:
            log = s.log_dir / f"server-{which}.log"
            with running_server(s.spec(which), install, log, s.device, chat_template=template) as started:
                sides[which] = query_server(started, s.recipe, s.pairs, raw=template is not None)
    env = {"backend": "server", "vllm": install.describe() if install else "external servers"}
    if install:
        env["vllm_api"] = install.generation.name
    return BackendRun(sides["original"], sides["converted"], official_ids(s), env, prompts)


BACKENDS = {"transformers": run_transformers, "vllm": run_vllm, "server": run_server}
