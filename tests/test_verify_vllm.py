"""``seqcls verify`` through the real vLLM engine and server (CPU build here; CUDA and NPU where present)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import FAMILY_ORIGINALS
from helpers import load_all, official_scores, rewrite_tensor

from converter import convert
from converter.cli import run
from converter.errors import SeqclsError
from converter.pairs import SEED_PAIRS, Pair
from converter.recipes import QWEN3_RERANKER, preset
from converter.verify import verify
from converter.verify.backends import JOINED, MANUAL, TEMPLATE
from converter.verify.server import running_server
from converter.vllm_compat import EngineSpec, require

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]


def _servers_running(model: Path) -> int:
    count = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"vllm.entrypoints.openai.api_server" in args and str(model).encode() in args:
            count += 1
    return count


@pytest.fixture
def swapped(pair_of, tmp_path):
    """A converted checkpoint whose head was built from swapped label tokens."""
    src, good = pair_of("tied-bf16-single")
    bad = tmp_path / "swapped"
    convert(src, bad)
    rewrite_tensor(bad, "score.weight", -load_all(good)["score.weight"])
    return src, bad


def test_vllm_backend_tied_fp32(pair_of, tmp_path):
    src, out = pair_of("tied-bf16-single")
    report = verify(out, src, backend="vllm", report=tmp_path / "report.json")
    assert report["verdict"] == "pass", report["failed_pairs"]
    assert report["metrics"]["max_abs_delta"] <= 1e-4
    assert report["environment"]["vllm"].startswith("vllm")
    assert report["token_ids"] == {"mismatched_pairs": [], "official_mismatched_pairs": []}
    assert report["prompts"] == {"original": MANUAL, "converted": TEMPLATE}
    assert (tmp_path / "vllm-original.log").is_file() and (tmp_path / "vllm-converted.log").is_file()


@pytest.mark.parametrize("family", ["mxbai-rerank-v2", "bge-reranker-v2-gemma"])
def test_vllm_backend_other_presets_against_vllms_online_conversion(pair_of, tmp_path, family):
    """The original runs through vLLM's documented hf_overrides (its own online conversion); both sides must also
    give the family's official scores, so vLLM's conversion, ours and the reference agree."""
    src, out = pair_of(FAMILY_ORIGINALS[family])
    report = verify(out, src, backend="vllm", report=tmp_path / "report.json")
    assert report["verdict"] == "pass", report["failed_pairs"]
    assert report["token_ids"]["mismatched_pairs"] == []
    assert report["prompts"] == {"original": MANUAL, "converted": TEMPLATE}
    pairs = [Pair(p["query"], p["document"], p["instruction"]) for p in report["pairs"]]
    # vLLM tokenizes the prompt as one string: for mxbai that differs from mixedbread's piecewise ids (test_presets).
    joined = family == "mxbai-rerank-v2"
    assert bool(report["token_ids"]["official_mismatched_pairs"]) == joined
    official = official_scores(src, pairs, preset(family), rendered=joined)
    assert max(abs(p["converted"] - o) for p, o in zip(report["pairs"], official)) <= 1e-4


def test_vllm_backend_generic_conversion(original, tmp_path):
    """--tokens/--method: the original through vLLM's generic overrides (method, not the Qwen3 flag), raw pairs."""
    src = original("untied-fp32-single")
    out = tmp_path / "generic"
    convert(src, out, tokens=["no", "yes"], method="from_2_way_softmax")
    report = verify(out, src, backend="vllm", pairs=list(SEED_PAIRS), report=tmp_path / "report.json")
    assert report["verdict"] == "pass", report["failed_pairs"]
    assert report["prompts"] == {"original": MANUAL, "converted": MANUAL}
    assert report["token_ids"] == {"mismatched_pairs": [], "official_mismatched_pairs": []}


def test_vllm_backend_multi_label_generic_conversion(original, tmp_path, capsys):
    """N labels: vLLM's classifier on both sides, the original through its online conversion with N tokens."""
    src = original("untied-fp32-single")
    out = tmp_path / "generic3"
    convert(src, out, tokens=["no", "yes", "Ġmaybe"], method="no_post_processing")
    report = verify(out, src, backend="vllm", pairs=list(SEED_PAIRS))
    assert report["verdict"] == "pass", report["failed_pairs"]
    assert list(report["metrics"]["endpoints"]) == ["label no", "label yes", "label Ġmaybe"]
    assert report["prompts"] == {"original": JOINED, "converted": JOINED}
    assert report["token_ids"] == {"mismatched_pairs": [], "official_mismatched_pairs": []}
    assert run(["verify", str(out), "--original", str(src), "--backend", "server"]) == 2
    assert "verify it with --backend transformers or vllm" in capsys.readouterr().err


def _signal_processes(match: bytes, sig: int) -> int:
    """Signal the processes whose command line (or, for vLLM's renamed workers, name) contains ``match``."""
    hits = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if match in (proc / "cmdline").read_bytes() or match in (proc / "comm").read_bytes():
                os.kill(int(proc.name), sig)
                hits += 1
        except (OSError, ValueError):
            continue
    return hits


