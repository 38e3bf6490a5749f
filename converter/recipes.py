"""Everything family-specific, as data: one place to read or extend.

A recipe says how to recognise an "LLM as reranker" checkpoint, which vocabulary rows carry the answer, how
those rows become a classifier head, and how the model expects its prompts to look.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FROM_2_WAY_SOFTMAX = "from_2_way_softmax"


@dataclass(frozen=True)
class Recipe:
    name: str
    source_architectures: tuple[str, ...]
    target_architecture: str
    method: str
    label_tokens: tuple[str, ...]
    """For ``from_2_way_softmax``: (false token, true token); the head is ``W[true] - W[false]``."""
    head_tensor: str
    embed_tensor: str
    score_tensor: str
    tie_default: bool
    """What ``tie_word_embeddings`` means when config.json leaves it out (the config class default)."""
    prefix: str
    query_part: str
    document_part: str
    suffix: str
    default_instruction: str
    drop_config_keys: tuple[str, ...] = field(default=())
    """Keys that make vLLM convert again at load time or switch off its sigmoid."""

    def body(self, query: str, document: str, instruction: str | None = None) -> str:
        """The part between prefix and suffix, which the reference code tokenizes on its own."""
        query_part = self.query_part.format(instruction=instruction or self.default_instruction, query=query)
        return query_part + self.document_part.format(document=document)

    def format_query(self, query: str, instruction: str | None = None) -> str:
        """The query half of the official prompt, as the seed sends it to vLLM's score and rerank APIs."""
        return self.prefix + self.query_part.format(instruction=instruction or self.default_instruction, query=query)

    def format_document(self, document: str) -> str:
        return self.document_part.format(document=document) + self.suffix

    def format_pair(self, query: str, document: str, instruction: str | None = None) -> str:
        """The official prompt for one pair; scores without it are close to random."""
        return self.format_query(query, instruction) + self.format_document(document)

    def vllm_hf_overrides(self) -> dict:
        """The load-time overrides that vLLM documents for serving the original checkpoint."""
        return {
            "architectures": [self.target_architecture],
            "classifier_from_token": list(self.label_tokens),
            "is_original_qwen3_reranker": True,
        }


QWEN3_RERANKER = Recipe(
    name="qwen3-reranker",
    source_architectures=("Qwen3ForCausalLM",),
    target_architecture="Qwen3ForSequenceClassification",
    method=FROM_2_WAY_SOFTMAX,
    label_tokens=("no", "yes"),
    head_tensor="lm_head.weight",
    embed_tensor="model.embed_tokens.weight",
    score_tensor="score.weight",
    tie_default=False,
    prefix=(
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
        'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
    ),
    query_part="<Instruct>: {instruction}\n<Query>: {query}\n",
    document_part="<Document>: {document}",
    suffix="<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    default_instruction="Given a web search query, retrieve relevant passages that answer the query",
    drop_config_keys=(
        "classifier_from_token",
        "method",
        "is_original_qwen3_reranker",
        "sbert_ce_default_activation_function",
        "sentence_transformers",
    ),
)

RECIPES: tuple[Recipe, ...] = (QWEN3_RERANKER,)


def recipe_for(architectures: list[str]) -> Recipe | None:
    for recipe in RECIPES:
        if any(arch in recipe.source_architectures for arch in architectures):
            return recipe
    return None


def recipe_for_converted(architectures: list[str]) -> Recipe | None:
    """The recipe whose output a converted checkpoint is."""
    return next((r for r in RECIPES if architectures == [r.target_architecture]), None)


def known_architectures() -> list[str]:
    return [arch for recipe in RECIPES for arch in recipe.source_architectures]
