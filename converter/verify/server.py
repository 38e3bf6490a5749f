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
from collections.abc import Iterator
from pathlib import Path

from ..errors import SeqclsError
from ..pairs import Pair
from ..recipes import Recipe
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


def query_server(url: str, recipe: Recipe, pairs: list[Pair], raw: bool = False, prompts: str | None = None):
    """Per query: one ``/v1/rerank`` and one ``/score`` request, plus ``/tokenize`` of each official prompt, so
    token ids can be compared too. The seed formats queries and documents by hand; with ``raw`` the server's score
    template does it, and an instruction travels as ``chat_template_kwargs``."""
    from .backends import MANUAL, Side

    groups: dict[tuple[str, str | None], list[int]] = {}
    for i, p in enumerate(pairs):
        groups.setdefault((p.query, p.instruction), []).append(i)
    rerank, score = [0.0] * len(pairs), [0.0] * len(pairs)
    for (query, instruction), members in groups.items():
        extra = {"chat_template_kwargs": {"instruction": instruction}} if raw and instruction else {}
        q = query if raw else recipe.format_query(query, instruction)
        docs = [pairs[i].document if raw else recipe.format_document(pairs[i].document) for i in members]
        for r in post(url, "/v1/rerank", {"query": q, "documents": docs, **extra})["results"]:
            rerank[members[r["index"]]] = r["relevance_score"]
        for d in post(url, "/score", {"queries": q, "documents": docs, **extra})["data"]:
            score[members[d["index"]]] = d["score"]
    token_ids = [
        post(url, "/tokenize", {"prompt": recipe.format_pair(p.query, p.document, p.instruction)})["tokens"]
        for p in pairs
    ]
    return Side({"/v1/rerank": rerank, "/score": score}, None, token_ids, prompts or MANUAL)
