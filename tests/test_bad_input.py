"""Bad input: one clear line on stderr, exit code 2, no traceback, and nothing left at the output path."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys

import pytest
from helpers import write_raw

from converter.cli import run
from converter.io.safetensors_format import read_header


def refuse(args, capsys, match: str) -> str:
    capsys.readouterr()
    code = run(args)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqcls: error: "), err
    assert match in lines[0], lines[0]
    return lines[0]


def convert_refused(src, tmp_path, capsys, match: str) -> None:
    out = tmp_path / "out"
    refuse(["convert", str(src), "-o", str(out)], capsys, match)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if "seqcls-tmp" in p.name], "temporary folder left behind"


def _shard_holding(src, tensor: str):
    index = json.loads((src / "model.safetensors.index.json").read_text())
    return src / index["weight_map"][tensor]


def _set_config(src, **changes):
    config = json.loads((src / "config.json").read_text()) | changes
    (src / "config.json").write_text(json.dumps(config))


def _set_index(src, mutate):
    path = src / "model.safetensors.index.json"
    index = json.loads(path.read_text())
    mutate(index["weight_map"])
    path.write_text(json.dumps(index))


# -- safetensors headers ---------------------------------------------------------------------------------


def test_truncated_shard(copy_of, tmp_path, capsys):
    src = copy_of("untied-bf16-sharded")
    shard = _shard_holding(src, "model.norm.weight")
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 100])
    convert_refused(src, tmp_path, capsys, "truncated")


@pytest.mark.parametrize(("length", "match"), [(1 << 40, "above the 100 MB limit"), (5000, "runs past the end")])
def test_header_length_out_of_range(copy_of, tmp_path, capsys, length, match):
    src = copy_of("tied-bf16-single")
    write_raw(
        src / "model.safetensors", {"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, length
    )
    convert_refused(src, tmp_path, capsys, match)


@pytest.mark.parametrize(
    ("offsets", "match"),
    [([0, 1 << 33], "needs"), ([4, 4 + 2 * 8], "overlaps")],
)
def test_tensor_offsets(copy_of, tmp_path, capsys, offsets, match):
    src = copy_of("tied-bf16-single")
    header = {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
    header["b"] = {"dtype": "F32", "shape": [2, 2], "data_offsets": offsets}
    write_raw(src / "model.safetensors", header, b"\0" * 32)
    convert_refused(src, tmp_path, capsys, match)


def test_tensor_out_of_bounds(copy_of, tmp_path, capsys):
    src = copy_of("tied-bf16-single")
    write_raw(src / "model.safetensors", {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8)
    convert_refused(src, tmp_path, capsys, "ends past the end")


def test_duplicate_tensor_across_shards(copy_of, tmp_path, capsys):
    src = copy_of("untied-bf16-sharded")
    index = json.loads((src / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    donor = read_header(src / shards[0])
    victim = src / shards[1]
    first = next(iter(donor.tensors.values()))
    victim_header = read_header(victim)
    entries = {n: t for n, t in victim_header.tensors.items()}
    entries[first.name] = first
    from converter.io.safetensors_format import write_file

    tmp = src / "rewritten"
    write_file(tmp, list(entries.values()), {"format": "pt"})
    tmp.replace(victim)
    convert_refused(src, tmp_path, capsys, "is in both")


# -- index problems ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ["../outside.safetensors", "/etc/passwd"])
def test_index_entry_outside_the_folder(copy_of, tmp_path, capsys, entry):
    src = copy_of("untied-bf16-sharded")
    _set_index(src, lambda wm: wm.update({"model.norm.weight": entry}))
    convert_refused(src, tmp_path, capsys, "outside the checkpoint folder")


def test_symlink_that_escapes(copy_of, tmp_path, capsys):
    src = copy_of("untied-bf16-sharded")
    shard = _shard_holding(src, "model.norm.weight")
    elsewhere = tmp_path / "elsewhere.safetensors"
    shutil.move(shard, elsewhere)
    shard.symlink_to(elsewhere)
    convert_refused(src, tmp_path, capsys, "leads outside")


@pytest.mark.parametrize("name", ["tokenizer_config.json", "README.md"])
def test_read_files_that_link_outside_are_refused(copy_of, tmp_path, capsys, name):
    src = copy_of("tied-bf16-single")
    elsewhere = tmp_path / f"elsewhere-{name}"
    elsewhere.write_text("{}" if name.endswith(".json") else "---\nlicense: mit\n---\n")
    (src / name).unlink(missing_ok=True)
    (src / name).symlink_to(elsewhere)
    convert_refused(src, tmp_path, capsys, f"{name} is a link that leads outside")


def test_missing_shard(copy_of, tmp_path, capsys):
    src = copy_of("untied-bf16-sharded")
    shard = _shard_holding(src, "model.norm.weight")
    shard.unlink()
    convert_refused(src, tmp_path, capsys, f"names {shard.name}, which is missing")


def test_index_disagrees_with_shards(copy_of, tmp_path, capsys):
    src = copy_of("untied-bf16-sharded")
    _set_index(src, lambda wm: wm.update({"model.ghost.weight": wm["model.norm.weight"]}))
    convert_refused(src, tmp_path, capsys, "names tensors no shard holds: model.ghost.weight")


def test_single_file_beside_an_index_is_ambiguous(copy_of, tmp_path, capsys):
    src = copy_of("untied-bf16-sharded")
    shutil.copy(_shard_holding(src, "model.norm.weight"), src / "model.safetensors")
    convert_refused(src, tmp_path, capsys, "holds both")


# -- model problems ----------------------------------------------------------------------------------------


def test_untied_without_lm_head(copy_of, tmp_path, capsys):
    src = copy_of("tied-bf16-single")
    _set_config(src, tie_word_embeddings=False)
    convert_refused(src, tmp_path, capsys, "the weights hold no lm_head.weight")


def test_non_finite_label_row(copy_of, tmp_path, capsys):
    import torch
    from helpers import rewrite_tensor

    src = copy_of("untied-fp32-single")
    from helpers import load_all

    w = load_all(src)["lm_head.weight"].clone()
    w[9693, 3] = float("nan")
    rewrite_tensor(src, "lm_head.weight", w)
    convert_refused(src, tmp_path, capsys, "'yes' in lm_head.weight holds NaN or Inf")
    w[9693, 3] = 0.0
    w[2152, 0] = float("inf")
    rewrite_tensor(src, "lm_head.weight", w.to(torch.float32))
    convert_refused(src, tmp_path, capsys, "'no' in lm_head.weight holds NaN or Inf")


def test_already_converted(original, tmp_path, capsys):
    first = tmp_path / "first"
    assert run(["convert", str(original("tied-bf16-single")), "-o", str(first)]) == 0
    capsys.readouterr()
    convert_refused(first, tmp_path, capsys, "already a sequence-classification checkpoint")


def test_unknown_architecture(copy_of, tmp_path, capsys):
    src = copy_of("tied-bf16-single")
    _set_config(src, architectures=["LlamaForCausalLM"])
    convert_refused(src, tmp_path, capsys, "no conversion recipe for architectures ['LlamaForCausalLM']")


# -- presets and --tokens/--method ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--tokens", "no,definitely", "--method", "from_2_way_softmax"], "'definitely' is 2 tokens"),
        (
            ["--tokens", "no, yes", "--method", "from_2_way_softmax"],
            "' yes' is not a vocabulary entry; it encodes to the entry 'Ġyes': pass that spelling",
        ),
        (["--tokens", "yes", "--method", "from_2_way_softmax"], "takes exactly 2 label tokens (false first"),
        (["--tokens", "no,yes,maybe", "--method", "from_2_way_softmax"], "got 3: 'no', 'yes', 'maybe'"),
        (["--tokens", "no,", "--method", "no_post_processing"], "takes at least one label tokens"),
        (["--tokens", "yes,yes", "--method", "no_post_processing"], "--tokens repeats a token"),
        (["--tokens", "no,yes"], "--tokens and --method go together"),
        (["--preset", "qwen3-reranker", "--method", "no_post_processing"], "give either --preset or --tokens"),
        (["--preset", "mxbai-rerank-v2"], "preset mxbai-rerank-v2 converts Qwen2ForCausalLM"),
    ],
)
def test_bad_tokens_method_or_preset(original, tmp_path, capsys, flags, match):
    out = tmp_path / "out"
    refuse(["convert", str(original("tied-bf16-single")), "-o", str(out), *flags], capsys, match)
    assert not out.exists()


def test_architecture_without_a_seq_cls_counterpart(copy_of, tmp_path, capsys):
    src = copy_of("tied-bf16-single")
    _set_config(src, architectures=["CodeGenForCausalLM"], model_type="codegen")
    out = tmp_path / "out"
    flags = ["--tokens", "no,yes", "--method", "from_2_way_softmax"]
    refuse(["convert", str(src), "-o", str(out), *flags], capsys, "has no CodeGenForSequenceClassification in")
    assert not out.exists()


def test_tokens_on_a_model_that_is_no_causal_lm(copy_of, tmp_path, capsys):
    src = copy_of("tied-bf16-single")
    _set_config(src, architectures=["Qwen3Model"])
    flags = ["--tokens", "no,yes", "--method", "from_2_way_softmax"]
    refuse(["convert", str(src), "-o", str(tmp_path / "out"), *flags], capsys, "convert a *ForCausalLM")


def test_unknown_preset_or_method_is_a_usage_error(original, tmp_path):
    for flags in (["--preset", "nope"], ["--tokens", "a,b", "--method", "softmax"]):
        cmd = [sys.executable, "-m", "converter", "convert", str(original("tied-bf16-single")), *flags]
        result = subprocess.run(cmd, capture_output=True, text=True)
        assert result.returncode == 2 and "invalid choice" in result.stderr and "Traceback" not in result.stderr


def test_missing_tokenizer(copy_of, tmp_path, capsys):
    src = copy_of("tied-bf16-single")
    (src / "tokenizer.json").unlink()
    convert_refused(src, tmp_path, capsys, "has no tokenizer.json")


@pytest.mark.parametrize(
    "text",
    [
        '{"version": "1.0", "model": {"type": "Nope"}}',
        '{"model": {"type": "Nope", "vocab": {"a": 0}}}',
        '{"model": {"vocab": {"a": "zero"}}}',
        '{"model": {"vocab": {"a": 0}}, "added_tokens": {"id": 1}}',
        '{"model": {"vocab": {"a": 0}',
        "[1, 2]",
    ],
    ids=["no-vocab", "unknown-model", "id-not-a-number", "added-not-a-list", "cut-short", "not-an-object"],
)
def test_unreadable_tokenizer(copy_of, tmp_path, capsys, text):
    src = copy_of("tied-bf16-single")
    (src / "tokenizer.json").write_text(text)
    convert_refused(src, tmp_path, capsys, "is not a readable tokenizer")


def test_label_token_that_is_not_one_token(original):
    from converter.errors import SeqclsError
    from converter.tokenizer import read_vocabulary

    with pytest.raises(SeqclsError, match="'definitely' is 2 tokens"):
        read_vocabulary(original("tied-bf16-single"), ("no", "definitely"), {}, None)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", ""])
def test_malformed_config(copy_of, tmp_path, capsys, text):
    src = copy_of("tied-bf16-single")
    (src / "config.json").write_text(text)
    convert_refused(src, tmp_path, capsys, "config.json")


def test_missing_config(copy_of, tmp_path, capsys):
    src = copy_of("tied-bf16-single")
    (src / "config.json").unlink()
    convert_refused(src, tmp_path, capsys, "has no config.json")


# -- pickle ------------------------------------------------------------------------------------------------


class _Boom:
    """Unpickling this runs code that leaves a marker file: proof that nothing was unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt"])
