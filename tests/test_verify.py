"""``seqcls verify`` with the transformers backend, its outputs, and the checks that must make it fail."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from helpers import load_all, rewrite_tensor

from converter import convert
from converter.cli import run
from converter.verify import verify
from converter.verify.rankings import kendall_tau


@pytest.mark.slow  # inner loop: see docs/testing.md
@pytest.mark.parametrize("name", ["tied-bf16-single", "untied-fp32-sharded"])
def test_transformers_parity_passes_with_every_output(pair_of, tmp_path, capsys, name):
    src, out = pair_of(name)
    args = ["verify", str(out), "--original", str(src), "--report", str(tmp_path / "r.json")]
    args += ["--junit", str(tmp_path / "j.xml"), "--plot", str(tmp_path / "p.png")]
    assert run(args) == 0
    stdout = capsys.readouterr().out
    assert "seqcls verify: PASS" in stdout and "prompt token ids: identical" in stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["verdict"] == "pass" and report["metrics"]["max_abs_delta"] <= 1e-4
    assert report["metrics"]["max_abs_logit_delta"] <= 1e-4
    assert "forward passes with tokenization included" in report["timing"] and "scoring:" in stdout
    assert set(report["phases"]) == {"prepare", "official ids", "original side", "converted side", "compare"}
    assert report["environment"]["transformers"] and report["environment"]["torch"]
    assert set(report["inputs"]["converted"]["files"]) >= {"config.json", "tokenizer.json"}
    shards = [f for f in report["inputs"]["converted"]["files"] if f.endswith(".safetensors")]
    assert shards and all(len(report["inputs"]["converted"]["files"][f]) == 64 for f in shards)
    assert {r["query"] for r in report["rankings"]} >= {"Which planet is known as the Red Planet?"}
    assert all(r["kendall_tau"] == 1.0 and r["top1_equal"] for r in report["rankings"])
    documents = [p["document"] for p in report["pairs"]]
    assert "" in documents and any("<|im_end|>" in d for d in documents)
    assert any(len(d) > 10_000 for d in documents), "no long document near the model length"
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert suite.get("failures") == "0" and int(suite.get("tests")) == len(report["pairs"]) + 1
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tampered_head_fails_with_exit_1(pair_of, tmp_path, capsys):
    src, good = pair_of("untied-fp32-single")
    bad = tmp_path / "bad"
    convert(src, bad)
    rewrite_tensor(bad, "score.weight", load_all(good)["score.weight"] * 1.05)
    assert run(["verify", str(bad), "--original", str(src), "--junit", str(tmp_path / "j.xml")]) == 1
    assert "seqcls verify: FAIL" in capsys.readouterr().out
    assert int(ET.parse(tmp_path / "j.xml").getroot().get("failures")) > 0


@pytest.mark.slow  # inner loop: see docs/testing.md
def test_different_prompt_token_ids_are_a_failure_of_their_own(pair_of, tmp_path):
    src, _ = pair_of("tied-bf16-single")
    bad = tmp_path / "bad"
    convert(src, bad)
    tokenizer = json.loads((bad / "tokenizer.json").read_text())
    tokenizer["normalizer"] = {"type": "Lowercase"}
    (bad / "tokenizer.json").write_text(json.dumps(tokenizer))
    report = verify(bad, src)
    assert report["verdict"] == "fail"
    assert report["token_ids"]["mismatched_pairs"], "a lowercasing tokenizer must change some prompt ids"


def test_pairs_file(pair_of, tmp_path):
    src, out = pair_of("tied-bf16-single")
    pairs = tmp_path / "pairs.jsonl"
    rows = [
        {"query": "q1", "document": "d1"},
        {"query": "q1", "document": "d2", "instruction": "Judge code snippets"},
        {"query": "q2", "document": ""},
    ]
    pairs.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    report = verify(out, src, pairs_file=pairs)
    assert [(p["query"], p["document"], p["instruction"]) for p in report["pairs"]] == [
        (r["query"], r["document"], r.get("instruction")) for r in rows
    ]


@pytest.mark.parametrize(
    ("content", "match"),
    [('{"query": "q"}', "needs the fields"), ("not json", "not valid JSON"), ("", "holds no pairs")],
)
def test_bad_pairs_file(pair_of, tmp_path, capsys, content, match):
    src, out = pair_of("tied-bf16-single")
    (tmp_path / "p.jsonl").write_text(content)
    assert run(["verify", str(out), "--original", str(src), "--pairs", str(tmp_path / "p.jsonl")]) == 2
    assert match in capsys.readouterr().err


def test_unconverted_checkpoint_is_bad_input(original, capsys):
    src = original("tied-bf16-single")
    assert run(["verify", str(src), "--original", str(src)]) == 2
    assert "run seqcls convert first" in capsys.readouterr().err


def test_kendall_tau():
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)
    assert kendall_tau([1.0], [1.0]) is None


def test_missing_vllm_is_an_environment_error(pair_of, monkeypatch, capsys):
    """vLLM absent (as on a laptop without the extra): exit 2 and one line saying what to install."""
    import converter.vllm_compat as compat

    src, out = pair_of("tied-bf16-single")
    monkeypatch.setattr(compat, "_version", lambda dist: None)
    assert run(["verify", str(out), "--original", str(src), "--backend", "vllm"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "seqcls: error: vLLM is not installed; install it (pip install 'seqcls[vllm]' here, vllm or vllm-ascend)"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "vllm", "--original-overrides", "{not json"], "--original-overrides is not valid JSON"),
        (["--backend", "vllm", "--original-overrides", '["no", "yes"]'], "must be a JSON object"),
        (
            ["--backend", "vllm", "--original-overrides", '{"classifier_from_token": ["no", " yes"]}'],
            "vocabulary",
        ),
        (["--original-overrides", "{}"], "use it with --backend vllm or server"),
        (["--backend", "vllm", "--chunk", "0"], "the chunk of pairs sent at a time must be at least 1"),
    ],
)
def test_bad_original_overrides_are_one_line_before_any_engine(pair_of, tmp_path, capsys, args, message):
    src, out = pair_of("tied-bf16-single")
    assert run(["verify", str(out), "--original", str(src), "--log-dir", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not list(tmp_path.glob("*.log")), "no engine was started"


def test_timing_note_says_why_the_sides_differ_in_speed():
    """A converted side slower by more than noise on an engine is explained, a cached original side is not compared."""
    from converter.verify.reporting import timing_note as _timing_note

    def timings(original: float, converted: float, seconds: float = 10.0) -> dict:
        return {side: {"pairs_per_second": rate, "score_seconds": seconds}
                for side, rate in (("original", original), ("converted", converted))}  # fmt: skip

    tcmalloc = {"malloc": "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4", "device": "cpu"}
    slower = _timing_note(timings(400, 300), "vllm", cached=False, **tcmalloc)
    assert "25% fewer pairs a second" in slower and "with tcmalloc, where both sides score alike" in slower
    glibc = _timing_note(timings(400, 300), "server", cached=False, malloc="glibc", device="cpu")
    assert "glibc's malloc slows the converted checkpoint" in glibc and "libtcmalloc-minimal4" in glibc
    assert "glibc" not in _timing_note(timings(400, 300), "vllm", cached=False, malloc=None, device="cuda")
    assert _timing_note(timings(400, 370), "vllm", cached=False, **tcmalloc) is None
    assert _timing_note(timings(400, 300, seconds=0.5), "vllm", cached=False, **tcmalloc) is None, "too short to tell"
    assert _timing_note(timings(400, 300), "transformers", cached=False, **tcmalloc) is None
    assert "verify cache" in _timing_note(timings(400, 300), "transformers", cached=True, **tcmalloc)
    assert _timing_note({"original": {}, "converted": {}}, "vllm", cached=False, **tcmalloc) is None
