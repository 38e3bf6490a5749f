"""``seqcls serve``: the printed command for each target. The real server it starts is tested in test_server_vllm
(``converted_server``), beside a server of the original."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from converter.cli import run
from converter.vllm_compat import find_tcmalloc

SEED_OVERRIDES = {
    "architectures": ["Qwen3ForSequenceClassification"],
    "classifier_from_token": ["no", "yes"],
    "is_original_qwen3_reranker": True,
}


def printed(capsys, *args) -> list[str]:
    """The printed command; the notes on stderr are echoed back to stderr for the caller to read."""
    assert run(["serve", "--print", *map(str, args)]) == 0
    captured = capsys.readouterr()
    sys.stderr.write(captured.err)
    return shlex.split(captured.out)


def test_seed_generation_command_for_the_converted_model(pair_of, capsys):
    """vllm-ascend 0.9.2: the seed's documented converted-model command, no overrides and --task score; the model
    length is the reference's (this model's 4,096 positions; 8,192 for the real ones), so that a longer pair is
    refused rather than scored whole, and the notes say how to cut one."""
    _, out = pair_of("tied-bf16-single")
    argv = printed(capsys, out, "--device", "npu", "--vllm-version", "0.9.2")
    assert argv == [
        "PYTORCH_NPU_ALLOC_CONF=expandable_segments:True", "vllm", "serve", str(out), "--task", "score",
        "--dtype", "bfloat16", "--port", "8000", "--max-model-len", "4096", "--no-enable-prefix-caching",
    ]  # fmt: skip
    notes = capsys.readouterr().err
    assert "a pair whose prompt passes 4096 tokens is refused (HTTP 400)" in notes
    assert "cut the document first (converter.truncation.cut_document" in notes and "truncate_prompt_tokens" in notes


def test_newest_generation_uses_the_runner_and_the_template(pair_of, capsys):
    _, out = pair_of("tied-bf16-single")
    argv = printed(capsys, out, "--device", "npu", "--vllm-version", "0.23.0", "--port", "8888")
    assert argv[3:9] == [str(out), "--runner", "pooling", "--dtype", "bfloat16", "--port"]
    assert argv[argv.index("--chat-template") + 1] == str(out / "score_template.jinja")
    assert "--no-enable-prefix-caching" not in argv and "--hf-overrides" not in argv


def test_other_presets_originals_get_their_documented_overrides(pair_of, capsys):
    src, out = pair_of("tiny-bge-reranker-v2-gemma")
    argv = printed(capsys, src, "--device", "cuda", "--vllm-version", "0.23.0")
    overrides = json.loads(argv[argv.index("--hf-overrides") + 1])
    assert overrides == {
        "architectures": ["GemmaForSequenceClassification"],
        "classifier_from_token": ["Yes"],
        "method": "no_post_processing",
    }
    argv = printed(capsys, out, "--device", "cuda", "--vllm-version", "0.23.0")
    assert argv[argv.index("--chat-template") + 1] == str(out / "score_template.jinja")


def test_zerank_2_serves_its_calibrated_score_and_its_original_says_what_it_returns(pair_of, capsys):
    """The conversion needs nothing but its template, and its notes say it returns the calibrated score; the
    original gets the overrides users pass today, with a note that vLLM's sigmoid of its logit is not that score."""
    src, out = pair_of("tiny-zerank-2")
    argv = printed(capsys, src, "--device", "cuda", "--vllm-version", "0.23.0")
    assert json.loads(argv[argv.index("--hf-overrides") + 1]) == {
        "architectures": ["Qwen3ForSequenceClassification"], "classifier_from_token": ["Yes"],
        "method": "no_post_processing",
    }  # fmt: skip
    assert 'not sigmoid(logit / 5) (the family\'s calibrated score): ask with "use_activation": false' in (
        capsys.readouterr().err
    )
    argv = printed(capsys, out, "--device", "cuda", "--vllm-version", "0.23.0")
    assert "--hf-overrides" not in argv and argv[argv.index("--chat-template") + 1] == str(out / "score_template.jinja")
    assert "scores: sigmoid(logit / 5): the family's calibrated score" in capsys.readouterr().err


def test_ctxl_rerank_v2_serves_as_is_and_its_original_gets_its_halves_in_prompt_order(pair_of, capsys):
    """The conversion needs nothing but its template; the original gets id 0's token as vLLM's label, and a note
    that its hand-formatted halves go in prompt order (the document first). Both say the logit is the score."""
    src, out = pair_of("tiny-ctxl-rerank-v2")
    argv = printed(capsys, src, "--device", "cuda", "--vllm-version", "0.23.0")
    assert json.loads(argv[argv.index("--hf-overrides") + 1]) == {
        "architectures": ["Qwen3ForSequenceClassification"], "classifier_from_token": ["!"],
        "method": "no_post_processing",
    }  # fmt: skip
    notes = capsys.readouterr().err
    assert "send the prompt up to the query as the query and the rest as the document" in notes
    assert "scores: the logit, the family's own score" in notes
    argv = printed(capsys, out, "--device", "cuda", "--vllm-version", "0.23.0")
    assert "--hf-overrides" not in argv and argv[argv.index("--chat-template") + 1] == str(out / "score_template.jinja")
    assert '"use_activation": false for the logit' in capsys.readouterr().err


