"""One vLLM engine in its own process: ``python -m converter.verify.backends.vllm_engine JOB.json RESULT.json``.

Each model gets a fresh process so that memory is freed in between and a GPU or NPU never holds two models at once.
vLLM spawns workers, hence the ``__main__`` guard. The pairs stream: they are read from the job's ``inputs`` file a
chunk at a time, and each pair's score and prompt ids are written to its ``outputs`` file as the chunk is done, so
that neither this process nor its parent holds the whole set. The result (timings, the input forms) is written
(whole, by rename) before vLLM's shutdown runs, so the parent can take it and end the process group without waiting
for vLLM's teardown, which takes seconds and can abort.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from collections.abc import Iterator


def chunks(path: str, size: int) -> Iterator[list]:
    """The input rows, ``size`` at a time: ``[query, document, chat_template_kwargs]`` to score, a prompt to
    classify, or a prompt with media (``_classify_media``)."""
    with open(path, encoding="utf-8") as f:
        rows = (json.loads(line) for line in f)
        while chunk := list(itertools.islice(rows, size)):
            yield chunk


def run(llm, job: dict) -> dict:
    """Scores (or, with ``classify``, classifies) every input row into ``outputs``, a ``[score, ids]`` line per row
    in input order (``[score, ids, videos]`` where a chunk has media rows: ``_videos_fed``), and the ``forms`` (a
    small sample, held whole). ``score_seconds`` is the time spent inside vLLM's calls, front end included (prompt
    rendering and tokenization), as a bare ``LLM.score`` would take; the video check is not in it."""
    engine_seconds, pairs, chunked = 0.0, 0, 0
    with open(f"{job['outputs']}.part", "w", encoding="utf-8") as out:
        for chunk in chunks(job["inputs"], job["chunk"]):
            started = time.perf_counter()
            got = _classify(llm, chunk) if job.get("classify") else _score_rows(llm, job, chunk)
            engine_seconds += time.perf_counter() - started
            if len(got) == 3:
                got = (*got[:2], _videos_fed(llm, got[2]))
            pairs, chunked = pairs + len(chunk), chunked + 1
            out.writelines(json.dumps(row) + "\n" for row in zip(*got))
    os.replace(f"{job['outputs']}.part", job["outputs"])
    result = {"pairs": pairs, "chunks": chunked, "score_seconds": engine_seconds}
    if forms := job.get("forms"):
        result["forms"] = {
            name: dict(zip(("scores", "prompt_token_ids"), _score_pairs(llm, job, f["queries"], f["documents"],
                                                                        f["chat_template_kwargs"])))
            for name, f in forms.items()
        }  # fmt: skip
    return result


def _classify(llm, prompts: list[str]) -> tuple[list, ...]:
    outputs = llm.classify(prompts, use_tqdm=False)
    return [list(o.outputs.probs) for o in outputs], [list(o.prompt_token_ids) for o in outputs]


def _score_rows(llm, job: dict, rows: list) -> tuple[list, ...]:
    """Pairs through ``LLM.score``, pairs with video (dict rows) through ``_classify_media``; in the rows' order,
    with the media rows' prompts as vLLM took them (None for the others)."""
    pairs = [i for i, row in enumerate(rows) if not isinstance(row, dict)]
    media = [i for i, row in enumerate(rows) if isinstance(row, dict)]
    if not media:
        return _score_pairs(llm, job, *([row[k] for row in rows] for k in range(3)))
    scores, token_ids, sent = [0.0] * len(rows), [[]] * len(rows), [None] * len(rows)
    if pairs:
        got = _score_pairs(llm, job, *([rows[i][k] for i in pairs] for k in range(3)))
        for i, score, ids in zip(pairs, *got):
            scores[i], token_ids[i] = score, ids
    for i, score, ids, prompt in zip(media, *_classify_media(llm, job, [rows[i] for i in media])):
        scores[i], token_ids[i], sent[i] = score, ids, prompt
    return scores, token_ids, sent


def _classify_media(llm, job: dict, rows: list[dict]) -> tuple[list, list, list]:
    """Prompts with the frames seqcls sampled (``.npy``, read without pickle) and their metadata, and images, with
    the processor's sampling and video resizing off (``media_kwargs``): the frames every other side gets. Returns the
    scores, the ids and the prompts."""
    import base64
    import io

    import numpy as np
    from PIL import Image
    from vllm import PoolingParams

    prompts, frames = [], {}
    for row in rows:
        data = {}
        if row["video"]:
            for name, _ in row["video"]:
                if name not in frames:  # a video query against many documents: read once a chunk
                    frames[name] = np.load(os.path.join(job["frames"], name), allow_pickle=False)
            data["video"] = [(frames[name], metadata) for name, metadata in row["video"]]
        if row["image"]:
            data["image"] = [Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
                             for url in row["image"]]  # fmt: skip
        prompts.append({"prompt": row["prompt"], "multi_modal_data": data, "mm_processor_kwargs": job["media_kwargs"]})
    params = PoolingParams(use_activation=False) if job.get("raw_logits") else None
    outputs = llm.classify(prompts, use_tqdm=False, pooling_params=params)
    return [o.outputs.probs[0] for o in outputs], [list(o.prompt_token_ids) for o in outputs], prompts


