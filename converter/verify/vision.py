"""The official prompt ids of a multimodal reranker, as Qwen3-VL-Reranker's own scorer makes them: its messages
rendered by the processor's chat template, then the processor over the text and the images (which expands each
image placeholder into the image's tokens). Needs torchvision, as vLLM's Qwen3-VL code does."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import SeqclsError
from ..media import load_image, ordered, qwen_messages
from ..pairs import Pair
from ..recipes import Recipe

CHUNK = 64


def system_text(recipe: Recipe) -> str:
    """The system turn's text, from the recipe's first piece (``<|im_start|>system\\n...<|im_end|>``)."""
    return recipe.pieces[0].split("system\n", 1)[1].split("<|im_end|>", 1)[0]


def load_processor(folder: Path):
    try:
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(folder)
    except (ImportError, ValueError, AttributeError) as e:
        raise SeqclsError(
            f"cannot load the image processor of {folder} ({str(e).splitlines()[0][:200]}); Qwen3-VL's processor "
            "needs torchvision (see docs/testing.md for a CPU setup)"
        ) from None


def iter_official_vision(folder: Path, recipe: Recipe, pairs: Iterable[Pair], max_length: int) -> Iterator[list[int]]:
    """Each pair's official ids; a prompt longer than ``max_length`` is an error, as in Qwen's scorer (images cannot
    be cut)."""
    processor = load_processor(folder)
    system = system_text(recipe)
    pairs, number = iter(pairs), 0
    while chunk := list(itertools.islice(pairs, CHUNK)):
        for pair in chunk:
            instruction = pair.instruction or recipe.default_instruction
            messages = qwen_messages(pair, system, instruction, recipe.empty_side or "")
            text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            images = [load_image(p) for side in (pair.query, pair.document) for p in ordered(side) if p.kind == "image"]
            ids = processor(text=[text], images=images or None, return_tensors=None)["input_ids"][0]
            if len(ids) > max_length:
                raise SeqclsError(f"pair {number}: its prompt is {len(ids)} tokens, over the model length {max_length}")
            number += 1
            yield list(ids)
