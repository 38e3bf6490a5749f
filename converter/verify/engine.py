"""One vLLM engine in its own process: ``python -m converter.verify.engine JOB.json RESULT.json``.

Each model gets a fresh process so that memory is freed in between and a GPU or NPU never holds two models at once.
vLLM spawns workers, hence the ``__main__`` guard; the result is written before vLLM's own teardown runs.
"""

from __future__ import annotations

import json
import os
import sys


def run(job: dict) -> dict:
    from vllm import LLM

    llm = LLM(**job["engine"])
    try:
        kwargs = {"chat_template": job["chat_template"]} if job.get("chat_template") else {}
        outputs = llm.score(job["queries"], job["documents"], use_tqdm=False, **kwargs)
        return {
            "scores": [o.outputs.score for o in outputs],
            "prompt_token_ids": [list(o.prompt_token_ids) for o in outputs],
        }
    finally:
        llm.llm_engine.engine_core.shutdown()  # stops the engine-core and worker processes it spawned


def main() -> None:
    job_path, result_path = sys.argv[1:3]
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    result = run(job)
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(result, f)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # vLLM's interpreter teardown can abort after the work is done; the result is already on disk


if __name__ == "__main__":
    main()
