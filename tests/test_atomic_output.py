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
    src = original("untied-fp32-sharded")
    killed_mid_write = finished = 0
    for attempt in range(100):
        delay = 0.05 * (attempt + 1)
        out = tmp_path / f"out{attempt}"
        cmd = [sys.executable, "-m", "converter", "convert", str(src), "-o", str(out), "--copy"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if out.exists():
            assert _complete(out), f"partial output after kill at {delay:.2f}s"
            finished += 1
        killed_mid_write += any(p.name.startswith(f".{out.name}.seqcls-tmp-") for p in tmp_path.iterdir())
        if finished:
            break
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
