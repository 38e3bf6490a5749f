"""Shell scripts: syntax, shellcheck, and argument handling."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = [
    ROOT / ".ci" / "run",
    *sorted(p for p in (ROOT / "scripts").rglob("*") if p.suffix in ("", ".sh") and p.is_file()),
]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_bash_syntax_and_shellcheck(script):
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    shellcheck = shutil.which("shellcheck", path=os.path.dirname(sys.executable)) or shutil.which("shellcheck")
    assert shellcheck, "shellcheck is part of the test extras"
    result = subprocess.run([shellcheck, "-x", str(script)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout


def test_ci_parity_usage():
    script = str(ROOT / "scripts" / "ci_parity.sh")
    no_args = subprocess.run(["bash", script], capture_output=True, text=True)
    assert no_args.returncode == 2 and "scripts/ci_parity.sh SRC [OUT]" in no_args.stdout
    helped = subprocess.run(["bash", script, "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "DEVICE" in helped.stdout
