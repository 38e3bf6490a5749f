"""Images in pairs, for multimodal rerankers.

A side of a pair (query or document) is a string, or a list of parts: ``{"text": ...}``, ``{"image": PATH_OR_URL}``,
``{"video": PATH}`` (a file) or ``{"video": [FRAME_PATH, ...], "fps": N}`` (frames already sampled; ``fps``
optional), where a path is relative to the pair file and a URL is a ``data:`` URL or, online, ``http(s)`` (images
only). Qwen's scorer puts a side's videos first, then its images, then its text, and vLLM puts a side's media
placeholders before its text, so the order of parts within a side does not change the prompt; a side holds at most
one text part (vLLM joins several with a newline, Qwen's scorer with nothing: they would disagree).

Local images and videos are opened and checked when the pairs are loaded; images go to engines and servers as
``data:`` URLs, so a server on another machine reads the same bytes as the engine here. Videos are sampled once by
seqcls (``video``) and every side gets the sampled frames.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import mimetypes
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import SeqclsError

KINDS = ("video", "image", "text")
"""Part kinds, in the order Qwen's scorer places them within a side."""
REMOTE = ("http://", "https://")
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "SEQCLS_OFFLINE")
TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True, slots=True)
class Part:
    kind: str
    value: str | tuple[str, ...]
    """The text; or the medium's absolute path, ``data:`` URL or ``http(s)`` URL; a video given as frames: theirs."""
    fps: float | None = None
    """A video given as frames: their rate, where the pair file says it."""


Content = tuple[Part, ...]
SideValue = str | Content
"""What a pair's query or document holds."""


def is_content(side: SideValue) -> bool:
    return not isinstance(side, str)


def has_media(side: SideValue, kind: str | None = None) -> bool:
    """The side holds an image or a video (``kind``: one of that kind)."""
    return is_content(side) and any(p.kind != "text" and kind in (None, p.kind) for p in side)


def text_of(side: SideValue) -> str:
    return side if isinstance(side, str) else "".join(p.value for p in side if p.kind == "text")


def ordered(side: SideValue) -> Content:
    """The side's parts as Qwen's scorer orders them: videos, images, text."""
    if isinstance(side, str):
        return (Part("text", side),) if side else ()
    return tuple(sorted((p for p in side if p.kind != "text" or p.value), key=lambda p: KINDS.index(p.kind)))


def max_pixels(folder: Path) -> int | None:
    """The most pixels a checkpoint's processor takes in one image (``size.longest_edge`` of
    ``preprocessor_config.json``); None without one."""
    try:
        size = json.loads((Path(folder) / "preprocessor_config.json").read_text()).get("size") or {}
    except (OSError, ValueError, AttributeError):
        return None
    value = size.get("longest_edge") or size.get("max_pixels")
    return value if isinstance(value, int) else None


