"""Engines the test session shares, and a count of every engine the session starts.

A shared engine (a vLLM server of a fixture, say) is started once per run, on demand, by the first test that asks
for it, on whichever xdist worker that test runs; every later test, on any worker, gets its URL from a registry in
the run's shared folder. The run's controller stops every shared engine when the session ends (also when tests fail
or the run is interrupted) and fails the run if any of their processes is left. An engine that died is not started
again: the tests that ask for it fail with its log's tail.

The count watches the process table from the controller, so that engines started by verify itself, by scripts and
by ``seqcls serve`` in a subprocess are counted as well as the shared ones; the summary at the end of the run says
how many of each kind started."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from converter.verify.backends.server import HOST, free_port, healthy

MARKER = "SEQCLS_TEST_SHARED_ENGINE"
"""Every process of a shared engine carries this variable, set to ``<the run's shared folder>/<name>``: worker leak
checks leave them to the controller, which ends them by it. The folder keeps runs apart: a pytest run started by a
test of this suite (test_shared_engines.py) must not end the outer run's engines."""
START_TIMEOUT = float(os.environ.get("SEQCLS_SERVER_TIMEOUT", "600"))


@dataclass(frozen=True)
class SharedEngine:
    name: str
    url: str
    pid: int
    log: str
    seconds: float
    """How long the start took, health check included."""


def registry(shared: Path) -> Path:
    folder = shared / "engines"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def log_tail(log: Path | str, lines: int = 30) -> str:
    path = Path(log)
    text = path.read_text(errors="replace") if path.exists() else "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _stat(pid: int | str) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name (state, ppid, pgrp, ...), or none if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return []


def alive(pid: int) -> bool:
    state = _stat(pid)[:1]
    return bool(state) and state != ["Z"]


def shared_engine(
    shared: Path, name: str, argv: Callable[[int], list[str]], env: Mapping[str, str] | None = None
) -> SharedEngine:
    """The engine ``name``: ``argv(port)`` started in a process session of its own with ``env`` added, its output
    in a log, answering on ``http://127.0.0.1:port``, unless a worker started it already. Fails the asking test,
    with the log's tail, if the engine could not start or has died since."""
    folder = registry(shared)
    record, failed = folder / f"{name}.json", folder / f"{name}.failed"
    with open(folder / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if failed.exists():
            pytest.fail(failed.read_text(), pytrace=False)
        if record.exists():
            engine = SharedEngine(**json.loads(record.read_text()))
            check(engine)
            return engine
        log, port = folder / f"{name}.log", free_port()
        url, started = f"http://{HOST}:{port}", time.monotonic()
        with open(log, "w") as out:
            proc = subprocess.Popen(argv(port), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                    env=os.environ | dict(env or {}) | {MARKER: f"{shared}/{name}"})  # fmt: skip
        (folder / f"{name}.pid").write_text(str(proc.pid))
        while not healthy(url):
            problem = None
            if proc.poll() is not None:
                problem = f"exited with {proc.returncode}"
            elif time.monotonic() - started > START_TIMEOUT:
                problem = f"not healthy after {START_TIMEOUT:.0f} s"
            if problem:
                stop(shared, name)
                failed.write_text(f"the shared engine {name} {problem}; {log}:\n{log_tail(log)}")
                pytest.fail(failed.read_text(), pytrace=False)
            time.sleep(0.5)
        engine = SharedEngine(name, url, proc.pid, str(log), round(time.monotonic() - started, 1))
        record.write_text(json.dumps(asdict(engine)))
        return engine


def check(engine: SharedEngine) -> None:
    """Fails the calling test if the engine is gone or no longer answers: with its log's tail, at once."""
    if not alive(engine.pid) or not healthy(engine.url):
        pytest.fail(f"the shared engine {engine.name} died; {engine.log}:\n{log_tail(engine.log)}", pytrace=False)


@contextlib.contextmanager
def in_use(engine: SharedEngine) -> Iterator[SharedEngine]:
    """Around one test: the engine answers before it, and a death during it fails that test with the log's tail."""
    check(engine)
    yield engine
    check(engine)


@contextlib.contextmanager
def for_one_test(
    shared: Path, name: str, argv: Callable[[int], list[str]], env: Mapping[str, str] | None = None
) -> Iterator[SharedEngine]:
    """An engine that one test uses (or one xdist group's tests, on one worker, through a module-scoped fixture):
    started as a shared one (its log, the health wait, the controller's guard if the run is interrupted) and stopped
    when the block ends, so that its memory is free for the rest of the run (five servers alive at once took the
    machine's 24 GiB, and the OOM killer a Qwen3-VL server's worker). A later ask fails, saying so."""
    engine = shared_engine(shared, name, argv, env)
    try:
        with in_use(engine):
            yield engine
    finally:
        stop(shared, name)
        (registry(shared) / f"{name}.failed").write_text(f"the engine {name} was stopped when its tests ended")


def processes_of(shared: Path, name: str | None = None) -> list[int]:
    """Processes that carry the shared-engine marker of this run (of ``name``, or of any of its engines)."""
    prefix = f"{MARKER}={shared}/".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for entry in environ:
            if entry.startswith(prefix) and (name is None or entry == prefix + name.encode()):
                found.append(int(proc.name))
                break
    return found


def _group(pgid: int) -> list[int]:
    """The processes of process group ``pgid``: vLLM's engine core and workers rename themselves over their
    environment, so the marker cannot find them, but they stay in the group their server leads."""
    return [int(proc.name) for proc in Path("/proc").glob("[0-9]*") if _stat(proc.name)[2:3] == [str(pgid)]]


def stop(shared: Path, name: str | None = None) -> list[int]:
    """SIGKILLs every process of the shared engine ``name`` (or of all of them): its process group, and whatever
    carries its marker; removes the shared-memory files they had mapped (vLLM's message queues, which a killed engine
    cannot remove). Returns the pids it killed."""
    from converter.verify.processes import shared_memory_files

    records = [shared / "engines" / f"{name}.pid"] if name else (shared / "engines").glob("*.pid")
    groups = [int(record.read_text()) for record in records if record.exists()]
    pids = {pid for pgid in groups for pid in _group(pgid)} | set(processes_of(shared, name))
    pids = [pid for pid in pids if alive(pid)]
    files = shared_memory_files(pids)
    for pgid in groups:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    for path in files:
        with contextlib.suppress(OSError):
            path.unlink()
    return pids


def stop_all(shared: Path) -> tuple[list[SharedEngine], list[int]]:
    """At the end of the run: every shared engine stopped. Returns the engines, and the pids still alive after."""
    folder = shared / "engines"
    engines = [SharedEngine(**json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))]
    stop(shared)
    groups = [int(p.read_text()) for p in folder.glob("*.pid")]
    left = {pid for pgid in groups for pid in _group(pgid)} | set(processes_of(shared))
    return engines, sorted(pid for pid in left if alive(pid))


