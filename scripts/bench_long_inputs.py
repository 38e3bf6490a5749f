#!/usr/bin/env python3
"""Scoring time and peak memory against prompt length: one pair of 512 to 8,192 tokens, through transformers and
through vLLM, on the tiny fixture's shape and the 0.6B shape.

    .venv/bin/python scripts/bench_long_inputs.py                      # tiny and 0.6B, CPU (about 30 min)
    .venv/bin/python scripts/bench_long_inputs.py --shapes tiny --runs 5
    .venv/bin/python scripts/bench_long_inputs.py --quick              # tiny, 512 and 1,024 tokens, the workdir
    .venv/bin/python scripts/bench_long_inputs.py --mixed 1000 10000   # verify's memory, long pairs mixed in

Checkpoints are synthesized (random finite bf16 of the real shape and vocabulary, bench_shapes.py) into --workdir and
converted with seqcls; both engines score the converted checkpoint in float32, from text to score, one pair at a
time: transformers as the card's snippet runs it (``apply_chat_template`` on the query and document, the model, a
sigmoid), vLLM as ``seqcls serve`` and verify run it (``LLM.score`` with the checkpoint's score template, verify's
engine arguments, the engine in-process). Each pair's document is random words from the real vocabulary, sized so
that the whole prompt takes exactly the given number of tokens, and different for every length and run, so that
vLLM's prefix cache holds only the shared instruction prefix, as for a user's distinct documents.

Each (engine, shape, run) is its own process, scoring the lengths in increasing order after one untimed pair of 128
tokens: its peak RSS after each length is then that length's peak (``ru_maxrss``; vLLM's engine core and worker are
in the process). Runs alternate the engines; medians are reported, with vLLM's time against transformers' measured in
the same runs, and the two engines' scores compared. Results: the ``long-inputs`` section of --out (default:
docs/benchmarks.md; --quick: the workdir's benchmarks.md).

``--mixed SIZES``: does verify's memory stay flat when long pairs are mixed into short ones? bench_verify_memory.py's
pair sets, fixture and worker (each verify in its own process, its process tree sampled), each size twice, side by
side: as it is, and with one document in every ``--long-every`` replaced by one of about 6,000 tokens, over the
fixture's 4,096 positions, which verify cuts as the reference does. Results: the ``long-mix`` section of
docs/verify-memory.md (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("transformers", "vllm")
LENGTHS = (512, 1024, 2048, 4096, 8192)
QUERY = "Which document explains how rerankers read long inputs?"
WARM_UP = 128
MEMORY_FRACTION = 0.5
"""vLLM's share of this machine's RAM (verify's CPU default is 0.2): the 0.6B shape's float32 weights and a KV
cache for 8,192 tokens do not fit in 0.2 of 24 GiB."""


def _words(tokenizer) -> list[str]:
    """Words of the vocabulary that are one token each, a space and letters: Qwen's pre-tokenizer splits text before
    each such space, so a document of k of them is k tokens."""
    rng = random.Random(0)
    words: list[str] = []
    while len(words) < 4000:
        text = tokenizer.decode([rng.randrange(1000, 100000)])
        if text[:1] == " " and text[1:].isascii() and text[1:].isalpha():
            words += [text] if len(tokenizer.encode(text, add_special_tokens=False)) == 1 else []
    return words


def documents(tokenizer, lengths: list[int], seed: int) -> list[str]:
    """A document per length whose official prompt (with ``QUERY``) takes exactly that many tokens."""
    from converter.pairs import Pair
    from converter.recipes import QWEN3_RERANKER
    from converter.reference import encode_official

    def prompt_length(document: str) -> int:
        return len(encode_official(tokenizer, QWEN3_RERANKER, [Pair(QUERY, document)], 10**6)[0])

    words = _words(tokenizer)
    overhead = prompt_length(words[0]) - 1
    out = []
    for i, n in enumerate(lengths):
        rng = random.Random(seed * 1000 + i)
        out.append("".join(rng.choice(words) for _ in range(n - overhead)))
        assert prompt_length(out[-1]) == n, "a document's words did not tokenize one to one"
    return out


def transformers_scorer(model_dir: Path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()

    def score(document: str) -> float:
        messages = [[{"role": "query", "content": QUERY}, {"role": "document", "content": document}]]
        batch = tokenizer.apply_chat_template(messages, return_tensors="pt", return_dict=True)
        with torch.inference_mode():
            return torch.sigmoid(model(**batch).logits[0, 0]).item()

    return score


def vllm_scorer(model_dir: Path, max_length: int):
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    from vllm import LLM

    from converter.templates import SCORE_TEMPLATE_FILE
    from converter.vllm_compat import EngineSpec, engine_kwargs, require

    spec = EngineSpec(model=str(model_dir), dtype="float32", device="cpu", max_model_len=max_length,
                      memory_fraction=MEMORY_FRACTION)  # fmt: skip
    llm = LLM(**engine_kwargs(spec, require()))
    template = (model_dir / SCORE_TEMPLATE_FILE).read_text(encoding="utf-8")
    return lambda d: llm.score(QUERY, d, chat_template=template, use_tqdm=False)[0].outputs.score


def worker(args: argparse.Namespace) -> None:
    """One engine in this process, every length once; prints one JSON line, then ends without vLLM's teardown."""
    from converter.verify.backends.base import load_tokenizer

    tokenizer = load_tokenizer(args.converted)
    docs = documents(tokenizer, [WARM_UP, *args.lengths], args.seed)
    score = (transformers_scorer if args.worker == "transformers" else vllm_scorer)(
        *([args.converted] if args.worker == "transformers" else [args.converted, max(args.lengths)])
    )
    score(docs[0])
    loaded = _peak()
    rows = []
    for n, d in zip(args.lengths, docs[1:]):
        started = time.perf_counter()
        got = score(d)
        rows.append({"tokens": n, "seconds": time.perf_counter() - started, "peak_bytes": _peak(), "score": got})
    print(json.dumps({"loaded_peak_bytes": loaded, "lengths": rows}), flush=True)
    if args.worker == "vllm":
        from converter.verify.processes import shared_memory_files

        for path in shared_memory_files([os.getpid()]):
            path.unlink(missing_ok=True)
        os._exit(0)


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_worker(args: argparse.Namespace, engine: str, converted: Path, seed: int) -> dict:
    from converter.verify.processes import stop_process_group
    from converter.vllm_compat import engine_env

    cmd = [sys.executable, __file__, "--worker", engine, "--converted", str(converted), "--seed", str(seed),
           "--lengths", *map(str, args.lengths)]  # fmt: skip
    env = os.environ | (engine_env("cpu") if engine == "vllm" else {})
    log = args.workdir / f"long-inputs-{engine}.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=7200)
        finally:
            stop_process_group(proc, grace=0)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{engine} failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
    return json.loads(lines[-1])


def mixed_pairs(workdir: Path, n: int, every: int) -> Path:
    """bench_verify_memory.py's ``n`` pairs, with every ``every``-th document long (0: none), each long one its own."""
    import bench_verify_memory

    plain = bench_verify_memory.write_pairs(workdir / f"pairs-{n}.jsonl", n)
    if not every:
        return plain
    path = workdir / f"pairs-{n}-long-every-{every}.jsonl"
    if not path.is_file():
        with open(plain, encoding="utf-8") as src, open(path.with_suffix(".part"), "w", encoding="utf-8") as out:
            for i, line in enumerate(src):
                row = json.loads(line)
                if i % every == every - 1:
                    rng = random.Random(i)
                    row["document"] = " ".join(rng.choices(bench_verify_memory.WORDS, k=6000))
                out.write(json.dumps(row) + "\n")
        path.with_suffix(".part").rename(path)
    return path


def mixed(args: argparse.Namespace) -> None:
    import bench_verify_memory
    from bench_common import write_section

    from converter.vllm_compat import engine_env

    original, converted = bench_verify_memory.prepare(args.workdir)
    cases = [(n, every) for n in sorted(args.mixed) for every in (0, args.long_every)]
    results: dict[tuple[int, int], list[dict]] = {case: [] for case in cases}
    for run in range(args.runs):
        for n, every in cases[run % len(cases) :] + cases[: run % len(cases)]:
            report = args.workdir / f"report-mixed-{n}-{every}.json"
            cmd = [sys.executable, bench_verify_memory.__file__, "--worker", "--original", str(original),
                   "--converted", str(converted), "--pairs-file", str(mixed_pairs(args.workdir, n, every)),
                   "--report", str(report), "--backend", args.backend]  # fmt: skip
            env = os.environ | (engine_env("cpu") if args.backend != "transformers" else {})
            got = bench_verify_memory.run_sampled(cmd, args.workdir / f"worker-mixed-{n}-{every}.log", env)
            got["cut_pairs"] = len(json.loads(report.read_text()).get("cut_pairs") or [])
            results[n, every].append(got)
            print(f"run {run + 1}/{args.runs}: {n} pairs, long every {every or '-'}: tree peak "
                  f"{got['tree_peak_bytes'] / 2**20:.0f} MiB, {got['seconds']:.0f} s", file=sys.stderr)  # fmt: skip
    saved = {f"{n} {every}": runs for (n, every), runs in results.items()}
    (args.workdir / "long-mix.json").write_text(json.dumps(saved, indent=1))
    text = mixed_report(args, cases, results)
    out = args.out or ROOT / "docs" / "verify-memory.md"
    write_section(out, "long-mix", text, "# verify's memory against the number of pairs")
    print(text)
    print(f"wrote {out}", file=sys.stderr)


def mixed_report(args: argparse.Namespace, cases: list, results: dict[tuple[int, int], list[dict]]) -> str:
    from bench_common import machine
    from bench_verify_memory import BUDGET_MIB

    def mib(case: tuple[int, int], key: str = "tree_peak_bytes") -> float:
        return statistics.median(r[key] for r in results[case]) / 2**20

    base = cases[0]
    rows = ["| pairs | long documents among them (cut by verify) | peak RSS of the process tree (median) | + against "
            f"{base[0]:,} short pairs | verify's own peak RSS | verify wall time |", "|---" * 6 + "|"]  # fmt: skip
    for case in cases:
        n, every = case
        cut = statistics.median(r["cut_pairs"] for r in results[case])
        long_pairs = f"{n // every:,} ({cut:,.0f} cut)" if every else "none"
        seconds = statistics.median(r["seconds"] for r in results[case])
        rows.append(f"| {n:,} | {long_pairs} | {mib(case):.0f} MiB | {mib(case) - mib(base):+.0f} "
                    f"MiB | {mib(case, 'peak_bytes'):.0f} MiB | {seconds:.0f} s |")  # fmt: skip
    largest = max(cases)
    grew = mib(largest) - mib(base)
    return "\n".join(
        [
            "## Long pairs mixed into short ones",
            "",
            f"Measured by `scripts/bench_long_inputs.py --mixed {' '.join(map(str, sorted(args.mixed)))} "
            f"--long-every {args.long_every} --backend {args.backend}` on {time.strftime('%Y-%m-%d')}, {machine()}: "
            f"`seqcls verify --backend {args.backend}` as in the sections above (the tiny Qwen3 fixture, 4,096 "
            "positions), each size with its pairs as they are and with one document in every "
            f"{args.long_every} replaced by one of about 6,000 tokens, which verify cuts to the fixture's length as "
            f"the reference does. {args.runs} run(s) of each, in an order rotated every run; medians.",
            "",
            *rows,
            "",
            f"{largest[0]:,} pairs with long ones mixed in are {'within' if grew <= BUDGET_MIB else 'OVER'} the "
            f"{BUDGET_MIB} MiB the design allows over {base[0]:,} short pairs ({grew:+.0f} MiB): a batch is cut by "
            "padded tokens as well as pairs (`--batch-size` × 1,024), so a long pair is scored in a batch of its own "
            "size, and nothing about it is kept but its digest and length.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["tiny", "0.6B"], help="bench_shapes.py's (default: tiny 0.6B)")
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--runs", type=int, default=3, help="runs per engine and shape (default: 3)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench")
    parser.add_argument("--out", type=Path, help="the Markdown page (default: docs/benchmarks.md)")
    parser.add_argument("--quick", action="store_true", help="tiny shape, 512 and 1,024 tokens, one run")
    parser.add_argument("--mixed", type=int, nargs="+", metavar="PAIRS", help="verify's memory instead: these sizes")
    parser.add_argument("--long-every", type=int, default=500, help="--mixed: one long document in so many pairs")
    parser.add_argument("--backend", default="transformers", choices=("transformers", "vllm"), help="--mixed's")
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--converted", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.lengths = sorted(args.lengths)
    if args.worker:
        return worker(args)
    if args.quick:
        args.shapes, args.lengths, args.runs = ["tiny"], [512, 1024], 1
    args.workdir.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT / "scripts"))
    if args.mixed:
        return mixed(args)
    import bench_shapes
    from bench_common import write_section

    results: dict[str, dict[str, list[dict]]] = {}
    for shape in args.shapes:
        _, converted = bench_shapes.synthesized_conversion(shape, args.workdir)
        results[shape] = {e: [] for e in args.engines}
        for run in range(args.runs):
            order = args.engines[run % len(args.engines) :] + args.engines[: run % len(args.engines)]
            for engine in order:
                got = run_worker(args, engine, converted, seed=run + 1)
                results[shape][engine].append(got)
                last = got["lengths"][-1]
                mib = last["peak_bytes"] / 2**20
                print(f"{shape} run {run + 1}/{args.runs}: {engine} {last['tokens']:,} tokens in "
                      f"{last['seconds']:.2f} s, peak {mib:.0f} MiB", file=sys.stderr)  # fmt: skip
    (args.workdir / "long-inputs.json").write_text(json.dumps(results, indent=1))
    text = report(args, results)
    out = args.out or (args.workdir / "benchmarks.md" if args.quick else ROOT / "docs" / "benchmarks.md")
    write_section(out, "long-inputs", text)
    print(text)
    print(f"wrote {out}", file=sys.stderr)


def report(args: argparse.Namespace, results: dict[str, dict[str, list[dict]]]) -> str:
    from bench_common import machine

    def med(runs: list[dict], i: int, key: str) -> float:
        return statistics.median(r["lengths"][i][key] for r in runs)

    lines = [
        "## Long inputs: scoring time and peak memory against prompt length",
        "",
        f"Measured by `scripts/bench_long_inputs.py` on {time.strftime('%Y-%m-%d')}, {machine()}: one pair at a "
        "time, from text to score, the converted checkpoint in float32 on CPU; transformers as the card's snippet "
        "runs it, vLLM's `LLM.score` with the score template and verify's engine arguments (in-process engine, "
        f"`max_model_len` {max(args.lengths):,}, `gpu_memory_utilization` {MEMORY_FRACTION}: verify's CPU default "
        "of 0.2 leaves the 0.6B shape too small a KV cache for 8,192 tokens). Documents of random words from the "
        f"real vocabulary, a different one for every length and run; {args.runs} run(s) per engine, each in its own "
        "process, engines alternated; medians. Peak RSS is the process's after scoring that length (lengths in "
        "increasing order), and + is over the process's peak once the model was loaded and had scored one pair of "
        "128 tokens.",
    ]
    for shape, engines in results.items():
        both = all(engines.get(e) for e in ENGINES)
        head = ["prompt tokens"]
        for e in args.engines:
            head += [f"{e} s", f"{e} peak RSS (+)"]
        head += ["vLLM ÷ transformers (time)", "scores differ by"] if both else []
        lines += ["", f"### {shape} shape", "", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
        for i, n in enumerate(args.lengths):
            cells = [f"{n:,}"]
            for e in args.engines:
                runs = engines[e]
                grew = med(runs, i, "peak_bytes") - statistics.median(r["loaded_peak_bytes"] for r in runs)
                cells += [f"{med(runs, i, 'seconds'):.3f}",
                          f"{med(runs, i, 'peak_bytes') / 2**20:,.0f} MiB (+{grew / 2**20:,.0f})"]  # fmt: skip
            if both:
                pairs = list(zip(engines["transformers"], engines["vllm"]))
                ratio = statistics.median(v["lengths"][i]["seconds"] / t["lengths"][i]["seconds"] for t, v in pairs)
                delta = max(abs(v["lengths"][i]["score"] - t["lengths"][i]["score"]) for t, v in pairs)
                cells += [f"{ratio:.2f}", f"{delta:.1e}"]
            lines.append("| " + " | ".join(cells) + " |")
        for e in args.engines:
            first, last = (med(engines[e], i, "seconds") for i in (0, -1))
            growth = args.lengths[-1] / args.lengths[0]
            lines += ["", f"{e}: {args.lengths[-1]:,} tokens took {last / first:.1f}× the time of "
                      f"{args.lengths[0]:,} ({growth:.0f}× the tokens)."]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