def parse_side(value: object, where: str, base: Path, check: bool = True, limit: int | None = None) -> SideValue:
    """A side as a pair file gives it: a string, or a non-empty list of parts (see the module docstring). ``check``
    opens each local image (done once, when the pairs are loaded), refusing one above ``limit`` pixels."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list) or not value:
        raise SeqclsError(f"{where}: a query or document is a string or a non-empty list of parts")
    parts = [_part(item, where, base) for item in value]
    if sum(p.kind == "text" for p in parts) > 1:
        raise SeqclsError(f"{where}: a side holds one text part; join the texts into one")
    for part in parts:
        if check and part.kind == "image":
            check_image(part, where, limit)
        elif check and part.kind == "video":
            check_video(part, where, limit)
    return tuple(parts)


def _part(item: object, where: str, base: Path) -> Part:
    if isinstance(item, str):
        item = {"text": item}
    keys = set(item) if isinstance(item, dict) else set()
    if not (len(keys & set(KINDS)) == 1 and (keys - {"fps"} == {"video"} or len(keys) == 1)):
        raise SeqclsError(f'{where}: each part is {{"text": ...}}, {{"image": ...}} or {{"video": ...}}')
    kind = next(k for k in KINDS if k in keys)
    value = item[kind]
    if kind == "video" and (isinstance(value, list) or "fps" in item):
        from .video import frame_paths

        fps = item.get("fps")
        if not isinstance(value, list) or not (fps is None or (isinstance(fps, (int, float)) and fps > 0)):
            raise SeqclsError(f'{where}: "fps" goes with a video given as a list of frames, and is a positive number')
        return Part(kind, frame_paths(value, where, base, _locate), None if fps is None else float(fps))
    if not isinstance(value, str) or (kind != "text" and not value):
        raise SeqclsError(f"{where}: the {kind} part must be a non-empty string")
    return Part(kind, value) if kind == "text" else Part(kind, _locate(value, kind, where, base))


def _locate(value: str, kind: str, where: str, base: Path) -> str:
    if value.startswith("data:"):
        return value
    if value.startswith(REMOTE):
        if any(os.environ.get(v, "").lower() in TRUE for v in OFFLINE_VARIABLES):
            raise SeqclsError(
                f"{where}: the {kind} {value} is a remote URL and offline mode is on; download it and give its path"
            )
        return value
    path = (base / value.removeprefix("file://")).resolve()
    if not path.is_file():
        raise SeqclsError(f"{where}: the {kind} file {path} does not exist; paths are relative to the pair file")
    return str(path)


def read_bytes(part: Part, where: str = "") -> bytes:
    """The medium's bytes (remote URLs are left to the engine, and never read here)."""
    if part.value.startswith("data:"):
        header, _, payload = part.value.partition(",")
        try:
            return base64.b64decode(payload, validate=True) if header.endswith(";base64") else payload.encode()
        except (binascii.Error, ValueError):
            raise SeqclsError(f"{where}: the {part.kind}'s data URL is not valid base64") from None
    try:
        return Path(part.value).read_bytes()
    except OSError as e:
        raise SeqclsError(f"{where}: cannot read the {part.kind} file {part.value} ({e.strerror})") from None


def check_image(part: Part, where: str, limit: int | None = None) -> tuple[int, int]:
    """Opens and decodes a local image: (width, height). A damaged file, a file that is no image, and an image above
    ``limit`` pixels (the processor's; PIL's decompression-bomb limit when None) are refused."""
    return (0, 0) if part.value.startswith(REMOTE) else _decoded(part, where, limit).size


def check_video(part: Part, where: str, limit: int | None = None) -> None:
    """A video file holds a video stream whose first frame decodes; each frame of a frame list is a readable image
    within ``limit`` pixels and their count is even (``video.check_frame_count``). Sampling, at scoring time, reads
    the rest."""
    from . import video

    if isinstance(part.value, tuple):
        video.check_frame_count(len(part.value), video.VideoSampling(), where)
        for i, frame in enumerate(part.value):
            check_image(Part("image", frame), f"{where}, frame {i}", limit)
    else:
        video.probe(part, where)


