"""vLLM's offline engine, one process per side (``vllm_engine.py``): the original through the documented
``hf_overrides``, the converted checkpoint as-is."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ...errors import SeqclsError
from ...media import data_url, ordered, vllm_side
from ...templates import SCORE_TEMPLATE_FILE, input_forms
from ...video import PRESAMPLED, has_video, pair_clips
from ...vllm_compat import engine_env, engine_kwargs, engine_malloc, require, require_image_templates
from ..digests import PromptDigests
from ..processes import DEFAULT_TIMEOUT, EngineWatch, last_error, stop_process_group
from .base import (
    JOINED,
    MANUAL,
    TEMPLATE,
    Settings,
    Side,
    SpilledIds,
    digest,
    endpoint_names,
    form_job,
    form_sample,
    official_digests_soon,
    prepare_device,
)  # fmt: skip


class VllmBackend:
    """The original gets the seed's manual formatting; the converted model gets raw pairs and its shipped template
    where the installed vLLM renders score templates exactly, else the same manual formatting. A multi-label head
    (generic, no prompt format) is classified on ``query + document`` on both sides.

    Pairs stream through the engine (``Settings.chunk`` at a time) by way of files in a spill folder: what is sent,
    and each pair's score and prompt ids as the engine used them. Only scores and the ids' digests are held here;
    the reference reads the converted side's ids back from its file."""

    name = "vllm"
    timing = (
        "time inside LLM.score (LLM.classify for several labels), vLLM's front end included on both sides: the "
        "original's prompts formatted by hand, the converted side's rendered from its score template, all tokenized "
        "by vLLM; engine start-up excluded"
    )

    def __init__(self, s: Settings) -> None:
        self.install = require()
        prepare_device(s.device)
        self.s = s
        self.use_template = self.install.generation.score_template and s.recipe.has_prompt
        if s.recipe.multimodal:
            require_image_templates(self.install, s.recipe.title)
        self._official = official_digests_soon(s)
        self.spill = Path(tempfile.mkdtemp(prefix="seqcls-verify-"))
        self._sent_video = False
        self.used_ids: dict[str, SpilledIds] = {}
        """Each side's prompt ids as the engine tokenized them: the reference is scored on the converted side's."""
        self.environment = {
            "backend": self.name,
            "vllm": self.install.describe(),
            "vllm_api": self.install.generation.name,
            "engine_malloc": engine_malloc(s.device),
        }

    def close(self) -> None:
        shutil.rmtree(self.spill, ignore_errors=True)

    @property
    def reference_ids(self) -> PromptDigests:
        return self._official.result()

    def _templated(self, which: str) -> bool:
        """A multimodal original gets the score template too: vLLM documents one for it, and image parts cannot be
        formatted by hand."""
        recipe = self.s.recipe
        return (which == "converted" or recipe.multimodal) and self.use_template and recipe.num_labels == 1

    def job(self, which: str) -> dict:
        """Everything sent to the engine but the pairs (``rows``)."""
        s = self.s
        job = {"engine": engine_kwargs(s.spec(which), self.install), "chunk": s.chunk}
        if s.recipe.num_labels > 1:
            job["classify"] = True
        if s.raw_logits(which):
            job["raw_logits"] = True
        if s.recipe.video:
            job["media_kwargs"] = {"videos_kwargs": PRESAMPLED}
        if s.recipe.num_labels == 1 and self._templated(which):
            job["chat_template"] = (s.converted / SCORE_TEMPLATE_FILE).read_text(encoding="utf-8")
            if which == "converted" and not s.recipe.multimodal:
                sample = form_sample(self.reference_ids, s.max_length)
                job["forms"] = {form: form_job(s, sample, form) for form in input_forms(s.recipe)[1:]}
        return job

    def rows(self, which: str) -> Iterator[str]:
        """The pairs as sent, a JSON line each: ``[query, document, chat_template_kwargs]`` (raw pairs for the score
        template, else formatted by hand), the prompt to classify, or a pair with video (``_video_row``)."""
        s, templated = self.s, self._templated(which)
        for number, p in enumerate(s.sent_pairs):
            if s.recipe.num_labels > 1:
                row = p.query + p.document
            elif templated and has_video(p):
                row, self._sent_video = self._video_row(p, number), True
            elif templated:
                kwargs = {"instruction": p.instruction} if p.instruction else None
                row = [vllm_side(p.query), vllm_side(p.document), kwargs]
            else:
                row = [*s.recipe.halves(p.query, p.document, p.instruction), None]
            yield json.dumps(row, ensure_ascii=False) + "\n"

    def _video_row(self, pair, number: int) -> dict:
        """A pair with video, as vLLM's score API cannot take it (no per-video metadata): the prompt as Qwen's scorer
        renders it, the videos as seqcls sampled them (frames in a ``.npy`` file named by their digest, and the
        metadata Qwen3-VL times them by) and the images, to classify. Both sides get the same frames."""
        from ..vision import prompt_text

        images = [data_url(p) for side in (pair.query, pair.document) for p in ordered(side) if p.kind == "image"]
        videos = [[self._frames_file(c), c.metadata] for c in pair_clips(pair, self.s.recipe, f"pair {number}")]
        return {"prompt": prompt_text(self._processor, self.s.recipe, pair), "video": videos, "image": images}

    @functools.cached_property
    def _processor(self):
        from ..vision import load_processor

        return load_processor(self.s.converted)

    def _frames_file(self, clip) -> str:
        import numpy as np

        name = clip.digest[:32] + ".npy"
        path = self.spill / "clips" / name
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            np.save(path, np.ascontiguousarray(clip.frames), allow_pickle=False)
        return name

    def cache_inputs(self, which: str) -> dict | None:
        job = self.job(which)
        job["engine"] = {k: v for k, v in job["engine"].items() if k != "model"}
        del job["chunk"]  # how the pairs are cut does not change their scores
        sent = hashlib.sha256()
        for row in self.rows(which):
            sent.update(row.encode())
        return {"job": digest(job), "pairs": sent.hexdigest(), "engine": job["engine"]}

    def score(self, which: str) -> Side:
        job = self.job(which)
        job["inputs"], job["outputs"] = str(self.spill / f"{which}.in.jsonl"), str(self.spill / f"{which}.out.jsonl")
        job["frames"] = str(self.spill / "clips")
        with open(job["inputs"], "w", encoding="utf-8") as f:
            f.writelines(self.rows(which))
        result = run_engine(job, which, self.s.log_dir, self.s.device, self.s.timeout)
        os.unlink(job["inputs"])
        names = endpoint_names(self.s.recipe)
        scores, ids, videos = [], PromptDigests(), {}
        for number, (score, prompt_ids, *fed) in enumerate(SpilledIds(job["outputs"], column=None)):
            scores.append(self.s.recipe.calibrated(score) if job.get("raw_logits") else score)
            ids.add(prompt_ids)
            if fed and fed[0] is not None:
                videos[number] = fed[0]
        per_label = [list(x) for x in zip(*scores)] if job.get("classify") else [scores]
        forms = {
            form: Side(
                {names[0]: got["scores"]},
                None,
                PromptDigests.of(got["prompt_token_ids"]),
                form,
                indices=job["forms"][form]["indices"],
            )
            for form, got in result.get("forms", {}).items()
        }
        self.used_ids[which] = SpilledIds(job["outputs"])
        prompts = TEMPLATE if "chat_template" in job else JOINED if job.get("classify") else MANUAL
        if self._sent_video:
            prompts += "; pairs with video: Qwen's prompt with seqcls' frames, classified"
        return Side(
            dict(zip(names, per_label)),
            None,
            ids,
            prompts,
            result.get("timings", {}),
            forms,
            videos=videos if self.s.recipe.video else None,
        )


