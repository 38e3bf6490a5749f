"""Everything family-specific, as data: one place to read or extend.

A recipe says how to recognise an "LLM as reranker" checkpoint, which vocabulary rows carry the answer, how
those rows become a classifier head (a *method*, named as vLLM names it), and how the model expects its prompts.
Presets cover the families vLLM converts online; ``generic_recipe`` builds one from ``--tokens``/``--method`` for
any ``*ForCausalLM`` with a ``*ForSequenceClassification`` counterpart, without a prompt format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import SeqclsError

FROM_2_WAY_SOFTMAX = "from_2_way_softmax"
NO_POST_PROCESSING = "no_post_processing"
METHODS = {FROM_2_WAY_SOFTMAX: 2, NO_POST_PROCESSING: None}
"""Method -> the number of label tokens it takes (None: any number, one label each)."""
CONFIG_KEY = "seqcls"
"""The converted config's record of its recipe, so inspect, verify and publish need no flags."""
GENERIC = "generic"
VLLM_CONVERSION_KEYS = ("classifier_from_token", "method", "is_original_qwen3_reranker")
"""Config keys that make vLLM convert the weights again at load time."""


@dataclass(frozen=True)
class LlamaCpp:
    """How llama.cpp scores a family: its architecture name, its pre-tokenizer, and the head's row labels. Its rank
    pooling takes a softmax over the head's rows and returns the first, so a one-logit head ``w`` is written as
    the rows ``[w; 0]``: ``softmax([h·w, 0])[0] = sigmoid(h·w)``."""

    arch: str
    pre_tokenizer: str
    labels: tuple[str, str] = ("yes", "no")


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    source_architectures: tuple[str, ...]
    target_architecture: str
    method: str
    label_tokens: tuple[str, ...]
    """For ``from_2_way_softmax``: (false token, true token); the head is ``W[true] - W[false]``."""
    pieces: tuple[str, ...] | None = None
    """The prompt, as the reference code tokenizes it: each piece on its own, then concatenated. Fields:
    ``{query}``, ``{document}``, ``{instruction}``. None: no prompt format is known (generic recipes)."""
    document_from: int = 0
    """Index of the first piece of the document half (the seed sends the halves as vLLM's query and document)."""
    instruction_part: str = "{instruction}"
    """What ``{instruction}`` renders to when there is an instruction; nothing when there is none."""
    default_instruction: str | None = None
    bos: bool = False
    """The reference starts with the BOS token, which the tokenizer adds; templates must not write it for vLLM."""
    prompt_note: str | None = None
    """A caveat about the prompt that the model card repeats."""
    name_hints: tuple[str, ...] = ()
    """Substrings of the repo or folder name that identify the family; empty: the architecture alone does."""
    vllm_flag: str | None = None
    """A config flag vLLM documents for the original instead of ``method`` (Qwen3-Reranker)."""
    head_tensor: str = "lm_head.weight"
    embed_tensor: str = "model.embed_tokens.weight"
    score_tensor: str = "score.weight"
    tie_default: bool = False
    """What ``tie_word_embeddings`` means when config.json leaves it out (the config class default)."""
    drop_config_keys: tuple[str, ...] = field(
        default=(*VLLM_CONVERSION_KEYS, "sbert_ce_default_activation_function", "sentence_transformers")
    )
    """Keys that make vLLM convert again at load time or switch off its sigmoid."""
    llamacpp: LlamaCpp | None = None
    """How llama.cpp scores the family; None: it cannot (``llamacpp_refusal`` says why)."""
    llamacpp_refusal: str = "llama.cpp knows no rank-pooling setup for this family"
    language_config: str | None = None
    """Multimodal models: the config key of the language model's own config (``text_config``), which holds the
    hidden size and vocabulary, and which must carry the labels and the untying as the top level does."""
    empty_side: str | None = None
    """What an empty query or document renders as (Qwen3-VL-Reranker: ``NULL``); None: nothing."""
    image_pixels: tuple[int, int] | None = None
    """The reference's image bounds (min, max pixels): it resizes each image into them (``qwen_vl_utils``, sides
    multiples of ``2 * image_patch``) before its processor runs, which then does not resize."""
    image_patch: int = 16

    @property
    def num_labels(self) -> int:
        return 1 if self.method == FROM_2_WAY_SOFTMAX else len(self.label_tokens)

    @property
    def has_prompt(self) -> bool:
        return self.pieces is not None

    @property
    def multimodal(self) -> bool:
        """Images and video go through the processor's own chat template, which the output keeps."""
        return self.language_config is not None

    def language_settings(self, config: dict) -> dict:
        """The config that holds the language model's sizes: the top level, or the multimodal sub-config."""
        inner = config.get(self.language_config) if self.language_config else None
        return inner if isinstance(inner, dict) else config

    def tied(self, config: dict) -> bool:
        """``tie_word_embeddings`` at the top level, else in the language config, else the class default."""
        for scope in (config, self.language_settings(config)):
            if "tie_word_embeddings" in scope:
                return bool(scope["tie_word_embeddings"])
        return self.tie_default

    def converts(self, architectures: list[str]) -> bool:
        return bool(set(architectures) & set(self.source_architectures))

    def head_formula(self, label_ids: tuple[int, ...]) -> str:
        """The head as a formula over vocabulary rows, with the token ids."""
        rows = [f"W[{t!r}={i}]" for t, i in zip(self.label_tokens, label_ids)]
        if self.method == FROM_2_WAY_SOFTMAX:
            return f"fp32({rows[1]}) - fp32({rows[0]})"
        return f"rows {', '.join(rows)}"

    def record(self) -> dict:
        """What the converted config keeps under ``CONFIG_KEY``."""
        return {"recipe": self.name, "method": self.method, "label_tokens": list(self.label_tokens)}

    def instruction_text(self, instruction: str | None) -> str:
        chosen = instruction or self.default_instruction
        return self.instruction_part.format(instruction=chosen) if chosen else ""

    @property
    def system_text(self) -> str | None:
        """The system turn's text, where the prompt opens with one (``<|im_start|>system\\n...<|im_end|>``): a
        multimodal reference builds chat messages from it."""
        head = self.pieces[0] if self.pieces else ""
        opening = "<|im_start|>system\n"
        return head.removeprefix(opening).split("<|im_end|>", 1)[0] if head.startswith(opening) else None

    def side_text(self, text: str) -> str:
        return text or self.empty_side or ""

    def _fields(self, query: str, document: str, instruction: str | None) -> dict:
        return {"query": self.side_text(query), "document": self.side_text(document),
                "instruction": self.instruction_text(instruction)}  # fmt: skip

    def render_pieces(self, query: str, document: str, instruction: str | None = None) -> list[str]:
        if self.pieces is None:
            return [query, document]
        fields = self._fields(query, document, instruction)
        return [piece.format(**fields) for piece in self.pieces]

    @property
    def document_piece(self) -> int:
        """Index of the piece that holds ``{document}``: the one the reference cuts when a pair is too long."""
        return next(i for i, piece in enumerate(self.pieces) if "{document}" in piece)

    def document_head(self, query: str, instruction: str | None = None) -> str:
        """The document piece's text before the document (``<Document>: ``), which no cut removes."""
        head = self.pieces[self.document_piece].split("{document}", 1)[0]
        return head.format(**self._fields(query, "", instruction))

    def format_query(self, query: str, instruction: str | None = None) -> str:
        """The query half of the official prompt, as the seed sends it to vLLM's score and rerank APIs."""
        pieces = self.render_pieces(query, "", instruction)
        return "".join(pieces[: self.document_from]) if self.pieces else query

    def format_document(self, document: str) -> str:
        pieces = self.render_pieces("", document)
        return "".join(pieces[self.document_from :]) if self.pieces else document

    def format_pair(self, query: str, document: str, instruction: str | None = None) -> str:
        """The official prompt for one pair, without the BOS token; scores without it are close to random."""
        return self.format_query(query, instruction) + self.format_document(document)

    def vllm_hf_overrides(self) -> dict:
        """The load-time overrides that vLLM documents for serving the original checkpoint."""
        switch = {self.vllm_flag: True} if self.vllm_flag else {"method": self.method}
        return {"architectures": [self.target_architecture], "classifier_from_token": list(self.label_tokens), **switch}


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
    llamacpp_refusal=(
        "GGUF export covers text rerankers; Qwen3-VL-Reranker would also need its vision tower as an mmproj file, "
        "which seqcls does not write yet"
    ),
)
"""From QwenLM/Qwen3-VL-Embedding ``src/models/qwen3_vl_reranker.py``: the user turn is ``<Instruct>: ...``,
``<Query>:`` and the query's parts, ``\\n<Document>:`` and the document's parts, joined with nothing between; no
``<think>`` block; a side with nothing in it is ``NULL``."""

PRESETS: tuple[Recipe, ...] = (QWEN3_RERANKER, MXBAI_RERANK_V2, BGE_RERANKER_V2_GEMMA, QWEN3_VL_RERANKER)
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
            return recipe
        if name == GENERIC and isinstance(tokens, list) and len(archs) == 1:
            source = archs[0].removesuffix("ForSequenceClassification") + "ForCausalLM"
            return generic_recipe(source, tuple(map(str, tokens)), str(method))
        return None
    return next((r for r in PRESETS if archs == [r.target_architecture] and not r.name_hints), None)


def known_architectures() -> list[str]:
    return [arch for recipe in PRESETS for arch in recipe.source_architectures]
