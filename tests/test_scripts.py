"""Shell scripts: syntax, shellcheck, and argument handling."""

from __future__ import annotations

import json
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


@pytest.mark.slow  # inner loop: see docs/testing.md
def test_ci_parity_passes_convert_args(original, tmp_path):
    """A Qwen2 original whose name says nothing needs --preset, which CONVERT_ARGS carries."""
    src = tmp_path / "qwen2-model"
    shutil.copytree(original("tiny-mxbai-rerank-base-v2"), src)
    env = os.environ | {"SEQCLS": f"{sys.executable} -m converter", "BACKEND": "transformers"}
    cmd = ["bash", str(ROOT / "scripts" / "ci_parity.sh"), str(src), str(tmp_path / "out")]
    refused = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "pass --preset" in refused.stderr
    result = subprocess.run(cmd, env=env | {"CONVERT_ARGS": "--preset mxbai-rerank-v2"}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "out-parity" / "report.json").read_text())
    assert report["verdict"] == "pass" and "seqcls verify: PASS" in result.stdout
