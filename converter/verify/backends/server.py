"""A vLLM server per side: started on a free loopback port (and always shut down), or already running
(``--*-url``); queried the way the seed's request demo does, through ``/v1/rerank`` and ``/score``."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from ...errors import SeqclsError
from ...media import ordered, text_of, vllm_side
from ...pairs import Pair
from ...recipes import Recipe
from ...templates import SCORE_TEMPLATE_FILE, as_sent, input_forms
from ...video import PRESAMPLED, has_video, pair_clips
from ...vllm_compat import (
    EngineSpec,
    VllmInstall,
    engine_env,
    engine_malloc,
    require,
    require_image_templates,
    serve_argv,
)
from ..digests import PromptDigests
from ..processes import last_error, stop_process_group
from .base import (
    MANUAL,
    TEMPLATE,
    Settings,
    Side,
    SpilledIds,
    form_sample,
    official_digests_soon,
    pairs_digest,
    prepare_device,
)

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
    extra: list[str] | None = None,
) -> Iterator[str]:
    """Yields the base URL once ``/health`` answers, within ``timeout`` seconds; the whole process group is stopped
    on the way out."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            serve_argv(spec, install, host=HOST, port=port, chat_template=chat_template, extra=extra),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ | engine_env(device),
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while not healthy(url):
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


