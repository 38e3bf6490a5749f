"""scripts/ascend/: the serve scripts agree with ``seqcls serve --print``, the docker command is complete, and the
client formats exactly as the recipe does. (Syntax and shellcheck: test_scripts.py.)"""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from converter.cli import run
from converter.recipes import QWEN3_RERANKER, preset

ASCEND = Path(__file__).resolve().parents[1] / "scripts" / "ascend"
VERSIONS = ["0.9.2", "0.9.2rc1", "0.10.1", "0.18.0", "0.19.1", "0.22.0", "0.23.0"]


def script(name: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ASCEND / name), *args], capture_output=True, text=True, env=os.environ | (env or {})
    )


def seqcls_print(capsys, *args: str) -> list[str]:
    assert run(["serve", "--print", "--device", "npu", *args]) == 0
    return shlex.split(capsys.readouterr().out)


@pytest.mark.parametrize("version", VERSIONS)
def test_serve_scripts_print_what_seqcls_serve_prints(pair_of, capsys, version):
    src, out = pair_of("tied-bf16-single")
    for name, model in (("serve_converted.sh", out), ("serve_original.sh", src)):
        result = script(name, str(model), "--vllm-version", version, "--port", "8888", "--print")
        assert result.returncode == 0, result.stderr
        expected = seqcls_print(capsys, str(model), "--vllm-version", version, "--port", "8888")
        assert shlex.split(result.stdout) == expected, name


def test_serve_scripts_pass_extra_arguments_and_host(pair_of, capsys):
    _, out = pair_of("untied-fp32-single")
    args = ["--vllm-version", "0.23.0", "--host", "0.0.0.0", "--dtype", "bfloat16"]
    result = script("serve_converted.sh", str(out), *args, "--print", "--", "--max-num-seqs", "8")
    expected = seqcls_print(capsys, str(out), *args, "--", "--max-num-seqs", "8")
    assert shlex.split(result.stdout) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "serve_converted.sh MODEL"),
        (["m", "--vllm-version", "0.8.5", "--print"], "predates Qwen3-Reranker support"),
        (["m", "--vllm-version", "latest", "--print"], "is not a version number"),
        (["m", "--port", "http", "--print"], "--port needs a number"),
        (["m", "--dtype", "int8", "--print"], "--dtype must be"),
        (["m", "n", "--print"], "one MODEL only"),
        (["m", "--frobnicate"], "unknown option --frobnicate"),
    ],
)
def test_serve_script_refusals(args, message):
    result = script("serve_converted.sh", *args)
    assert result.returncode == 2 and message in result.stdout + result.stderr


def test_docker_run_command():
    result = script("docker_run.sh", "--print", "--npu", "2,3", "--image-tag", "v0.9.2rc1", "--cache", "/data/c")
    argv = shlex.split(result.stdout)
    assert result.returncode == 0 and argv[:3] == ["docker", "run", "--rm"]
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "--device"]
    assert devices[:2] == ["/dev/davinci2", "/dev/davinci3"] and "/dev/davinci_manager" in devices
    assert "/data/c:/root/.cache" in argv and f"{ASCEND}:/seqcls-ascend:ro" in argv
    assert argv[-2:] == ["quay.io/ascend/vllm-ascend:v0.9.2rc1", "bash"]
    assert "PYTORCH_NPU_ALLOC_CONF=expandable_segments:True" in argv
    with_ms = shlex.split(script("docker_run.sh", "--print", env={"VLLM_USE_MODELSCOPE": "True"}).stdout)
    assert "VLLM_USE_MODELSCOPE=True" in with_ms
    custom = shlex.split(script("docker_run.sh", "--print", "--", "vllm", "--version").stdout)
    assert custom[-2:] == ["vllm", "--version"]


@pytest.mark.parametrize(("args", "message"), [(["--npu", "a"], "--npu takes"), (["--tag", "x"], "unknown argument")])
def test_docker_run_refusals(args, message):
    result = script("docker_run.sh", *args)
    assert result.returncode == 2 and message in result.stderr


def load_client():
    spec = importlib.util.spec_from_file_location("ascend_client", ASCEND / "client.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_client_formats_exactly_as_the_recipe():
    client = load_client()
    r = QWEN3_RERANKER
    assert r.pieces[0] == client.PREFIX and r.pieces[-1] == client.SUFFIX
    assert r.default_instruction == client.INSTRUCTION
    query = client.QUERY_TEMPLATE.format(prefix=client.PREFIX, instruction=client.INSTRUCTION, query="q")
    assert query == r.format_query("q")
    assert client.DOCUMENT_TEMPLATE.format(doc="d", suffix=client.SUFFIX) == r.format_document("d")


@pytest.mark.parametrize("family", ["qwen3-reranker", "zerank-2", "ctxl-rerank-v2"])
def test_client_families_format_as_their_recipes(family):
    """The client's hand formatting of each family (with and without an instruction where the family takes one) is
    the recipe's cut of the official prompt, and its calibration the recipe's."""
    client, r = load_client(), preset(family)
    for instruction in (None, "Prefer recent documents") if r.takes_instruction else (None,):
        pair = ("What is X?", "X is a letter.\n", instruction)
        assert client.halves(family, *pair) == r.halves(*pair), instruction
    temperature = client.FAMILIES[family].get("temperature")
    assert temperature == (r.calibration.temperature if r.calibration else None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --original-url, --converted-url or both"),
        (["--original-url", "http://x", "--raw"], "--raw applies to --converted-url"),
    ],
)
def test_client_argument_errors(args, message):
    result = subprocess.run([sys.executable, str(ASCEND / "client.py"), *args], capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr


def test_client_unreachable_server_is_exit_2():
    result = subprocess.run(
        [sys.executable, str(ASCEND / "client.py"), "--original-url", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "client.py: error:" in result.stderr and "Traceback" not in result.stderr
