"""``verify()``: score the same pairs through the original and the converted checkpoint, and judge parity."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..drawn import video_pairs, vision_pairs
from ..errors import SeqclsError
from ..io.checkpoint import read_config
from ..io.fingerprint import fingerprint
from ..media import max_pixels
from ..pairs import LONG_FILLER, Pair, Qrels, builtin_pairs, load_pair_set
from ..recipes import Recipe, recipe_for_converted
from ..reference import reference_length
from ..source import resolve_source
from ..templates import SCORE_TEMPLATE_FILE
from ..truncation import check_fits_template, check_max_length
from . import cache
from .backends import BACKENDS, ENGINE_BACKENDS, BackendRun, Settings, Side, backend_class
from .backends.base import load_tokenizer
from .comparison import compare
from .outputs import sidecar, write_json, write_jsonl, write_junit, write_plot
from .processes import DEFAULT_TIMEOUT
from .reporting import build_report, pair_rows, timing_note
from .verdicts import tolerance as tolerance_for

DEVICES = ("cpu", "cuda", "npu")
DTYPES = ("float32", "bfloat16", "float16")
PAIR_ROWS_INLINE = 10_000
"""Up to this many pairs the report holds a row per pair (``pairs``). Above, the rows are written to a JSONL file
beside the report as they are made (``pairs_file``), so that neither memory nor the report grows with the pair
set; without a report path they are not kept."""


@dataclass(frozen=True)
class VerifyOptions:
    """Everything ``verify`` can be told besides the two checkpoints and the pairs. The CLI maps its flags here in
    one place; ``verify(..., **changes)`` takes the same names."""

    backend: str = "transformers"
    device: str = "cpu"
    dtype: str = "float32"
    pairs_file: Path | None = None
    """JSONL pairs or a BEIR-layout folder; None: the built-in set."""
    split: str = "test"
    """The BEIR qrels split (``qrels/<split>.tsv``)."""
    run_file: Path | None = None
    """A BEIR folder's candidates per query (TREC run file); None: each query's judged documents."""
    atol: float | None = None
    """None: the dtype's default (``DEFAULT_ATOL``)."""
    max_length: int | None = None
    batch_size: int = 8
    chunk: int = 2048
    """Pairs handed to an engine or server at a time (``vllm``, ``server``): memory does not grow with the set."""
    # engines and servers
    prefix_caching: bool | None = None
    memory_fraction: float | None = None
    timeout: float = DEFAULT_TIMEOUT
    """Hard limit on each vLLM engine job or server start, in seconds."""
    original_url: str | None = None
    converted_url: str | None = None
    original_overrides: dict | str | None = None
    """JSON (or a dict) replacing the documented ``hf_overrides`` of the original path (``vllm``, ``server``)."""
    # the transformers reference, a third opinion for the vllm and server backends
    reference: bool = True
    reference_only: bool = False
    """Engine backends: no original in the engine; the reference stands in for it (a served conversion checked where
    the original's server would cost a second model's memory and start-up)."""
    reference_device: str | None = None
    """None: ``device``, or cpu where torch has no such device here."""
    # the original side's cache
    cache_dir: Path | None = None
    """None: the user's cache folder (``cache.default_dir()``)."""
    use_cache: bool = True
    # outputs
    report: Path | None = None
    junit: Path | None = None
    plot: Path | None = None
    log_dir: Path | None = None
    """vLLM logs; None: beside the report, else ``CONVERTED/../verify-logs``."""
    update_card: bool = False
    card: Path | None = None
    """The converted checkpoint whose card records a GGUF's result; None: the one the GGUF names, beside the GGUF's
    folder (``seqcls export gguf``'s default layout)."""
    # where the original comes from
    hub: str | None = None
    offline: bool = False


