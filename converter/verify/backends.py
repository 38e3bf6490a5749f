"""The three ways to score a checkpoint: transformers in-process, vLLM's offline engine, and vLLM's server.

Each backend scores one side at a time: the original (served the documented way) or the converted checkpoint
(served as-is). Sides are apart so that the original's scores can come from the cache; comparing them is someone
else's job. ``cache_inputs`` names everything besides the original's files that its scores depend on.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SeqclsError
from ..io.checkpoint import read_config
from ..pairs import Pair
from ..recipes import Recipe
from ..templates import INPUT_FORMS, SCORE_TEMPLATE_FILE, as_sent
from ..vllm_compat import EngineSpec, VllmInstall, device_env, engine_kwargs, require
from .digests import PromptDigests
from .processes import DEFAULT_TIMEOUT, EngineWatch, stop_process_group

SIDES = ("original", "converted")
FORMS_SAMPLE = 64
"""How many pairs the converted side also scores formatted by hand and mixed (``Side.forms``): enough to cover every
kind of pair in the built-in set, without tripling the work on a user's large set."""

MANUAL = "manual (the seed's formatting)"
TEMPLATE = "raw pairs + score_template.jinja"
JOINED = "query + document, classified (vLLM's score API takes one label)"
OFFICIAL = "the official token ids"


@dataclass(frozen=True)
class Side:
    scores: dict[str, list[float]]
    """Probabilities per endpoint, e.g. {"score": [...]} or {"/v1/rerank": [...], "/score": [...]}."""
    logits: list[float] | None = None
    token_ids: PromptDigests | None = None
    """Each prompt's ids, as a digest and a length."""
    prompts: str = MANUAL
    """How this side's prompts were built."""
    timings: dict[str, float] = field(default_factory=dict)
    """``load_seconds`` (model or engine start-up) and ``score_seconds``, where the backend measures them."""
    forms: dict[str, Side] = field(default_factory=dict)
    """Pairs sent through the score template in the other ``INPUT_FORMS`` (formatted by hand as the seed's clients
    do, mixed): each must give what the raw pairs give."""
    indices: list[int] | None = None
    """The pairs this side scored, where not all of them (a form's sample)."""


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
    timeout: float = DEFAULT_TIMEOUT
    log_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    original_overrides: dict | None = None
    """Replaces the recipe's documented ``hf_overrides`` for the original path."""

    def spec(self, which: str) -> EngineSpec:
        overrides = self.original_overrides or self.recipe.vllm_hf_overrides()
        return EngineSpec(
            model=str(self.original if which == "original" else self.converted),
            dtype=self.dtype,
            device=self.device,
            hf_overrides=overrides if which == "original" else None,
            max_model_len=self.max_length,
            prefix_caching=self.prefix_caching,
            memory_fraction=self.memory_fraction,
        )

    def folder(self, which: str) -> Path:
        return self.original if which == "original" else self.converted


@dataclass(frozen=True)
class BackendRun:
    original: Side
    converted: Side
    reference_ids: PromptDigests
    """The official token ids (the prompt's pieces, tokenized as the family's reference code does)."""
    environment: dict[str, str]
    reference: Side | None = None
    """The transformers reference scoring of the original (``vllm`` and ``server`` backends), on the ids the
    converted path used: a third opinion that tells which side is wrong when the two paths disagree."""
    reference_device: str | None = None

    @property
    def prompts(self) -> dict[str, str]:
        return {"original": self.original.prompts, "converted": self.converted.prompts}

    @property
    def timings(self) -> dict[str, dict[str, float]]:
        return {"original": self.original.timings, "converted": self.converted.timings}