def test_pickle_weights_are_refused_unopened(copy_of, tmp_path, capsys, name):
    src = copy_of("tied-bf16-single")
    (src / "model.safetensors").unlink()
    marker = tmp_path / "unpickled"
    (src / name).write_bytes(pickle.dumps(_Boom(marker)))
    convert_refused(src, tmp_path, capsys, "never unpickled")
    assert not marker.exists()


# -- output folder -----------------------------------------------------------------------------------------


def test_non_empty_output_needs_overwrite(original, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    refuse(["convert", str(original("tied-bf16-single")), "-o", str(out)], capsys, "--overwrite")
    assert (out / "keep.txt").read_text() == "mine"
    assert run(["convert", str(original("tied-bf16-single")), "-o", str(out), "--overwrite"]) == 0
    assert not (out / "keep.txt").exists() and (out / "config.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_empty_output_folder_is_fine(original, tmp_path):
    (tmp_path / "out").mkdir()
    assert run(["convert", str(original("tied-bf16-single")), "-o", str(tmp_path / "out")]) == 0


def test_output_inside_source_is_refused(copy_of, tmp_path, capsys):
    src = copy_of("tied-bf16-single")
    refuse(["convert", str(src), "-o", str(src / "out")], capsys, "overlaps the source")
    refuse(["convert", str(src), "-o", str(src), "--overwrite"], capsys, "overlaps the source")
    assert (src / "model.safetensors").is_file()


def test_source_that_does_not_exist(tmp_path, capsys):
    refuse(["convert", str(tmp_path / "nope"), "-o", str(tmp_path / "out")], capsys, "does not exist")


def test_debug_shows_the_traceback_and_the_console_script_works(tmp_path):
    cmd = [sys.executable, "-m", "converter", "convert", str(tmp_path / "nope"), "-o", str(tmp_path / "o")]
    plain = subprocess.run(cmd, capture_output=True, text=True)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    debug = subprocess.run([*cmd[:3], "--debug", *cmd[3:]], capture_output=True, text=True)
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    script = shutil.which("seqcls", path=os.path.dirname(sys.executable))
    assert script, "the seqcls console script is not installed"
    via_script = subprocess.run([script, *cmd[3:]], capture_output=True, text=True)
    assert via_script.returncode == 2 and via_script.stderr == plain.stderr
