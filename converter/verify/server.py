"""Start a vLLM server on a free loopback port, wait for it, query it the way the seed's request demo does, and
always shut it down."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import SeqclsError
from ..pairs import Pair
from ..recipes import Recipe
from ..templates import INPUT_FORMS, as_sent
from ..vllm_compat import EngineSpec, VllmInstall, device_env, serve_argv
from .processes import stop_process_group

HOST = "127.0.0.1"
START_TIMEOUT = float(os.environ.get("SEQCLS_SERVER_TIMEOUT", "900"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(
    spec: EngineSpec,
    install: VllmInstall,
    log: Path,
    device: str,
    chat_template: str | None = None,
    timeout: float = START_TIMEOUT,
) -> Iterator[str]:
    """Yields the base URL once ``/health`` answers, within ``timeout`` seconds; the whole process group is stopped
    on the way out."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            serve_argv(spec, install, host=HOST, port=port, chat_template=chat_template),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ | device_env(device),
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(url):
            if proc.poll() is not None:
                raise SeqclsError(
                    f"vLLM server for {spec.model} exited ({proc.returncode}): {last_error(log)}; log: {log}"
                )
            if time.monotonic() > deadline:
                raise SeqclsError(f"vLLM server for {spec.model} not healthy after {timeout:.0f}s; log: {log}")
            time.sleep(1)
        yield url
    finally:
        stop_process_group(proc)


def last_error(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error:" in line:
            return line[-300:]
    return lines[-1][-300:] if lines else "no output"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def post(url: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{url.rstrip('/')}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace")[:300]
        raise SeqclsError(f"{url}{path} answered {e.code}: {detail}") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
        raise SeqclsError(f"cannot reach {url}{path}: {e}") from None


def query_server(
    url: str, recipe: Recipe, pairs: Sequence[Pair], raw: bool = False, prompts: str | None = None,
    sample: list[int] | None = None,
):  # fmt: skip
    """Per query: one ``/v1/rerank`` and one ``/score`` request. The seed formats queries and documents by hand;
    with ``raw`` the server's score template does it and an instruction travels as ``chat_template_kwargs``. The
    pairs of ``sample`` are also sent formatted by hand and mixed, as the seed's clients send them to such a server.
    The token ids come from ``tokenize``."""
    from .backends import MANUAL, Side

    scores = _query(url, recipe, pairs, "raw" if raw else "seed-formatted", templated=raw)
    forms = {}
    if sample:
        chosen = [pairs[i] for i in sample]
        forms = {
            form: Side(_query(url, recipe, chosen, form, templated=True), prompts=form, indices=sample)
            for form in INPUT_FORMS[1:]
        }
    return Side(scores, None, None, prompts or MANUAL, forms=forms)


def tokenize(url: str, recipe: Recipe, pairs: Sequence[Pair]) -> list[list[int]]:
    """``/tokenize`` of each official prompt, so that token ids can be compared too."""
    return [
        post(url, "/tokenize", {"prompt": recipe.format_pair(p.query, p.document, p.instruction)})["tokens"]
        for p in pairs
    ]


def _query(url: str, recipe: Recipe, pairs: list[Pair], form: str, templated: bool) -> dict[str, list[float]]:
    groups: dict[tuple[str, str | None], list[tuple[int, str]]] = {}
    for i, p in enumerate(pairs):
        query, document = as_sent(recipe, p.query, p.document, p.instruction, form, i)
        groups.setdefault((query, p.instruction), []).append((i, document))
    rerank, score = [0.0] * len(pairs), [0.0] * len(pairs)
    for (query, instruction), members in groups.items():
        extra = {"chat_template_kwargs": {"instruction": instruction}} if templated and instruction else {}
        docs = [d for _, d in members]
        for r in post(url, "/v1/rerank", {"query": query, "documents": docs, **extra})["results"]:
            rerank[members[r["index"]][0]] = r["relevance_score"]
        for d in post(url, "/score", {"queries": query, "documents": docs, **extra})["data"]:
            score[members[d["index"]][0]] = d["score"]
    return {"/v1/rerank": rerank, "/score": score}
