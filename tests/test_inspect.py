"""``seqcls inspect``: tells originals, converted checkpoints and other models apart, and names problems."""

from __future__ import annotations

import json
import shutil

from helpers import write_raw

from converter.cli import run


def inspected(capsys, path, *args) -> tuple[int, str]:
    code = run(["inspect", str(path), *args])
    return code, capsys.readouterr().out


def test_converted_checkpoint(pair_of, capsys):
    _, out = pair_of("untied-bf16-sharded")
    code, text = inspected(capsys, out, "--json")
    info = json.loads(text)
    assert code == 0 and info["kind"] == "converted" and info["family"] == "qwen3-reranker"
    assert info["labels"] == [{"token": "no", "id": 2152}, {"token": "yes", "id": 9693}]
    assert info["head"]["tensor"] == "score.weight" and info["head"]["dtype"] == "F32"
    assert info["tied"] is False and info["tensor_dtypes"]["BF16"] > 0 and info["tensor_dtypes"]["F32"] == 1
    assert len(info["shards"]) > 1 and info["total_bytes"] == sum(s["bytes"] for s in info["shards"])
    assert info["score_template"] and info["chat_template_is_score_template"] and info["sentence_transformers"]
    assert info["card"] and info["problems"] == []
    code, table = inspected(capsys, out)
    assert code == 0 and "converted (qwen3-reranker)" in table and "'yes' = 9693" in table


def test_original_checkpoint(original, capsys):
    code, text = inspected(capsys, original("tied-bf16-single"), "--json")
    info = json.loads(text)
    assert code == 0 and info["kind"] == "original" and info["tied"] is True
    assert info["head"]["tensor"] == "model.embed_tokens.weight" and info["head"]["shape"] == [151669, 128]
    assert not info["score_template"] and not info["card"]


def test_neither(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    header = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
    write_raw(tmp_path / "model.safetensors", header, bytes(16))
    code, text = inspected(capsys, tmp_path, "--json")
    info = json.loads(text)
    assert code == 0 and info["kind"] == "neither" and info["labels"] is None


def test_problems_are_named_and_exit_1(pair_of, tmp_path, capsys):
    """Planted faults: a key that makes vLLM convert again, no pad id, no score template."""
    _, out = pair_of("tied-bf16-single")
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    config = json.loads((bad / "config.json").read_text())
    config["classifier_from_token"] = ["no", "yes"]
    del config["pad_token_id"]
    (bad / "config.json").write_text(json.dumps(config))
    (bad / "score_template.jinja").unlink()
    code, text = inspected(capsys, bad)
    assert code == 1
    assert "classifier_from_token: vLLM would convert again" in text
    assert "no pad_token_id" in text and "no score_template.jinja" in text


def test_not_a_checkpoint(tmp_path, capsys):
    assert run(["inspect", str(tmp_path)]) == 2
    assert "has no config.json" in capsys.readouterr().err
