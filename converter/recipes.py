"""Everything family-specific, as data: one place to read or extend.

Each preset is a ``Recipe`` (``recipe.py`` says what its fields mean) for a family vLLM converts online or users
serve through overrides; ``generic_recipe`` builds one from ``--tokens``/``--method`` for any ``*ForCausalLM`` with a
``*ForSequenceClassification`` counterpart, without a prompt format.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .errors import SeqclsError
from .recipe import (
    CONFIG_KEY,
    FROM_2_WAY_SOFTMAX,
    GENERIC,
    METHODS,
    NO_POST_PROCESSING,
    VLLM_CONVERSION_KEYS,
    Calibration,
    LlamaCpp,
    Recipe,
)
from .video import VideoSampling

__all__ = [  # the recipe fields (recipe.py) travel with the families
    "BGE_RERANKER_V2_GEMMA", "CONFIG_KEY", "CTXL_RERANK_V2", "FROM_2_WAY_SOFTMAX", "GENERIC", "METHODS",
    "MXBAI_RERANK_V2", "NO_POST_PROCESSING", "PRESETS", "PRESET_NAMES", "QWEN3_RERANKER", "QWEN3_VL_RERANKER",
    "VLLM_CONVERSION_KEYS", "ZERANK_2", "Calibration", "LlamaCpp", "Recipe", "generic_recipe", "known_architectures",
    "original_recipe", "preset", "presets_by_architecture", "recipe_for", "recipe_for_converted",
    "recipe_for_original",
]  # fmt: skip

QWEN3_RERANKER = Recipe(
    name="qwen3-reranker",
    title="Qwen3-Reranker (0.6B, 4B, 8B)",
    source_architectures=("Qwen3ForCausalLM",),
    target_architecture="Qwen3ForSequenceClassification",
    method=FROM_2_WAY_SOFTMAX,
    label_tokens=("no", "yes"),
    pieces=(
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
        'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n',
        "<Instruct>: {instruction}\n<Query>: {query}\n",
        "<Document>: {document}",
        "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    ),
    document_from=2,
    default_instruction="Given a web search query, retrieve relevant passages that answer the query",
    vllm_flag="is_original_qwen3_reranker",
    llamacpp=LlamaCpp(arch="qwen3", pre_tokenizer="qwen2"),
)
"""Qwen's reference tokenizes prefix, body and suffix; the body is split here at ``<Document>``, which gives the same
ids: Qwen's pre-tokenizer never joins a newline with the ``<`` after it (tests check this on the built-in pairs)."""

MXBAI_RERANK_V2 = Recipe(
    name="mxbai-rerank-v2",
    title="mixedbread-ai/mxbai-rerank-base-v2 and -large-v2",
    source_architectures=("Qwen2ForCausalLM",),
    target_architecture="Qwen2ForSequenceClassification",
    method=FROM_2_WAY_SOFTMAX,
    label_tokens=("0", "1"),
    pieces=(
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n",
        "{instruction}query: {query}",
        "\n",
        "document: {document}",
        "\n",
        "You are a search relevance expert who evaluates how well documents match search queries. For each "
        "query-document pair, carefully analyze the semantic relationship between them, then provide your binary "
        "relevance judgment (0 for not relevant, 1 for relevant).\nRelevance:",
        "<|im_end|>\n<|im_start|>assistant\n",
    ),
    document_from=3,
    instruction_part="instruction: {instruction}\n",
    prompt_note=(
        "mixedbread's reference tokenizes `query: ...`, `\\n`, `document: ...`, `\\n` and the task prompt one by "
        "one. A template renders one string, in which Qwen's tokenizer joins punctuation with the newline after it "
        "(`?\\n` is one token), so ids can differ from the reference at those two places, by every loader, as for "
        "the original served by vLLM."
    ),
    name_hints=("mxbai-rerank",),
    tie_default=False,
    llamacpp_refusal=(
        "mxbai-rerank-v2 is a qwen2 model, and llama.cpp's rank pooling reads the first token of a qwen2 model, "
        "not the last one the family scores"
    ),
)
"""From mixedbread-ai/mxbai-rerank ``mxbai_rerank_v2.py``: no instruction unless one is given."""

BGE_RERANKER_V2_GEMMA = Recipe(
    name="bge-reranker-v2-gemma",
    title="BAAI/bge-reranker-v2-gemma",
    source_architectures=("GemmaForCausalLM",),
    target_architecture="GemmaForSequenceClassification",
    method=NO_POST_PROCESSING,
    label_tokens=("Yes",),
    pieces=(
        "A: {query}",
        "\n",
        "B: {document}",
        "\n",
        "Given a query A and a passage B, determine whether the passage contains an answer to the query by "
        "providing a prediction of either 'Yes' or 'No'.",
    ),
    document_from=2,
    bos=True,
    name_hints=("bge-reranker-v2-gemma",),
    tie_default=True,
    llamacpp_refusal=(
        "bge-reranker-v2-gemma scores one vocabulary logit without a sigmoid, and llama.cpp's rank pooling of a "
        "gemma model reads the first token, not the last"
    ),
)
"""From FlagEmbedding's ``FlagLLMReranker``: BOS, then each piece tokenized alone; score = logit of ``Yes``."""

