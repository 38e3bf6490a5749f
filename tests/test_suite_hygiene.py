"""The suite's own guard: a process a test leaves running fails the run, is named, and is killed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent

LEAKY = """
import subprocess, sys

def test_leaves_a_process_behind(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)  # leaked-on-purpose"],
                            start_new_session=True)
    (tmp_path.parent.parent / "leaked.pid").write_text(str(proc.pid))
"""


def test_a_leaked_process_fails_the_run_and_is_killed(tmp_path):
    for name in ("conftest.py", "engines.py"):
        shutil.copy(TESTS / name, tmp_path / name)
    (tmp_path / "test_leaky.py").write_text(LEAKY)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "base"),
         "-o", "addopts=", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")},
    )  # fmt: skip
    assert result.returncode == 1, result.stdout[-2000:]
    assert "1 process(es) started by the tests outlived them" in result.stdout
    assert "leaked-on-purpose" in result.stdout
    pid = int((tmp_path / "leaked.pid").read_text())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(") ")[1][:1]
