#!/usr/bin/env python3
"""Does verify cost what the engine costs? ``seqcls verify --backend vllm`` against bare ``LLM.score`` calls on the
same pairs, fixture and engine settings.

    .venv/bin/python scripts/bench_verify_vllm.py               # 5,000 pairs, 2 runs (about 14 minutes)
    .venv/bin/python scripts/bench_verify_vllm.py --pairs 500 --runs 1

Per run, each in its own process: the bare original (``LLM`` with the documented ``hf_overrides``, one ``LLM.score``
call on the pairs formatted by hand, as the seed does), the bare converted checkpoint (``LLM`` as-is, one
``LLM.score`` call on the raw pairs with its score template; and again on the pairs formatted by hand, without the
template, which tells the template's share of any difference between the two), and
``seqcls verify --backend vllm --no-reference --no-cache`` of the two. Engine arguments are verify's own
(``vllm_compat.engine_kwargs``). The order rotates every run; medians are reported. The fixture is the tiny untied
Qwen3 original (fp32, real vocabulary) and its conversion; the pairs are bench_verify_memory.py's synthetic set.
What is compared:

- each side's scoring time in verify (its ``score_seconds``: time inside vLLM's calls) against the bare call's;
- verify's wall time against its two engine loads plus its scoring, and where the rest goes (verify's ``phases``);
- the converted side's pairs/s against the original side's, bare and in verify.

Results as Markdown: a section of --out (default: docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("bare original", "bare converted", "bare converted, formatted by hand", "verify")


def bare(args: argparse.Namespace) -> None:
    """One bare engine in this process; prints one JSON line, then ends without vLLM's teardown."""
    started = time.perf_counter()  # start-up counts vLLM's import, as verify's engine process does
    from vllm import LLM

    from converter.pairs import load_pairs
    from converter.recipes import QWEN3_RERANKER
    from converter.templates import SCORE_TEMPLATE_FILE
    from converter.vllm_compat import EngineSpec, engine_kwargs, require

    pairs = list(load_pairs(Path(args.pairs_file)).pairs)
    which = args.bare
    model = args.original if which == "original" else args.converted
    by_hand = which in ("original", "by-hand")
    overrides = QWEN3_RERANKER.vllm_hf_overrides() if which == "original" else None
    spec = EngineSpec(model=str(model), dtype="float32", device="cpu", hf_overrides=overrides, max_model_len=4096)
    if by_hand:
        queries = [QWEN3_RERANKER.format_query(p.query, p.instruction) for p in pairs]
        documents = [QWEN3_RERANKER.format_document(p.document) for p in pairs]
        template = None
    else:
        queries, documents = [p.query for p in pairs], [p.document for p in pairs]
        template = (Path(args.converted) / SCORE_TEMPLATE_FILE).read_text(encoding="utf-8")
    llm = LLM(**engine_kwargs(spec, require()))
    loaded = time.perf_counter()
    llm.score(queries, documents, use_tqdm=False, chat_template=template)
    scored = time.perf_counter()
    llm.llm_engine.engine_core.shutdown()
    print(json.dumps({"load_seconds": loaded - started, "score_seconds": scored - loaded}), flush=True)
    os._exit(0)


def run_verify(args: argparse.Namespace, original: Path, converted: Path, pairs: Path) -> dict:
    report = args.workdir / "verify-vllm-report.json"
    cmd = [sys.executable, "-m", "converter", "verify", str(converted), "--original", str(original), "--backend",
           "vllm", "--no-reference", "--no-cache", "--pairs", str(pairs), "--report", str(report),
           "--max-length", "4096"]  # fmt: skip
    started = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if out.returncode not in (0, 1):
        raise SystemExit(f"verify failed ({out.returncode}):\n{out.stderr[-3000:]}")
    got = json.loads(report.read_text())
    return {"wall": wall, "timings": got["timings"], "phases": got["phases"]}