QWEN3_VL_RERANKER = Recipe(
    name="qwen3-vl-reranker",
    title="Qwen3-VL-Reranker (2B, 8B)",
    source_architectures=("Qwen3VLForConditionalGeneration",),
    target_architecture="Qwen3VLForSequenceClassification",
    method=FROM_2_WAY_SOFTMAX,
    label_tokens=("no", "yes"),
    pieces=(
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
        'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n',
        "<Instruct>: {instruction}",
        "<Query>:{query}",
        "\n<Document>:{document}",
        "<|im_end|>\n<|im_start|>assistant\n",
    ),
    document_from=3,
    default_instruction="Given a search query, retrieve relevant candidates that answer the query.",
    max_length=10240,
    prompt_note=(
        "Qwen's scorer renders each side's parts with the processor's chat template: videos, then images, then the "
        "text, with nothing between them. vLLM puts a side's image placeholders before its text in the same way, so "
        "the score template sees `<|vision_start|><|image_pad|><|vision_end|>text`, as the reference does."
    ),
    name_hints=("qwen3-vl-reranker",),
    vllm_flag="is_original_qwen3_reranker",
    embed_tensor="model.language_model.embed_tokens.weight",
    language_config="text_config",
    empty_side="NULL",
    image_pixels=(4 * 32 * 32, 1800 * 32 * 32),
    video=VideoSampling(fps=1.0, max_frames=64, list_total_pixels=10 * 768 * 32 * 32),
    placeholders=(
        ("image", "<|vision_start|><|image_pad|><|vision_end|>"),
        ("video", "<|vision_start|><|video_pad|><|vision_end|>"),
    ),
    llamacpp_refusal=(
        "GGUF export covers text rerankers; Qwen3-VL-Reranker would also need its vision tower as an mmproj file, "
        "which seqcls does not write yet"
    ),
)
"""From QwenLM/Qwen3-VL-Embedding ``src/models/qwen3_vl_reranker.py``: the user turn is ``<Instruct>: ...``,
``<Query>:`` and the query's parts, ``\\n<Document>:`` and the document's parts, joined with nothing between; no
``<think>`` block; a side with nothing in it is ``NULL``; ``MAX_LENGTH = 10240`` (the text family's code has 8,192)."""

ZERANK_2 = Recipe(
    name="zerank-2",
    title="zeroentropy/zerank-2 (4B)",
    source_architectures=("Qwen3ForCausalLM",),
    target_architecture="Qwen3ForSequenceClassification",
    method=NO_POST_PROCESSING,
    label_tokens=("Yes",),
    label_ids=(9454,),
    pieces=(
        "<|im_start|>system\n{query}<|im_end|>\n<|im_start|>user\n",
        "{document}",
        "<|im_end|>\n<|im_start|>assistant\n",
    ),
    document_from=1,
    instructed_query="<query>{query}</query>\n<instruction>{instruction}</instruction>",
    joined=True,
    max_length=32768,
    calibration=Calibration(
        5.0,
        "zerank-2's model card (since May 2026): its `predict` returns the raw `Yes` logit, and the 0-1 score is "
        "`sigmoid(logit / 5)`",
    ),
    name_hints=("zerank",),
    llamacpp=LlamaCpp(arch="qwen3", pre_tokenizer="qwen2"),
)
"""From zerank-2's model card (the ``Yes`` logit, id 9454, at the last token; its calibration; 32,768 tokens) and
vLLM's ``zerank2.jinja`` (the query as the system turn, the document as the user turn, the assistant's opening; an
instruction wraps the query in tags). docs/presets.md says which of these facts were checked and how."""

CTXL_RERANK_V2 = Recipe(
    name="ctxl-rerank-v2",
    title="ContextualAI/ctxl-rerank-v2-instruct-multilingual (1B, 2B)",
    source_architectures=("Qwen3ForCausalLM",),
    target_architecture="Qwen3ForSequenceClassification",
    method=NO_POST_PROCESSING,
    label_tokens=("!",),
    label_ids=(0,),
    pieces=(
        "Check whether a given document contains information helpful to answer the query.\n<Document> ",
        "{document}",
        "\n<Query> {query}{instruction} ??",
    ),
    document_from=2,
    instruction_part=" {instruction}",
    joined=True,
    max_length=32768,
    logit_score=True,
    name_hints=("ctxl-rerank",),
    llamacpp=LlamaCpp(arch="qwen3", pre_tokenizer="qwen2"),
)
"""From the family's model cards and the code users copy from them: the document before the query, an optional
instruction after the query and a space, the prompt tokenized whole with no chat template; the score is the logit of
vocabulary id 0 (``!`` in Qwen3's vocabulary) at the last token, raw. docs/presets.md says which facts were checked."""

