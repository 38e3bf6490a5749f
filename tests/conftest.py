"""Session fixtures: tiny originals of every preset (real Qwen vocabularies), built once and shared; one verify cache
for the whole session (the original side of a fixture is the same model in many tests); engines shared by the whole
session (``engines.py``), and a count of every engine started; and a check at the end that nothing the suite started
is still running."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path

import pytest

OUTERMOST = "SEQCLS_TEST_RUN" not in os.environ
"""Not a pytest run started by a test of this suite (tests/test_suite_hygiene.py runs one): only the outermost run
sweeps for vLLM processes by start time, which would otherwise take the outer run's engines for its own."""
RUN_MARKER = f"SEQCLS_TEST_RUN={uuid.uuid4().hex}"
"""Every process the suite starts inherits this variable; the end-of-session check finds them by it."""
os.environ["SEQCLS_TEST_RUN"] = RUN_MARKER.split("=", 1)[1]
os.environ.setdefault("SEQCLS_ENGINE_TIMEOUT", "600")
os.environ.setdefault("SEQCLS_SERVER_TIMEOUT", "600")
os.environ.setdefault("SEQCLS_LLAMA_THREADS", "1")  # two workers share the cores; ggml's spinning threads would fight
if os.environ.get("PYTEST_XDIST_WORKER"):
    # The same for torch's OpenMP threads (read at import): one each, or two workers' waiting threads spin on the
    # cores the other needs. Measured: the inner loop 142.6 s against 165.2 s, 50 s less CPU.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; vLLM's default takes ~3.5 GiB and a second per start here
os.environ["SEQCLS_CACHE"] = tempfile.mkdtemp(prefix="seqcls-test-cache-")
if not os.environ.get("SEQCLS_TEST_SHARED"):
    os.environ["SEQCLS_TEST_SHARED"] = tempfile.mkdtemp(prefix="seqcls-test-shared-")
    os.environ["SEQCLS_TEST_SHARED_OWNER"] = str(os.getpid())
SHARED = Path(os.environ["SEQCLS_TEST_SHARED"])
"""Fixtures built once per run and shared by the xdist workers (which inherit this from the controller)."""

import engines  # noqa: E402

from converter.tiny_model import build_tiny_reranker, build_tiny_vl_reranker  # noqa: E402  (after the environment)

CONTROLLER = os.environ.get("SEQCLS_TEST_SHARED_OWNER") == str(os.getpid())
"""This process runs the session (xdist's controller, or the only process without xdist): it owns the shared engines
and the shared folder, and counts engine starts."""

ORIGINALS = {
    "tied-bf16-single": {"tied": True, "dtype": "bfloat16"},
    "tied-fp16-sharded": {"tied": True, "dtype": "float16", "max_shard_size": "30MB"},
    "tied-fp32-single": {"tied": True, "dtype": "float32"},
    "untied-fp32-single": {"tied": False, "dtype": "float32"},
    "untied-bf16-sharded": {"tied": False, "dtype": "bfloat16", "max_shard_size": "30MB"},
    "untied-fp32-sharded": {"tied": False, "dtype": "float32", "max_shard_size": "60MB"},
    # Other presets; their folder names are how convert recognises the family.
    "tiny-mxbai-rerank-base-v2": {"family": "mxbai-rerank-v2", "tied": True, "dtype": "float32"},
    "tiny-bge-reranker-v2-gemma": {"family": "bge-reranker-v2-gemma", "tied": True, "dtype": "float32"},
    "tiny-zerank-2": {"family": "zerank-2", "tied": True, "dtype": "float32"},
    "tiny-ctxl-rerank-v2": {"family": "ctxl-rerank-v2", "tied": True, "dtype": "float32"},
}
QWEN3_ORIGINALS = [name for name, options in ORIGINALS.items() if "family" not in options]
FAMILY_ORIGINALS = {"qwen3-reranker": "tied-fp32-single", "mxbai-rerank-v2": "tiny-mxbai-rerank-base-v2",
                    "bge-reranker-v2-gemma": "tiny-bge-reranker-v2-gemma", "zerank-2": "tiny-zerank-2",
                    "ctxl-rerank-v2": "tiny-ctxl-rerank-v2"}  # fmt: skip
"""One fp32 original per preset, for tests that run every family."""


