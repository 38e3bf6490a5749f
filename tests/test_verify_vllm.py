"""``seqcls verify --backend vllm`` through the real vLLM engine (CPU build here; CUDA and NPU where present). The
servers (``--backend server``, ``seqcls serve``, the Ascend client) are tests/test_server_vllm.py."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from unittest import mock

import pytest
from conftest import FAMILY_ORIGINALS
from helpers import official_scores

from converter import convert
from converter.cli import run
from converter.errors import SeqclsError
from converter.pairs import SEED_PAIRS, Pair
from converter.recipes import preset
from converter.verify import verify
from converter.verify.backends.base import JOINED, MANUAL, TEMPLATE
from converter.verify.outputs import markdown
from converter.verify.parity import REFERENCE_IDS
from converter.vllm_compat import find_tcmalloc

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
INPROCESS = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
"""vLLM's engine core (and its worker) in the engine process itself: a start takes ~18 s here instead of ~40 s, and
scores are the same. Tests marked ``vllm_processes`` keep vLLM's default layout, because they check it (an engine
that dies, processes that must not outlive verify) or run exactly what users run (the servers). The CI script runs
in-process: it drives the same backend as the vLLM tests, and the default layout is covered by those."""


@pytest.fixture(autouse=True)
def _engine_layout(request, monkeypatch):
    if not request.node.get_closest_marker("vllm_processes"):
        for key, value in INPROCESS.items():
            monkeypatch.setenv(key, value)


# The vllm backend's engines are verify's own, one process per side, started by verify as users run it; the tests
# that use one say so. Tests that share the session's cached original side form an xdist_group.
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def qwen3_vllm(pair_of, tmp_path_factory):
    """``verify --backend vllm`` of the tied Qwen3 fixture on the built-in pairs, once per session, streamed to the
    engine 5 pairs at a time. It leaves the original side in the session's verify cache, so later verifies of that
    original start one engine, not two."""
    src, out = pair_of("tied-bf16-single")
    logs = tmp_path_factory.mktemp("qwen3-vllm")
    with mock.patch.dict(os.environ, INPROCESS):
        return src, out, verify(out, src, backend="vllm", report=logs / "report.json", chunk=5), logs


def _engine_logs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("vllm-*.log"))


@pytest.mark.xdist_group("qwen3-vllm")
def test_vllm_backend_tied_fp32(qwen3_vllm):
    """Also the shipped score template through vLLM (raw pairs, instructions as chat_template_kwargs, a document
    ending in a newline, one over the model length, sent cut as the reference cuts it): the official token ids, and
    the official scores."""
    src, _, report, logs = qwen3_vllm
    assert report["verdict"] == "pass", report["failed_pairs"]
    assert report["metrics"]["max_abs_delta"] <= 1e-4
    assert report["environment"]["vllm"].startswith("vllm")
    assert report["token_ids"] == {"mismatched_pairs": [], "official_mismatched_pairs": []}
    assert report["prompts"] == {"original": MANUAL, "converted": TEMPLATE}
    assert _engine_logs(logs) == ["vllm-converted.log", "vllm-original.log"]
    # vLLM's CPU worker ran with the tcmalloc it asks for, which keeps its heap flat (docs/verify-memory.md).
    assert report["environment"]["engine_malloc"] == find_tcmalloc(), "scripts/setup installs libtcmalloc-minimal4"
    assert not any("libtcmalloc is not found" in p.read_text() for p in logs.rglob("vllm-*.log"))
    assert all(report["timings"][side]["load_seconds"] > 0 for side in ("original", "converted"))
    assert all(report["timings"][side]["tokens_per_second"] > 0 for side in ("original", "converted"))
    # Streamed: 23 pairs in chunks of 5, an instruction's group split across chunks, every score in its place.
    assert [report["timings"][side]["chunks"] for side in ("original", "converted")] == [5, 5]
    assert "inside LLM.score" in report["timing"] and "front end included on both sides" in report["timing"]
    assert set(report["phases"]) == {"prepare", "official ids", "original side", "converted side", "reference",
                                     "compare"}  # fmt: skip
    pairs = [Pair(p["query"], p["document"], p["instruction"]) for p in report["pairs"]]
    assert any(p.instruction for p in pairs) and any(p.document.endswith("\n") for p in pairs)
    assert max(len(p.document) for p in pairs) > 10_000
    [cut] = report["cut_pairs"]
    assert len(pairs[cut].document) == max(len(p.document) for p in pairs) and cut not in report["failed_pairs"]
    official = official_scores(src, pairs)
    assert max(abs(p["converted"] - o) for p, o in zip(report["pairs"], official)) <= 1e-4
    # The transformers reference, a third column on the same ids: both paths agree with it, and no finding.
    reference = report["reference"]
    assert reference["device"] == "cpu" and reference["prompts"] == REFERENCE_IDS
    assert reference["converted"]["score"]["max_abs_delta"] <= 1e-4
    assert reference["original"]["score"]["max_abs_delta"] <= 1e-4
    assert max(abs(p["reference"] - o) for p, o in zip(report["pairs"], official)) <= 1e-4
    assert report["findings"] == [] and report["failure"] is None
    assert "| reference | original path | converted |" in markdown(report)
    # LLM.score with the template on the pairs formatted by hand as the seed's clients do, and mixed (all but the
    # two long ones, which a template that wrapped them twice would push over the model length).
    for form in ("seed-formatted", "mixed"):
        got = report["input_forms"][form]
        assert got["pairs"] == len(pairs) - 2 and got["max_abs_delta"] <= 1e-6, form
        assert got["failed_pairs"] == [] and got["token_mismatches"] == [], form
    assert "seed-formatted (21 pairs): same; mixed (21 pairs): same" in markdown(report)


@pytest.mark.parametrize("family", ["mxbai-rerank-v2", "bge-reranker-v2-gemma"])
def test_vllm_backend_other_presets_against_vllms_online_conversion(pair_of, tmp_path, family):
    """The original runs through vLLM's documented hf_overrides (its own online conversion); both sides must also
    give the family's official scores, so vLLM's conversion, ours and the reference agree (the converted checkpoints
    as-is). Its own engines: the vllm backend starts one per side, and these originals are scored nowhere else.
    zerank-2's and ctxl-rerank-v2's vLLM paths run on servers (test_server_vllm.py), as their users serve them."""
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
    assert report["reference"]["converted"]["score"]["max_abs_delta"] <= 1e-4, "the reference on vLLM's own ids"


def test_vllm_backend_multi_label_generic_conversion(original, tmp_path, capsys):
    """--tokens/--method with N labels: vLLM's classifier on both sides, the original (untied, sharded) through its
    generic online conversion (``method``, not the Qwen3 flag) with N tokens, raw pairs. (The two-label generic
    method's overrides are mxbai-rerank-v2's, tested above.) Its own engines: a model and an original path that no
    other test scores."""
    src = original("untied-fp32-sharded")
    out = tmp_path / "generic3"
    convert(src, out, tokens=["no", "yes", "Ġmaybe"], method="no_post_processing")
    report = verify(out, src, backend="vllm", pairs=list(SEED_PAIRS))
    assert report["verdict"] == "pass", report["failed_pairs"]
    assert list(report["metrics"]["endpoints"]) == ["label no", "label yes", "label Ġmaybe"]
    assert list(report["reference"]["converted"]) == ["label no", "label yes", "label Ġmaybe"]
    assert max(e["max_abs_delta"] for e in report["reference"]["converted"].values()) <= 1e-4
    assert report["prompts"] == {"original": JOINED, "converted": JOINED}
    assert report["token_ids"] == {"mismatched_pairs": [], "official_mismatched_pairs": []}
    assert run(["verify", str(out), "--original", str(src), "--backend", "server"]) == 2
    assert "verify it with --backend transformers or vllm" in capsys.readouterr().err


def _ours(match: str, under=None) -> list:
    """Descendants of ``under`` (default: this test process) whose name or command line contains ``match``: other
    xdist workers' engines, and the shared engines this worker happened to start, are not ours to signal."""
    import psutil

    found = []
    for child in (under or psutil.Process()).children(recursive=True):
        try:
            if match in child.name() or match in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


