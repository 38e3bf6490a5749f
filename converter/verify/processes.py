"""Start vLLM in its own process session and always end it, whole: the engine core and workers it spawns outlive
their parent otherwise (seen here: orphaned ``VLLM::EngineCore`` processes that ignore SIGTERM, hold a model's
memory each, and make the next engine start hang)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

VLLM_PREFIX = "VLLM::"
"""vLLM renames its engine core and worker processes (``VLLM::EngineCore``, ``VLLM::Worker``)."""
ENGINE_DIED = ("died unexpectedly", "EngineCore encountered a fatal error")
"""What vLLM logs when a worker or its engine core dies; its client can then wait forever for a reply."""
DEFAULT_TIMEOUT = float(os.environ.get("SEQCLS_ENGINE_TIMEOUT", "7200"))
"""Hard limit on one engine job or server, start-up included (seconds)."""


def stop_process_group(proc: subprocess.Popen, grace: float = 30, known: list | None = None) -> None:
    """SIGTERM the session ``proc`` leads, then SIGKILL whatever is left of it, and of ``known`` descendants that
    may have left the group. Shared-memory files its processes had mapped (vLLM's message queues, a few hundred MB
    each) are removed: a killed engine cannot remove them itself, and ``/dev/shm`` is RAM."""
    known = [*(known or []), *_descendants(proc.pid)]
    shared = shared_memory_files([proc.pid, *(child.pid for child in known)])
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for child in known:
        with contextlib.suppress(Exception):
            child.kill()
            child.wait(timeout=10)
    for path in shared:
        with contextlib.suppress(OSError):
            path.unlink()


def _descendants(pid: int) -> list:
    """Every process below ``pid`` (a server's engine core and workers, say), where psutil is installed."""
    try:
        import psutil

        return psutil.Process(pid).children(recursive=True)
    except Exception:  # no psutil (no vLLM either), or the process is gone already
        return []


def shared_memory_files(pids: list[int]) -> set[Path]:
    """Files under /dev/shm that these processes map, and the semaphores joblib's loky names after them (Linux;
    elsewhere nothing is found)."""
    found = set()
    for pid in pids:
        found.update(Path("/dev/shm").glob(f"sem.loky-{pid}-*"))
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
                path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
                if path.startswith("/dev/shm/"):
                    found.add(Path(path.removesuffix(" (deleted)")))
    return found


class EngineWatch:
    """Watches an engine process: vLLM's own processes below it (by process tree, whatever vLLM logs), its log,
    and a hard deadline."""

    def __init__(self, proc: subprocess.Popen, log: Path, timeout: float = DEFAULT_TIMEOUT) -> None:
        import psutil  # a vLLM dependency: present wherever an engine runs

        self._psutil = psutil
        self.proc = proc
        self.log = log
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.seen: dict[int, object] = {}

    def vllm_processes(self) -> list:
        """vLLM's engine core and workers below ``proc``, remembered so they can be killed even if they leave the
        process group."""
        try:
            children = self._psutil.Process(self.proc.pid).children(recursive=True)
        except self._psutil.Error:
            return list(self.seen.values())
        for child in children:
            with contextlib.suppress(self._psutil.Error):
                if child.name().startswith(VLLM_PREFIX) or VLLM_PREFIX in " ".join(child.cmdline()):
                    self.seen.setdefault(child.pid, child)
        return list(self.seen.values())

    def lost(self) -> list[str]:
        """Names of vLLM processes seen earlier that are gone now."""
        gone = []
        for pid, child in self.seen.items():
            try:
                alive = child.is_running() and child.status() != self._psutil.STATUS_ZOMBIE
            except self._psutil.Error:
                alive = False
            if not alive:
                gone.append(f"pid {pid}")
        return gone

    def log_says_died(self) -> bool:
        if not self.log.exists():
            return False
        with open(self.log, "rb") as f:
            f.seek(max(f.seek(0, os.SEEK_END) - 65536, 0))
            tail = f.read().decode(errors="replace")
        return any(marker in tail for marker in ENGINE_DIED)

    def expired(self) -> bool:
        return time.monotonic() > self.deadline


def last_error(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error:" in line:
            return line[-300:]
    return lines[-1][-300:] if lines else "no output"
