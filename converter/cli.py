"""The ``seqcls`` command line: argument parsing and error reporting around the library functions."""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from .errors import SeqclsError
from .export.gguf import DEFAULT_TYPES as GGUF_DEFAULT_TYPES
from .export.gguf import TYPES as GGUF_TYPES
from .recipes import METHODS, PRESET_NAMES
from .verify.backends import BACKENDS
from .verify.processes import DEFAULT_TIMEOUT

EXAMPLES = {
    "seqcls": """
  seqcls convert Qwen/Qwen3-Reranker-8B -o converted/Qwen3-Reranker-8B-seq-cls
  seqcls verify converted/Qwen3-Reranker-8B-seq-cls --original Qwen/Qwen3-Reranker-8B --backend vllm --device npu
  seqcls serve converted/Qwen3-Reranker-8B-seq-cls --device cuda --port 8000""",
    "convert": """
  seqcls convert Qwen/Qwen3-Reranker-8B -o converted/Qwen3-Reranker-8B-seq-cls
  seqcls convert modelscope:Qwen/Qwen3-Reranker-0.6B --copy
  seqcls convert ./my-causal-lm --tokens no,yes --method from_2_way_softmax""",
    "verify": """
  seqcls verify converted/Qwen3-Reranker-8B-seq-cls --original Qwen/Qwen3-Reranker-8B --dtype bfloat16
  seqcls verify converted/Qwen3-Reranker-8B-seq-cls --original ./Qwen3-Reranker-8B --backend vllm --device npu \\
      --dtype bfloat16 --report report.json --junit junit.xml --update-card
  seqcls verify converted/Qwen3-Reranker-8B-seq-cls --original ./Qwen3-Reranker-8B --backend server \\
      --original-url http://127.0.0.1:8000 --pairs pairs.jsonl""",
    "export": """
  seqcls export gguf converted/Qwen3-Reranker-0.6B-seq-cls
  seqcls export gguf converted/Qwen3-Reranker-8B-seq-cls --type f16 q8_0 q4_k_m -o gguf/Qwen3-Reranker-8B
  seqcls verify gguf/Qwen3-Reranker-8B/Qwen3-Reranker-8B-Q4_K_M.gguf --original Qwen/Qwen3-Reranker-8B \\
      --backend llamacpp""",
    "serve": """
  seqcls serve converted/Qwen3-Reranker-8B-seq-cls --device cuda --port 8000
  seqcls serve converted/Qwen3-Reranker-8B-seq-cls --device npu --vllm-version 0.9.2 --print
  seqcls serve converted/Qwen3-Reranker-8B-seq-cls-GGUF/Qwen3-Reranker-8B-seq-cls-Q8_0.gguf --print""",
    "publish": """
  seqcls publish converted/Qwen3-Reranker-8B-seq-cls --repo-id ORG/Qwen3-Reranker-8B-seq-cls --dry-run
  seqcls publish converted/Qwen3-Reranker-8B-seq-cls --repo-id ORG/Qwen3-Reranker-8B-seq-cls --hub modelscope
  seqcls publish converted/Qwen3-Reranker-8B-seq-cls --repo-id ORG/NAME --private --revision v1 --include 'eval/*'""",
    "inspect": """
  seqcls inspect converted/Qwen3-Reranker-8B-seq-cls
  seqcls inspect ./Qwen3-Reranker-8B --json""",
    "demo": """
  seqcls demo
  seqcls demo --preset mxbai-rerank-v2 --workdir /tmp/seqcls-demo""",
}
"""Two or three examples that end each ``--help`` (tests parse every one with this parser)."""


def _epilog(command: str, note: str = "") -> str:
    return (f"{note}\n\n" if note else "") + "examples:" + EXAMPLES[command]