def vllm_orphans(since: float) -> list[tuple[int, str]]:
    """vLLM's engine cores and workers started after ``since`` (a time.time()) whose engine is gone: parentless
    (adopted by init), or below such a one. They rename themselves over their environment, so no marker finds them;
    a vLLM the developer runs beside the suite keeps its parent, and is left alone."""
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            name = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace").strip()
        except OSError:
            continue
        stat = _stat(proc.name)
        if not name.startswith("VLLM::") or stat[:1] in ([], ["Z"]):
            continue
        started = _boot_time() + int(stat[19]) / os.sysconf("SC_CLK_TCK")
        if started >= since:
            found[int(proc.name)] = (int(stat[1]), name)
    orphans: dict[int, str] = {}
    while True:
        more = {
            pid: name for pid, (ppid, name) in found.items() if pid not in orphans and (ppid == 1 or ppid in orphans)
        }
        if not more:
            return sorted(orphans.items())
        orphans |= more


def unmapped_shared_memory(since: float) -> list[Path]:
    """vLLM's shared-memory segments (``/dev/shm/psm_*``, 240 MiB each) made after ``since`` that no live process
    maps any more: an engine that was killed could not remove its own. (One was left per run; which engine path
    leaves it is not known yet.)"""
    from converter.verify.processes import shared_memory_files

    mapped = shared_memory_files([int(proc.name) for proc in Path("/proc").glob("[0-9]*")])
    found = []
    for path in Path("/dev/shm").glob("psm_*"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime >= since and path not in mapped:
                found.append(path)
    return found


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


ENGINE_KINDS = {
    "converter.verify.backends.vllm_engine": "vLLM offline engine",
    "vllm.entrypoints.openai.api_server": "vLLM server",
}
"""How an engine's main process shows in its command line. (llama.cpp runs in the test's own process: a tiny GGUF
loads in a fraction of a second, and is not counted.)"""


class EngineCount(threading.Thread):
    """Counts engine starts by watching the process table: a process whose command line names an engine, carrying
    ``marker`` (an environment entry every process of the run inherits), is one start (vLLM's engine core and
    workers, and seqcls serve, are parts of it)."""

    def __init__(self, marker: str) -> None:
        super().__init__(daemon=True, name="engine-count")
        self.run_marker = marker.encode()
        self.seen: dict[int, dict] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(1.0):
            self.sample()

    def sample(self) -> None:
        for proc in Path("/proc").glob("[0-9]*"):
            pid = int(proc.name)
            if pid in self.seen:
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                kind = next((k for sig, k in ENGINE_KINDS.items() if sig.encode() in argv), None)
                if kind is None:
                    continue
                environ = (proc / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if self.run_marker not in environ:
                continue
            marked = (e.split(b"=", 1)[1].decode() for e in environ if e.startswith(f"{MARKER}=".encode()))
            shared = next((value.rsplit("/", 1)[-1] for value in marked), None)
            self.seen[pid] = {"kind": kind, "vision": b".venv-vision" in argv[0], "shared": shared}

    def summary(self) -> str:
        self.sample()
        starts = list(self.seen.values())
        kinds = Counter(start["kind"] for start in starts)
        parts = [f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in sorted(kinds.items())]
        vision = sum(s["vision"] for s in starts)
        shared = sorted({s["shared"] for s in starts if s["shared"]})
        return (
            f"engine starts: {len(starts)} ({', '.join(parts) or 'none'}; {vision} of them Qwen3-VL); "
            f"shared, started once each: {', '.join(shared) or 'none'}"
        )
