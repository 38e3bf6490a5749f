"""What a recipe is: the fields every family fills in (``recipes.py`` holds the families) and what follows from
them. A recipe says how to recognise an "LLM as reranker" checkpoint, which vocabulary rows carry the answer, how
those rows become a classifier head (a *method*, named as vLLM names it), and how the model expects its prompts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from .errors import SeqclsError
from .video import VideoSampling

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
class Calibration:
    """A family's published score ``sigmoid(logit / temperature)``, and where it says so."""

    temperature: float
    source: str

    @property
    def formula(self) -> str:
        return f"sigmoid(logit / {self.temperature:g})"


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
    """Index of the piece that opens the prompt's second half. The seed's clients send the first half as vLLM's
    query and the second as its document, which vLLM joins as they are. The first half holds the query, unless the
    family puts the document first (ctxl-rerank-v2)."""
    instruction_part: str = "{instruction}"
    """What ``{instruction}`` renders to when there is an instruction; nothing when there is none."""
    default_instruction: str | None = None
    instructed_query: str | None = None
    """What ``{query}`` renders to when an instruction is given, for a prompt with no place of its own for one
    (zerank-2: the query and the instruction in tags, as vLLM's ``zerank2.jinja`` wraps them)."""
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
    video: VideoSampling | None = None
    """How the reference samples a video (``video``); None: the family reads no video."""
    placeholders: tuple[tuple[str, str], ...] = ()
    """Each medium's placeholder in the prompt text (kind, text), as the processor expands it."""
    label_ids: tuple[int, ...] | None = None
    """The ids the family's own code reads (zerank-2: 9454); a vocabulary that gives its label tokens other ids is
    another model's. None: whatever the vocabulary says."""
    joined: bool = False
    """The reference renders the prompt as one string and tokenizes it whole (a chat template), not piece by piece;
    the pieces then only mark where the document is, for the cut."""
    calibration: Calibration | None = None
    """The family's published 0-1 score, folded into the head (divided by its temperature in float32) so that every
    engine's own sigmoid gives it; None: the logit is the score."""
    raw_logit: bool = False
    """A calibrated family converted with ``--raw-logit``: the head keeps the logit itself."""
    logit_score: bool = False
    """The family publishes the raw logit as its score (ctxl-rerank-v2): an engine's sigmoid of it keeps the
    ranking, not the values."""
    max_length: int = 8192
    """The longest prompt the family's reference scores (Qwen's code cuts at 8,192 tokens): it cuts longer ones by
    their document."""

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
        if self.temperature != 1:
            return f"fp32({rows[0]}) / {self.temperature:g}"
        return f"rows {', '.join(rows)}"

    def record(self) -> dict:
        """What the converted config keeps under ``CONFIG_KEY``; the head's temperature where the family has a
        calibration, so a raw-logit conversion (1) says so too."""
        record = {"recipe": self.name, "method": self.method, "label_tokens": list(self.label_tokens)}
        return record | ({"temperature": self.temperature} if self.calibration else {})

    @property
    def temperature(self) -> float:
        """What the head's logit is divided by: the calibration's temperature, or 1."""
        return self.calibration.temperature if self.calibration and not self.raw_logit else 1.0

    def calibrated(self, logit: float) -> float:
        """The score of one raw label logit (an original's, through an engine without its sigmoid)."""
        x = logit / self.temperature
        return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))

    def score_statement(self) -> str:
        """What a converted checkpoint of this recipe returns, for ``inspect`` and ``serve``."""
        if self.calibration and not self.raw_logit:
            return f"{self.calibration.formula}: the family's calibrated score (the head is divided by it)"
        if self.calibration:
            return f"the raw logit (--raw-logit); the family's calibrated score is {self.calibration.formula}"
        if self.logit_score:
            return (
                "the logit, the family's own score (vLLM and sentence-transformers apply a sigmoid unless asked not to)"
            )
        if self.method == FROM_2_WAY_SOFTMAX:
            return f"sigmoid(logit) = softmax over ({', '.join(self.label_tokens)})[1], as the original"
        return "sigmoid(logit) for one label, a softmax across labels otherwise; the logits are the original's"

    def raw(self) -> Recipe:
        """The recipe that keeps the logit itself (``--raw-logit``)."""
        if self.calibration is None:
            raise SeqclsError(
                f"--raw-logit applies to families with a calibrated score (zerank-2); {self.name}'s head already "
                "gives its own score"
            )
        return replace(self, raw_logit=True)

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

    @property
    def takes_instruction(self) -> bool:
        return self.instructed_query is not None or "{instruction}" in "".join(self.pieces or ())

    def _fields(self, query: str, document: str, instruction: str | None) -> dict:
        query, chosen = self.side_text(query), instruction or self.default_instruction
        if self.instructed_query and chosen:
            query = self.instructed_query.format(query=query, instruction=chosen)
        return {"query": query, "document": self.side_text(document),
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

    @property
    def document_first(self) -> bool:
        """The document comes before the query in the prompt: its half is the one the seed sends as vLLM's query,
        so a raw side and a formatted half cannot be mixed in one request."""
        return self.pieces is not None and "{document}" in "".join(self.pieces[: self.document_from])

    def halves(self, query: str, document: str, instruction: str | None = None) -> tuple[str, str]:
        """The official prompt cut in two as the seed's clients send it to vLLM's score and rerank APIs: (what goes
        as the query, what goes as the document)."""
        if self.pieces is None:
            return query, document
        pieces = self.render_pieces(query, document, instruction)
        return "".join(pieces[: self.document_from]), "".join(pieces[self.document_from :])

    def format_query(self, query: str, instruction: str | None = None) -> str:
        """The query's half of the official prompt."""
        first, second = self.halves(query, "", instruction)
        return second if self.document_first else first

    def format_document(self, document: str) -> str:
        """The document's half of the official prompt."""
        first, second = self.halves("", document)
        return first if self.document_first else second

    def format_pair(self, query: str, document: str, instruction: str | None = None) -> str:
        """The official prompt for one pair, without the BOS token; scores without it are close to random."""
        return "".join(self.halves(query, document, instruction))

    def vllm_hf_overrides(self) -> dict:
        """The load-time overrides that vLLM documents for serving the original checkpoint."""
        switch = {self.vllm_flag: True} if self.vllm_flag else {"method": self.method}
        return {"architectures": [self.target_architecture], "classifier_from_token": list(self.label_tokens), **switch}