def form_sample(official: PromptDigests, max_length: int) -> list[int]:
    """The pairs sent in the other input forms: the first ``FORMS_SAMPLE`` whose official prompt fills at most half
    the model length, so that a template that wraps formatted input twice gives a wrong score rather than an
    over-long prompt."""
    return [i for i, n in enumerate(official.lengths) if n <= max_length // 2][:FORMS_SAMPLE]


def _instructions(pairs: list[Pair]) -> list[dict | None]:
    return [{"instruction": p.instruction} if p.instruction else None for p in pairs]


def _form_job(s: Settings, sample: list[int], form: str) -> dict:
    pairs = [s.pairs[i] for i in sample]
    sent = [as_sent(s.recipe, p.query, p.document, p.instruction, form, n) for n, p in enumerate(pairs)]
    return {
        "indices": sample,
        "queries": [q for q, _ in sent],
        "documents": [d for _, d in sent],
        "chat_template_kwargs": _instructions(pairs),
    }


def official_ids(settings: Settings, folder: Path | None = None) -> Iterator[list[int]]:
    """The official prompts' ids, tokenized a chunk at a time by ``folder``'s tokenizer (the original's by
    default)."""
    from ..reference import iter_official

    tokenizer = load_tokenizer(folder or settings.original)
    return iter_official(tokenizer, settings.recipe, settings.pairs, settings.max_length)


TOKENIZER_FILES = (
    "config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
)
_tokenizers: dict[tuple, object] = {}


def load_tokenizer(folder: Path):
    """``AutoTokenizer.from_pretrained``, kept while the tokenizer's files are unchanged: a verify needs the
    original's tokenizer more than once, and loading a real 151k vocabulary takes seconds."""
    from transformers import AutoTokenizer

    files = sorted({p for pattern in TOKENIZER_FILES for p in Path(folder).glob(pattern) if p.is_file()})
    key = (str(Path(folder).resolve()), *((p.name, *_stamp(p)) for p in files))
    if key not in _tokenizers:
        if len(_tokenizers) >= 4:
            _tokenizers.pop(next(iter(_tokenizers)))
        _tokenizers[key] = AutoTokenizer.from_pretrained(folder)
    return _tokenizers[key]


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


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


def endpoint_names(recipe: Recipe) -> list[str]:
    """One "endpoint" per label: a multi-label head is judged label by label."""
    return ["score"] if recipe.num_labels == 1 else [f"label {t}" for t in recipe.label_tokens]


def digest(value: object) -> str:
    """sha256 of a JSON value; how long inputs (pairs, token ids) enter a cache key."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _pairs_digest(pairs: list[Pair]) -> str:
    return digest([[p.query, p.document, p.instruction] for p in pairs])


class TransformersBackend:
    """The family's reference scoring of the original, and the converted model as a classifier, on the same ids."""

    name = "transformers"

    def __init__(self, s: Settings, original_ids: list[list[int]] | None = None) -> None:
        """``original_ids``: score the original on these ids instead of the official ones (as the reference of
        another backend, on the ids its converted path used). Otherwise ids are tokenized as they are scored, a
        chunk at a time, and only their digests are kept."""
        import torch
        import transformers
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        prepare_device(s.device)
        self.s = s
        self.original_ids = original_ids
        self.pad_id = read_config(s.converted)["pad_token_id"]
        if original_ids is None:
            for folder in (s.original, s.converted):
                load_tokenizer(folder)  # now, while memory is lowest: a load's passing peak is ~400 MiB at 151k tokens
        self.environment = {"backend": self.name, "transformers": transformers.__version__, "torch": torch.__version__}

    @functools.cached_property
    def reference_ids(self) -> PromptDigests:
        """A first pass of the tokenizer over the pairs: the prompts' lengths size the memory check before a model
        loads, and their digests key the cache."""
        return PromptDigests.of(official_ids(self.s))

    @functools.cached_property
    def _given(self) -> PromptDigests | None:
        return None if self.original_ids is None else PromptDigests.of(self.original_ids)

    def _ids(self, which: str) -> Iterable[list[int]]:
        if which == "original" and self.original_ids is not None:
            return self.original_ids
        return official_ids(self.s, self.s.original if which == "original" else self.s.converted)

    def _prompts(self, which: str) -> PromptDigests:
        """The prompts' lengths and digests before scoring: the given ids', else the official ones (the converted
        tokenizer's are compared with them after scoring)."""
        return self._given if which == "original" and self._given is not None else self.reference_ids

    def cache_inputs(self, which: str) -> dict | None:
        s = self.s
        return {
            "token_ids": self._prompts(which).key(), "label_ids": list(_label_ids(s)), "method": s.recipe.method,
            "pad_id": self.pad_id, "dtype": s.dtype, "batch_size": s.batch_size,
        }  # fmt: skip

    def score(self, which: str) -> Side:
        from ..reference import score_converted, score_original

        s, seen = self.s, PromptDigests()
        self._check_memory(which, self._prompts(which))
        ids = seen.recording(self._ids(which))
        common = {"pad_id": self.pad_id, "dtype": s.dtype, "batch_size": s.batch_size, "device": s.device}
        if which == "original":
            scores = score_original(s.original, ids, s.recipe, label_ids=_label_ids(s), **common)
        else:
            scores = score_converted(s.converted, ids, **common)
        timings = {"load_seconds": scores.load_seconds, "score_seconds": scores.score_seconds}
        per_label = dict(zip(endpoint_names(s.recipe), scores.per_label))
        return Side(per_label, scores.logits, seen, OFFICIAL, timings)

    def _check_memory(self, which: str, prompts: PromptDigests) -> None:
        """Before loading: refuse in one line a model that would not fit (see ``memory.py``)."""
        from .memory import check, estimate

        s, folder = self.s, self.s.folder(which)
        width = int(read_config(folder).get("vocab_size") or 1) if which == "original" else s.recipe.num_labels
        need = estimate(folder, s.dtype, min(s.batch_size, len(prompts)), max(prompts.longest, 1), width)
        what = "the original" if which == "original" else "the converted checkpoint"
        check(f"{what} ({folder.name})", need, s.dtype, s.device)


def _label_ids(s: Settings) -> tuple[int, ...]:
    from ..tokenizer import read_tokenizer_config, read_vocabulary

    config, tokenizer_config = read_config(s.original), read_tokenizer_config(s.original)
    return read_vocabulary(s.original, s.recipe.label_tokens, config, tokenizer_config).label_ids


class VllmBackend:
    """The original gets the seed's manual formatting; the converted model gets raw pairs and its shipped template
    where the installed vLLM renders score templates exactly, else the same manual formatting. A multi-label head
    (generic, no prompt format) is classified on ``query + document`` on both sides."""

    name = "vllm"

    def __init__(self, s: Settings) -> None:
        self.install = require()
        prepare_device(s.device)
        self.s = s
        self.use_template = self.install.generation.score_template and s.recipe.has_prompt
        self.used_ids: dict[str, list[list[int]]] = {}
        """Each side's prompt ids as the engine tokenized them: the reference is scored on the converted side's."""
        self.environment = {
            "backend": self.name,
            "vllm": self.install.describe(),
            "vllm_api": self.install.generation.name,
        }

    @functools.cached_property
    def reference_ids(self) -> PromptDigests:
        return PromptDigests.of(official_ids(self.s))

    def job(self, which: str) -> dict:
        s = self.s
        job = {"engine": engine_kwargs(s.spec(which), self.install)}
        if s.recipe.num_labels > 1:
            job["prompts"] = [p.query + p.document for p in s.pairs]
        elif which == "converted" and self.use_template:
            sample = form_sample(self.reference_ids, s.max_length)
            job |= {
                "queries": [p.query for p in s.pairs],
                "documents": [p.document for p in s.pairs],
                "chat_template": (s.converted / SCORE_TEMPLATE_FILE).read_text(encoding="utf-8"),
                "chat_template_kwargs": _instructions(s.pairs),
                "forms": {form: _form_job(s, sample, form) for form in INPUT_FORMS[1:]},
            }
        else:
            job |= {
                "queries": [s.recipe.format_query(p.query, p.instruction) for p in s.pairs],
                "documents": [s.recipe.format_document(p.document) for p in s.pairs],
            }
        return job

    def cache_inputs(self, which: str) -> dict | None:
        job = self.job(which)
        job["engine"] = {k: v for k, v in job["engine"].items() if k != "model"}
        return {"job": digest(job), "engine": job["engine"]}

    def score(self, which: str) -> Side:
        job = self.job(which)
        prompts = TEMPLATE if "chat_template" in job else JOINED if "prompts" in job else MANUAL
        result = run_engine(job, which, self.s.log_dir, self.s.device, self.s.timeout)
        per_label = [list(x) for x in zip(*result["scores"])] if "prompts" in job else [result["scores"]]
        names = endpoint_names(self.s.recipe)
        forms = {
            form: Side(
                {names[0]: got["scores"]},
                None,
                PromptDigests.of(got["prompt_token_ids"]),
                form,
                indices=job["forms"][form]["indices"],
            )
            for form, got in result.get("forms", {}).items()
        }
        scores = dict(zip(names, per_label))
        self.used_ids[which] = result["prompt_token_ids"]
        ids = PromptDigests.of(result["prompt_token_ids"])
        return Side(scores, None, ids, prompts, result.get("timings", {}), forms)


ENGINE_GRACE = 15.0
"""How long a client whose engine is gone may take to exit on its own (it writes its result after shutting the
engine down)."""


def run_engine(job: dict, which: str, log_dir: Path, device: str, timeout: float = DEFAULT_TIMEOUT) -> dict:
    """Run one engine job in its own process session (see ``engine.py``); the log goes to ``log_dir``. The whole
    process group is ended whatever happens, and vLLM's own processes with it."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"vllm-{which}.log"
    with tempfile.TemporaryDirectory(prefix="seqcls-engine-") as tmp:
        job_path, result_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_path.write_text(json.dumps(job))
        cmd = [sys.executable, "-m", "converter.verify.engine", str(job_path), str(result_path)]
        env = os.environ | device_env(device)
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            watch = EngineWatch(proc, log, timeout)
            try:
                code = _wait_for_engine(watch, result_path)
            finally:
                stop_process_group(proc, grace=0, known=watch.vllm_processes())
        if code != 0 or not result_path.exists():
            status = code if isinstance(code, str) else f"exit {code}"
            raise SeqclsError(f"vLLM failed on the {which} model ({status}): {_last_error(log)}; log: {log}")
        return json.loads(result_path.read_text())


def _wait_for_engine(watch: EngineWatch, result_path: Path) -> int | str:
    """0 as soon as the result is written (the caller ends the process group; vLLM's own teardown takes seconds),
    the exit code of an engine that ended without one, or why the engine is taken as dead: vLLM's processes gone
    (by the process tree, or by what vLLM logs) for longer than ``ENGINE_GRACE``, or the hard timeout."""
    import time

    dead_since = None
    while True:
        try:
            return watch.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        if result_path.exists():
            return 0
        if watch.expired():
            return f"no result after {watch.timeout:.0f} s, the engine timeout"
        watch.vllm_processes()
        if not (watch.lost() or watch.log_says_died()):
            dead_since = None
            continue
        dead_since = dead_since or time.monotonic()
        if time.monotonic() - dead_since > ENGINE_GRACE:
            return "its engine died"


def _last_error(log: Path) -> str:
    from .server import last_error

    return last_error(log)


class ServerBackend:
    """A vLLM server per side, started here (and always stopped), or an already running one (``--*-url``)."""

    name = "server"

    def __init__(self, s: Settings) -> None:
        if s.recipe.num_labels > 1:
            raise SeqclsError(
                f"{s.converted} has {s.recipe.num_labels} labels, and a server's /rerank and /score give one score "
                "per pair; verify it with --backend transformers or vllm"
            )
        self.s = s
        self.install: VllmInstall | None = require() if not (s.original_url and s.converted_url) else None
        if self.install:
            prepare_device(s.device)
        self.environment = {
            "backend": self.name,
            "vllm": self.install.describe() if self.install else "external servers",
        }
        if self.install:
            self.environment["vllm_api"] = self.install.generation.name
        self.used_ids: dict[str, list[list[int]]] = {}
        """Each side's official prompts as its server tokenizes them: the reference is scored on the converted
        side's."""

    @functools.cached_property
    def reference_ids(self) -> PromptDigests:
        return PromptDigests.of(official_ids(self.s))

    def _url(self, which: str) -> str | None:
        return self.s.original_url if which == "original" else self.s.converted_url

    def _template(self, which: str) -> str | None:
        s = self.s
        if which == "converted" and not self._url(which) and self.install.generation.score_template:
            return str(s.converted / SCORE_TEMPLATE_FILE) if s.recipe.has_prompt else None
        return None

    def cache_inputs(self, which: str) -> dict | None:
        """None for a server someone else started: what it runs is unknown here."""
        if self._url(which):
            return None
        spec = self.s.spec(which)
        return {
            "pairs": _pairs_digest(self.s.pairs), "recipe": self.s.recipe.record(), "template": self._template(which),
            "spec": {k: v for k, v in vars(spec).items() if k != "model"},
        }  # fmt: skip

    def score(self, which: str) -> Side:
        s, url = self.s, self._url(which)
        if url:
            return self._score(which, url)
        from .server import START_TIMEOUT, running_server

        log = s.log_dir / f"server-{which}.log"
        limit = min(s.timeout, START_TIMEOUT)
        with running_server(s.spec(which), self.install, log, s.device, self._template(which), limit) as started:
            return self._score(which, started)

    def _score(self, which: str, url: str) -> Side:
        from .server import query_server, tokenize

        s, template = self.s, self._template(which)
        sample = form_sample(self.reference_ids, s.max_length) if template else None
        prompts = TEMPLATE if template else MANUAL
        side = query_server(url, s.recipe, s.pairs, raw=template is not None, prompts=prompts, sample=sample)
        self.used_ids[which] = tokenize(url, s.recipe, s.pairs)
        return dataclasses.replace(side, token_ids=PromptDigests.of(self.used_ids[which]))


BACKENDS = {"transformers": TransformersBackend, "vllm": VllmBackend, "server": ServerBackend}
