"""verify's memory pre-flight: a model that would not fit is refused in one line before it is loaded."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import sys
from pathlib import Path

import pytest

from converter.cli import run
from converter.io.safetensors_format import encode_header
from converter.verify.memory import GiB, Need, check, estimate, parse_size

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_shapes", ROOT / "scripts" / "bench_shapes.py")
    module = sys.modules.setdefault("bench_shapes", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shape_8b(tmp_path_factory, pair_of):
    """Qwen3-Reranker-8B's real shape (16.4 GB of bf16) as a sparse file: headers are real, the data is holes, so it
    costs no disk. A "converted" folder beside it holds config and tokenizer only: the original is checked first."""
    bench = _bench()
    root = tmp_path_factory.mktemp("shape-8b")
    src, out = root / "Qwen3-Reranker-8B", root / "converted"
    src.mkdir()
    entries = [bench._Planned(name, shape) for name, shape in bench.tensor_shapes(bench.SHAPES["8B"])]
    header = encode_header(entries, {"format": "pt"})
    with open(src / "model.safetensors", "wb") as f:
        f.write(header)
        f.truncate(len(header) + sum(e.nbytes for e in entries))
    s = bench.SHAPES["8B"]
    config = {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": s.hidden,
        "num_hidden_layers": s.layers, "num_attention_heads": s.heads, "num_key_value_heads": s.kv_heads,
        "head_dim": 128, "intermediate_size": s.intermediate, "vocab_size": 151669, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16", "max_position_embeddings": 40960, "transformers_version": "4.51.0",
    }  # fmt: skip
    (src / "config.json").write_text(json.dumps(config))
    _, tiny_converted = pair_of("untied-fp32-single")
    shutil.copytree(tiny_converted, out, ignore=shutil.ignore_patterns("*.safetensors*"))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_converted / name, src / name)
    return src, out


def test_the_8b_shape_in_float32_is_refused_before_loading(shape_8b, monkeypatch, capsys):
    """Measured here: bf16 of this shape peaked at 15.5 GB RSS; float32 needs about 32 GB per side."""
    src, out = shape_8b
    monkeypatch.setenv("SEQCLS_MEMORY_LIMIT", "24GiB")
    assert run(["verify", str(out), "--original", str(src), "--no-cache"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "the original (Qwen3-Reranker-8B) in float32 needs about " in err[0]
    assert "(weights 30.5 GiB + one batch " in err[0] and "and cpu has 24.0 GiB available" in err[0]
    assert "pass --dtype bfloat16 (about " in err[0] and "or verify on another --device" in err[0]


def test_the_estimate_follows_the_dtype_and_the_batch(shape_8b):
    src, _ = shape_8b
    bench = _bench()
    numel = sum(math.prod(shape) for _, shape in bench.tensor_shapes(bench.SHAPES["8B"]))
    fp32 = estimate(src, "float32", batch_size=8, longest=512, logits_width=151669)
    bf16 = estimate(src, "bfloat16", batch_size=8, longest=512, logits_width=151669)
    assert fp32.weights == 2 * bf16.weights == 4 * numel and 8.1e9 < numel < 8.3e9
    assert bf16.activations < fp32.activations < estimate(src, "float32", 16, 512, 151669).activations
    assert bf16.total < 17 * GiB < 30 * GiB < fp32.total


def test_a_model_that_fits_passes_and_the_limit_is_parsed(monkeypatch):
    monkeypatch.setenv("SEQCLS_MEMORY_LIMIT", "2GiB")
    check("a model", Need(GiB, GiB // 2), "float32", "cpu")
    assert parse_size("512MiB") == 512 << 20 and parse_size("1.5G") == 3 << 29 and parse_size("1000") == 1000
    monkeypatch.setenv("SEQCLS_MEMORY_LIMIT", "a lot")
    with pytest.raises(Exception, match="is not a size"):
        check("a model", Need(1, 1), "float32", "cpu")


@pytest.mark.cuda
def test_transformers_backend_on_cuda_loads_straight_onto_the_device(pair_of):
    """device_map: the weights go to the GPU as they are read, and the pre-flight reads the GPU's free memory."""
    import torch

    from converter.verify import verify
    from converter.verify.memory import available

    src, out = pair_of("untied-fp32-sharded")
    assert 0 < available("cuda") <= torch.cuda.get_device_properties(0).total_memory
    report = verify(out, src, device="cuda", use_cache=False)
    assert report["verdict"] == "pass" and report["metrics"]["max_abs_delta"] <= 1e-4
    assert torch.cuda.max_memory_allocated() > 0