ENGINE_GRACE = 15.0
"""How long a client whose engine is gone may take to exit on its own (it writes its result after shutting the
engine down)."""


def run_engine(job: dict, which: str, log_dir: Path, device: str, timeout: float = DEFAULT_TIMEOUT) -> dict:
    """Run one engine job in its own process session (see ``vllm_engine.py``); the log goes to ``log_dir``. The whole
    process group is ended whatever happens, and vLLM's own processes with it."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"vllm-{which}.log"
    with tempfile.TemporaryDirectory(prefix="seqcls-engine-") as tmp:
        job_path, result_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_path.write_text(json.dumps(job))
        cmd = [sys.executable, "-m", "converter.verify.backends.vllm_engine", str(job_path), str(result_path)]
        env = os.environ | engine_env(device)
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            watch = EngineWatch(proc, log, timeout)
            try:
                code = _wait_for_engine(watch, result_path)
            finally:
                stop_process_group(proc, grace=0, known=watch.vllm_processes())
        if code != 0 or not result_path.exists():
            status = code if isinstance(code, str) else f"exit {code}"
            raise SeqclsError(f"vLLM failed on the {which} model ({status}): {last_error(log)}; log: {log}")
        return json.loads(result_path.read_text())


def _wait_for_engine(watch: EngineWatch, result_path: Path) -> int | str:
    """0 as soon as the result is written (the caller ends the process group; vLLM's own teardown takes seconds),
    the exit code of an engine that ended without one, or why the engine is taken as dead: vLLM's processes gone
    (by the process tree, or by what vLLM logs) for longer than ``ENGINE_GRACE``, or the hard timeout."""
    import time

    dead_since = None
    while True:
        try:
            return watch.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        if result_path.exists():
            return 0
        if watch.expired():
            return f"no result after {watch.timeout:.0f} s, the engine timeout"
        watch.vllm_processes()
        if not (watch.lost() or watch.log_says_died()):
            dead_since = None
            continue
        dead_since = dead_since or time.monotonic()
        if time.monotonic() - dead_since > ENGINE_GRACE:
            return "its engine died"
