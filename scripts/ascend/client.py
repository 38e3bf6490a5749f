#!/usr/bin/env python3
"""The seed's request demo, sent to the original and/or the converted model's server, with the scores side by side.

    python3 client.py --original-url http://127.0.0.1:8000 --converted-url http://127.0.0.1:8001 [--raw]

Standard library only, so it runs unchanged inside the vllm-ascend image. Queries and documents are formatted by
hand exactly as the seed does: Qwen3-Reranker's, or with --family another one's (zerank-2: its original is asked for
the raw logit and calibrated as its card says; ctxl-rerank-v2: the document comes first, so the prompt up to the
query goes as vLLM's query). The converted server (vLLM 0.22 or newer, started by serve_converted.sh) takes them
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
import math
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
FAMILIES = {
    "qwen3-reranker": {
        "halves": (QUERY_TEMPLATE.replace("{prefix}", PREFIX), DOCUMENT_TEMPLATE.replace("{doc}", "{document}")
                   .replace("{suffix}", SUFFIX)),
        "instruction": INSTRUCTION,
    },
    "zerank-2": {
        "halves": ("<|im_start|>system\n{query}<|im_end|>\n<|im_start|>user\n",
                   "{document}<|im_end|>\n<|im_start|>assistant\n"),
        "instructed_query": "<query>{query}</query>\n<instruction>{instruction}</instruction>",
        "temperature": 5.0,
    },
    "ctxl-rerank-v2": {
        "halves": ("Check whether a given document contains information helpful to answer the query.\n<Document> "
                   "{document}", "\n<Query> {query}{instruction} ??"),
        "instruction_part": " {instruction}",
    },
}  # fmt: skip
"""Each family's prompt as the seed's clients cut it: (what goes as vLLM's query, what goes as its document); a
``temperature`` where the family's score is ``sigmoid(logit / temperature)``. Tests check them against seqcls'
recipes."""
QUERY = "What is the capital of China?"
DOCUMENTS = [
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other. It gives weight to physical objects and is "
    "responsible for the movement of planets around the sun.",
]


def halves(family: str, query: str, document: str, instruction: str | None) -> tuple[str, str]:
    """One pair formatted by hand for ``family``: (vLLM's query, vLLM's document), which vLLM joins as they are."""
    f = FAMILIES[family]
    chosen = instruction or f.get("instruction")
    fields = {"query": query, "document": document, "instruction": ""}
    if chosen and "instructed_query" in f:
        fields["query"] = f["instructed_query"].format(query=query, instruction=chosen)
    elif chosen:
        fields["instruction"] = f.get("instruction_part", "{instruction}").format(instruction=chosen)
    first, second = f["halves"]
    return first.format(**fields), second.format(**fields)


def rerank_formatted(url: str, pairs: list[tuple[str, str]], temperature: float | None = None) -> list[float]:
    """Hand-formatted pairs, one ``/v1/rerank`` request per distinct query half; with ``temperature`` the server is
    asked for the raw logit (``use_activation`` off), which is calibrated here."""
    groups: dict[str, list[int]] = {}
    for i, (query, _) in enumerate(pairs):
        groups.setdefault(query, []).append(i)
    scores = [0.0] * len(pairs)
    for query, members in groups.items():
        got = rerank(url, query, [pairs[i][1] for i in members], logits=temperature is not None)
        for i, score in zip(members, got):
            scores[i] = score if temperature is None else 1 / (1 + math.exp(-score / temperature))
    return scores


def rerank(
    url: str, query: str | dict, documents: list, instruction: str | None = None, logits: bool = False
) -> list[float]:
    """``/v1/rerank`` scores in the documents' order; a query or document is a string or ``{"content": [parts]}``."""
    request_body = {"query": query, "documents": documents}
    if instruction:
        request_body["chat_template_kwargs"] = {"instruction": instruction}
    if logits:
        request_body["use_activation"] = False
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
    parser.add_argument("--family", choices=sorted(FAMILIES), default="qwen3-reranker", help="the prompt format")
    parser.add_argument("--instruction", help="default: the family's (Qwen3-Reranker's web search one; others none)")
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
    takes = "{instruction}" in "".join(FAMILIES[args.family]["halves"]) or "instructed_query" in FAMILIES[args.family]
    if args.instruction and not takes:
        parser.error(f"{args.family}'s prompt takes no instruction")
    instruction = args.instruction or FAMILIES[args.family].get("instruction")
    documents = args.documents or DOCUMENTS
    if args.max_length:
        try:
            documents = cut(documents, args)
        except (ImportError, ValueError) as e:
            print(f"client.py: error: {e}", file=sys.stderr)
            return 2
    formatted = [halves(args.family, args.query, d, instruction) for d in documents]
    columns = {}
    try:
        if args.original_url:
            temperature = FAMILIES[args.family].get("temperature")
            columns["original"] = rerank_formatted(args.original_url, formatted, temperature)
        if args.converted_url:
            columns["converted"] = (
                rerank(args.converted_url, args.query, documents, args.instruction)
                if args.raw
                else rerank_formatted(args.converted_url, formatted)
            )
    except urllib.error.HTTPError as e:
        said = e.read().decode("utf-8", "replace").strip().replace("\n", " ")[:300]
        print(f"client.py: error: the server refused the request ({e.code}): {said}", file=sys.stderr)
        return 2
    except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError, ValueError) as e:
        print(f"client.py: error: {e}", file=sys.stderr)
        return 2

    return report(args.query, documents, columns, args.atol)


def cut(documents: list[str], args: argparse.Namespace) -> list[str]:
    """Each document cut where the family's reference cuts it for a prompt of ``--max-length`` tokens (its start kept,
    the instruction, query and the prompt's end whole): seqcls's helper, on the served model's tokenizer."""
    try:
        from transformers import AutoTokenizer

        from converter.errors import SeqclsError
        from converter.recipes import preset
        from converter.truncation import cut_document
    except ImportError as e:
        raise ImportError(f"--max-length needs seqcls and transformers installed ({e})") from None
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    try:
        return [
            cut_document(tokenizer, preset(args.family), args.query, d, args.instruction, args.max_length)
            for d in documents
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
