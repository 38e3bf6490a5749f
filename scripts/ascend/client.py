#!/usr/bin/env python3
"""The seed's request demo, sent to the original and/or the converted model's server, with the scores side by side.

    python3 client.py --original-url http://127.0.0.1:8000 --converted-url http://127.0.0.1:8001 [--raw]

Standard library only, so it runs unchanged inside the vllm-ascend image. Queries and documents are formatted by
hand exactly as the seed does. The converted server (vLLM 0.22 or newer, started by serve_converted.sh) takes them
so, as its score template passes formatted input through; with --raw it gets them unformatted (the instruction as
chat_template_kwargs) and the template does the work. Exit code: 0 scores agree within --atol, 1 they do not,
2 bad arguments, an unreachable server or a refused request.

A server refuses a pair longer than its --max-model-len; Qwen's reference cuts the document instead. With
--max-length N --tokenizer MODEL the client cuts each document there first, as the reference does (this needs seqcls
and transformers installed: converter.truncation.cut_document).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request

# The seed's formatting (vllm-ascend's Qwen3-Reranker tutorial); tests check it against converter/recipes.py.
PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
QUERY_TEMPLATE = "{prefix}<Instruct>: {instruction}\n<Query>: {query}\n"
DOCUMENT_TEMPLATE = "<Document>: {doc}{suffix}"
INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
QUERY = "What is the capital of China?"
DOCUMENTS = [
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other. It gives weight to physical objects and is "
    "responsible for the movement of planets around the sun.",
]


def rerank(url: str, query: str | dict, documents: list, instruction: str | None = None) -> list[float]:
    """``/v1/rerank`` scores in the documents' order; a query or document is a string or ``{"content": [parts]}``."""
    request_body = {"query": query, "documents": documents}
    if instruction:
        request_body["chat_template_kwargs"] = {"instruction": instruction}
    body = json.dumps(request_body).encode()
    request = urllib.request.Request(f"{url.rstrip('/')}/v1/rerank", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        results = json.loads(response.read())["results"]
    scores = [0.0] * len(documents)
    for r in results:
        scores[r["index"]] = r["relevance_score"]
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original-url", help="server of the original (serve_original.sh)")
    parser.add_argument("--converted-url", help="server of the converted model (serve_converted.sh)")
    parser.add_argument("--raw", action="store_true", help="send the converted server unformatted pairs")
    parser.add_argument("--query", default=QUERY)
    parser.add_argument("--document", action="append", dest="documents", help="repeat for several (default: seed's)")
    parser.add_argument("--instruction", default=INSTRUCTION)
    parser.add_argument("--atol", type=float, default=2e-2, help="allowed score difference (default: bf16's 2e-2)")
    parser.add_argument("--max-length", type=int, help="cut documents so each prompt fits this many tokens")
    parser.add_argument("--tokenizer", help="the served model's folder or hub id, for --max-length")
    args = parser.parse_args(argv)
    if not (args.original_url or args.converted_url):
        parser.error("give --original-url, --converted-url or both")
    if args.raw and not args.converted_url:
        parser.error("--raw applies to --converted-url")
    if args.max_length and not args.tokenizer:
        parser.error("--max-length needs --tokenizer (the served model's folder or hub id)")
    documents = args.documents or DOCUMENTS
    if args.max_length:
        try:
            documents = cut(documents, args)
        except (ImportError, ValueError) as e:
            print(f"client.py: error: {e}", file=sys.stderr)
            return 2
    query = QUERY_TEMPLATE.format(prefix=PREFIX, instruction=args.instruction, query=args.query)
    formatted = [DOCUMENT_TEMPLATE.format(doc=d, suffix=SUFFIX) for d in documents]

    columns = {}
    try:
        if args.original_url:
            columns["original"] = rerank(args.original_url, query, formatted)
        if args.converted_url:
            raw = (args.query, documents, args.instruction) if args.raw else (query, formatted)
            columns["converted"] = rerank(args.converted_url, *raw)
    except urllib.error.HTTPError as e:
        said = e.read().decode("utf-8", "replace").strip().replace("\n", " ")[:300]
        print(f"client.py: error: the server refused the request ({e.code}): {said}", file=sys.stderr)
        return 2
    except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError, ValueError) as e:
        print(f"client.py: error: {e}", file=sys.stderr)
        return 2

    return report(args.query, documents, columns, args.atol)


def cut(documents: list[str], args: argparse.Namespace) -> list[str]:
    """Each document cut where Qwen's reference cuts it for a prompt of ``--max-length`` tokens (its start kept, the
    instruction, query and the prompt's end whole): seqcls's helper, on the served model's tokenizer."""
    try:
        from transformers import AutoTokenizer

        from converter.errors import SeqclsError
        from converter.recipes import QWEN3_RERANKER
        from converter.truncation import cut_document
    except ImportError as e:
        raise ImportError(f"--max-length needs seqcls and transformers installed ({e})") from None
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    try:
        return [
            cut_document(tokenizer, QWEN3_RERANKER, args.query, d, args.instruction, args.max_length) for d in documents
        ]
    except SeqclsError as e:
        raise ValueError(str(e)) from None


def report(query: str, documents: list[str], columns: dict[str, list[float]], atol: float) -> int:
    """Prints the scores side by side; 0 when there is one column or the two agree within ``atol``, else 1."""
    print(json.dumps({"query": query, "documents": documents, "scores": columns}, ensure_ascii=False, indent=2))
    if len(columns) == 2:
        delta = max(abs(a - b) for a, b in zip(columns["original"], columns["converted"]))
        print(f"max abs difference {delta:.2e} (atol {atol:.0e}): {'OK' if delta <= atol else 'DIFFERENT'}")
        return 0 if delta <= atol else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
