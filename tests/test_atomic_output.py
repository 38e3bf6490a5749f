"""``kill -9`` at any moment never leaves a half-written checkpoint at the output path."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from helpers import load_all


def _complete(out) -> bool:
    config = json.loads((out / "config.json").read_text())
    index = json.loads((out / "model.safetensors.index.json").read_text())
    tensors = load_all(out)
    return config["architectures"] == ["Qwen3ForSequenceClassification"] and set(index["weight_map"]) == set(tensors)


@pytest.mark.slow
def test_kill_9_never_leaves_a_partial_output(original, tmp_path):
    """Kills at growing delays (each 1.4 times the last) until a run finishes, then inside that last interval, from
    its end back, so that some kill lands while the temporary folder is being written however fast or loaded the
    machine is."""
    src = original("untied-fp32-sharded")
    attempts = iter(range(1000))

    def kill_after(delay: float) -> tuple[bool, bool]:
        """(finished, killed mid-write); any output present must be complete."""
        out = tmp_path / f"out{next(attempts)}"
        cmd = [sys.executable, "-m", "converter", "convert", str(src), "-o", str(out), "--copy"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if out.exists():
            assert _complete(out), f"partial output after kill at {delay:.3f}s"
        mid_write = any(p.name.startswith(f".{out.name}.seqcls-tmp-") for p in tmp_path.iterdir())
        return out.exists(), mid_write

    killed_mid_write, last_unfinished, delay = False, 0.0, 0.05
    while delay < 60:
        finished, mid_write = kill_after(delay)
        killed_mid_write |= mid_write
        if finished:
            break
        last_unfinished, delay = delay, delay * 1.4
    for k in range(1, 50):  # from the end of that interval back: the write is a run's last part
        if killed_mid_write:
            break
        killed_mid_write |= kill_after(delay - (delay - last_unfinished) * k / 50)[1]
    assert killed_mid_write, "no kill landed during a write; the test proved nothing"


def test_a_later_run_removes_what_a_killed_run_left(original, tmp_path):
    """Stale temporary folders of dead processes on this host go; a live run's and another host's stay."""
    import os
    import socket

    from converter import convert

    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.seqcls-tmp-{host}-{dead.pid}-abc"
    live = tmp_path / f".out.seqcls-tmp-{host}-{os.getpid()}-def"
    foreign = tmp_path / f".out.seqcls-tmp-elsewhere-{dead.pid}-ghi"
    for folder in (stale, live, foreign):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"partial")
    convert(original("tied-bf16-single"), tmp_path / "out")
    assert not stale.exists() and live.exists() and foreign.exists()
