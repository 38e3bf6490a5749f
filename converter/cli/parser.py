"""The argument parser: one function per subcommand, each opening its ``--help`` with what the command does for a
user and closing it with examples (the tests parse every example with this parser)."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from ..export.gguf import DEFAULT_TYPES as GGUF_DEFAULT_TYPES
from ..export.gguf import TYPES as GGUF_TYPES
from ..recipes import METHODS, PRESET_NAMES
from ..verify.backends import BACKENDS
from ..verify.processes import DEFAULT_TIMEOUT
from . import commands

DESCRIPTION = (
    "seqcls turns an LLM-as-reranker checkpoint (Qwen3-Reranker, Qwen3-VL-Reranker, mxbai-rerank-v2, "
    "bge-reranker-v2-gemma, zerank-2, or any causal LM with label tokens) into a sequence-classification checkpoint "
    "that vLLM, vllm-ascend, transformers and sentence-transformers load as-is, proves that it scores exactly as the "
    "original, and serves, exports and publishes it."
)
EXAMPLES = {
    "seqcls": """
  seqcls convert Qwen/Qwen3-Reranker-8B -o converted/Qwen3-Reranker-8B-seq-cls
  seqcls verify converted/Qwen3-Reranker-8B-seq-cls --original Qwen/Qwen3-Reranker-8B --backend vllm --device npu
  seqcls serve converted/Qwen3-Reranker-8B-seq-cls --device cuda --port 8000""",
    "convert": """
  seqcls convert Qwen/Qwen3-Reranker-8B -o converted/Qwen3-Reranker-8B-seq-cls
  seqcls convert zeroentropy/zerank-2 --raw-logit
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
    "frames": """
  seqcls export frames clip.mp4 -o clip-frames
  seqcls export frames sampled-frames/ --fps 2 -o clip-frames
  python3 scripts/ascend/client_vl.py --converted-url http://127.0.0.1:8000 --query "a red square" \\
      --video clip-frames""",
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


RAW = {"formatter_class": argparse.RawDescriptionHelpFormatter}


def _wrapped(text: str) -> str:
    """Descriptions are one paragraph each; the raw formatter (which keeps the examples' lines) does not wrap."""
    return textwrap.fill(text, width=100, break_on_hyphens=False)


def _epilog(command: str, note: str = "") -> str:
    return (f"{note}\n\n" if note else "") + "examples:" + EXAMPLES[command]


def _subcommand(
    sub, name: str, summary: str, description: str, note: str = "", examples: str | None = None
) -> argparse.ArgumentParser:
    """``summary`` is the line in ``seqcls --help``; ``description`` opens the command's own ``--help``."""
    epilog = _epilog(examples or name, note)
    p = sub.add_parser(name, help=summary, description=_wrapped(description), epilog=epilog, **RAW)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqcls", description=_wrapped(DESCRIPTION), epilog=_epilog("seqcls"), **RAW)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_convert, _verify, _serve, _publish, _inspect, _export, _demo):
        add(sub)
    return parser


def _convert(sub) -> None:
    p = _subcommand(
        sub, "convert", "convert an LLM-as-reranker checkpoint to sequence classification",
        "Convert an LLM-as-reranker checkpoint (a folder, or a model on the Hugging Face Hub or ModelScope) into a "
        "sequence-classification checkpoint with its head computed exactly from the label tokens' rows.",
    )  # fmt: skip
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
    p.add_argument(
        "--raw-logit",
        action="store_true",
        help="a family with a calibrated score (zerank-2: sigmoid(logit / 5)): keep the raw logit in the head instead",
    )
    p.set_defaults(run=commands.convert)


def _verify(sub) -> None:
    p = _subcommand(
        sub, "verify", "prove the converted checkpoint scores like the original",
        "Score the same pairs through the original (served the documented way) and the converted checkpoint (as-is), "
        "compare both with a transformers reference of the original, and say which side is wrong if they differ. "
        "Exit code 0: parity holds; 1: it does not; 2: bad input.",
    )  # fmt: skip
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
        "--reference-only",
        action="store_true",
        help="vllm/server backends: run only the converted checkpoint in the engine and judge it against the "
        "transformers reference (one engine or server fewer; the original's own path is not looked at)",
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
    p.set_defaults(run=commands.verify)