def test_an_original_without_a_telling_name_needs_a_preset(original, tmp_path, capsys):
    import shutil

    src = tmp_path / "qwen2-model"
    shutil.copytree(original("tiny-mxbai-rerank-base-v2"), src)
    assert run(["serve", "--print", str(src), "--device", "cuda", "--vllm-version", "0.23.0"]) == 2
    assert "name the family of an original with --preset" in capsys.readouterr().err
    argv = printed(capsys, src, "--device", "cuda", "--vllm-version", "0.23.0", "--preset", "mxbai-rerank-v2")
    assert json.loads(argv[argv.index("--hf-overrides") + 1])["classifier_from_token"] == ["0", "1"]
    assert run(["serve", "--print", str(src), "--vllm-version", "0.23.0", "--preset", "qwen3-reranker"]) == 2
    assert "preset qwen3-reranker converts Qwen3ForCausalLM, but this checkpoint is" in capsys.readouterr().err


def test_generic_conversion_is_served_without_a_template(original, tmp_path, capsys):
    from converter import convert

    convert(original("tied-bf16-single"), tmp_path / "out", tokens=["no", "yes"], method="from_2_way_softmax")
    argv = printed(capsys, tmp_path / "out", "--device", "cuda", "--vllm-version", "0.23.0")
    assert "--chat-template" not in argv and "--hf-overrides" not in argv
    assert "no prompt format is known" in capsys.readouterr().err


def test_installed_cpu_build_and_passthrough_arguments(pair_of, capsys):
    _, out = pair_of("untied-fp32-single")
    argv = printed(capsys, out, "--dtype", "bfloat16", "--", "--max-num-seqs", "4")
    assert f"LD_PRELOAD={find_tcmalloc()}" in argv[:2], (
        "vLLM's CPU worker asks for tcmalloc (scripts/setup installs it)"
    )
    assert "ONEDNN_PRIMITIVE_CACHE_CAPACITY=128" in argv[:2]
    assert argv[3:7] == ["-m", "vllm.entrypoints.openai.api_server", "--model", str(out)]
    assert argv[argv.index("--dtype") + 1] == "bfloat16" and argv[-2:] == ["--max-num-seqs", "4"]
    assert "--chat-template" in argv and "--enforce-eager" in argv


def test_original_is_served_with_the_seed_overrides(original, capsys):
    argv = printed(capsys, original("tied-bf16-single"), "--device", "npu", "--vllm-version", "0.9.2")
    assert json.loads(argv[argv.index("--hf_overrides") + 1]) == SEED_OVERRIDES
    assert "--chat-template" not in argv
    assert "clients must format prompts as the seed does" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vllm-version", "0.8.5", "--print"], "predates Qwen3-Reranker support"),
        (["--vllm-version", "latest", "--print"], "is not a version number"),
        (["--vllm-version", "0.9.2", "--device", "npu"], "add --print"),
    ],
)
def test_refusals(pair_of, capsys, args, message):
    _, out = pair_of("tied-bf16-single")
    assert run(["serve", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_folder_that_is_no_reranker_is_refused(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    assert run(["serve", str(tmp_path), "--print"]) == 2
    assert "neither a converted checkpoint nor a known reranker original" in capsys.readouterr().err


def test_qwen3_vl_reranker_is_served_with_its_template_for_either_checkpoint(vl_pair_of, capsys):
    """The converted checkpoint with its score template and no overrides; the original with the documented overrides
    and the family's template (image parts cannot be formatted by hand); a vLLM without exact score templates is
    refused in one line; from vLLM 0.32 the server trusts per-request video metadata."""
    src, out = vl_pair_of("tiny-qwen3-vl-reranker-2b")
    assert run(["serve", str(out), "--print", "--vllm-version", "0.25.0", "--device", "npu"]) == 0
    printed = capsys.readouterr()
    assert f"--chat-template {out}/score_template.jinja" in printed.out and "--hf-overrides" not in printed.out
    assert "client_vl.py" in printed.err
    assert run(["serve", str(src), "--print", "--vllm-version", "0.25.0"]) == 0
    printed = capsys.readouterr().out
    template = Path(printed.split("--chat-template ")[1].split()[0])
    assert (
        '"is_original_qwen3_reranker":true' in printed
        and template.read_text() == (out / "score_template.jinja").read_text()
    )
    assert run(["serve", str(out), "--print", "--vllm-version", "0.18.0", "--device", "npu"]) == 2
    assert "image parts need a score template" in capsys.readouterr().err
    # Video: per-request media_io_kwargs need --trust-request-mm-kwargs from vLLM 0.32 (measured); older versions
    # are not given a flag they may not know.
    assert "--trust-request-mm-kwargs" not in printed
    assert run(["serve", str(out), "--print", "--vllm-version", "0.32.0"]) == 0
    printed = capsys.readouterr()
    assert "--trust-request-mm-kwargs" in printed.out
    assert "video: send the frames seqcls samples to /classify" in printed.err
