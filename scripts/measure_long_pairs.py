#!/usr/bin/env python3
"""What each serving path does with a pair longer than the reference scores: the reference's score (its document
cut, the prompt's end kept), another score (and how it was cut), or an error.

    .venv/bin/python scripts/measure_long_pairs.py                 # prints the table
    .venv/bin/python scripts/measure_long_pairs.py --write-docs    # and writes it into docs/verify.md

A tiny Qwen3-Reranker with the real vocabulary and the real models' 40,960 positions (random weights) is built and
converted in --workdir; the reference length is Qwen's 8,192. Pairs are one query with documents of filler text
sized so that the whole prompt takes 6,000, 8,191, 8,192, 8,193, 12,000 and 40,000 tokens. Paths: transformers as
the card's snippet runs it and with ``truncation=True``, sentence-transformers' CrossEncoder, vLLM offline and
``seqcls serve``'s server (with each truncation option the installed vLLM has, and the document cut by the client
with ``converter.truncation.cut_document``), and llama.cpp's library with an f32 GGUF sized as ``seqcls serve``
sizes llama-server. tests/test_server_vllm.py, test_loaders.py and test_gguf.py keep the rows true at the test
fixtures' length.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LENGTHS = (6000, 8191, 8192, 8193, 12000, 40000)
LIMIT = 8192
QUERY = "What do long documents test?"
SAME = 1e-5
SAME_GGUF = 5e-4
"""verify's tolerance for an f32 GGUF: llama.cpp's own arithmetic differs from torch's by a few 1e-4."""


def build(workdir: Path) -> tuple[Path, Path]:
    from converter import convert
    from converter.tiny_model import build_tiny_reranker

    src, out = workdir / "Qwen3-Reranker-tiny-40k", workdir / "Qwen3-Reranker-tiny-40k-seq-cls"
    if not (src / "config.json").is_file():
        build_tiny_reranker(src, dtype="float32", max_position_embeddings=40960)
    if not (out / "config.json").is_file():
        convert(src, out)
    return src, out


def documents(tokenizer) -> list[str]:
    """Filler documents whose whole official prompt takes each of ``LENGTHS`` tokens."""
    from converter.pairs import LONG_FILLER, Pair
    from converter.recipes import QWEN3_RERANKER
    from converter.reference import encode_official

    filler = tokenizer.encode(LONG_FILLER * 4000, add_special_tokens=False)
    out = []
    for n in LENGTHS:
        size = n
        while True:
            text = tokenizer.decode(filler[:size])
            got = len(encode_official(tokenizer, QWEN3_RERANKER, [Pair(QUERY, text)], 10**6)[0])
            if got == n:
                out.append(text)
                break
            size += n - got
    return out


def reference(src: Path, tokenizer, docs: list[str]) -> list[float]:
    from converter.pairs import Pair
    from converter.recipes import QWEN3_RERANKER
    from converter.reference import encode_official, score_original

    ids = encode_official(tokenizer, QWEN3_RERANKER, [Pair(QUERY, d) for d in docs], LIMIT)
    return score_original(src, ids, QWEN3_RERANKER, pad_id=151643, label_ids=(2152, 9693), batch_size=1).probabilities


def each(score, docs: list[str]) -> list:
    """One pair at a time, so that an error names its length: a float, or the error's first line."""
    out = []
    for d in docs:
        try:
            out.append(float(score(d)))
        except Exception as e:  # the row reports what the path said
            out.append(_said(str(e)))
    return out


def _said(message: str) -> str:
    if "maximum context length" in message:
        return "over the maximum context length" + (" (HTTP 400)" if "answered 400" in message else "")
    if "longer than llama.cpp's context" in message:
        return "longer than the context"
    return message.strip().splitlines()[0][:80]


def transformers_paths(out: Path, docs: list[str]) -> dict[str, list]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out, dtype=torch.float32).eval()

    def scored(**options):
        def score(d: str) -> float:
            messages = [[{"role": "query", "content": QUERY}, {"role": "document", "content": d}]]
            batch = tokenizer.apply_chat_template(messages, return_tensors="pt", return_dict=True, **options)
            with torch.no_grad():
                return torch.sigmoid(model(**batch).logits[0, 0]).item()

        return score

    return {
        "transformers, the card's snippet": each(scored(), docs),
        "transformers, `truncation=True, max_length=8192`": each(scored(truncation=True, max_length=LIMIT), docs),
    }


def sentence_transformers_path(out: Path, docs: list[str]) -> dict[str, list]:
    import torch
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(out), device="cpu", model_kwargs={"dtype": torch.float32})
    return {"sentence-transformers `CrossEncoder`": each(lambda d: model.predict([(QUERY, d)])[0], docs)}


def vllm_offline(out: Path, docs: list[str]) -> dict[str, list]:
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    from vllm import LLM

    from converter.templates import SCORE_TEMPLATE_FILE
    from converter.verify.processes import shared_memory_files

    llm = LLM(model=str(out), runner="pooling", dtype="float32", max_model_len=LIMIT, enforce_eager=True)
    template = (out / SCORE_TEMPLATE_FILE).read_text()
    score = lambda d: llm.score(QUERY, d, chat_template=template, use_tqdm=False)[0].outputs.score  # noqa: E731
    rows = {"vLLM offline, `LLM.score` (max_model_len 8192)": each(score, docs)}
    for path in shared_memory_files([os.getpid()]):  # vLLM's queues; this process ends without vLLM's shutdown
        path.unlink(missing_ok=True)
    return rows