def _serve(sub) -> None:
    p = _subcommand(
        sub, "serve", "serve a checkpoint with vLLM, correctly configured (or --print the command)",
        "Serve a checkpoint with the right vLLM (or vllm-ascend, or llama.cpp) command for this host: the score "
        "template, dtype and flags its version needs. A converted checkpoint needs no overrides; an original gets "
        "its family's documented ones.",
        "Arguments after -- go to vllm serve unchanged.",
    )  # fmt: skip
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
    p.set_defaults(extra=[], run=commands.serve)


def _publish(sub) -> None:
    p = _subcommand(
        sub, "publish", "upload a verified converted checkpoint to the Hugging Face Hub or ModelScope",
        "Upload a converted checkpoint to the Hugging Face Hub or ModelScope, with its model card pointing at the "
        "repo, once a passing verify report lies beside it (--dry-run lists every file with its sha256).",
    )  # fmt: skip
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
    p.set_defaults(run=commands.publish)


def _inspect(sub) -> None:
    p = _subcommand(
        sub, "inspect", "say what a checkpoint is and whether it carries what loaders need",
        "Say what a checkpoint is (family, architecture, head, dtype, template) and whether it carries everything "
        "vLLM, transformers, sentence-transformers and publish need.",
        "Exit code 1 when the checkpoint has problems a loader or publish would trip over (stray files too).",
    )  # fmt: skip
    p.add_argument("checkpoint", type=Path, help="checkpoint folder")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--preset", choices=PRESET_NAMES, help="family of an original (default: recognised)")
    p.set_defaults(run=commands.inspect)


def _export(sub) -> None:
    p = sub.add_parser(
        "export", help="export a converted checkpoint to another engine's format", epilog=_epilog("export"),
        description=_wrapped("Export a converted checkpoint to another engine's format (GGUF for llama.cpp)."), **RAW,
    )  # fmt: skip
    formats = p.add_subparsers(dest="format", required=True)
    g = _subcommand(
        formats, "gguf", "GGUF files that llama.cpp serves as a reranker (--reranking)",
        "Write GGUF files of a converted checkpoint, in one or more types, that llama.cpp's rank pooling scores "
        "exactly as the checkpoint (llama-server --reranking), with the family's prompt as the rerank template.",
        examples="export",
    )  # fmt: skip
    g.add_argument("converted", type=Path, help="a checkpoint folder written by seqcls convert")
    g.add_argument("-o", "--out", type=Path, help="output folder (default: CONVERTED-GGUF beside it)")
    g.add_argument(
        "--type", nargs="+", default=list(GGUF_DEFAULT_TYPES), metavar="TYPE", dest="types",
        help=f"one file per type: {', '.join(GGUF_TYPES)} (default: f16)",
    )  # fmt: skip
    g.add_argument("--instruction", help="the instruction the rerank template carries (default: the family's)")
    g.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    g.add_argument("--threads", type=int, help="quantizer threads (default: all cores)")
    g.set_defaults(run=commands.export_gguf)
    f = _subcommand(
        formats, "frames", "a video's frames as Qwen3-VL-Reranker's scorer samples them, for a client to send",
        "Sample a video (or a folder of frames) once as Qwen3-VL-Reranker's scorer does and write the frames and "
        "video.json (their metadata) into a new folder: the Ascend VL client's --video sends them to a server from a "
        "machine with no seqcls, and every server then scores the same frames.",
        examples="frames",
    )  # fmt: skip
    f.add_argument("video", type=Path, help="a video file, or a folder of frames already sampled")
    f.add_argument("-o", "--out", type=Path, required=True, help="a new folder for the frames and video.json")
    f.add_argument("--fps", type=float, help="the rate of a folder of frames (default: qwen-vl-utils' 2)")
    f.set_defaults(run=commands.export_frames)


def _demo(sub) -> None:
    p = _subcommand(
        sub, "demo", "offline demo: build a tiny original, convert it, check parity",
        "Build a tiny reranker with the real vocabulary and random weights, offline, convert it, and show that both "
        "score the same pairs identically.",
    )  # fmt: skip
    p.add_argument("--workdir", type=Path, default=Path("converted"), help="where the demo checkpoints go")
    p.add_argument("--rebuild", action="store_true", help="rebuild the tiny original")
    p.add_argument("--preset", choices=PRESET_NAMES, default=PRESET_NAMES[0], help="family to demo")
    p.set_defaults(run=commands.demo)


def _token_list(text: str) -> tuple[str, ...]:
    """Comma-separated; a token that is a comma itself is not supported here."""
    return tuple(text.split(","))
