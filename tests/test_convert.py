"""The output contract of ``seqcls convert``, on every fixture shape: tied/untied, single/sharded, bf16/fp16/fp32."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import torch
from conftest import QWEN3_ORIGINALS
from helpers import load_all, metadata_of, reshard, same_bytes
from transformers import AutoConfig, AutoModelForSequenceClassification

from converter import convert
from converter.io.safetensors_format import read_header

YES, NO, PAD = 9693, 2152, 151643
DROPPED = ("classifier_from_token", "method", "is_original_qwen3_reranker", "sbert_ce_default_activation_function")


@pytest.fixture(params=sorted(QWEN3_ORIGINALS))
def converted(request, original, tmp_path):
    src = original(request.param)
    out = tmp_path / "out"
    convert(src, out)
    return src, out


def test_config_contract(converted):
    src, out = converted
    before = json.loads((src / "config.json").read_text())
    after = json.loads((out / "config.json").read_text())
    assert after["architectures"] == ["Qwen3ForSequenceClassification"]
    assert after["id2label"] == {"0": "LABEL_0"}
    assert after["pad_token_id"] == PAD
    assert after["use_sep_token"] is False
    assert not set(DROPPED) & set(after)
    assert after["seqcls"] == {
        "recipe": "qwen3-reranker",
        "method": "from_2_way_softmax",
        "label_tokens": ["no", "yes"],
        "head_from": "model.embed_tokens.weight" if before.get("tie_word_embeddings") else "lm_head.weight",
    }
    changed = {"architectures", "id2label", "label2id", "pad_token_id", "use_sep_token", "seqcls"}
    assert {k: v for k, v in after.items() if k not in changed} == {k: v for k, v in before.items() if k not in changed}
    assert AutoConfig.from_pretrained(out).num_labels == 1


def test_tensor_contract(converted):
    src, out = converted
    before, after = load_all(src), load_all(out)
    tied = json.loads((src / "config.json").read_text())["tie_word_embeddings"]
    assert "lm_head.weight" not in after
    assert set(after) == (set(before) - {"lm_head.weight"}) | {"score.weight"}
    for name, tensor in before.items():
        if name != "lm_head.weight":
            assert same_bytes(after[name], tensor), name
    w = before["model.embed_tokens.weight" if tied else "lm_head.weight"]
    expected = (w[YES].float() - w[NO].float()).unsqueeze(0)
    score = after["score.weight"]
    assert score.dtype == torch.float32 and score.shape == (1, w.shape[1])
    assert torch.equal(score.view(torch.int32), expected.view(torch.int32))


def test_files_contract(converted):
    src, out = converted
    shards = sorted(p.name for p in out.glob("*.safetensors"))
    for name in ("generation_config.json", "tokenizer.json"):
        assert (out / name).read_bytes() == (src / name).read_bytes()
    assert (out / "chat_template.jinja").read_text() == (out / "score_template.jinja").read_text()
    for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"):
        assert json.loads((out / name).read_text())
    for shard in shards:
        assert metadata_of(out / shard) == {"format": "pt"}
    if len(shards) == 1:
        assert shards == ["model.safetensors"] and not (out / "model.safetensors.index.json").exists()
    else:
        assert "model.safetensors" not in shards
        index = json.loads((out / "model.safetensors.index.json").read_text())
        holds = {t: s for s in shards for t in read_header(out / s).tensors}
        assert index["weight_map"] == holds
        assert index["metadata"]["total_size"] == sum(t.nbytes for t in load_all(out).values())
        assert shards == [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)]
    assert not any(p.name.startswith(".") for p in out.parent.iterdir())


def test_transformers_loads_every_weight(converted):
    _, out = converted
    model, info = AutoModelForSequenceClassification.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert model.config.num_labels == 1


def test_unchanged_shards_are_hard_linked_and_copy_copies(original, tmp_path):
    src = original("untied-bf16-sharded")
    src_inodes = {p.stat().st_ino for p in src.glob("*.safetensors")}
    _, linked = convert(src, tmp_path / "linked")
    assert linked.linked and len(linked.rewritten) == 1 and not linked.copied
    for name in linked.linked:
        assert (tmp_path / "linked" / name).stat().st_ino == (src / name).stat().st_ino, "shards keep their order"
    _, copied = convert(src, tmp_path / "copied", copy=True)
    assert copied.copied == linked.linked and not copied.linked
    for name in copied.copied:
        path = tmp_path / "copied" / name
        assert path.stat().st_ino not in src_inodes
        assert path.read_bytes() == (tmp_path / "linked" / name).read_bytes()


def test_link_falls_back_to_a_copy_across_file_systems(original, tmp_path):
    src = original("untied-bf16-sharded")
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == src.stat().st_dev:
        pytest.fail("this test needs /dev/shm on another file system than the fixtures")
    with tempfile.TemporaryDirectory(dir=shm) as other_fs:
        out = Path(other_fs) / "out"
        _, report = convert(src, out)
        assert report.copied and not report.linked
        for name in report.copied:
            assert (out / name).read_bytes() == (src / name).read_bytes()


def test_lm_head_sharing_a_shard_is_dropped_by_byte_range(original, tmp_path):
    src = tmp_path / "mixed"
    src.mkdir()
    for f in original("untied-bf16-sharded").iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    names = sorted(load_all(src))
    layers = [n for n in names if n.startswith("model.layers.")]
    rest = [n for n in names if n not in layers]
    reshard(src, src, [layers[: len(layers) // 2], [*layers[len(layers) // 2 :], *rest]])
    _, report = convert(src, tmp_path / "out")
    assert report.linked == ["model-00001-of-00002.safetensors"]
    assert report.rewritten == ["model-00002-of-00002.safetensors"]
    after = load_all(tmp_path / "out")
    before = load_all(src)
    assert all(same_bytes(after[n], before[n]) for n in before if n != "lm_head.weight")
    assert "lm_head.weight" not in after


def test_tied_single_file_gets_a_head_shard_and_an_index(original, tmp_path):
    _, report = convert(original("tied-bf16-single"), tmp_path / "out")
    assert report.linked == ["model-00001-of-00002.safetensors"]
    assert report.rewritten == ["model-00002-of-00002.safetensors"]
    assert set(read_header(tmp_path / "out" / report.rewritten[0]).tensors) == {"score.weight"}


def test_two_runs_are_byte_identical_and_hold_no_paths(original, tmp_path):
    src = original("untied-fp32-sharded")
    convert(src, tmp_path / "a", copy=True)
    convert(src, tmp_path / "b", copy=True)
    a, b = sorted(os.listdir(tmp_path / "a")), sorted(os.listdir(tmp_path / "b"))
    assert a == b
    for name in a:
        data = (tmp_path / "a" / name).read_bytes()
        if name == "README.md":  # the card names the source and the output as they were given
            renamed = data.replace(str(tmp_path / "a").encode(), str(tmp_path / "b").encode())
            assert renamed.replace(b"\n# a\n", b"\n# b\n") == (tmp_path / "b" / name).read_bytes()
            continue
        assert data == (tmp_path / "b" / name).read_bytes(), name
        if not name.endswith(".safetensors"):
            assert str(tmp_path).encode() not in data and str(src).encode() not in data


def test_dropped_config_keys_and_vllm_overrides_are_removed(copy_of, tmp_path):
    src = copy_of("tied-bf16-single")
    config = json.loads((src / "config.json").read_text())
    config |= {
        "classifier_from_token": ["no", "yes"],
        "method": "from_2_way_softmax",
        "is_original_qwen3_reranker": True,
        "sbert_ce_default_activation_function": "torch.nn.modules.linear.Identity",
        "custom_key": {"kept": [1, 2]},
    }
    (src / "config.json").write_text(json.dumps(config))
    convert(src, tmp_path / "out")
    after = json.loads((tmp_path / "out" / "config.json").read_text())
    assert not set(DROPPED) & set(after)
    assert after["custom_key"] == {"kept": [1, 2]}


def test_default_output_is_under_converted(original, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    convert(original("tied-bf16-single"))
    assert (tmp_path / "converted" / "tied-bf16-single-seq-cls" / "config.json").is_file()


def test_progress_bar_when_asked(original, tmp_path, capsys):
    convert(original("untied-fp32-single"), tmp_path / "out", progress=True)
    assert "copying" in capsys.readouterr().err