def _decoded(part: Part, where: str, limit: int | None):
    """The local or ``data:`` image, decoded, checked as ``check_image`` says."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(read_bytes(part, where))) as image:
            image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
        name = part.value if not part.value.startswith("data:") else "data URL"
        raise SeqclsError(f"{where}: the image {name} is not a readable image ({type(e).__name__}: {e})") from None
    width, height = image.size
    if limit and width * height > limit:
        raise SeqclsError(
            f"{where}: the image is {width}x{height} = {width * height:,} pixels, more than the processor's "
            f"{limit:,}; shrink it"
        )
    return image


def engine_limits(pairs: Iterable) -> dict:
    """``limit_mm_per_prompt`` for a vLLM engine that scores these pairs: as many images and videos as a pair holds,
    so that vLLM prepares for nothing else (video's start-up probe took 1.4 s on a CPU)."""
    most = {"image": 0, "video": 0}
    for pair in pairs:
        sides = [side for side in (pair.query, pair.document) if not isinstance(side, str)]
        for kind in most:
            most[kind] = max(most[kind], sum(p.kind == kind for side in sides for p in side))
    return most


def data_url(part: Part) -> str:
    """What an engine or server is sent for a medium: the URL itself, or the file as a ``data:`` URL."""
    if part.value.startswith(("data:", *REMOTE)):
        return part.value
    kind = mimetypes.guess_type(part.value)[0] or f"{part.kind}/octet-stream"
    return f"data:{kind};base64," + base64.b64encode(read_bytes(part)).decode("ascii")


def vllm_side(side: SideValue) -> str | dict:
    """A side as vLLM's score API takes it: the string, or ``{"content": [OpenAI-style parts]}``."""
    if isinstance(side, str):
        return side
    parts = []
    for p in ordered(side):
        if p.kind == "text":
            parts.append({"type": "text", "text": p.value})
        else:
            parts.append({"type": f"{p.kind}_url", f"{p.kind}_url": {"url": data_url(p)}})
    return {"content": parts}


def as_json(side: SideValue) -> str | list[dict]:
    """The side as a pair file writes it, with local media named by path."""
    if isinstance(side, str):
        return side
    return [{p.kind: list(p.value) if isinstance(p.value, tuple) else p.value} | _fps(p) for p in side]


def _fps(part: Part) -> dict:
    return {} if part.fps is None else {"fps": part.fps}


def described(side: str | list[dict]) -> str:
    """A side as a report row holds it (``as_json``), as one line of text: media as ``[image]``, ``[video]``."""
    if isinstance(side, str):
        return side
    return " ".join(
        f"[{kind}]" if kind != "text" else value for part in side for kind, value in part.items() if kind != "fps"
    )


def fingerprint(side: SideValue) -> str | list:
    """What identifies a side's content: its text, and each medium by its bytes' digest (a path can keep its name
    while the image changes)."""
    if isinstance(side, str):
        return side
    return [[p.kind, _digest(p)] if p.kind != "text" else [p.kind, p.value] for p in side]


def _digest(part: Part) -> str | list:
    if isinstance(part.value, tuple):
        return [part.fps, *(_digest(Part("image", frame)) for frame in part.value)]
    if part.value.startswith(REMOTE):
        return part.value
    return hashlib.sha256(read_bytes(part)).hexdigest()


def qwen_messages(pair, system: str, instruction: str, empty: str) -> list[dict]:
    """A pair as Qwen3-VL-Reranker's own scorer builds its messages (``format_mm_instruction``): the system text, then
    ``<Instruct>: ``, ``<Query>:`` and the query's parts, ``\\n<Document>:`` and the document's parts, each side's
    media before its text, ``empty`` for a side with nothing in it. Media parts carry their URL or path."""

    def side(mark: str, value: SideValue) -> list[dict]:
        parts = [
            {"type": p.kind, p.kind: p.value} if p.kind != "text" else {"type": "text", "text": p.value}
            for p in ordered(value)
        ]
        return [{"type": "text", "text": mark}, *(parts or [{"type": "text", "text": empty}])]

    user = [{"type": "text", "text": "<Instruct>: " + instruction}]
    user += side("<Query>:", pair.query) + side("\n<Document>:", pair.document)
    return [{"role": "system", "content": [{"type": "text", "text": system}]}, {"role": "user", "content": user}]


def load_image(part: Part, where: str = "", limit: int | None = None):
    """An image as an RGB PIL image, decoded once and checked as ``check_image`` says (remote URLs are fetched by
    transformers' own loader, unchecked)."""
    if part.value.startswith(REMOTE):
        from transformers.image_utils import load_image as fetch

        return fetch(part.value).convert("RGB")
    return _decoded(part, where, limit).convert("RGB")
