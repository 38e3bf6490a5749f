"""One vLLM engine in its own process: ``python -m converter.verify.engine JOB.json RESULT.json``.

Each model gets a fresh process so that memory is freed in between and a GPU or NPU never holds two models at once.
vLLM spawns workers, hence the ``__main__`` guard. The result is written (whole, by rename) before vLLM's shutdown
runs, so the parent can take it and end the process group without waiting for vLLM's teardown, which takes seconds
and can abort.
"""

from __future__ import annotations

import json
import os
import sys
import time


def score(llm, job: dict) -> dict:
    """Scores pairs in groups that share ``chat_template_kwargs`` (an instruction, say), keeping their order; or,
    given ``prompts``, classifies them (one probability per label). ``forms``: the same pairs sent otherwise, each
    scored the same way."""
    if "prompts" in job:
        outputs = llm.classify(job["prompts"], use_tqdm=False)
        return {
            "scores": [list(o.outputs.probs) for o in outputs],
            "prompt_token_ids": [list(o.prompt_token_ids) for o in outputs],
        }
    started = time.perf_counter()
    result = _score_pairs(llm, job, job)
    result["score_seconds"] = time.perf_counter() - started  # the pairs as given, without the other input forms
    if forms := job.get("forms"):
        result["forms"] = {name: _score_pairs(llm, job, pairs) for name, pairs in forms.items()}
    return result


def _score_pairs(llm, job: dict, pairs: dict) -> dict:
    from vllm import PoolingParams

    queries, documents = pairs["queries"], pairs["documents"]
    n = len(queries)
    per_pair = pairs.get("chat_template_kwargs") or [None] * n
    groups: dict[str, list[int]] = {}
    for i, kwargs in enumerate(per_pair):
        groups.setdefault(json.dumps(kwargs, sort_keys=True), []).append(i)
    scores, token_ids = [0.0] * n, [[]] * n
    for key, members in groups.items():
        kwargs = json.loads(key)
        params = PoolingParams(extra_kwargs={"chat_template_kwargs": kwargs}) if kwargs else None
        outputs = llm.score(
            [queries[i] for i in members],
            [documents[i] for i in members],
            use_tqdm=False,
            pooling_params=params,
            chat_template=job.get("chat_template"),
        )
        for i, o in zip(members, outputs):
            scores[i], token_ids[i] = o.outputs.score, list(o.prompt_token_ids)
    return {"scores": scores, "prompt_token_ids": token_ids}


def main() -> None:
    import inspect

    from vllm import LLM

    job_path, result_path = sys.argv[1:3]
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    if job.get("chat_template") and "chat_template" not in inspect.signature(LLM.score).parameters:
        raise SystemExit("this vLLM's LLM.score takes no chat_template; score templates need a newer vLLM")
    started = time.perf_counter()
    llm = LLM(**job["engine"])
    loaded = time.perf_counter()
    try:
        result = score(llm, job)
        scored = result.pop("score_seconds", time.perf_counter() - loaded)
        result["timings"] = {"load_seconds": loaded - started, "score_seconds": scored}
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