def _videos_fed(llm, prompts: list[dict | None]) -> list:
    """Each media prompt's videos as vLLM hands them to the model (``video.model_input``: the grid, the patches'
    bytes, the normalization), by the renderer ``LLM.classify`` uses, its cache skipped (a cached item comes without
    its tensors). None for a row without media, and for every row where the installed vLLM has no such renderer
    (``LLM.renderer.render_cmpl`` is 0.32's; older ones are not measured): the report then says the model inputs
    were not compared."""
    from converter.video import model_input

    render = getattr(getattr(llm, "renderer", None), "render_cmpl", None)
    given = [p for p in prompts if p is not None]
    if render is None or not given:
        return [None] * len(prompts)
    rendered = iter(render(given, skip_mm_cache=True))
    found, norms = [], {}  # by the patches' dtype: the normalization is read from the checkpoint's config once
    for prompt in prompts:
        if prompt is None:
            found.append(None)
            continue
        fed = []
        for item in (next(rendered).get("mm_kwargs") or {}).get("video", []):
            pixels = item["pixel_values_videos"].data
            if pixels.dtype not in norms:
                norms[pixels.dtype] = _normalization(llm, pixels)
            fed.append(model_input(item["video_grid_thw"].data, pixels, norms[pixels.dtype]))
        found.append(fed)
    return found


def _normalization(llm, pixels) -> dict:
    """What the model's input sees the patches through. uint8 patches are normalized on the device (vLLM 0.32's
    ``mm_device_do_normalize``) with the constants vLLM reads from the checkpoint's processor config, the image
    processor's (``preprocessor_config.json``) for videos too; float patches were normalized by the HF video
    processor vLLM ran."""
    import torch

    from converter.video import normalization

    if pixels.dtype == torch.uint8:
        try:
            from vllm.model_executor.layers.fusion.mm_input_norm import _load_norm_params
        except ImportError:
            _load_norm_params = None
        if _load_norm_params is not None:
            params = _load_norm_params(llm.llm_engine.model_config)
            return {"mean": params.image_mean, "std": params.image_std, "rescale": params.rescale_factor}
    return normalization(llm.renderer.get_mm_processor().info.get_hf_processor().video_processor)


def _score_pairs(llm, job: dict, queries: list, documents: list, per_pair: list) -> tuple[list, list]:
    """One ``LLM.score`` call per group of pairs that share ``chat_template_kwargs`` (an instruction, say),
    results in the pairs' order."""
    from vllm import PoolingParams

    groups: dict[str, list[int]] = {}
    for i, kwargs in enumerate(per_pair):
        groups.setdefault(json.dumps(kwargs, sort_keys=True), []).append(i)
    scores, token_ids = [0.0] * len(queries), [[]] * len(queries)
    for key, members in groups.items():
        kwargs = json.loads(key)
        options = {"extra_kwargs": {"chat_template_kwargs": kwargs}} if kwargs else {}
        options |= {"use_activation": False} if job.get("raw_logits") else {}
        params = PoolingParams(**options) if options else None
        outputs = llm.score(
            [queries[i] for i in members],
            [documents[i] for i in members],
            use_tqdm=False,
            pooling_params=params,
            chat_template=job.get("chat_template"),
        )
        for i, o in zip(members, outputs):
            scores[i], token_ids[i] = o.outputs.score, list(o.prompt_token_ids)
    return scores, token_ids


def main() -> None:
    import inspect

    started = time.perf_counter()  # start-up counts vLLM's import, which takes seconds
    from vllm import LLM

    job_path, result_path = sys.argv[1:3]
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    if job.get("chat_template") and "chat_template" not in inspect.signature(LLM.score).parameters:
        raise SystemExit("this vLLM's LLM.score takes no chat_template; score templates need a newer vLLM")
    llm = LLM(**job["engine"])
    loaded = time.perf_counter()
    try:
        result = run(llm, job)
        result["timings"] = {"load_seconds": loaded - started, "score_seconds": result.pop("score_seconds"),
                             "chunks": result.pop("chunks")}  # fmt: skip
        with open(f"{result_path}.part", "w", encoding="utf-8") as f:
            json.dump(result, f)
        os.replace(f"{result_path}.part", result_path)
    finally:
        sys.stdout.flush()
        llm.llm_engine.engine_core.shutdown()  # stops the engine-core and worker processes it spawned
    sys.stderr.flush()
    os._exit(0)  # vLLM's interpreter teardown can abort after the work is done; the result is already on disk


if __name__ == "__main__":
    main()
