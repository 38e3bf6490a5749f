"""The ``seqcls`` command line: argument parsing and error reporting around the library functions."""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from .errors import SeqclsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqcls", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="convert an LLM-as-reranker checkpoint to sequence classification")
    p.add_argument("src", help="source checkpoint folder")
    p.add_argument("-o", "--out", type=Path, help="output folder (default: converted/<name>-seq-cls)")
    p.add_argument("--copy", action="store_true", help="copy unchanged shards instead of hard-linking them")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    p.set_defaults(run=_convert)

    p = sub.add_parser("demo", help="offline demo: build a tiny original, convert it, check parity")
    p.add_argument("--workdir", type=Path, default=Path("converted"), help="where the demo checkpoints go")
    p.add_argument("--rebuild", action="store_true", help="rebuild the tiny original")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    p.set_defaults(run=_demo)
    return parser


def _convert(args: argparse.Namespace) -> int:
    from .convert import convert
    from .report import conversion_summary

    plan, report = convert(args.src, args.out, copy=args.copy, overwrite=args.overwrite)
    print(conversion_summary(plan, report))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import demo

    return demo(args.workdir, rebuild=args.rebuild)


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (SeqclsError, OSError) as e:
        if args.debug:
            traceback.print_exc()
        message = str(e) if isinstance(e, SeqclsError) else f"{e.strerror or e}: {e.filename or ''}".rstrip(": ")
        print(f"seqcls: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seqcls: interrupted", file=sys.stderr)
        return 130


def main() -> None:
    sys.exit(run())
