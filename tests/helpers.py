"""Test helpers: checkpoints read with the real safetensors library (independently of our reader), the original's
official scores, and a loopback HTTP stub for the hubs."""

from __future__ import annotations

import contextlib
import http.server
import json
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def load_all(folder: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(f, "pt") as st:
            tensors.update({name: st.get_tensor(name) for name in st.keys()})  # noqa: SIM118
    return tensors


def metadata_of(path: Path) -> dict | None:
    with safe_open(path, "pt") as st:
        return st.metadata()


def same_bytes(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))
    )


def reshard(src: Path, dst: Path, groups: list[list[str]]) -> None:
    """Rewrite ``src``'s weights into shards holding exactly ``groups``, with an index, like a hub checkpoint."""
    tensors = load_all(src)
    for f in src.glob("*.safetensors*"):
        (dst / f.name).unlink(missing_ok=True)
    n = len(groups)
    weight_map = {}
    for i, names in enumerate(groups, 1):
        name = f"model-{i:05d}-of-{n:05d}.safetensors"
        save_file({k: tensors[k] for k in names}, dst / name, metadata={"format": "pt"})
        weight_map |= dict.fromkeys(names, name)
    assert set(weight_map) == set(tensors)
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (dst / "model.safetensors.index.json").write_text(json.dumps(index))


def write_raw(path: Path, header: dict | bytes, data: bytes = b"", length: int | None = None) -> None:
    """A safetensors file with any header, valid or not."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)


def rewrite_tensor(folder: Path, name: str, value: torch.Tensor) -> None:
    """Replace one tensor in whichever shard holds it: the way to plant a fault in a converted checkpoint."""
    for f in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(f, "pt") as st:
            names = st.keys()
            if name not in names:
                continue
            tensors = {k: st.get_tensor(k) for k in names}
            meta = st.metadata()
        tensors[name] = value
        f.unlink()  # the shard may be hard-linked to a source: never write through the link
        save_file(tensors, f, metadata=meta)
        return
    raise KeyError(name)


def zerank_reference_ids(tokenizer, query: str, document: str, instruction: str | None = None) -> list[int]:
    """zerank-2 as its published code formats a pair: the query as the system message (with an instruction, both in
    tags, as vLLM's zerank2.jinja and ZeroEntropy recommend), the document as the user message, the chat template
    with its generation prompt, tokenized whole (the fixture's chat template renders these two messages as Qwen3's
    does)."""
    if instruction:
        query = f"<query>{query}</query>\n<instruction>{instruction}</instruction>"
    messages = [{"role": "system", "content": query}, {"role": "user", "content": document}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def ctxl_reference_ids(tokenizer, query: str, document: str, instruction: str | None = None) -> list[int]:
    """ctxl-rerank-v2 as the code on its model cards formats a pair: one f-string, the document before the query, an
    instruction after the query and a space, tokenized whole with the tokenizer's defaults."""
    suffix = f" {instruction}" if instruction else ""
    prompt = (
        "Check whether a given document contains information helpful to answer the query.\n"
        f"<Document> {document}\n<Query> {query}{suffix} ??"
    )
    return tokenizer(prompt)["input_ids"]


def official_scores(src: Path, pairs: list, recipe=None, rendered: bool = False) -> list[float]:
    """The original's probabilities on the family's reference token ids (default: Qwen3-Reranker), cut to the model
    length as verify takes it; ``rendered``: on the ids of the prompt rendered as one string, as templates and vLLM
    tokenize it (see test_presets)."""
    from converter.io.checkpoint import read_config
    from converter.recipes import QWEN3_RERANKER
    from converter.reference import encode_official, reference_length, score_original
    from converter.tokenizer import read_tokenizer_config, read_vocabulary
    from converter.truncation import fit_pairs
    from converter.verify.backends.base import load_tokenizer

    recipe = recipe or QWEN3_RERANKER
    vocab = read_vocabulary(src, recipe.label_tokens, read_config(src), read_tokenizer_config(src))
    tokenizer = load_tokenizer(src)
    limit = reference_length(recipe, read_config(src))
    if rendered:
        sent, _ = fit_pairs(tokenizer, recipe, pairs, limit)  # the documents as verify sends them
        ids = tokenizer([recipe.format_pair(p.query, p.document, p.instruction) for p in sent])["input_ids"]
    else:
        ids = encode_official(tokenizer, recipe, pairs, limit)
    return score_original(src, ids, recipe, pad_id=vocab.pad_token_id, label_ids=vocab.label_ids).probabilities


@contextlib.contextmanager
def loopback_server(handler: type[http.server.BaseHTTPRequestHandler], **state) -> Iterator[tuple[str, object]]:
    """A threaded HTTP server on a free loopback port; ``state`` becomes attributes of the server the handler sees."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    for key, value in state.items():
        setattr(server, key, value)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
