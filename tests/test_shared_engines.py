"""The suite's shared engines (tests/engines.py), checked on a stand-in engine (an HTTP server with a /health page) in
a pytest run of its own: started once for every test that asks, on either xdist worker; a death fails the tests that
ask for it afterwards with its log's tail, at once; and the run's end stops it, also when the run is interrupted."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each runs a pytest session of its own (inner loop: docs/testing.md)
TESTS = Path(__file__).resolve().parent

SUITE = """
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest

import engines

OUT = Path(os.environ["TOY_OUT"])


def argv(port):
    site = OUT / "site"
    site.mkdir(exist_ok=True)
    (site / "health").write_text("ok")
    # A child without the marker, in the engine's process group, as vLLM's renamed engine core and workers are.
    serve = f"{sys.executable} -m http.server {port} --bind 127.0.0.1 --directory {site}"
    return ["sh", "-c", f"echo toy engine log line; env -i sleep 600 & echo $! > {OUT}/child; exec {serve}"]


@pytest.fixture
def toy(shared_engine):
    with engines.in_use(shared_engine("toy", argv)) as engine:
        yield engine


@pytest.mark.parametrize("n", range(4))
def test_uses_the_engine(toy, n):
    with open(OUT / "pids", "a") as f:
        f.write(f"{toy.pid}\\n")
    if os.environ.get("TOY_WAIT"):
        (OUT / "waiting").write_text(str(toy.pid))
        time.sleep(120)
"""

DEATH = """
def test_kills_the_engine(toy):
    os.killpg(toy.pid, signal.SIGKILL)
    time.sleep(0.5)


def test_asks_after_the_death(toy):
    pass
"""


def _default_sigint() -> None:
    """A job started in the background by a shell without job control (``nohup``, ``cmd &`` in a script) inherits
    SIGINT ignored, and Python then installs no KeyboardInterrupt: the toy run gets Ctrl-C's default, as at a
    terminal. (Seen: a CI run launched so, whose interrupted toy run slept on.)"""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _run(tmp_path: Path, suite: str, *args: str, **env: str) -> subprocess.Popen:
    for name in ("conftest.py", "engines.py"):
        shutil.copy(TESTS / name, tmp_path / name)
    (tmp_path / "test_toy.py").write_text(suite)
    out = tmp_path / "out"
    out.mkdir()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "SEQCLS_TEST_SHARED"))}
    environ |= {"TOY_OUT": str(out), **env}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "base"),
           "-o", "addopts=", *args, str(tmp_path / "test_toy.py")]  # fmt: skip
    return subprocess.Popen(cmd, cwd=tmp_path, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, preexec_fn=_default_sigint)  # fmt: skip


def _gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].startswith("Z"):
                return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


def test_one_start_for_every_test_on_both_workers_then_stopped(tmp_path):
    """Also: another run's shared engine (this outer suite's, say) is left alone. (Seen: a nested run ended every
    process that carried the marker, and the outer run's Qwen3-VL server with them.)"""
    other_run = os.environ | {"SEQCLS_TEST_SHARED_ENGINE": f"{tmp_path / 'another-run'}/toy"}
    bystander = subprocess.Popen(["sleep", "300"], env=other_run, start_new_session=True)
    try:
        run = _run(tmp_path, SUITE, "-n", "2")
        output, _ = run.communicate(timeout=300)
        assert bystander.poll() is None, "the run ended another run's shared engine"
    finally:
        bystander.kill()
        bystander.wait()
    assert run.returncode == 0, output[-3000:]
    pids = set((tmp_path / "out" / "pids").read_text().split())
    assert len(pids) == 1, f"the engine started more than once: {pids}"
    assert "shared engine toy: started in" in output
    assert _gone(int(pids.pop())), "the shared engine outlived the run"
    assert _gone(int((tmp_path / "out" / "child").read_text())), "a process of the engine's group outlived the run"


def test_a_dead_engine_fails_the_tests_that_ask_with_its_log(tmp_path):
    run = _run(tmp_path, SUITE + DEATH, "-n", "0", "-k", "kills or after")
    output, _ = run.communicate(timeout=300)
    assert run.returncode == 1, output[-3000:]
    # The death fails the test it happened under (at its teardown) and the next test that asks (at its setup).
    assert "ERROR at teardown of test_kills_the_engine" in output and "ERROR at setup of test_asks_after_the_death" in (
        output
    ), output[-3000:]
    assert "the shared engine toy died" in output and "toy engine log line" in output


def test_an_interrupted_run_still_stops_the_engine(tmp_path):
    run = _run(tmp_path, SUITE, "-n", "0", "-k", "test_uses_the_engine and 0", TOY_WAIT="1")
    waiting, deadline = tmp_path / "out" / "waiting", time.monotonic() + 120
    while not waiting.exists():
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0][-3000:]
        time.sleep(0.2)
    pid = int(waiting.read_text())
    os.killpg(run.pid, signal.SIGINT)
    output, _ = run.communicate(timeout=120)
    assert run.returncode != 0 and "KeyboardInterrupt" in output, output[-3000:]
    assert _gone(pid), "an interrupted run left its shared engine running"


def test_orphaned_vllm_processes_are_found_and_a_running_vllm_is_not():
    """After a run, a ``VLLM::`` process whose engine is gone (adopted by init) is a leftover of the run; one whose
    parent still runs (a vLLM the developer runs beside the suite) is not."""
    import engines

    since = time.time() - 1
    started = subprocess.run(["bash", "-c", "(exec -a VLLM::EngineCore sleep 60 >/dev/null 2>&1) & echo $!; disown"],
                             check=True, capture_output=True, text=True)  # fmt: skip
    orphan = int(started.stdout.split()[0])
    running = subprocess.Popen(["bash", "-c", "exec -a VLLM::Worker sleep 60"])
    try:
        deadline = time.monotonic() + 10
        while orphan not in (found := dict(engines.vllm_orphans(since))) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert found.get(orphan) == "VLLM::EngineCore" and running.pid not in found, found
    finally:
        running.kill()
        running.wait()
        with contextlib.suppress(OSError):
            os.kill(orphan, signal.SIGKILL)
