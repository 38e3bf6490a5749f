"""What every backend is given (``Settings``) and gives back (``Side``, ``BackendRun``), and what they share.

Each backend scores one side at a time: the original (served the documented way) or the converted checkpoint
(served as-is). Sides are apart so that the original's scores can come from the cache; comparing them is someone
else's job. ``cache_inputs`` names everything besides the original's files that its scores depend on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ...errors import SeqclsError
from ...media import engine_limits, fingerprint
from ...pairs import Pair
from ...recipes import Recipe
from ...templates import as_sent
from ...vllm_compat import EngineSpec, device_env
from ..digests import PromptDigests
from ..processes import DEFAULT_TIMEOUT

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
    videos: dict[int, list[dict]] | None = None
    """Per pair with video, each video as this side handed it to the model (``video.model_input``: the grid, a digest
    of the patches' bytes, the normalization). None: the backend cannot tell (a server), or the family has no video."""


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
    chunk: int = 2048
    """Pairs handed to an engine or server at a time: what it holds of the pair set at once."""
    reference_only: bool = False
    """No original in the engine (``VerifyOptions.reference_only``)."""

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
            media_limits=self.media_limits,
        )

    @cached_property
    def media_limits(self) -> dict | None:
        """The same for both sides, read once: the pairs' images, for a multimodal family."""
        return engine_limits(self.pairs) if self.recipe.multimodal else None

    def folder(self, which: str) -> Path:
        return self.original if which == "original" else self.converted

    def raw_logits(self, which: str) -> bool:
        """The original of a calibrated head (zerank-2) is asked for its raw logit (vLLM's ``use_activation``
        off), which ``Recipe.calibrated`` then scores: vLLM's own sigmoid of it is not the family's score, and a
        float32 probability near 1 cannot give the logit back."""
        return which == "original" and self.recipe.temperature != 1

    @cached_property
    def _fitted(self) -> tuple[list[Pair], list[int]]:
        from ...truncation import fit_pairs

        return fit_pairs(load_tokenizer(self.original), self.recipe, self.pairs, self.max_length)

    @property
    def sent_pairs(self) -> list[Pair]:
        """The pairs as the engine backends send them: a document too long for ``max_length`` cut where the
        reference cuts it (``truncation.cut_document``), so that every engine gets the reference's prompt instead of
        an error or a prompt without its end."""
        return self._fitted[0]

    @property
    def cut_pairs(self) -> list[int]:
        """Indices of the pairs whose document the reference (and so every side) cuts."""
        return self._fitted[1]


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
    timing: str = ""
    """How the backend timed each side's scoring (the same way for both): what its pairs/s include."""

    @property
    def prompts(self) -> dict[str, str]:
        return {"original": self.original.prompts, "converted": self.converted.prompts}

    @property
    def timings(self) -> dict[str, dict[str, float]]:
        return {"original": self.original.timings, "converted": self.converted.timings}


class SpilledIds:
    """Each pair's prompt ids as a backend used them, read again from the JSONL file it wrote them to (``column``
    of each line's array; None: the whole line): the reference scores the converted side's ids without anyone
    holding them all."""

    def __init__(self, path: str | Path, column: int | None = 1) -> None:
        self.path, self.column = Path(path), column

    def __iter__(self) -> Iterator:
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                yield row if self.column is None else row[self.column]