def _shared(folder: Path, build) -> Path:
    """``folder``, built by ``build(folder)`` once per run: the first worker to ask builds it under a lock, the
    others wait and reuse it. (Built in place: a converted card names its own folder.)"""
    import fcntl

    folder.parent.mkdir(parents=True, exist_ok=True)
    done = folder.with_name(folder.name + ".done")
    with open(folder.with_name(folder.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def original():
    """``original(name)`` builds (once per run) and returns the folder of a tiny original. Do not modify it."""

    def get(name: str) -> Path:
        seed = list(ORIGINALS).index(name)
        return _shared(SHARED / "originals" / name, lambda tmp: build_tiny_reranker(tmp, seed=seed, **ORIGINALS[name]))

    return get


VL_ORIGINALS = {"tiny-qwen3-vl-reranker-2b": True, "tiny-qwen3-vl-reranker-8b": False}
"""Tiny Qwen3-VL-Reranker originals: tied like the 2B, untied like the 8B (name -> tied)."""


@pytest.fixture(scope="session")
def vl_pair_of():
    """``vl_pair_of(name)``: (original, converted) of a tiny Qwen3-VL-Reranker, built once per run."""
    from converter import convert

    def get(name: str) -> tuple[Path, Path]:
        tied = VL_ORIGINALS[name]
        src = _shared(SHARED / "originals" / name, lambda tmp: build_tiny_vl_reranker(tmp, tied=tied, seed=7))
        return src, _shared(SHARED / "converted" / f"{name}-seq-cls", lambda tmp: convert(src, tmp))

    return get


@pytest.fixture(scope="session")
def pair_of(original):
    """``pair_of(name)``: (original, converted), converted once per run. Do not modify either."""
    from converter import convert

    def get(name: str) -> tuple[Path, Path]:
        src = original(name)
        return src, _shared(SHARED / "converted" / f"{name}-seq-cls", lambda tmp: convert(src, tmp))

    return get


@pytest.fixture
def copy_of(original, tmp_path):
    """``copy_of(name)``: a private, writable copy of an original, for tests that damage it."""

    def get(name: str) -> Path:
        dst = tmp_path / f"src-{name}"
        shutil.copytree(original(name), dst)
        return dst

    return get


@pytest.fixture
def swapped(pair_of, tmp_path):
    """A converted checkpoint whose head was built from swapped label tokens, and whose score template formats
    pre-formatted input a second time (as templates did before they recognised it): the planted faults of the
    vllm backend (tests/test_verify_vllm.py)."""
    from helpers import load_all, rewrite_tensor

    from converter import convert

    src, good = pair_of("tied-bf16-single")
    bad = tmp_path / "swapped"
    convert(src, bad)
    rewrite_tensor(bad, "score.weight", -load_all(good)["score.weight"])
    template = bad / "score_template.jinja"
    text = template.read_text()
    assert text.count(" if (ns.") == 2
    template.write_text(text.replace(" if (ns.", " if false and (ns."))
    return src, bad


def pytest_collection_modifyitems(config, items):
    """Skips what this host cannot run, and puts the long tests (vLLM, then other slow ones) first, in their own
    order, so the two xdist workers end together instead of one waiting on a late engine start."""
    items.sort(key=lambda item: 0 if {"vllm", "vision"} & set(item.keywords) else 1 if "slow" in item.keywords else 2)
    has = {
        "vllm": importlib.util.find_spec("vllm") is not None,
        "llamacpp": importlib.util.find_spec("llama_cpp") is not None,
        "vision": (Path(__file__).resolve().parent.parent / ".venv-vision" / "bin" / "python").exists(),
        "cuda": _cuda(),
        "npu": importlib.util.find_spec("torch_npu") is not None,
    }
    for item in items:
        for marker, available in has.items():
            if marker in item.keywords and not available:
                if marker in ("vllm", "llamacpp", "vision") and os.environ.get("CI"):
                    raise pytest.UsageError(f"CI must run the {marker} tests, but it is not installed")
                item.add_marker(pytest.mark.skip(reason=f"needs {marker}"))


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def leftover_processes() -> list[tuple[int, str]]:
    """Processes this test session started (they carry ``RUN_MARKER``) that are still alive, but for this one and
    the shared engines' (the controller ends those, and checks them, at the end of the run)."""
    found = []
    marker = RUN_MARKER.encode()
    for proc in Path("/proc").glob("[0-9]*"):
        pid = int(proc.name)
        if pid == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            if marker not in environ or any(e.startswith(f"{engines.MARKER}=".encode()) for e in environ):
                continue
            if (proc / "stat").read_text().split(") ")[-1].split()[0] == "Z":
                continue
            name = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        found.append((pid, name[:160] or (proc / "comm").read_text().strip()))
    return found


@pytest.fixture(scope="session", autouse=True)
def nothing_outlives_the_tests():
    """Fails the run (as an error at the last test's teardown, which xdist passes on) if a vLLM engine, server or
    any other process the tests started is still alive: such orphans hold memory and have made the next engine
    start hang here. They are killed, so the next run starts clean."""
    yield
    if not Path("/proc").is_dir():
        return
    left = leftover_processes()
    for pid, _ in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    if left:
        listing = "; ".join(f"pid {pid}: {name}" for pid, name in left)
        pytest.fail(f"{len(left)} process(es) started by the tests outlived them (now killed): {listing}")


@pytest.fixture(scope="session")
def shared_engine():
    """``shared_engine(name, argv, env=None)``: the engine ``name`` of this run, ``argv(port)`` started on first use
    (see ``engines.shared_engine``)."""
    return lambda name, argv, env=None: engines.shared_engine(SHARED, name, argv, env)


@pytest.fixture(scope="session")
def engine_for_one_test():
    """``engine_for_one_test(name, argv, env=None)``: a context manager; the engine ``name``, started like a shared
    one and stopped when the block ends (see ``engines.for_one_test``)."""
    return lambda name, argv, env=None: engines.for_one_test(SHARED, name, argv, env)


ENGINE_COUNT = engines.EngineCount(f"SEQCLS_TEST_SHARED={SHARED}")
"""Every process of this run carries the shared folder's path (the run markers are per worker)."""
STARTED = time.time()


def pytest_sessionstart(session):
    if CONTROLLER:
        ENGINE_COUNT.start()


def pytest_sessionfinish(session, exitstatus):
    """The controller ends the shared engines (whatever happened to the tests), and fails the run if any of their
    processes, or any orphaned vLLM process, is left; it removes vLLM's shared memory that killed engines left."""
    shutil.rmtree(os.environ["SEQCLS_CACHE"], ignore_errors=True)
    if not CONTROLLER:
        return
    shared, left = engines.stop_all(SHARED)
    session.config.stash[SHARED_KEY] = shared
    orphans = engines.vllm_orphans(STARTED) if OUTERMOST else []
    segments = engines.unmapped_shared_memory(STARTED) if OUTERMOST else []
    for segment in segments:
        segment.unlink(missing_ok=True)
    session.config.stash[SEGMENTS_KEY] = segments
    for pid, _ in orphans:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    if left or orphans:
        session.config.stash[LEFT_KEY] = [*left, *orphans]
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    shutil.rmtree(SHARED, ignore_errors=True)


WORKER_SPANS: dict[str, list[float]] = {}
"""Per xdist worker, when its first test started and its last ended: a worker that ends long before the other is the
budget's waste, and the order of the tests is what decides it."""


def pytest_runtest_logreport(report):
    if CONTROLLER and (node := getattr(report, "node", None)) is not None:
        span = WORKER_SPANS.setdefault(node.gateway.id, [report.start, report.stop])
        span[0], span[1] = min(span[0], report.start), max(span[1], report.stop)


SHARED_KEY = pytest.StashKey[list]()
LEFT_KEY = pytest.StashKey[list]()
SEGMENTS_KEY = pytest.StashKey[list]()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """What the run cost in engines: every start counted, the shared ones with their start-up time."""
    if not CONTROLLER:
        return
    ENGINE_COUNT.stopping.set()
    terminalreporter.write_line(ENGINE_COUNT.summary())
    for engine in config.stash.get(SHARED_KEY, []):
        terminalreporter.write_line(f"  shared engine {engine.name}: started in {engine.seconds:.0f} s")
    if len(WORKER_SPANS) > 1:
        last = max(stop for _, stop in WORKER_SPANS.values())
        terminalreporter.write_line("workers: " + ", ".join(
            f"{worker} ran {stop - start:.0f} s, idle {last - stop:.0f} s at the end"
            for worker, (start, stop) in sorted(WORKER_SPANS.items())))  # fmt: skip
    if segments := config.stash.get(SEGMENTS_KEY, None):
        terminalreporter.write_line(f"removed {len(segments)} shared-memory segment(s) killed engines left: {segments}")
    if left := config.stash.get(LEFT_KEY, None):
        terminalreporter.write_line(f"FAILED: engine processes outlived the run (now killed): {left}", red=True)


def pytest_configure(config):
    """Under xdist, each worker's engines compute on a core of their own: vLLM's CPU build binds every engine to
    the same first core by default."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = str(int(worker[2:]) % (os.cpu_count() or 1))


def pytest_collection_finish(session):
    """Under ``--dist loadgroup``, tests that share an engine's work must carry their group in their node id, or xdist
    splits the group across workers and each redoes the work (pytest 9.2 with xdist 3.8 did so silently)."""
    if os.environ.get("PYTEST_XDIST_WORKER") and getattr(session.config.option, "loadgroup", False):
        split = [
            item.nodeid for item in session.items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid
        ]
        if split:
            raise pytest.UsageError(f"xdist_group is not applied (see pyproject's pytest pin): {split[0]}")