@pytest.mark.vllm_processes
def test_an_engine_that_dies_under_a_waiting_client_is_a_clean_error_not_a_hang(pair_of, tmp_path, monkeypatch):
    """Planted fault, as seen here when the OOM killer took a worker: the engine core dies and vLLM's client waits
    forever. The client is frozen (SIGSTOP) so it cannot notice by itself. vLLM's log wording is switched off here,
    so verify must see it from the process tree (the wording is tested in test_processes) and stop. Its own engine,
    in vLLM's default process layout, since the test kills part of it."""
    import converter.verify.backends.vllm as backends
    import converter.verify.processes as processes

    monkeypatch.setattr(processes, "ENGINE_DIED", ())
    monkeypatch.setattr(backends, "ENGINE_GRACE", 3.0)
    src, out = pair_of("tied-bf16-single")
    pairs = [Pair(f"query {i}", "A long document about rerankers. " * 300) for i in range(400)]
    outcome: dict = {}

    def run_verify() -> None:
        try:
            verify(out, src, backend="vllm", pairs=pairs, log_dir=tmp_path, use_cache=False)
        except SeqclsError as e:
            outcome["error"] = str(e)

    thread = threading.Thread(target=run_verify, daemon=True)
    thread.start()
    log, deadline = tmp_path / "vllm-original.log", time.monotonic() + 600
    while time.monotonic() < deadline and "Supported pooling task" not in (
        log.read_text(errors="replace") if log.exists() else ""
    ):
        assert thread.is_alive(), f"verify ended before its engine was up: {outcome}"
        time.sleep(0.2)
    [client] = _ours("converter.verify.backends.vllm_engine")
    vllm_processes = _ours("VLLM::", under=client)
    workers = [p for p in vllm_processes if "Worker" in p.name() or "Worker" in " ".join(p.cmdline())]
    assert workers and len(vllm_processes) > len(workers), "expected an engine core and its worker(s)"
    client.send_signal(signal.SIGSTOP)
    for worker in workers:
        worker.kill()
    thread.join(timeout=300)
    assert not thread.is_alive(), "verify hung after its engine died"
    assert "vLLM failed on the original model (its engine died)" in outcome["error"]
    # SIGKILLed by now; a process freeing gigabytes can take a moment to go, more so on a loaded machine.
    import psutil

    _, alive = psutil.wait_procs([client, *vllm_processes], timeout=30)
    assert all(p.status() == "zombie" for p in alive if p.is_running()), f"{alive} outlived the failure"


