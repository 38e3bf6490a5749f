"""What a card says about a checkpoint: facts from the conversion plan, or read back from a converted folder and its
existing card (base model, license)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SeqclsError
from ..io.checkpoint import config_dtype, read_config
from ..recipes import CONFIG_KEY, Recipe, recipe_for_converted
from ..reference import reference_length

if TYPE_CHECKING:
    from ..plan import Plan

CARD_FILE = "README.md"
HUB_CACHE_DIR = re.compile(r"models--([^/]+?)--([^/]+)$")


@dataclass(frozen=True)
class CardFacts:
    name: str
    recipe: Recipe
    label_ids: tuple[int, ...]
    tied: bool
    dtype: str
    pad_token: str
    pad_token_id: int
    hidden_size: int | None
    base_model: str | None
    license: str | None
    max_length: int
    """The longest prompt the family's reference scores: it cuts a longer pair's document there."""

    @property
    def head_name(self) -> str:
        return self.recipe.embed_tensor if self.tied else self.recipe.head_tensor


def facts_from_plan(plan: Plan, name: str, base_model: str | None) -> CardFacts:
    config = plan.config
    return CardFacts(
        name=name,
        recipe=plan.recipe,
        label_ids=plan.vocabulary.label_ids,
        tied=plan.tied,
        dtype=config_dtype(config),
        pad_token=plan.vocabulary.pad_token,
        pad_token_id=plan.vocabulary.pad_token_id,
        hidden_size=plan.recipe.language_settings(config).get("hidden_size"),
        base_model=base_model or plan.source.repo_id or default_base_model(plan.source.spec, plan.source.folder),
        license=source_license(plan.source.folder, config),
        max_length=reference_length(plan.recipe, config),
    )


def facts_from_folder(folder: Path) -> CardFacts:
    """Facts of an already converted checkpoint; base model and license come from its existing card."""
    from ..tokenizer import read_tokenizer_config, read_vocabulary

    folder = Path(folder)
    config = read_config(folder)
    recipe = recipe_for_converted(config)
    if recipe is None:
        archs = config.get("architectures")
        raise SeqclsError(f"{folder} is not a checkpoint converted by seqcls (architectures {archs})")
    vocab = read_vocabulary(folder, recipe.label_tokens, config, read_tokenizer_config(folder))
    data = card_data(folder / CARD_FILE)
    return CardFacts(
        name=folder.resolve().name,
        recipe=recipe,
        label_ids=vocab.label_ids,
        tied=_was_tied(config, recipe),
        dtype=config_dtype(config),
        pad_token=vocab.pad_token,
        pad_token_id=vocab.pad_token_id,
        hidden_size=recipe.language_settings(config).get("hidden_size"),
        base_model=data.get("base_model"),
        license=data.get("license") or config.get("license"),
        max_length=reference_length(recipe, config),
    )


def _was_tied(config: dict, recipe: Recipe) -> bool:
    """Whether the head came from the embeddings: the conversion's record says (a multimodal output is untied
    whatever the original was); older outputs kept the original's ``tie_word_embeddings``."""
    head_from = (config.get(CONFIG_KEY) or {}).get("head_from")
    return head_from == recipe.embed_tensor if head_from else recipe.tied(config)


def default_base_model(spec: str, folder: Path) -> str:
    """A hub id when the folder is a Hugging Face cache snapshot, else the source as the user gave it."""
    for parent in Path(folder).resolve().parents:
        if m := HUB_CACHE_DIR.search(str(parent)):
            return f"{m[1]}/{m[2]}"
    return spec


def source_license(folder: Path, config: dict) -> str | None:
    data = card_data(Path(folder) / CARD_FILE)
    return data.get("license") or config.get("license")


def card_data(path: Path) -> dict:
    if not path.is_file():
        return {}
    from huggingface_hub import ModelCard

    try:
        return ModelCard.load(path).data.to_dict()
    except Exception:  # a source card with broken YAML costs the license line, not the conversion
        return {}
