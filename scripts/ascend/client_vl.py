#!/usr/bin/env python3
"""Rerank images, videos and text with a Qwen3-VL-Reranker server, the original and/or the converted one.

    python3 client_vl.py --converted-url http://127.0.0.1:8001 --query "a red circle" \
        --image red.png --document "A blue square." --video clip-frames [--original-url http://127.0.0.1:8000]

Standard library only (and client.py beside it), so it runs unchanged inside the vllm-ascend image. Each --image
or --document is one document, in the order given; --query-image puts an image beside the query's text. Images go
as base64 data URLs in OpenAI-style content parts, so the server needs no access to the files. Both servers must
render the official prompt: the converted one with its score_template.jinja (`seqcls serve` passes it), the
original with vLLM's qwen3_vl_reranker.jinja and its hf_overrides (vllm-ascend's Qwen3-VL-Reranker tutorial). Exit
code: 0 scores agree within --atol (or one server), 1 they do not, 2 bad arguments, an unreadable image or an
unreachable server.

A --video is a folder written by `seqcls export frames CLIP -o FOLDER` on any machine with seqcls[vision]: the frames
as Qwen's scorer samples them and video.json, their metadata. It goes to /classify as the query and document
messages that the server's score template renders, with that metadata as media_io_kwargs and the processor's
sampling and resizing off (the server needs --trust-request-mm-kwargs, which seqcls serve passes from vLLM 0.32):
/v1/rerank and /score take no per-video metadata and would time the frames otherwise.
"""

from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import os
import sys
import urllib.error
import urllib.request

from client import report, rerank  # the text client beside this file


def image_part(path: str) -> dict:
    kind = mimetypes.guess_type(path)[0] or "image/png"
    with open(path, "rb") as f:
        url = f"data:{kind};base64," + base64.b64encode(f.read()).decode("ascii")
    return {"type": "image_url", "image_url": {"url": url}}


def side(text: str | None, images: list[str]) -> str | dict:
    """Text alone as a string; with images, content parts (images first, as the reference orders them)."""
    if not images:
        return text or ""
    parts = [image_part(p) for p in images]
    return {"content": parts + ([{"type": "text", "text": text}] if text else [])}


PLACEHOLDERS = {"image": "<|vision_start|><|image_pad|><|vision_end|>",
                "video": "<|vision_start|><|video_pad|><|vision_end|>"}  # fmt: skip
"""Qwen3-VL's: a chat request joins a side's parts with newlines where Qwen's scorer joins them with nothing, so the
placeholders go in the text part, where the server leaves them."""


def video_part(folder: str) -> tuple[dict, dict]:
    """The frames of a ``seqcls export frames`` folder as one ``data:video/jpeg`` URL, and its ``video.json``."""
    names = sorted(n for n in os.listdir(folder) if n.startswith("frame-") and n.endswith(".png"))
    encoded = []
    for name in names:
        with open(os.path.join(folder, name), "rb") as f:
            encoded.append(base64.b64encode(f.read()).decode("ascii"))
    with open(os.path.join(folder, "video.json"), encoding="utf-8") as f:
        metadata = json.load(f)
    if len(names) != len(metadata["frames_indices"]):
        raise ValueError(f"{folder} holds {len(names)} frames and video.json names {len(metadata['frames_indices'])}")
    return {"type": "video_url", "video_url": {"url": "data:video/jpeg;base64," + ",".join(encoded)}}, metadata


def classify_video(url: str, query: str, query_images: list[str], folder: str, instruction: str | None) -> float:
    """One video document through ``/classify``: the score of the pair."""
    part, metadata = video_part(folder)
    if query_images:
        marks = PLACEHOLDERS["image"] * len(query_images)
        query = [*(image_part(p) for p in query_images), {"type": "text", "text": marks + query}]
    body = {
        "messages": [{"role": "query", "content": query},
                     {"role": "document", "content": [part, {"type": "text", "text": PLACEHOLDERS["video"]}]}],
        "media_io_kwargs": {"video": metadata},
        "mm_processor_kwargs": {"videos_kwargs": {"do_resize": False, "do_sample_frames": False}},
    }  # fmt: skip
    if instruction:
        body["chat_template_kwargs"] = {"instruction": instruction}
    request = urllib.request.Request(
        f"{url.rstrip('/')}/classify", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())["data"][0]["probs"][0]


def score(url: str, args: argparse.Namespace, query: str | dict, documents: list) -> list[float]:
    """Images and text through ``/v1/rerank`` in one request, each video through ``/classify``; in the given order."""
    plain = [i for i, (kind, _) in enumerate(args.documents) if kind != "video"]
    scores = [0.0] * len(documents)
    if plain:
        for i, value in zip(plain, rerank(url, query, [documents[i] for i in plain], args.instruction)):
            scores[i] = value
    for i, (kind, folder) in enumerate(args.documents):
        if kind == "video":
            scores[i] = classify_video(url, args.query, args.query_image, folder, args.instruction)
    return scores


class Documents(argparse.Action):
    """--image, --video and --document append to one list, so documents keep the order they were given in."""

    def __call__(self, parser, namespace, value, option_string=None):
        namespace.documents.append((option_string.removeprefix("--").replace("document", "text"), value))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original-url", help="server of the original (overrides and vLLM's template)")
    parser.add_argument("--converted-url", help="server of the converted model (seqcls serve)")
    parser.add_argument("--query", default="", help="the query's text")
    parser.add_argument("--query-image", action="append", default=[], help="an image beside the query's text")
    parser.add_argument("--image", action=Documents, dest="documents", help="an image document (repeatable)")
    parser.add_argument("--document", action=Documents, dest="documents", help="a text document (repeatable)")
    parser.add_argument("--video", action=Documents, dest="documents",
                        help="a video document: a folder from seqcls export frames (repeatable)")  # fmt: skip
    parser.add_argument("--instruction", help="replaces the default instruction")
    parser.add_argument("--atol", type=float, default=2e-2, help="allowed score difference (default: bf16's 2e-2)")
    parser.set_defaults(documents=[])
    args = parser.parse_args(argv)
    if not (args.original_url or args.converted_url):
        parser.error("give --original-url, --converted-url or both")
    if not args.documents:
        parser.error("give at least one --image, --video or --document")
    if not (args.query or args.query_image):
        parser.error("give --query, --query-image or both")
    try:
        query = side(args.query, args.query_image)
        documents = [side(None, [v]) if kind == "image" else v for kind, v in args.documents]
        for kind, folder in args.documents:
            if kind == "video":
                video_part(folder)
    except OSError as e:
        print(f"client_vl.py: error: cannot read {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    except (KeyError, ValueError) as e:
        print(f"client_vl.py: error: a --video folder is not one from seqcls export frames ({e})", file=sys.stderr)
        return 2
    columns = {}
    try:
        for name, url in (("original", args.original_url), ("converted", args.converted_url)):
            if url:
                columns[name] = score(url, args, query, documents)
    except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError, ValueError) as e:
        print(f"client_vl.py: error: {e}", file=sys.stderr)
        return 2
    shown = [f"[{kind}] {v}" if kind != "text" else v for kind, v in args.documents]
    return report(args.query, shown, columns, args.atol)


if __name__ == "__main__":
    sys.exit(main())
