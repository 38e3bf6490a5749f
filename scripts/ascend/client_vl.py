#!/usr/bin/env python3
"""Rerank images and text with a Qwen3-VL-Reranker server, the original and/or the converted one, side by side.

    python3 client_vl.py --converted-url http://127.0.0.1:8001 --query "a red circle" \
        --image red.png --document "A blue square." [--original-url http://127.0.0.1:8000]

Standard library only (and client.py beside it), so it runs unchanged inside the vllm-ascend image. Each --image
or --document is one document, in the order given; --query-image puts an image beside the query's text. Images go
as base64 data URLs in OpenAI-style content parts, so the server needs no access to the files. Both servers must
render the official prompt: the converted one with its score_template.jinja (`seqcls serve` passes it), the
original with vLLM's qwen3_vl_reranker.jinja and its hf_overrides (vllm-ascend's Qwen3-VL-Reranker tutorial). Exit
code: 0 scores agree within --atol (or one server), 1 they do not, 2 bad arguments, an unreadable image or an
unreachable server.
"""

from __future__ import annotations

import argparse
import base64
import mimetypes
import sys
import urllib.error

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


class Documents(argparse.Action):
    """--image and --document append to one list, so documents keep the order they were given in."""

    def __call__(self, parser, namespace, value, option_string=None):
        namespace.documents.append(("image" if option_string == "--image" else "text", value))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original-url", help="server of the original (overrides and vLLM's template)")
    parser.add_argument("--converted-url", help="server of the converted model (seqcls serve)")
    parser.add_argument("--query", default="", help="the query's text")
    parser.add_argument("--query-image", action="append", default=[], help="an image beside the query's text")
    parser.add_argument("--image", action=Documents, dest="documents", help="an image document (repeatable)")
    parser.add_argument("--document", action=Documents, dest="documents", help="a text document (repeatable)")
    parser.add_argument("--instruction", help="replaces the default instruction")
    parser.add_argument("--atol", type=float, default=2e-2, help="allowed score difference (default: bf16's 2e-2)")
    parser.set_defaults(documents=[])
    args = parser.parse_args(argv)
    if not (args.original_url or args.converted_url):
        parser.error("give --original-url, --converted-url or both")
    if not args.documents:
        parser.error("give at least one --image or --document")
    if not (args.query or args.query_image):
        parser.error("give --query, --query-image or both")
    try:
        query = side(args.query, args.query_image)
        documents = [side(None, [v]) if kind == "image" else v for kind, v in args.documents]
    except OSError as e:
        print(f"client_vl.py: error: cannot read image {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    columns = {}
    try:
        for name, url in (("original", args.original_url), ("converted", args.converted_url)):
            if url:
                columns[name] = rerank(url, query, documents, args.instruction)
    except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError, ValueError) as e:
        print(f"client_vl.py: error: {e}", file=sys.stderr)
        return 2
    shown = [f"[image] {v}" if kind == "image" else v for kind, v in args.documents]
    return report(args.query, shown, columns, args.atol)


if __name__ == "__main__":
    sys.exit(main())
