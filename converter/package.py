"""What each loader needs beside the weights to score raw (query, document) pairs correctly by default.

- vLLM applies a score template only when it is passed explicitly, so ``score_template.jinja`` ships for
  ``--chat-template`` / ``LLM.score(chat_template=...)``.
- transformers and sentence-transformers render pairs through the tokenizer's chat template. The original's
  template is for chat generation and means nothing to a classifier, so the score template replaces it as
  ``chat_template.jinja``; ``tokenizer_config.json`` gains left padding and an explicit pad token.
- sentence-transformers (v6 format) reads its own files: one Transformer module doing sequence classification on
  flat query/document messages, the Sigmoid activation, and the default instruction as a prompt (ST passes a prompt
  as a ``system`` message, which the template turns into the instruction).
"""

from __future__ import annotations

import json
from pathlib import Path

from .recipes import Recipe
from .templates import SCORE_TEMPLATE_FILE, score_template
from .tokenizer import TOKENIZER_CONFIG, Vocabulary

CHAT_TEMPLATE_FILE = "chat_template.jinja"
REPLACED_FILES = (TOKENIZER_CONFIG, CHAT_TEMPLATE_FILE, "chat_template.json")
"""Source files the output must not carry: these loader files take their place."""
DEFAULT_PROMPT = "default"

ST_MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
]
ST_TRANSFORMER = {
    "transformer_task": "sequence-classification",
    "modality_config": {
        "text": {"method": "forward", "method_output_name": "logits"},
        "message": {"method": "forward", "method_output_name": "logits", "format": "flat"},
    },
    "module_output_name": "scores",
}
SIGMOID = "torch.nn.modules.activation.Sigmoid"


def loader_files(
    recipe: Recipe, vocab: Vocabulary, tokenizer_config: dict | None, max_length: int | None = None
) -> dict[str, str]:
    """File name -> text, for every file the converter writes besides weights, config and index. ``max_length``: the
    longest prompt the family's reference scores (it cuts the document there), the tokenizer's ``model_max_length``:
    sentence-transformers cuts a longer prompt there and puts the template's end back, as the reference does.

    A recipe without a prompt format (generic) gets no templates: the original's chat template is dropped all the
    same, as it would format pairs as a chat, and the card says the prompt is the user's to supply. A multimodal
    recipe keeps its processor's chat template (see ``plan.PROCESSOR_FILES``) and gets no sentence-transformers files:
    transformers has no sequence-classification class for it to load."""
    st_config: dict = {"model_type": "CrossEncoder", "activation_fn": SIGMOID}
    if recipe.default_instruction:
        st_config |= {"prompts": {DEFAULT_PROMPT: recipe.default_instruction}, "default_prompt_name": DEFAULT_PROMPT}
    files = {TOKENIZER_CONFIG: _json(_tokenizer_config(tokenizer_config or {}, vocab, recipe.multimodal, max_length))}
    if recipe.has_prompt:
        files[SCORE_TEMPLATE_FILE] = score_template(recipe)
    if recipe.has_prompt and not recipe.multimodal:
        files[CHAT_TEMPLATE_FILE] = score_template(recipe, for_tokenizer=True)
    if recipe.num_labels == 1 and not recipe.multimodal:
        files |= {
            "modules.json": _json(ST_MODULES),
            "sentence_bert_config.json": _json(ST_TRANSFORMER),
            "config_sentence_transformers.json": _json(st_config),
        }
    return files


IMAGE_PROCESSOR_CONFIG = "preprocessor_config.json"


def bounded_image_processor(recipe: Recipe, folder: Path) -> dict[str, str]:
    """The original's ``preprocessor_config.json`` with the reference's image bounds (``Recipe.image_pixels``):
    Qwen's scorer resizes every image into them before its processor runs, while the checkpoint's processor takes
    65,536 to 16,777,216 pixels, so vLLM serving it sizes small and large images otherwise (another grid, other
    tokens). With the scorer's bounds every loader makes the scorer's grid; the resampling is the processor's."""
    path = folder / IMAGE_PROCESSOR_CONFIG
    if not recipe.image_pixels or not path.is_file():
        return {}
    config = json.loads(path.read_text(encoding="utf-8"))
    low, high = recipe.image_pixels
    config["size"] = {**(config.get("size") or {}), "shortest_edge": low, "longest_edge": high}
    config |= {key: value for key, value in (("min_pixels", low), ("max_pixels", high)) if key in config}
    return {IMAGE_PROCESSOR_CONFIG: _json(config)}


def _tokenizer_config(source: dict, vocab: Vocabulary, keep_chat_template: bool, max_length: int | None) -> dict:
    """Left padding keeps the scored last token real in every batch row, as the reference code pads."""
    config = {k: v for k, v in source.items() if keep_chat_template or k != "chat_template"}
    config.update(padding_side="left", pad_token=vocab.pad_token)
    if max_length is not None and not keep_chat_template:
        config["model_max_length"] = max_length
    return config


def _json(data: object) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
