"""What each subcommand does with its parsed arguments: call the library function, print its result, return the
exit code. Imports are local, so that ``seqcls --help`` and bad arguments answer without loading torch or vLLM."""

from __future__ import annotations

import argparse
import sys

from ..errors import SeqclsError


def convert(args: argparse.Namespace) -> int:
    from ..convert import convert as run_conversion
    from ..report import conversion_summary

    plan, report = run_conversion(
        args.src, args.out, copy=args.copy, overwrite=args.overwrite, base_model=args.base_model, hub=args.hub,
        offline=args.offline, preset=args.preset, tokens=args.tokens, method=args.method, raw_logit=args.raw_logit,
    )  # fmt: skip
    print(conversion_summary(plan, report))
    return 0


def verify(args: argparse.Namespace) -> int:
    import dataclasses

    from ..verify import VerifyOptions
    from ..verify import verify as run_verify
    from ..verify.outputs import markdown

    names = {f.name for f in dataclasses.fields(VerifyOptions)}
    options = VerifyOptions(pairs_file=args.pairs, **{k: v for k, v in vars(args).items() if k in names})
    report = run_verify(args.converted, args.original, options)
    print(markdown(report))
    return 0 if report["verdict"] == "pass" else 1


def export_gguf(args: argparse.Namespace) -> int:
    from ..export import export_gguf as export

    types = [t for item in args.types for t in item.split(",") if t]
    for e in export(args.converted, args.out, types=types, instruction=args.instruction,
                         overwrite=args.overwrite, threads=args.threads):  # fmt: skip
        print(f"{e.type:7} {e.path.stat().st_size / 2**20:10.1f} MiB  {e.path}")
    return 0


def export_frames(args: argparse.Namespace) -> int:
    from ..video import write_frames

    clip = write_frames(args.video, args.out, args.fps)
    count, height, width, _ = clip.frames.shape
    print(f"{args.out}: {count} frames of {width}x{height}, {clip.tokens(16):,} video tokens, and video.json")
    return 0


def serve(args: argparse.Namespace) -> int:
    from ..serve import run, serve_command
    from ..vllm_compat import detect

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

    from ..serve import LLAMA_SERVER, llama_server_command, run

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


def publish(args: argparse.Namespace) -> int:
    from ..publish import publish as upload
    from ..publish import render_plan

    plan = upload(
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


def inspect(args: argparse.Namespace) -> int:
    import json

    from ..inspection import inspect_checkpoint, render

    info = inspect_checkpoint(args.checkpoint, preset=args.preset)
    print(json.dumps(info, indent=2, ensure_ascii=False) if args.json else render(info))
    return 1 if info["problems"] or info["left_out"] else 0


def demo(args: argparse.Namespace) -> int:
    from ..demo import demo as run_demo

    return run_demo(args.workdir, rebuild=args.rebuild, preset=args.preset)