PRESETS: tuple[Recipe, ...] = (
    QWEN3_RERANKER,
    MXBAI_RERANK_V2,
    BGE_RERANKER_V2_GEMMA,
    QWEN3_VL_RERANKER,
    ZERANK_2,
    CTXL_RERANK_V2,
)
PRESET_NAMES: tuple[str, ...] = tuple(r.name for r in PRESETS)


def preset(name: str) -> Recipe:
    found = next((r for r in PRESETS if r.name == name), None)
    if found is None:
        raise SeqclsError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
    return found


def recipe_for(architectures: list[str], names: tuple[str, ...] = ()) -> Recipe | None:
    """The preset for an original: its architecture, and its name where the architecture is a common LLM's."""
    candidates = presets_by_architecture(architectures)
    lowered = [n.lower() for n in names if n]
    for recipe in candidates:
        if recipe.name_hints and any(h in n for h in recipe.name_hints for n in lowered):
            return recipe
    return next((r for r in candidates if not r.name_hints), None)


def recipe_for_original(config: dict, folder: Path, *names: str) -> Recipe | None:
    """``recipe_for`` with the names an original goes by: the given ones (a hub id, say), its folder's, its
    config's ``_name_or_path`` and a hub cache's ``models--ORG--NAME`` folder."""
    resolved = Path(folder).resolve()
    cache_dirs = [p.name for p in resolved.parents if p.name.startswith("models--")]
    known = (*names, resolved.name, str(config.get("_name_or_path") or ""), *cache_dirs)
    return recipe_for(config.get("architectures") or [], known)


def original_recipe(config: dict, folder: Path, *names: str, preset_name: str | None = None) -> Recipe | None:
    """The recipe of an original: the named preset, which must convert its architecture, else the recognised one."""
    if preset_name is None:
        return recipe_for_original(config, folder, *names)
    recipe = preset(preset_name)
    archs = config.get("architectures") or []
    if not recipe.converts(archs):
        raise SeqclsError(
            f"preset {recipe.name} converts {', '.join(recipe.source_architectures)}, "
            f"but this checkpoint is {archs or '(no architectures)'}"
        )
    return recipe


def presets_by_architecture(architectures: list[str]) -> list[Recipe]:
    return [r for r in PRESETS if r.converts(architectures)]


def generic_recipe(architecture: str, tokens: tuple[str, ...], method: str, tie_default: bool = False) -> Recipe:
    """A recipe from ``--tokens``/``--method``: the head only; prompts are the user's business."""
    if method not in METHODS:
        raise SeqclsError(f"unknown --method {method!r}; choose one of {', '.join(METHODS)}")
    wanted = METHODS[method]
    if not tokens or any(not t for t in tokens) or (wanted is not None and len(tokens) != wanted):
        count = f"exactly {wanted}" if wanted else "at least one"
        raise SeqclsError(
            f"--method {method} takes {count} label tokens (false first, then true), got {len(tokens)}: "
            f"{', '.join(map(repr, tokens))}"
        )
    if len(set(tokens)) != len(tokens):
        raise SeqclsError(f"--tokens repeats a token: {', '.join(map(repr, tokens))}")
    if not architecture.endswith("ForCausalLM"):
        raise SeqclsError(f"--tokens/--method convert a *ForCausalLM; this checkpoint is {architecture}")
    return Recipe(
        name=GENERIC,
        title=f"{architecture} with label tokens {', '.join(map(repr, tokens))}",
        source_architectures=(architecture,),
        target_architecture=architecture.removesuffix("ForCausalLM") + "ForSequenceClassification",
        method=method,
        label_tokens=tuple(tokens),
        tie_default=tie_default,
        llamacpp_refusal="a --tokens/--method conversion has no prompt format for llama.cpp's rerank template",
    )


def recipe_for_converted(config: dict) -> Recipe | None:
    """The recipe whose output a converted checkpoint is: its config's record, else (checkpoints converted before
    the record existed) the preset with its target architecture."""
    record = config.get(CONFIG_KEY)
    archs = config.get("architectures") or []
    if isinstance(record, dict):
        name, tokens, method = record.get("recipe"), record.get("label_tokens"), record.get("method")
        recipe = next((r for r in PRESETS if r.name == name), None)
        if recipe is not None and archs == [recipe.target_architecture]:
            raw = recipe.calibration is not None and record.get("temperature") == 1
            return replace(recipe, raw_logit=True) if raw else recipe
        if name == GENERIC and isinstance(tokens, list) and len(archs) == 1:
            source = archs[0].removesuffix("ForSequenceClassification") + "ForCausalLM"
            return generic_recipe(source, tuple(map(str, tokens)), str(method))
        return None
    return next((r for r in PRESETS if archs == [r.target_architecture] and not r.name_hints), None)


def known_architectures() -> list[str]:
    return [arch for recipe in PRESETS for arch in recipe.source_architectures]
