"""How verify ends what it starts: the engine watcher (log wording, process tree, hard timeout) and the process-group
stop, on real processes that are not vLLM (the real engine is in test_verify_vllm)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import converter.verify.backends.vllm as backends
from converter.verify.processes import EngineWatch, stop_process_group

pytest.importorskip("psutil")
pytest.importorskip("setproctitle")


def _start(code: str, log) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def test_vllms_log_wording_means_dead(tmp_path, monkeypatch):
    """A client that stays alive after its engine logged a fatal error is taken as dead after the grace."""
    monkeypatch.setattr(backends, "ENGINE_GRACE", 0.5)
    log = tmp_path / "engine.log"
    proc = _start("import time; print('EngineCore encountered a fatal error', flush=True); time.sleep(600)", log)
    try:
        assert backends._wait_for_engine(EngineWatch(proc, log, 60), tmp_path / "result.json") == "its engine died"
    finally:
        stop_process_group(proc, grace=0)


def test_a_lost_vllm_process_means_dead(tmp_path, monkeypatch):
    """The process tree, whatever the log says: a child named like vLLM's engine core that is gone."""
    monkeypatch.setattr(backends, "ENGINE_GRACE", 0.5)
    log = tmp_path / "engine.log"
    child = "import setproctitle, time; setproctitle.setproctitle('VLLM::EngineCore'); time.sleep(3)"
    proc = _start(
        f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(600)", log
    )
    watch = EngineWatch(proc, log, 60)
    try:
        assert backends._wait_for_engine(watch, tmp_path / "result.json") == "its engine died"
        assert len(watch.seen) == 1
    finally:
        stop_process_group(proc, grace=0)


def test_hard_timeout(tmp_path):
    log = tmp_path / "engine.log"
    proc = _start("import time; time.sleep(600)", log)
    started = time.monotonic()
    try:
        outcome = backends._wait_for_engine(EngineWatch(proc, log, 1.0), tmp_path / "result.json")
    finally:
        stop_process_group(proc, grace=0)
    assert outcome == "no result after 1 s, the engine timeout" and time.monotonic() - started < 10
    assert proc.poll() is not None


def test_a_written_result_ends_the_wait_at_once(tmp_path):
    log, result = tmp_path / "engine.log", tmp_path / "result.json"
    proc = _start(f"import time; open({str(result)!r}, 'w').write('{{}}'); time.sleep(600)", log)
    try:
        assert backends._wait_for_engine(EngineWatch(proc, log, 60), result) == 0
    finally:
        stop_process_group(proc, grace=0)


def test_stop_ends_the_group_and_its_shared_memory(tmp_path):
    """A killed engine cannot remove its /dev/shm message queues; the stop removes what the group had mapped."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm here")
    name = f"/dev/shm/seqcls-test-{os.getpid()}"
    code = (
        "import mmap, subprocess, sys, time\n"
        f"f = open({name!r}, 'w+b'); f.truncate(1 << 20); m = mmap.mmap(f.fileno(), 1 << 20)\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print('ready', flush=True); time.sleep(600)\n"
    )
    log = tmp_path / "group.log"
    proc = _start(code, log)
    deadline = time.monotonic() + 30
    while "ready" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    import psutil

    children = psutil.Process(proc.pid).children(recursive=True)
    assert os.path.exists(name) and children
    stop_process_group(proc, grace=0)
    assert not os.path.exists(name)
    _, alive = psutil.wait_procs(children, timeout=10)  # SIGKILL is delivered, not awaited
    assert not [c for c in alive if c.status() != psutil.STATUS_ZOMBIE]