def form_sample(official: PromptDigests, max_length: int) -> list[int]:
    """The pairs sent in the other input forms: the first ``FORMS_SAMPLE`` whose official prompt fills at most half
    the model length, so that a template that wraps formatted input twice gives a wrong score rather than an
    over-long prompt."""
    return [i for i, n in enumerate(official.lengths) if n <= max_length // 2][:FORMS_SAMPLE]


def instructions(pairs: list[Pair]) -> list[dict | None]:
    return [{"instruction": p.instruction} if p.instruction else None for p in pairs]


def form_job(s: Settings, sample: list[int], form: str) -> dict:
    pairs = [s.sent_pairs[i] for i in sample]
    sent = [as_sent(s.recipe, p.query, p.document, p.instruction, form, n) for n, p in enumerate(pairs)]
    return {
        "indices": sample,
        "queries": [q for q, _ in sent],
        "documents": [d for _, d in sent],
        "chat_template_kwargs": instructions(pairs),
    }


def official_ids(settings: Settings, folder: Path | None = None) -> Iterator[list[int]]:
    """The official prompts' ids, tokenized a chunk at a time by ``folder``'s tokenizer (the original's by
    default)."""
    from ...reference import iter_official

    if settings.recipe.multimodal:
        from ..vision import iter_official_vision

        return iter_official_vision(folder or settings.original, settings.recipe, settings.pairs, settings.max_length)
    tokenizer = load_tokenizer(folder or settings.original)
    return iter_official(tokenizer, settings.recipe, settings.pairs, settings.max_length)


def official_digests_soon(settings: Settings) -> Future:
    """The official prompts' digests, computed in a thread from now on. An engine backend needs them only after its
    first engine has started, and that start leaves a core idle for tens of seconds: the tokenizer's pass over the
    pairs (seconds per thousand; its batches run in Rust, outside the GIL) fits in it."""
    # transformers' lazy imports are not safe from two threads at once, and the caller tokenizes meanwhile; where
    # it is missing, official_ids says so.
    with contextlib.suppress(ImportError):
        from transformers import AutoProcessor, AutoTokenizer  # noqa: F401
    pool = ThreadPoolExecutor(1, thread_name_prefix="seqcls-official-ids")
    future = pool.submit(lambda: PromptDigests.of(official_ids(settings)))
    pool.shutdown(wait=False)
    return future


TOKENIZER_FILES = (
    "config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template*",
)
"""What ``AutoTokenizer.from_pretrained`` reads from a folder."""
TOKENIZERS_KEPT = 4
"""A real 151k vocabulary takes about 110 MiB."""
_tokenizers: dict[str, object] = {}
_digests: dict[tuple, str] = {}


def load_tokenizer(folder: Path):
    """``AutoTokenizer.from_pretrained``, kept while the tokenizer's files are unchanged. Loading a real 151k
    vocabulary takes about two seconds, and a verify needs the original's tokenizer more than once. Kept by the
    files' contents, so copies of a folder (and the converted checkpoints of originals that share a vocabulary)
    share one tokenizer; callers must not change it."""
    from transformers import AutoTokenizer

    key = _tokenizer_digest(Path(folder))
    if key in _tokenizers:
        _tokenizers[key] = _tokenizers.pop(key)  # most recently used last
    else:
        if len(_tokenizers) >= TOKENIZERS_KEPT:
            _tokenizers.pop(next(iter(_tokenizers)))
        _tokenizers[key] = AutoTokenizer.from_pretrained(folder)
    return _tokenizers[key]


def _tokenizer_digest(folder: Path) -> str:
    """The tokenizer files' names and contents, hashed once per file version (by inode, size and mtime)."""
    files = sorted({p for pattern in TOKENIZER_FILES for p in folder.glob(pattern) if p.is_file()})
    stamps = tuple((str(p.resolve()), *_stamp(p)) for p in files)
    if stamps not in _digests:
        h = hashlib.sha256()
        for p in files:
            data = p.read_bytes()
            if p.name == "config.json":  # its other fields (dtype, tying, layers) do not change the tokenizer
                try:
                    config = json.loads(data)
                    data = json.dumps([config.get("model_type"), config.get("tokenizer_class")]).encode()
                except (ValueError, AttributeError):
                    pass  # not a JSON object: AutoTokenizer says what is wrong with it
            h.update(p.name.encode() + b"\0" + hashlib.sha256(data).digest())
        if len(_digests) >= 64:
            _digests.pop(next(iter(_digests)))
        _digests[stamps] = h.hexdigest()
    return _digests[stamps]


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


def original_label_ids(s: Settings) -> tuple[int, ...]:
    """The original's label token ids, read from its tokenizer.json (megabytes of JSON: callers keep the answer)."""
    from ...io.checkpoint import read_config
    from ...tokenizer import read_tokenizer_config, read_vocabulary

    config, tokenizer_config = read_config(s.original), read_tokenizer_config(s.original)
    return read_vocabulary(s.original, s.recipe.label_tokens, config, tokenizer_config).label_ids


def endpoint_names(recipe: Recipe) -> list[str]:
    """One "endpoint" per label: a multi-label head is judged label by label."""
    return ["score"] if recipe.num_labels == 1 else [f"label {t}" for t in recipe.label_tokens]


def digest(value: object) -> str:
    """sha256 of a JSON value; how long inputs (pairs, token ids) enter a cache key."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def pairs_digest(pairs: Iterable[Pair]) -> str:
    """sha256 of the pairs, taken as they stream past."""
    h = hashlib.sha256()
    for p in pairs:
        sides = [fingerprint(p.query), fingerprint(p.document)]
        h.update(json.dumps([*sides, p.instruction], ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()