def build_parser() -> argparse.ArgumentParser:
    raw = {"formatter_class": argparse.RawDescriptionHelpFormatter}
    parser = argparse.ArgumentParser(prog="seqcls", description=__doc__, epilog=_epilog("seqcls"), **raw)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "convert",
        help="convert an LLM-as-reranker checkpoint to sequence classification",
        epilog=_epilog("convert"),
        **raw,
    )
    p.add_argument("src", help="source: a folder, ORG/NAME[@REV] (Hugging Face) or modelscope:ORG/NAME[@REV]")
    p.add_argument(
        "--hub",
        choices=("hf", "modelscope"),
        help="hub of a bare ORG/NAME (default: hf, or modelscope when VLLM_USE_MODELSCOPE=True)",
    )
    p.add_argument("--offline", action="store_true", help="use the local hub cache only (also: HF_HUB_OFFLINE=1)")
    p.add_argument("-o", "--out", type=Path, help="output folder (default: converted/<name>-seq-cls)")
    p.add_argument("--copy", action="store_true", help="copy unchanged shards instead of hard-linking them")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    p.add_argument("--base-model", help="hub id the model card names as the source (default: the source as given)")
    p.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        help="the reranker family (default: recognised from the architecture and the repo or folder name)",
    )
    p.add_argument(
        "--tokens",
        type=_token_list,
        help="label tokens, comma-separated, for any *ForCausalLM without a preset (false first: no,yes)",
    )
    p.add_argument("--method", choices=list(METHODS), help="how label rows become the head (with --tokens)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    p.set_defaults(run=_convert)

    p = sub.add_parser(
        "verify", help="prove the converted checkpoint scores like the original", epilog=_epilog("verify"), **raw
    )
    p.add_argument("converted", type=Path, help="converted checkpoint folder")
    p.add_argument("--original", required=True, help="original: a folder or a hub id, as for convert")
    p.add_argument("--hub", choices=("hf", "modelscope"), help="hub of a bare ORG/NAME --original")
    p.add_argument("--offline", action="store_true", help="use the local hub cache only")
    p.add_argument("--backend", choices=tuple(BACKENDS), default="transformers")
    p.add_argument("--device", choices=("cpu", "cuda", "npu"), default="cpu")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    p.add_argument(
        "--pairs",
        type=Path,
        help="JSONL (query, document; optional instruction, query_id, document_id, relevance) or a BEIR-layout folder",
    )
    p.add_argument("--split", default="test", help="BEIR qrels split: qrels/SPLIT.tsv (default: %(default)s)")
    p.add_argument("--run", dest="run_file", type=Path, help="BEIR: candidates per query, a TREC run file")
    p.add_argument("--atol", type=float, help="max abs score difference (default: 1e-4 for float32)")
    p.add_argument("--max-length", type=int, help="model length for prompts and engines (default: min(config, 8192))")
    p.add_argument(
        "--batch-size", type=int, default=8, help="transformers batch size (prompts batched by length, 256 at a time)"
    )
    p.add_argument(
        "--chunk",
        type=int,
        default=2048,
        help="pairs handed to a vLLM engine or server at a time; bounds memory (default: %(default)s)",
    )
    p.add_argument(
        "--no-prefix-caching",
        dest="prefix_caching",
        action="store_false",
        default=None,
        help="disable vLLM prefix caching (default on vllm-ascend < 0.19.1, which scored wrongly with it)",
    )
    p.add_argument("--gpu-memory-utilization", dest="memory_fraction", type=float, help="vLLM memory fraction")
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="hard limit in seconds on each vLLM engine job or server start (default: %(default).0f)",
    )
    p.add_argument(
        "--cache",
        dest="cache_dir",
        type=Path,
        help="where the original side's scores are kept for reuse (default: ~/.cache/seqcls/verify)",
    )
    p.add_argument(
        "--no-cache", dest="use_cache", action="store_false", help="score the original afresh and keep nothing"
    )
    p.add_argument(
        "--no-reference",
        dest="reference",
        action="store_false",
        help="vllm/server backends: skip the transformers reference (the third opinion that names the wrong side)",
    )
    p.add_argument(
        "--reference-device",
        choices=("cpu", "cuda", "npu"),
        help="device of the transformers reference (default: --device, or cpu where torch has no such device)",
    )
    p.add_argument(
        "--original-overrides",
        metavar="JSON",
        help="hf_overrides for the original path instead of the family's documented ones (vllm/server backends)",
    )
    p.add_argument("--original-url", help="an already running server for the original (backend server)")
    p.add_argument("--converted-url", help="an already running server for the converted model (backend server)")
    p.add_argument("--report", type=Path, help="write the JSON report here")
    p.add_argument("--junit", type=Path, help="write JUnit XML here")
    p.add_argument("--plot", type=Path, help="write a PNG scatter plot here (needs matplotlib)")
    p.add_argument("--log-dir", type=Path, help="where vLLM logs go (default: beside the report)")
    p.add_argument("--update-card", action="store_true", help="record the result in the converted model card")
    p.add_argument("--card", type=Path, help="with a GGUF: the converted checkpoint whose card records it")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    p.set_defaults(run=_verify)

    p = sub.add_parser(
        "serve",
        help="serve a checkpoint with vLLM, correctly configured (or --print the command)",
        epilog=_epilog("serve"),
        **raw,
    )
    p.add_argument(
        "checkpoint", type=Path,
        help="converted checkpoint folder (or an original, served with overrides), or a GGUF from seqcls export gguf",
    )  # fmt: skip
    p.add_argument("--device", choices=("cpu", "cuda", "npu"), default="cpu")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", help="address to bind (default: vLLM's)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="default: the checkpoint's dtype")
    p.add_argument("--vllm-version", help="build the command for this vLLM / vllm-ascend version (e.g. 0.9.2)")
    p.add_argument("--max-model-len", type=int)
    p.add_argument("--gpu-memory-utilization", dest="memory_fraction", type=float)
    p.add_argument("--no-prefix-caching", dest="prefix_caching", action="store_false", default=None)
    p.add_argument("--print", action="store_true", help="print the command instead of running it")
    p.add_argument("--preset", choices=PRESET_NAMES, help="family of an original (default: recognised)")
    p.epilog = _epilog("serve", "Arguments after -- go to vllm serve unchanged.")
    p.set_defaults(extra=[])
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    p.set_defaults(run=_serve)

    p = sub.add_parser(
        "publish",
        help="upload a verified converted checkpoint to the Hugging Face Hub or ModelScope",
        epilog=_epilog("publish"),
        **raw,
    )
    p.add_argument("checkpoint", type=Path, help="converted checkpoint folder")
    p.add_argument("--repo-id", required=True, help="ORG/NAME on the hub")
    p.add_argument("--hub", choices=("hf", "modelscope"), default="hf")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--revision", help="branch to upload to (default: main on hf, master on modelscope)")
    p.add_argument("--dry-run", action="store_true", help="print what would be uploaded; touch no network")
    p.add_argument("--report", action="append", type=Path, help="verify report to use (default: found beside)")
    p.add_argument("--skip-verify", action="store_true", help="publish without a matching passing verify report")
    p.add_argument(
        "--gguf", nargs="+", type=Path, metavar="FILE",
        help="also upload these GGUF files (seqcls export gguf), each with a passing verify --backend llamacpp report",
    )  # fmt: skip
    p.add_argument("--gguf-repo", metavar="ORG/NAME", help="upload the GGUF files to this repo (default: --repo-id)")
    p.add_argument(
        "--include",
        action="append",
        metavar="GLOB",
        help="also upload files matching GLOB (relative to the folder; repeatable); other stray files are left out",
    )
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    p.set_defaults(run=_publish)

    p = sub.add_parser(
        "inspect",
        help="say what a checkpoint is and whether it carries what loaders need",
        epilog=_epilog("inspect"),
        **raw,
    )
    p.add_argument("checkpoint", type=Path, help="checkpoint folder")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--preset", choices=PRESET_NAMES, help="family of an original (default: recognised)")
    p.epilog = _epilog(
        "inspect", "Exit code 1 when the checkpoint has problems a loader or publish would trip over (stray files too)."
    )
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    p.set_defaults(run=_inspect)

    p = sub.add_parser(
        "export", help="export a converted checkpoint to another engine's format", epilog=_epilog("export"), **raw
    )
    formats = p.add_subparsers(dest="format", required=True)
    g = formats.add_parser(
        "gguf", help="GGUF files that llama.cpp serves as a reranker (--reranking)", epilog=_epilog("export"), **raw
    )
    g.add_argument("converted", type=Path, help="a checkpoint folder written by seqcls convert")
    g.add_argument("-o", "--out", type=Path, help="output folder (default: CONVERTED-GGUF beside it)")
    g.add_argument(
        "--type", nargs="+", default=list(GGUF_DEFAULT_TYPES), metavar="TYPE", dest="types",
        help=f"one file per type: {', '.join(GGUF_TYPES)} (default: f16)",
    )  # fmt: skip
    g.add_argument("--instruction", help="the instruction the rerank template carries (default: the family's)")
    g.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    g.add_argument("--threads", type=int, help="quantizer threads (default: all cores)")
    g.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    g.set_defaults(run=_export_gguf)

    p = sub.add_parser(
        "demo", help="offline demo: build a tiny original, convert it, check parity", epilog=_epilog("demo"), **raw
    )
    p.add_argument("--workdir", type=Path, default=Path("converted"), help="where the demo checkpoints go")
    p.add_argument("--rebuild", action="store_true", help="rebuild the tiny original")
    p.add_argument("--preset", choices=PRESET_NAMES, default=PRESET_NAMES[0], help="family to demo")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    p.set_defaults(run=_demo)
    return parser


def _token_list(text: str) -> tuple[str, ...]:
    """Comma-separated; a token that is a comma itself is not supported here."""
    return tuple(text.split(","))


def _convert(args: argparse.Namespace) -> int:
    from .convert import convert
    from .report import conversion_summary

    plan, report = convert(
        args.src, args.out, copy=args.copy, overwrite=args.overwrite, base_model=args.base_model, hub=args.hub,
        offline=args.offline, preset=args.preset, tokens=args.tokens, method=args.method,
    )  # fmt: skip
    print(conversion_summary(plan, report))
    return 0


def _verify(args: argparse.Namespace) -> int:
    import dataclasses

    from .verify import VerifyOptions, verify
    from .verify.outputs import markdown

    names = {f.name for f in dataclasses.fields(VerifyOptions)}
    options = VerifyOptions(pairs_file=args.pairs, **{k: v for k, v in vars(args).items() if k in names})
    report = verify(args.converted, args.original, options)
    print(markdown(report))
    return 0 if report["verdict"] == "pass" else 1


def _export_gguf(args: argparse.Namespace) -> int:
    from .export import export_gguf

    types = [t for item in args.types for t in item.split(",") if t]
    for e in export_gguf(args.converted, args.out, types=types, instruction=args.instruction,
                         overwrite=args.overwrite, threads=args.threads):  # fmt: skip
        print(f"{e.type:7} {e.path.stat().st_size / 2**20:10.1f} MiB  {e.path}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .serve import run, serve_command
    from .vllm_compat import detect

    if args.checkpoint.suffix == ".gguf":
        return _serve_gguf(args)
    extra = args.extra
    options = {k: getattr(args, k) for k in ("device", "port", "host", "dtype", "vllm_version", "max_model_len")}
    options |= {"memory_fraction": args.memory_fraction, "prefix_caching": args.prefix_caching, "extra": extra}
    options["preset"] = args.preset
    command = serve_command(args.checkpoint, **options)
    for note in command.notes:
        print(f"seqcls: {note}", file=sys.stderr)
    if args.print:
        print(command.shell())
        return 0
    if command.install != detect():
        raise SeqclsError(
            f"--vllm-version {args.vllm_version} is not the installed vLLM ({detect().describe()}); "
            "add --print to only print the command"
        )
    print(f"seqcls: running {command.shell()}", file=sys.stderr, flush=True)
    run(command)
    return 0


def _serve_gguf(args: argparse.Namespace) -> int:
    import shutil

    from .serve import LLAMA_SERVER, llama_server_command, run

    command, request = llama_server_command(
        args.checkpoint, port=args.port, host=args.host, max_model_len=args.max_model_len, extra=args.extra
    )
    if not args.print and shutil.which(LLAMA_SERVER) is None:
        raise SeqclsError(f"{LLAMA_SERVER} is not on PATH; install llama.cpp's server, or add --print")
    for note in command.notes:
        print(f"seqcls: {note}", file=sys.stderr)
    if args.print:
        print(command.shell())
        print(request)
        return 0
    print(f"seqcls: running {command.shell()}; then: {request}", file=sys.stderr, flush=True)
    run(command)
    return 0


def _publish(args: argparse.Namespace) -> int:
    from .publish import publish, render_plan

    plan = publish(
        args.checkpoint, args.repo_id, hub=args.hub, private=args.private, revision=args.revision,
        dry_run=args.dry_run, skip_verify=args.skip_verify, reports=args.report, include=args.include,
        gguf=args.gguf, gguf_repo=args.gguf_repo,
    )  # fmt: skip
    print(render_plan(plan))
    if args.dry_run:
        if plan.credentials.startswith("none"):
            print("note: no token found; a real run would stop here", file=sys.stderr)
        print("dry run: nothing was uploaded")
    else:
        print(f"uploaded to {plan.repo_id} ({plan.branch})")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    import json

    from .inspection import inspect_checkpoint, render

    info = inspect_checkpoint(args.checkpoint, preset=args.preset)
    print(json.dumps(info, indent=2, ensure_ascii=False) if args.json else render(info))
    return 1 if info["problems"] or info["left_out"] else 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import demo

    return demo(args.workdir, rebuild=args.rebuild, preset=args.preset)


def run(argv: list[str] | None = None) -> int:
    """``seqcls serve ... -- ARGS`` hands ARGS to vLLM untouched."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = build_parser().parse_args(argv[: len(argv) - len(extra) - (1 if "--" in argv else 0)])
    if extra:
        if args.command != "serve":
            print("seqcls: error: only serve takes arguments after --", file=sys.stderr)
            return 2
        args.extra = extra
    try:
        return args.run(args)
    except (SeqclsError, OSError) as e:
        if args.debug:
            traceback.print_exc()
        message = str(e) if isinstance(e, SeqclsError) else f"{e.strerror or e}: {e.filename or ''}".rstrip(": ")
        print(f"seqcls: error: {message}", file=sys.stderr)
        return 2
    except ImportError as e:
        if args.debug:
            traceback.print_exc()
        print(
            f"seqcls: error: {e.name or e} is not installed; run scripts/setup or pip install torch first",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("seqcls: interrupted", file=sys.stderr)
        return 130


def main() -> None:
    sys.exit(run())