def healthy(url: str) -> bool:
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
    sample: list[int] | None = None, chunk: int = 2048, raw_logits: bool = False,
):  # fmt: skip
    """Per query: one ``/v1/rerank`` and one ``/score`` request. The seed formats queries and documents by hand;
    with ``raw`` the server's score template does it and an instruction travels as ``chat_template_kwargs``. The
    pairs of ``sample`` are also sent formatted by hand and mixed, as the seed's clients send them to such a server.
    With ``raw_logits`` the server returns logits (``use_activation`` off), scored by ``Recipe.calibrated``.
    The token ids come from ``tokenize``."""
    started = time.perf_counter()
    form = "raw" if raw else "seed-formatted"
    scores = _query(url, recipe, pairs, form, templated=raw, chunk=chunk, raw_logits=raw_logits)
    timings = {"score_seconds": time.perf_counter() - started, "chunks": -(-len(pairs) // chunk)}
    forms = {}
    if sample:
        chosen = [pairs[i] for i in sample]
        forms = {
            form: Side(_query(url, recipe, chosen, form, templated=True), prompts=form, indices=sample)
            for form in input_forms(recipe)[1:]
        }
    return Side(scores, None, None, prompts or MANUAL, timings, forms=forms)


def tokenize(url: str, recipe: Recipe, pairs: Iterable[Pair], path: Path) -> SpilledIds:
    """``/tokenize`` of each official prompt, so that token ids can be compared too; written to ``path`` as they
    come, a JSON array a line."""
    with open(path, "w", encoding="utf-8") as f:
        for p in pairs:
            ids = post(url, "/tokenize", {"prompt": recipe.format_pair(p.query, p.document, p.instruction)})["tokens"]
            f.write(json.dumps(ids) + "\n")
    return SpilledIds(path, column=None)


def _query(
    url: str, recipe: Recipe, pairs: Sequence[Pair], form: str, templated: bool, chunk: int = 2048,
    raw_logits: bool = False,
) -> dict[str, list[float]]:  # fmt: skip
    """Requests per query within each ``chunk`` of pairs, so that what is held does not grow with the pair set; a
    query whose documents span two chunks is asked twice."""
    rerank, score, videos = [], [], {}
    numbered = enumerate(pairs)
    while batch := list(itertools.islice(numbered, chunk)):
        offset = len(rerank)
        groups: dict[str, list[tuple[int, str | dict]]] = {}
        for i, p in batch:
            if recipe.video and has_video(p):
                videos[i] = _classify_video(url, recipe, p, i, templated, raw_logits)
                continue
            if recipe.multimodal:
                query, document = vllm_side(p.query), vllm_side(p.document)
            else:
                query, document = as_sent(recipe, p.query, p.document, p.instruction, form, i)
            groups.setdefault(json.dumps([query, p.instruction]), []).append((i - offset, document))
        rerank += [0.0] * len(batch)
        score += [0.0] * len(batch)
        for key, members in groups.items():
            query, instruction = json.loads(key)
            extra = {"chat_template_kwargs": {"instruction": instruction}} if templated and instruction else {}
            extra |= {"use_activation": False} if raw_logits else {}
            docs = [d for _, d in members]
            for r in post(url, "/v1/rerank", {"query": query, "documents": docs, **extra})["results"]:
                rerank[offset + members[r["index"]][0]] = r["relevance_score"]
            for d in post(url, "/score", {"queries": query, "documents": docs, **extra})["data"]:
                score[offset + members[d["index"]][0]] = d["score"]
    for i, value in videos.items():
        rerank[i] = score[i] = value
    if raw_logits:
        rerank, score = [recipe.calibrated(x) for x in rerank], [recipe.calibrated(x) for x in score]
    return {"/v1/rerank": rerank, "/score": score}


def _classify_video(url: str, recipe: Recipe, pair: Pair, index: int, templated: bool, raw_logits: bool) -> float:
    """A pair with video through ``/classify``, both endpoints' score: ``/score`` and ``/v1/rerank`` take no
    per-video metadata (``media_io_kwargs``), so vLLM would time the frames otherwise (measured: 0.6934 against the
    reference's 0.6918 on the tiny fixture). The pair goes as messages with the query and document roles, which the
    server's score template renders, its videos as the frames seqcls sampled (``one_timing``)."""
    from ...video import frames_url

    where = f"pair {index}"
    clips = pair_clips(pair, recipe, where)
    io_kwargs, clips = one_timing(clips, where), iter(clips)

    def content(side) -> str | list[dict]:
        """The media parts, then one text part that places them: a chat request joins a side's parts with
        newlines (its placeholders first), where the score API and Qwen's scorer join them with nothing."""
        if isinstance(side, str):
            return side
        marks = dict(recipe.placeholders)
        media = [p for p in ordered(side) if p.kind != "text"]
        parts = [{"type": "video_url", "video_url": {"url": frames_url(next(clips))}} if p.kind == "video"
                 else vllm_side((p,))["content"][0] for p in media]  # fmt: skip
        return [*parts, {"type": "text", "text": "".join(marks[p.kind] for p in media) + text_of(side)}]

    body = {
        "messages": [{"role": "query", "content": content(pair.query)},
                     {"role": "document", "content": content(pair.document)}],
        "media_io_kwargs": {"video": io_kwargs},
        "mm_processor_kwargs": {"videos_kwargs": PRESAMPLED},
    }  # fmt: skip
    if templated and pair.instruction:
        body["chat_template_kwargs"] = {"instruction": pair.instruction}
    if raw_logits:
        body["use_activation"] = False
    try:
        return post(url, "/classify", body)["data"][0]["probs"][0]
    except SeqclsError as e:
        raise SeqclsError(f"{where}: {e} (a server scores video only when started with --trust-request-mm-kwargs, "
                          "as seqcls serve starts it)") from None  # fmt: skip


def one_timing(clips: list, where: str) -> dict:
    """The ``media_io_kwargs`` of a pair's videos: a request carries one video timing (fps, frame indices, total),
    which times every video in it, so a pair's videos must share it (the same clip twice, or clips sampled alike)."""
    from ...video import server_io_kwargs

    timings = [server_io_kwargs(clip, where) for clip in clips]
    if any(t != timings[0] for t in timings):
        raise SeqclsError(
            f"{where}: its {len(timings)} videos are timed differently (fps, frame indices or length), and a server "
            "request carries one timing for all; verify it with --backend vllm or transformers"
        )
    return timings[0]


class ServerBackend:
    """A vLLM server per side, started here (and always stopped), or an already running one (``--*-url``)."""

    name = "server"
    timing = (
        "wall time of the /v1/rerank and /score requests (both endpoints, each pair once to each), server start-up "
        "and /tokenize excluded"
    )

    def __init__(self, s: Settings) -> None:
        if s.recipe.num_labels > 1:
            raise SeqclsError(
                f"{s.converted} has {s.recipe.num_labels} labels, and a server's /rerank and /score give one score "
                "per pair; verify it with --backend transformers or vllm"
            )
        self.s = s
        if s.recipe.video:
            for number, pair in enumerate(s.sent_pairs):
                if has_video(pair):
                    one_timing(pair_clips(pair, s.recipe, f"pair {number}"), f"pair {number}")
        external = s.converted_url and (s.original_url or s.reference_only)
        self.install: VllmInstall | None = None if external else require()
        if self.install:
            prepare_device(s.device)
        self.environment = {
            "backend": self.name,
            "vllm": self.install.describe() if self.install else "external servers",
        }
        if self.install:
            self.environment["vllm_api"] = self.install.generation.name
            self.environment["engine_malloc"] = engine_malloc(s.device)
        if self.install and s.recipe.multimodal:
            require_image_templates(self.install, s.recipe.title)
        self._official = official_digests_soon(s)
        self.spill = Path(tempfile.mkdtemp(prefix="seqcls-verify-"))
        self.used_ids: dict[str, SpilledIds] = {}
        """Each side's official prompts as its server tokenizes them (in a file of ``spill``): the reference is
        scored on the converted side's."""

    def close(self) -> None:
        shutil.rmtree(self.spill, ignore_errors=True)

    @property
    def reference_ids(self) -> PromptDigests:
        return self._official.result()

    def _url(self, which: str) -> str | None:
        return self.s.original_url if which == "original" else self.s.converted_url

    def _template(self, which: str) -> str | None:
        """The converted checkpoint's score template, for its server; a multimodal original gets it too, as vLLM
        documents a template for it and image parts cannot be formatted by hand."""
        s = self.s
        served_here = not self._url(which) and self.install.generation.score_template
        if (which == "converted" or s.recipe.multimodal) and served_here:
            return str(s.converted / SCORE_TEMPLATE_FILE) if s.recipe.has_prompt else None
        return None

    def cache_inputs(self, which: str) -> dict | None:
        """None for a server someone else started: what it runs is unknown here."""
        if self._url(which):
            return None
        spec = self.s.spec(which)
        return {
            "pairs": pairs_digest(self.s.pairs), "recipe": self.s.recipe.record(), "template": self._template(which),
            "spec": {k: v for k, v in vars(spec).items() if k != "model"},
        }  # fmt: skip

    def score(self, which: str) -> Side:
        s, url = self.s, self._url(which)
        if url:
            return self._score(which, url)
        log = s.log_dir / f"server-{which}.log"
        limit = min(s.timeout, START_TIMEOUT)
        starting = time.perf_counter()
        flags = self.install.video_flags if s.recipe.video else None
        with running_server(s.spec(which), self.install, log, s.device, self._template(which), limit,
                            flags) as started:  # fmt: skip
            load_seconds = time.perf_counter() - starting
            side = self._score(which, started)
        return dataclasses.replace(side, timings={"load_seconds": load_seconds, **side.timings})

    def _score(self, which: str, url: str) -> Side:
        """A multimodal family's pairs go as they are (raw, through the template) and its ids are not compared:
        ``/tokenize`` of a prompt cannot expand its images into their tokens."""
        s, template = self.s, self._template(which)
        raw = template is not None or s.recipe.multimodal
        sample = form_sample(self.reference_ids, s.max_length) if template and not s.recipe.multimodal else None
        side = query_server(url, s.recipe, s.sent_pairs, raw, TEMPLATE if raw else MANUAL, sample, s.chunk,
                            raw_logits=s.raw_logits(which))  # fmt: skip
        if s.recipe.multimodal:
            return side
        self.used_ids[which] = tokenize(url, s.recipe, s.sent_pairs, self.spill / f"{which}.ids.jsonl")
        return dataclasses.replace(side, token_ids=PromptDigests.of(self.used_ids[which]))