def run_bare(
    args: argparse.Namespace, which: str, original: Path, converted: Path, pairs: Path, malloc: str = "auto"
) -> dict:
    """One bare engine in its own process, with the environment verify gives its engines (``engine_env``)."""
    from converter.verify.processes import stop_process_group
    from converter.vllm_compat import ALLOCATOR_VARIABLE, engine_env

    cmd = [sys.executable, __file__, "--bare", which, "--original", str(original), "--converted", str(converted),
           "--pairs-file", str(pairs)]  # fmt: skip
    chosen = os.environ | {ALLOCATOR_VARIABLE: malloc}
    log = args.workdir / f"bare-{which}.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True,
                                env=chosen | engine_env("cpu", chosen))  # fmt: skip
        try:
            out, _ = proc.communicate(timeout=1800)
        finally:
            stop_process_group(proc, grace=0)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"bare {which} failed:\n{log.read_text()[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench")
    parser.add_argument("--out", type=Path, help="the Markdown results (default: docs/benchmarks.md)")
    parser.add_argument("--mallocs", nargs="+", help="compare bare engines under these SEQCLS_ENGINE_MALLOC values "
                        "instead (e.g. glibc tcmalloc): section engine-malloc")  # fmt: skip
    parser.add_argument("--bare", help=argparse.SUPPRESS)
    for hidden in ("--original", "--converted", "--pairs-file"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        return bare(args)
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_verify_memory import write_pairs

    from converter import convert
    from converter.tiny_model import build_tiny_reranker

    args.workdir.mkdir(parents=True, exist_ok=True)
    original, converted = args.workdir / "tiny-untied-fp32", args.workdir / "tiny-untied-fp32-seq-cls"
    if not (original / "config.json").is_file():
        build_tiny_reranker(original, tied=False, dtype="float32")
    if not (converted / "config.json").is_file():
        convert(original, converted)
    pairs = write_pairs(args.workdir / f"pairs-{args.pairs}.jsonl", args.pairs)
    if args.mallocs:
        return compare_mallocs(args, original, converted, pairs)
    results: dict[str, list[dict]] = {k: [] for k in KINDS}
    for run in range(args.runs):
        for kind in KINDS[run % len(KINDS) :] + KINDS[: run % len(KINDS)]:
            if kind == "verify":
                got = run_verify(args, original, converted, pairs)
            else:
                which = "by-hand" if "by hand" in kind else kind.split()[1]
                got = run_bare(args, which, original, converted, pairs)
            results[kind].append(got)
            print(f"run {run + 1}/{args.runs}: {kind} {json.dumps(got)}", file=sys.stderr)
    text = report(args, results)
    out = args.out or ROOT / "docs" / "benchmarks.md"
    from bench_common import write_section

    write_section(out, "verify-vllm", text)
    print(text)
    print(f"wrote {out}", file=sys.stderr)


def compare_mallocs(args: argparse.Namespace, original: Path, converted: Path, pairs: Path) -> None:
    """Bare ``LLM.score`` of each side under each allocator, alternated run by run; medians and ratios to the first."""
    from bench_common import machine, write_section

    cases = [(side, m) for side in ("original", "converted") for m in args.mallocs]
    got: dict[tuple[str, str], list[dict]] = {case: [] for case in cases}
    for run in range(args.runs):
        for side, m in cases[run % len(cases) :] + cases[: run % len(cases)]:
            got[side, m].append(run_bare(args, side, original, converted, pairs, m))
            print(f"run {run + 1}/{args.runs}: {side} {m} {json.dumps(got[side, m][-1])}", file=sys.stderr)
    first, n = args.mallocs[0], args.pairs
    rows = [f"| side | engine malloc | load | scoring | pairs/s | scoring against {first} |", "|---" * 6 + "|"]
    for side, m in cases:
        load = statistics.median(r["load_seconds"] for r in got[side, m])
        score = statistics.median(r["score_seconds"] for r in got[side, m])
        base = statistics.median(r["score_seconds"] for r in got[side, first])
        rows.append(f"| {side} | {m} | {load:.1f} s | {score:.1f} s | {n / score:.0f} | {score / base:.2f} |")
    text = "\n".join(
        [
            "## vLLM's engine with glibc's malloc and with tcmalloc",
            "",
            f"Generated by `scripts/bench_verify_vllm.py --mallocs {' '.join(args.mallocs)}` on "
            f"{time.strftime('%Y-%m-%d')}: {machine()}. Bare `LLM.score` of each side (the original through its "
            f"overrides on prompts formatted by hand, the converted checkpoint with its score template), {n:,} "
            f"synthetic pairs, the tiny untied Qwen3 fixture (fp32), verify's engine arguments, the engine's "
            f"processes started with `SEQCLS_ENGINE_MALLOC` set as shown; {args.runs} run(s) in a rotated order, "
            "each in its own process; medians.",
            "",
            *rows,
            "",
        ]
    )
    write_section(args.out or ROOT / "docs" / "benchmarks.md", "engine-malloc", text)
    print(text)


def report(args: argparse.Namespace, results: dict[str, list[dict]]) -> str:
    from bench_common import machine

    def med(values) -> float:
        return statistics.median(list(values))

    n, rows = args.pairs, []
    rows += ["| side | bare load | bare scoring | bare pairs/s | verify load | verify scoring | verify pairs/s | "
             "verify / bare scoring |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    rate = {}
    for side in ("original", "converted"):
        b_load = med(r["load_seconds"] for r in results[f"bare {side}"])
        b_score = med(r["score_seconds"] for r in results[f"bare {side}"])
        v_load = med(r["timings"][side]["load_seconds"] for r in results["verify"])
        v_score = med(r["timings"][side]["score_seconds"] for r in results["verify"])
        rate[side] = (n / b_score, n / v_score)
        rows.append(f"| {side} | {b_load:.1f} s | {b_score:.1f} s | {n / b_score:.0f} | {v_load:.1f} s | "
                    f"{v_score:.1f} s | {n / v_score:.0f} | {v_score / b_score:.2f} |")  # fmt: skip
    wall = med(r["wall"] for r in results["verify"])
    engines = med(sum(r["timings"][s][k] for s in ("original", "converted") for k in ("load_seconds", "score_seconds"))
                  for r in results["verify"])  # fmt: skip
    phases = {
        name: med(r["phases"].get(name, 0.0) for r in results["verify"]) for name in results["verify"][0]["phases"]
    }
    shown = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items())
    ratio_bare, ratio_verify = (rate["converted"][i] / rate["original"][i] for i in (0, 1))
    by_hand = n / med(r["score_seconds"] for r in results["bare converted, formatted by hand"])
    return "\n".join(
        [
            "## verify against the bare engine",
            "",
            f"Generated by `scripts/bench_verify_vllm.py` on {time.strftime('%Y-%m-%d')}: {machine()}. Tiny untied "
            f"Qwen3 fixture (fp32, real vocabulary) and its conversion, {n:,} synthetic pairs, CPU, vLLM's engine "
            f"arguments as verify sets them, {args.runs} run(s) of each in a rotated order, each in its own "
            "process; medians.",
            "",
            *rows,
            "",
            f"verify's wall time {wall:.1f} s = engine loads and scoring {engines:.1f} s + {wall - engines:.1f} s "
            "(the process's start, the pairs read and the report written included).",
            f"verify's steps: {shown}.",
            "",
            f"Converted side's pairs/s against the original side's: {ratio_bare:.2f} bare, {ratio_verify:.2f} in "
            f"verify; bare with the original's prompts formatted by hand (no score template) {by_hand:.0f} pairs/s, "
            f"{by_hand / rate['original'][0]:.2f} of the original's.",
            "",
        ]
    )


if __name__ == "__main__":
    main()