def vllm_server(out: Path, tokenizer, docs: list[str], workdir: Path) -> dict[str, list]:
    from converter.recipes import QWEN3_RERANKER
    from converter.truncation import cut_document, document_token_limit
    from converter.verify.backends.server import post
    from converter.verify.processes import stop_process_group

    port = 8765
    argv = [sys.executable, "-m", "converter", "serve", str(out), "--port", str(port), "--host", "127.0.0.1",
            "--dtype", "float32", "--gpu-memory-utilization", "0.1"]  # fmt: skip
    with open(workdir / "server.log", "w") as log:
        server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url, server)

        def score(**options):
            return lambda d: post(url, "/score", {"queries": QUERY, "documents": [d], **options})["data"][0]["score"]

        per_doc = document_token_limit(tokenizer, QWEN3_RERANKER, QUERY, max_length=LIMIT)
        cut = lambda d: score()(cut_document(tokenizer, QWEN3_RERANKER, QUERY, d, max_length=LIMIT))  # noqa: E731
        return {
            "`seqcls serve`, `/score`": each(score(), docs),
            f"`seqcls serve`, `max_tokens_per_doc` {per_doc} (`document_token_limit`)": each(
                score(max_tokens_per_doc=per_doc), docs
            ),
            "`seqcls serve`, `truncate_prompt_tokens` 8192, right": each(
                score(truncate_prompt_tokens=LIMIT, truncation_side="right"), docs
            ),
            "`seqcls serve`, `truncate_prompt_tokens` 8192, left": each(
                score(truncate_prompt_tokens=LIMIT, truncation_side="left"), docs
            ),
            "`seqcls serve`, the client cuts the document (`cut_document`)": each(cut, docs),
        }
    finally:
        stop_process_group(server, grace=10)


def _wait(url: str, server: subprocess.Popen, limit: float = 600) -> None:
    import urllib.request

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the server ended; see server.log in the workdir")
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise SystemExit("the server did not start")


def llamacpp(out: Path, tokenizer, docs: list[str], workdir: Path) -> dict[str, list]:
    from converter.export.gguf import export_gguf, read_exported
    from converter.export.llamacpp import RankModel
    from converter.recipes import QWEN3_RERANKER
    from converter.truncation import cut_document

    folder = workdir / "gguf"
    if not folder.is_dir():
        export_gguf(out, folder, types=["f32"])
    gguf = next(folder.glob("*.gguf"))
    template = read_exported(gguf).rerank_template
    with RankModel(gguf, n_ctx=LIMIT, threads=os.cpu_count()) as model:

        def score(d: str) -> float:
            prompt = template.replace("{query}", QUERY).replace("{document}", d)
            return next(model.scores([model.tokenize(prompt)]))[0]

        cut = lambda d: score(cut_document(tokenizer, QWEN3_RERANKER, QUERY, d, max_length=LIMIT))  # noqa: E731
        return {
            "llama.cpp (f32 GGUF, context 8192 as `seqcls serve` sizes llama-server)": each(score, docs),
            "llama.cpp, the client cuts the document (`cut_document`)": each(cut, docs),
        }


def table(rows: dict[str, list], want: list[float]) -> str:
    head = "| path | " + " | ".join(f"{n:,}" for n in LENGTHS) + " |"
    lines = [head, "|---" * (len(LENGTHS) + 1) + "|"]
    for path, got in rows.items():
        cells = []
        same = SAME_GGUF if path.startswith("llama.cpp") else SAME
        for g, w in zip(got, want):
            if isinstance(g, str):
                cells.append(f"error: {g.replace('|', '/')}")
            elif abs(g - w) <= same:
                cells.append("reference")
            else:
                cells.append(f"other (Δ {abs(g - w):.1e})")
        lines.append(f"| {path} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "seqcls-long-pairs")
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/verify.md")
    parser.add_argument("--skip", nargs="*", default=[], choices=("vllm", "server", "llamacpp"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_common import machine, write_section

    from converter.verify.backends.base import load_tokenizer

    src, out = build(args.workdir)
    tokenizer = load_tokenizer(src)
    docs = documents(tokenizer)
    want = reference(src, tokenizer, docs)
    rows = transformers_paths(out, docs) | sentence_transformers_path(out, docs)
    if "llamacpp" not in args.skip:
        rows |= llamacpp(out, tokenizer, docs, args.workdir)
    if "server" not in args.skip:
        rows |= vllm_server(out, tokenizer, docs, args.workdir)
    if "vllm" not in args.skip:
        rows |= vllm_offline(out, docs)
    text = (
        f"Measured by `scripts/measure_long_pairs.py` on {time.strftime('%Y-%m-%d')}: {machine()}. Tiny "
        "Qwen3-Reranker (real vocabulary, 40,960 positions, random weights, float32) and its conversion; columns: the "
        "whole official prompt's tokens before any cut; the reference cuts the document to 8,192. `reference`: within "
        f"{SAME:.0e} of it ({SAME_GGUF:.0e} for llama.cpp, verify's f32 GGUF tolerance); `other`: a score the "
        "reference does not give; `error`: what the path said.\n\n" + table(rows, want)
    )
    print(text)
    if args.write_docs:
        write_section(ROOT / "docs" / "verify.md", "long-pairs", text, title="# Verify")


if __name__ == "__main__":
    main()