def test_an_engine_that_dies_under_a_waiting_client_is_a_clean_error_not_a_hang(pair_of, tmp_path):
    """Planted fault, as seen here when the OOM killer took a worker: the engine core dies and vLLM's client waits
    forever. The client is frozen (SIGSTOP) so it cannot notice by itself; verify must read the log and stop."""
    src, out = pair_of("tied-bf16-single")
    pairs = [Pair(f"query {i}", "A long document about rerankers. " * 300) for i in range(400)]
    outcome: dict = {}

    def run_verify() -> None:
        try:
            verify(out, src, backend="vllm", pairs=pairs, log_dir=tmp_path)
        except SeqclsError as e:
            outcome["error"] = str(e)

    thread = threading.Thread(target=run_verify, daemon=True)
    thread.start()
    log, deadline = tmp_path / "vllm-original.log", time.monotonic() + 600
    while time.monotonic() < deadline and "Supported pooling task" not in (
        log.read_text(errors="replace") if log.exists() else ""
    ):
        time.sleep(0.2)
    assert _signal_processes(b"converter.verify.engine", signal.SIGSTOP) == 1
    assert _signal_processes(b"VLLM::Worker", signal.SIGKILL) >= 1
    thread.join(timeout=300)
    assert not thread.is_alive(), "verify hung after its engine died"
    assert "vLLM failed on the original model (its engine died)" in outcome["error"]
    deadline = time.monotonic() + 30
    while _signal_processes(b"VLLM::", 0) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _signal_processes(b"VLLM::", 0) == 0, "the engine's processes outlived the failure"


def test_ci_parity_script_untied_fp32(original, tmp_path):
    """The script a GPU or Ascend CI job runs, here on CPU: convert, verify with vLLM, leave the artifacts."""
    src = original("untied-fp32-sharded")
    out = tmp_path / "out"
    env = os.environ | {"SEQCLS": f"{sys.executable} -m converter", "DEVICE": "cpu"}
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "ci_parity.sh"), str(src), str(out)], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    artifacts = tmp_path / "out-parity"
    report = json.loads((artifacts / "report.json").read_text())
    assert report["verdict"] == "pass" and report["backend"] == "vllm"
    assert (artifacts / "junit.xml").read_text().count("<failure") == 0
    assert (artifacts / "parity.png").is_file()
    assert "seqcls verify: PASS" in result.stdout


def test_vllm_backend_catches_swapped_tokens(swapped, capsys):
    src, bad = swapped
    assert run(["verify", str(bad), "--original", str(src), "--backend", "vllm"]) == 1
    assert "seqcls verify: FAIL" in capsys.readouterr().out


@pytest.fixture(scope="module")
def original_server(original, tmp_path_factory):
    """One server for the original, started the way the seed documents it (with hf_overrides)."""
    src = original("tied-bf16-single")
    spec = EngineSpec(str(src), "float32", "cpu", QWEN3_RERANKER.vllm_hf_overrides(), max_model_len=4096)
    log = tmp_path_factory.mktemp("server") / "original.log"
    with running_server(spec, require(), log, "cpu") as url:
        yield src, url
    assert _servers_running(src) == 0, "the original's server outlived its context"


def test_server_backend_rerank_and_score(original_server, pair_of, tmp_path, capsys):
    src, url = original_server
    _, out = pair_of("tied-bf16-single")
    args = ["verify", str(out), "--original", str(src), "--backend", "server", "--original-url", url]
    assert run([*args, "--report", str(tmp_path / "r.json")]) == 0, capsys.readouterr()
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["metrics"]["endpoints"]) == {"/v1/rerank", "/score"}
    assert report["metrics"]["max_abs_delta"] <= 1e-4
    assert not report["token_ids"]["mismatched_pairs"]
    assert report["prompts"] == {"original": MANUAL, "converted": TEMPLATE}
    assert _servers_running(out) == 0, "the converted model's server was not shut down"


def test_ascend_client_gets_the_official_scores_from_the_original(original_server):
    """scripts/ascend/client.py, the seed's request demo, against a real server of the original."""
    from converter.pairs import Pair

    src, url = original_server
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "ascend" / "client.py"), "--original-url", url],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    want = official_scores(src, [Pair(shown["query"], d) for d in shown["documents"]])
    assert max(abs(a - b) for a, b in zip(shown["scores"]["original"], want)) <= 1e-4


def test_server_backend_catches_swapped_tokens(original_server, swapped, capsys):
    _, url = original_server
    src, bad = swapped
    args = ["verify", str(bad), "--original", str(src), "--backend", "server", "--original-url", url]
    assert run(args) == 1
    assert "seqcls verify: FAIL" in capsys.readouterr().out
    assert _servers_running(bad) == 0


def test_server_that_cannot_start_is_a_clean_error(pair_of, tmp_path, capsys):
    src, out = pair_of("untied-fp32-single")  # not the model original_server is serving
    args = ["verify", str(out), "--original", str(src), "--backend", "server", "--max-length", "100000"]
    assert run([*args, "--log-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vLLM server for" in err[0] and "server-original.log" in err[0]
    assert _servers_running(src) == 0


@pytest.mark.cuda
def test_vllm_backend_on_cuda(pair_of):
    src, out = pair_of("untied-fp32-sharded")
    assert verify(out, src, backend="vllm", device="cuda")["verdict"] == "pass"


@pytest.mark.npu
def test_vllm_backend_on_npu(pair_of):
    src, out = pair_of("untied-fp32-sharded")
    assert verify(out, src, backend="vllm", device="npu")["verdict"] == "pass"