def verify(
    converted: str | Path,
    original: str | Path,
    options: VerifyOptions | None = None,
    *,
    pairs: list[Pair] | None = None,
    qrels: Qrels | None = None,
    **changes,
) -> dict:
    """Returns the report; ``report["verdict"]`` is "pass" or "fail". Raises ``SeqclsError`` for bad input.

    Pairs come from ``pairs`` (judged by ``qrels`` where given), else ``options.pairs_file``, else the built-in set.
    ``changes`` replace fields of ``options`` (``verify(out, src, backend="vllm")``)."""
    entered = time.monotonic()
    o = dataclasses.replace(options or VerifyOptions(), **changes)
    if o.backend not in BACKENDS:
        raise SeqclsError(f"unknown backend {o.backend!r}; choose one of {', '.join(BACKENDS)}")
    if o.device not in DEVICES or o.dtype not in DTYPES:
        raise SeqclsError(f"--device must be one of {DEVICES} and --dtype one of {DTYPES}")
    if o.max_length is not None:
        check_max_length(o.max_length)
    if o.chunk < 1:
        raise SeqclsError(f"the chunk of pairs sent at a time must be at least 1, not {o.chunk}")
    if o.timeout <= 0:
        raise SeqclsError(f"--timeout must be a positive number of seconds, not {o.timeout}")
    if o.reference_device not in (None, *DEVICES):
        raise SeqclsError(f"--reference-device must be one of {DEVICES}")
    if o.reference_only:
        _check_reference_only(o)
    converted, original = Path(converted), resolve_source(original, hub=o.hub, offline=o.offline).folder
    recipe, config, gguf_type = _check_inputs(converted, original, o.backend)
    card = (o.card or _gguf_card(converted) if gguf_type else converted) if o.update_card else None
    overrides = _original_overrides(o, original, config)
    limit = o.max_length if o.max_length is not None else reference_length(recipe, config)
    if not recipe.multimodal:
        check_fits_template(load_tokenizer(original), recipe, limit)
    if pairs is None and o.pairs_file:
        pixels = max_pixels(original) if recipe.multimodal else None
        loaded = load_pair_set(Path(o.pairs_file), o.split, Path(o.run_file) if o.run_file else None, pixels)
        pairs, qrels = loaded.pairs, loaded.qrels
        if loaded.media_at and not recipe.multimodal:
            raise SeqclsError(f"{loaded.media_at} holds an image or video, and {recipe.title} reads text only")
    elif pairs is None:
        pairs = builtin_pairs(_long_document(original, recipe, limit))
        pairs += vision_pairs() if recipe.multimodal else []
        pairs += video_pairs() if recipe.video else []
    if not pairs:
        raise SeqclsError("no pairs to verify")
    tolerance, gate = tolerance_for(o.dtype, o.atol, gguf_type)
    log_dir = Path(o.log_dir) if o.log_dir else Path(o.report).parent if o.report else converted.parent / "verify-logs"
    settings = Settings(
        original=original, converted=converted, recipe=recipe, pairs=pairs, dtype=o.dtype, device=o.device,
        max_length=limit, batch_size=o.batch_size, prefix_caching=o.prefix_caching, memory_fraction=o.memory_fraction,
        original_url=o.original_url, converted_url=o.converted_url, timeout=o.timeout, log_dir=log_dir,
        original_overrides=overrides, chunk=o.chunk, reference_only=o.reference_only,
    )  # fmt: skip
    started = time.monotonic()
    phases = {"prepare": started - entered}
    run, cached = _score(settings, o, phases)
    compared = time.monotonic()
    verdict = compare(pairs, run, tolerance, o.dtype, qrels, gate)
    result = build_report(settings, o.backend, verdict, run, pairs, time.monotonic() - started)
    result["gguf_type"] = gguf_type
    result["cache"] = cached
    if o.reference_only:
        result["original_side"] = REFERENCE_ONLY
    malloc = result["environment"].get("engine_malloc")
    result["timing_note"] = timing_note(result["timings"], o.backend, cached["original"] == "hit", malloc, o.device)
    result["phases"] = phases | {"compare": time.monotonic() - compared}
    rows = pair_rows(pairs, verdict, run)
    if len(pairs) <= PAIR_ROWS_INLINE:
        result["pairs"] = list(rows)
    elif o.report:
        result["pairs_file"] = str(write_jsonl(rows, sidecar(Path(o.report))))
    if o.report:
        write_json(result, Path(o.report))
    if o.junit:
        write_junit(result, Path(o.junit))
    primary = verdict.endpoints[0]
    if o.plot and not write_plot(result, Path(o.plot), primary.original, primary.converted):
        print("seqcls: warning: --plot skipped: matplotlib is missing (pip install 'seqcls[plot]')", file=sys.stderr)
    if card is not None:
        from ..card import update_card as record

        record(card, result)
    return result


def _gguf_card(gguf_file: Path) -> Path:
    """The converted checkpoint a GGUF was exported from, where ``seqcls export gguf`` leaves it by default."""
    from ..export.llamacpp import GgufFile

    with GgufFile(gguf_file) as f:
        source = f.string("seqcls.source")
    folder = gguf_file.resolve().parent.parent / (source or "")
    if not source or not (folder / "config.json").is_file():
        raise SeqclsError(f"cannot find the converted checkpoint {source!r} of {gguf_file}; name it with --card")
    return folder


