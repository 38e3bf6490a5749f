"""The ``seqcls`` command: parse the arguments (``parser``), run the subcommand (``commands``), and turn bad input
into one line on stderr and exit code 2 (a traceback only with ``--debug``)."""

from __future__ import annotations

import sys
import traceback

from ..errors import SeqclsError
from .parser import EXAMPLES, build_parser

__all__ = ["EXAMPLES", "build_parser", "main", "run"]


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
