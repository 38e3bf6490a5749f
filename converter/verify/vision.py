"""Multimodal rerankers in transformers, as Qwen3-VL-Reranker's own scorer runs them: its messages rendered by the
processor's chat template, the processor over the text and the images (which expands each image placeholder into the
image's tokens), one pair per forward pass (so no padding meets the 3-D rotary positions), and the score at the last
token. The original: ``logit_yes - logit_no`` from ``Qwen3VLForConditionalGeneration``; the converted checkpoint:
the base model (``AutoModel``) and its ``score.weight``, since transformers has no class for it. Needs torchvision,
as vLLM's Qwen3-VL code does."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import SeqclsError
from ..media import load_image, max_pixels, ordered, qwen_messages
from ..pairs import Pair
from ..recipes import FROM_2_WAY_SOFTMAX, Recipe
from ..reference import Scores
from ..video import PRESAMPLED, model_inputs, normalization, pair_clips


def load_processor(folder: Path):
    try:
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(folder)
    except (ImportError, ValueError, AttributeError) as e:
        raise SeqclsError(
            f"cannot load the image processor of {folder} ({str(e).splitlines()[0][:200]}); Qwen3-VL's processor "
            "needs torchvision (see docs/testing.md for a CPU setup)"
        ) from None


def processed(
    folder: Path, recipe: Recipe, pairs: Iterable[Pair], max_length: int, official: bool = True,
    sizing: Path | None = None, videos: dict[int, list[dict]] | None = None,
) -> Iterator[dict]:  # fmt: skip
    """Each pair as the processor makes it: ``input_ids`` (a list) and the rest of its outputs (tensors: the mask,
    the token types that place images in the 3-D rotary positions and, with images, pixels and grids). ``official``:
    images are sized as Qwen's scorer sizes them (``qwen_vl_utils.fetch_image`` into the recipe's bounds, then the
    processor without resizing); else as vLLM does, by the processor and its checkpoint's bounds. A prompt longer
    than ``max_length`` and an image above the processor's pixel limit are errors naming the pair, as Qwen's scorer
    refuses what it cannot cut. ``sizing``: the checkpoint whose image bounds size the images where not ``official``
    (default ``folder``); everything else, the pixel limit and the normalization, stays ``folder``'s. ``videos``:
    filled with each video pair's videos as handed to the model (``video.model_inputs``), by pair number."""
    processor = load_processor(folder)
    if sizing is not None and not official and Path(sizing) != Path(folder):
        processor.image_processor.size = load_processor(sizing).image_processor.size
    limit = max_pixels(folder)
    sized = _qwen_sizing(recipe) if official and recipe.image_pixels else None
    for number, pair in enumerate(pairs):
        where = f"pair {number}"
        text = prompt_text(processor, recipe, pair)
        parts = [p for side in (pair.query, pair.document) for p in ordered(side)]
        images = [load_image(p, where, limit) for p in parts if p.kind == "image"]
        if sized:
            images = [sized(image) for image in images]
        clips = pair_clips(pair, recipe, where)
        extra = {"images_kwargs": {"do_resize": False}} if sized and images else {}
        if clips:
            extra["videos"] = [c.tensor() for c in clips]
            extra["video_metadata"] = [c.metadata for c in clips]
            extra["videos_kwargs"] = dict(PRESAMPLED)
            if hasattr(processor.video_processor, "cap_pixels_per_frame"):
                extra["videos_kwargs"]["cap_pixels_per_frame"] = False  # a resizing option: nothing is resized
        inputs = processor(text=[text], images=images or None, return_tensors="pt", **extra)
        ids = inputs["input_ids"][0].tolist()
        if len(ids) > max_length:
            media = f" ({sum(c.tokens(recipe.image_patch) for c in clips):,} of them video)" if clips else ""
            raise SeqclsError(
                f"{where}: its prompt is {len(ids):,} tokens{media}, over the model length {max_length:,}; "
                + ("give a shorter video or fewer frames" if clips else "shorten it")
            )
        if videos is not None and clips:
            videos[number] = model_inputs(inputs, normalization(processor.video_processor))
        yield {k: v for k, v in inputs.items() if k != "input_ids"} | {"input_ids": ids}


def prompt_text(processor, recipe: Recipe, pair: Pair) -> str:
    """The pair's prompt as Qwen's scorer renders it: its messages through the processor's chat template, each
    medium a placeholder that the processor expands."""
    instruction = pair.instruction or recipe.default_instruction
    messages = qwen_messages(pair, recipe.system_text, instruction, recipe.empty_side or "")
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _qwen_sizing(recipe: Recipe):
    """Qwen's scorer's resizing of one image, by its own library (``qwen-vl-utils``, seqcls[vision])."""
    try:
        from qwen_vl_utils import fetch_image
    except ImportError:
        raise SeqclsError(
            f"the official image sizing of {recipe.title} needs qwen-vl-utils: pip install 'seqcls[vision]'"
        ) from None
    low, high = recipe.image_pixels

    def sized(image):
        return fetch_image({"image": image, "min_pixels": low, "max_pixels": high}, image_patch_size=recipe.image_patch)

    return sized


def iter_official_vision(folder: Path, recipe: Recipe, pairs: Iterable[Pair], max_length: int) -> Iterator[list[int]]:
    return (x["input_ids"] for x in processed(folder, recipe, pairs, max_length))


def score_vision(
    which: str, folder: Path, inputs: Iterable[dict], recipe: Recipe, *, label_ids: tuple[int, ...],
    dtype: str = "float32", device: str = "cpu",
) -> Scores:  # fmt: skip
    """The original's ``logit_true - logit_false`` (the language model's head at the last token), or the converted
    base model's last hidden state times ``score.weight``; one pair at a time."""
    import torch

    started = time.perf_counter()
    model, head = _load(which, folder, dtype, device)
    loaded, rows = time.perf_counter(), []
    with torch.inference_mode():
        for x in inputs:
            batch = {k: v.to(device) for k, v in x.items() if k != "input_ids"}
            batch["input_ids"] = torch.tensor([x["input_ids"]], device=device)
            if head is None:
                logits = model(**batch, logits_to_keep=1).logits[:, -1].float()[:, list(label_ids)]
                rows.append((logits[:, 1:] - logits[:, :1] if recipe.method == FROM_2_WAY_SOFTMAX else logits).cpu())
            else:
                hidden = model(**batch).last_hidden_state[:, -1].float()
                rows.append((hidden @ head.T).cpu())
    width = 1 if recipe.method == FROM_2_WAY_SOFTMAX else len(label_ids)
    table = torch.cat(rows) if rows else torch.zeros((0, width))
    return Scores(table, loaded - started, time.perf_counter() - loaded)


def _load(which: str, folder: Path, dtype: str, device: str):
    import torch
    from transformers import AutoModel, AutoModelForImageTextToText

    kwargs = {"dtype": getattr(torch, dtype), "device_map": device}
    if which == "original":
        return AutoModelForImageTextToText.from_pretrained(folder, **kwargs).eval(), None
    from safetensors import safe_open

    from ..io.checkpoint import open_checkpoint

    head = open_checkpoint(folder).tensors.get("score.weight")
    if head is None:
        raise SeqclsError(f"{folder} holds no score.weight; convert the original again")
    with safe_open(head.path, "pt") as f:
        weight = f.get_tensor("score.weight").float().to(device)
    return AutoModel.from_pretrained(folder, **kwargs).eval(), weight