def _score(s: Settings, o: VerifyOptions, phases: dict[str, float]) -> tuple[BackendRun, dict]:
    """Both sides, the original from the cache where an entry matches, and the reference where asked. Returns the
    run and what the cache did: ``{"original": "hit" | "miss" | "off" | "n/a", "dir", "key"[, "reference"]}``."""
    backend = backend_class(o.backend, s.recipe.multimodal)(s)
    try:
        return _score_with(backend, s, o, phases)
    finally:
        if close := getattr(backend, "close", None):
            close()


def _score_with(backend, s: Settings, o: VerifyOptions, phases: dict[str, float]) -> tuple[BackendRun, dict]:
    """``phases``: seconds spent in each step, filled in as they end (where verify's wall time goes)."""
    folder = Path(o.cache_dir) if o.cache_dir else cache.default_dir()
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        phases[name], clock = time.monotonic() - clock, time.monotonic()

    if o.reference_only:
        return _score_reference_only(backend, s, o, folder, lap)
    original, state, key = _original_side(backend, s, o, folder)
    lap("original side")
    converted = backend.score("converted")
    lap("converted side")
    official = backend.reference_ids
    lap("official ids")
    cached = {"original": state, "dir": str(folder) if key else None, "key": key}
    reference, device = None, None
    if o.reference and o.backend in ENGINE_BACKENDS:
        device = o.reference_device or _reference_device(o.device)
        on_device = dataclasses.replace(s, device=device)
        reference, cached["reference"] = _reference(on_device, o, backend.used_ids.get("converted"), folder)
        lap("reference")
    run = BackendRun(original, converted, official, backend.environment, reference, device, backend.timing)
    return run, cached


def _score_reference_only(backend, s: Settings, o: VerifyOptions, folder: Path, lap) -> tuple[BackendRun, dict]:
    """The converted side through the engine, then the reference on its prompt ids, which stands in for the
    original's side too: the verdict is the converted side's against the reference, and no original path is
    judged."""
    converted = backend.score("converted")
    lap("converted side")
    official = backend.reference_ids
    lap("official ids")
    device = o.reference_device or _reference_device(o.device)
    on_device = dataclasses.replace(s, device=device)
    reference, state = _reference(on_device, o, backend.used_ids.get("converted"), folder)
    lap("reference")
    cached = {"original": "skipped", "dir": str(folder) if o.use_cache else None, "key": None, "reference": state}
    stand_in = reference
    if set(reference.scores) != set(converted.scores):  # one score, a server's two endpoints
        (scores,) = reference.scores.values()
        stand_in = dataclasses.replace(reference, scores=dict.fromkeys(converted.scores, scores))
    return BackendRun(stand_in, converted, official, backend.environment, reference, device, backend.timing), cached


REFERENCE_ONLY = "not run (--reference-only): the transformers reference stands in for it"


def _check_reference_only(o: VerifyOptions) -> None:
    if o.backend not in ENGINE_BACKENDS:
        raise SeqclsError("--reference-only applies to the engine backends: use it with --backend vllm or server")
    clash = [flag for flag, given in (("--no-reference", not o.reference), ("--original-url", o.original_url),
                                      ("--original-overrides", o.original_overrides is not None)) if given]  # fmt: skip
    if clash:
        raise SeqclsError(f"--reference-only runs no original path, so {', '.join(clash)} has nothing to act on")


def _original_side(backend, s: Settings, o: VerifyOptions, folder: Path) -> tuple[Side, str, str | None]:
    """(side, cache state, key). No key for a server started elsewhere (what it runs is unknown) or --no-cache."""
    inputs = backend.cache_inputs("original") if o.use_cache else None
    if inputs is None:
        return backend.score("original"), "n/a" if o.use_cache else "off", None
    inputs = inputs | {"temperature": s.recipe.temperature}  # a calibrated family's score of the same logits
    key = cache.cache_key(backend.name, s.device, fingerprint(s.original), inputs)
    if hit := cache.load(folder, key):
        return hit, "hit", key
    side = backend.score("original")
    cache.store(folder, key, side)
    return side, "miss", key


REFERENCE_IDS = "the converted path's prompt ids"