@pytest.mark.xdist_group("qwen3-vllm")
def test_vllm_backend_catches_swapped_tokens(qwen3_vllm, swapped, tmp_path, capsys):
    """Planted fault. The original's side comes from the cache: one engine."""
    src, bad = swapped
    args = ["verify", str(bad), "--original", str(src), "--backend", "vllm", "--log-dir", str(tmp_path)]
    assert run([*args, "--report", str(tmp_path / "r.json")]) == 1
    assert "seqcls verify: FAIL" in capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["cache"]["original"] == "hit" and _engine_logs(tmp_path) == ["vllm-converted.log"]
    assert report["failed_pairs"] and report["metrics"]["max_abs_delta"] > 1e-2
    # The reference names the wrong side; its scores came from the cache too (the same prompt ids as before).
    assert report["cache"]["reference"] == "hit"
    assert report["failure"].startswith("the converted checkpoint deviates from the reference by")
    assert "original path deviates" not in report["failure"] and report["findings"] == []
    # The second planted fault: seed-formatted input wrapped twice, caught apart from the head's.
    assert "its score template gives seed-formatted and mixed input other prompts" in report["failure"]
    for form in ("seed-formatted", "mixed"):
        got = report["input_forms"][form]
        assert got["pairs"] == 21 and len(got["token_mismatches"]) == 21 and got["max_abs_delta"] > 1e-2, form


@pytest.mark.cuda
def test_vllm_backend_on_cuda(pair_of):
    src, out = pair_of("untied-fp32-sharded")
    assert verify(out, src, backend="vllm", device="cuda")["verdict"] == "pass"


@pytest.mark.npu
def test_vllm_backend_on_npu(pair_of):
    src, out = pair_of("untied-fp32-sharded")
    assert verify(out, src, backend="vllm", device="npu")["verdict"] == "pass"