def _reference(s: Settings, o: VerifyOptions, ids: Iterable[list[int]] | None, folder: Path) -> tuple[Side, str]:
    """The original scored the family's official way in transformers on ``s.device``, on the ids the converted
    path used (so a difference is the model path's, not the tokenization's). Scored after both engines have ended,
    so a GPU or NPU never holds the reference beside an engine; cached like any original side."""
    cls = backend_class("transformers", s.recipe.multimodal)
    reference = cls(s, original_ids=ids, engine_sizing=True) if s.recipe.multimodal else cls(s, original_ids=ids)
    side, state, _ = _original_side(reference, s, o, folder)
    return dataclasses.replace(side, prompts=REFERENCE_IDS if ids else side.prompts), state


def _reference_device(device: str) -> str:
    """The engine's device, where torch can use it here; else cpu."""
    import importlib.util

    if device == "cuda":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "npu":
        return "npu" if importlib.util.find_spec("torch_npu") else "cpu"
    return "cpu"


def _original_overrides(o: VerifyOptions, original: Path, config: dict) -> dict | None:
    """``--original-overrides``, parsed and checked: a JSON object whose label tokens are vocabulary entries (as
    vLLM looks them up)."""
    import json

    from ..tokenizer import read_tokenizer_config, read_vocabulary

    if o.original_overrides is None:
        return None
    if o.backend not in ENGINE_BACKENDS:
        raise SeqclsError("--original-overrides applies to the vLLM path: use it with --backend vllm or server")
    overrides = o.original_overrides
    if isinstance(overrides, str):
        try:
            overrides = json.loads(overrides)
        except ValueError as e:
            raise SeqclsError(f"--original-overrides is not valid JSON ({e}); pass an object such as "
                              '\'{"classifier_from_token": ["no", "yes"]}\'') from None  # fmt: skip
    if not isinstance(overrides, dict):
        raise SeqclsError("--original-overrides must be a JSON object of vLLM hf_overrides")
    tokens = overrides.get("classifier_from_token", [])
    if not isinstance(tokens, list) or not all(isinstance(x, str) for x in tokens):
        raise SeqclsError("--original-overrides: classifier_from_token must be a list of token strings")
    if tokens:
        read_vocabulary(original, tuple(tokens), config, read_tokenizer_config(original))
    return overrides


def _check_inputs(converted: Path, original: Path, backend: str) -> tuple[Recipe, dict, str | None]:
    """The recipe (from the converted checkpoint's config, or the GGUF's metadata), the original's config, and
    the GGUF's type where the converted side is one."""
    gguf_type = None
    if backend == "llamacpp":
        from ..export.gguf import read_exported

        exported = read_exported(converted)
        recipe, gguf_type = exported.recipe, exported.type
    elif converted.is_file() and converted.suffix == ".gguf":
        raise SeqclsError(f"{converted} is a GGUF file: verify it with --backend llamacpp")
    for path in (original,) if gguf_type else (converted, original):
        if not path.is_dir():
            raise SeqclsError(f"{path} is not a checkpoint folder")
    config = read_config(original)
    if gguf_type is None:
        converted_config = read_config(converted)
        recipe = recipe_for_converted(converted_config)
        if recipe is None:
            archs = converted_config.get("architectures")
            raise SeqclsError(
                f"{converted} is not a checkpoint converted by seqcls ({archs}); run seqcls convert first"
            )
        if recipe.has_prompt and not (converted / SCORE_TEMPLATE_FILE).is_file():
            raise SeqclsError(
                f"{converted} has no {SCORE_TEMPLATE_FILE}: its loaders would score pairs without {recipe.name}'s "
                "prompt; convert it again with this seqcls"
            )
    archs = config.get("architectures") or []
    if not recipe.converts(archs):
        raise SeqclsError(
            f"--original {original} is {archs}, but {converted} was converted from "
            f"{', '.join(recipe.source_architectures)} ({recipe.name})"
        )
    return recipe, config, gguf_type


def _long_document(original: Path, recipe: Recipe, max_length: int) -> str:
    """Real text in the real vocabulary, a quarter over the model length once the prompt is wrapped around it: the
    reference cuts its document to fit, and so must every path (a family whose reference cannot cut it, multimodal or
    without a known prompt, gets one about 64 tokens under the length instead). Its first half fits."""
    tokenizer = load_tokenizer(original)
    if recipe.has_prompt and not recipe.multimodal:
        budget = max_length + max_length // 4
    else:
        prompt = recipe.format_pair("What do long documents test?", "")
        budget = max(max_length - len(tokenizer.encode(prompt, add_special_tokens=False)) - 64, 16)
    ids = tokenizer.encode(LONG_FILLER * (budget // 20 + 1), add_special_tokens=False)[:budget]
    return tokenizer.decode(ids)
