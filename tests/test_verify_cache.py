"""``seqcls verify --cache``: the original side is reused only when every input is the same."""

from __future__ import annotations

import gzip
import json

import pytest
from helpers import load_all, rewrite_tensor

from converter import convert
from converter.cli import run
from converter.pairs import DEMO_PAIRS, Pair
from converter.verify import VerifyOptions, verify
from converter.verify.cache import default_dir

PAIRS = list(DEMO_PAIRS[:4])


@pytest.mark.slow  # inner loop: see docs/testing.md
def test_same_inputs_hit_and_any_change_misses(pair_of, tmp_path):
    src, out = pair_of("tied-fp32-single")
    options = VerifyOptions(cache_dir=tmp_path / "cache")
    first = verify(out, src, options, pairs=PAIRS)
    again = verify(out, src, options, pairs=PAIRS)
    assert (first["cache"]["original"], again["cache"]["original"]) == ("miss", "hit")
    assert again["cache"]["key"] == first["cache"]["key"] and again["verdict"] == "pass"
    assert [p["original"] for p in again["pairs"]] == [p["original"] for p in first["pairs"]]
    assert [p["converted"] for p in again["pairs"]] == [p["converted"] for p in first["pairs"]]
    assert len(list((tmp_path / "cache").rglob("*.json.gz"))) == 1

    other_pairs = [*PAIRS[:-1], Pair(PAIRS[-1].query, PAIRS[-1].document + " ")]
    changes = [
        ({"pairs": other_pairs}, {}),
        ({"pairs": PAIRS}, {"dtype": "bfloat16"}),
        ({"pairs": PAIRS}, {"max_length": 90}),  # cuts the documents, not the template
        ({"pairs": PAIRS}, {"batch_size": 3}),
    ]
    keys = {first["cache"]["key"]}
    for pairs, change in changes:
        report = verify(out, src, options, **pairs, **change)
        assert report["cache"]["original"] == "miss", change or "pairs"
        keys.add(report["cache"]["key"])
    assert len(keys) == 1 + len(changes)
    # What cannot change the original's scores is no miss: a tolerance, or a length that cuts no prompt.
    for change in ({"atol": 0.5}, {"max_length": 4096}):
        assert verify(out, src, options, pairs=PAIRS, **change)["cache"]["original"] == "hit", change


def test_changed_original_weights_are_scored_afresh(copy_of, tmp_path):
    """Planted fault: the original's answer rows change after the cache was filled. The old scores must not be
    reused; scored afresh, the original no longer matches the old conversion."""
    src = copy_of("tied-fp32-single")
    out = tmp_path / "out"
    convert(src, out)
    options = VerifyOptions(cache_dir=tmp_path / "cache")
    assert verify(out, src, options, pairs=PAIRS)["verdict"] == "pass"

    embed = load_all(src)["model.embed_tokens.weight"].clone()
    embed[9693] += 0.5 * embed[9693].abs().mean()  # "yes"
    rewrite_tensor(src, "model.embed_tokens.weight", embed)  # unlinks first: the conversion's hard link keeps the old
    report = verify(out, src, options, pairs=PAIRS)
    assert report["cache"]["original"] == "miss"
    assert report["verdict"] == "fail" and report["failed_pairs"]


def test_no_cache_reads_and_writes_nothing(pair_of, tmp_path, capsys):
    src, out = pair_of("tied-fp32-single")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"query": p.query, "document": p.document}) + "\n" for p in PAIRS[:3]))
    args = ["verify", str(out), "--original", str(src), "--pairs", str(pairs), "--report", str(tmp_path / "r.json")]
    assert run([*args, "--no-cache", "--cache", str(tmp_path / "cache")]) == 0
    assert "original side: scored now (--no-cache)" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["cache"]["original"] == "off"
    assert not (tmp_path / "cache").exists()

    assert run([*args, "--cache", str(tmp_path / "cache")]) == 0
    assert run([*args, "--cache", str(tmp_path / "cache")]) == 0
    assert "original side: from the verify cache" in capsys.readouterr().out


@pytest.mark.slow  # inner loop: see docs/testing.md
def test_a_damaged_entry_is_a_miss_and_is_replaced(pair_of, tmp_path):
    src, out = pair_of("tied-fp32-single")
    options = VerifyOptions(cache_dir=tmp_path / "cache")
    first = verify(out, src, options, pairs=PAIRS[:3])
    [entry] = (tmp_path / "cache").rglob("*.json.gz")
    entry.write_bytes(entry.read_bytes()[:40])
    assert verify(out, src, options, pairs=PAIRS[:3])["cache"]["original"] == "miss"
    with gzip.open(entry, "rt") as f:
        assert json.load(f)["key"] == first["cache"]["key"]
    assert verify(out, src, options, pairs=PAIRS[:3])["cache"]["original"] == "hit"


def test_default_folder_is_under_the_users_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("SEQCLS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_dir() == tmp_path / "seqcls" / "verify"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_dir() == tmp_path / "home" / ".cache" / "seqcls" / "verify"


def test_tokenizers_are_kept_by_content_and_reloaded_when_a_file_changes(original, tmp_path):
    """The in-process tokenizer cache: a copy of a folder (or another original with the same vocabulary) gets the
    same tokenizer; a changed chat template, which AutoTokenizer reads too, gets a fresh one."""
    import shutil

    from converter.verify.backends.base import TOKENIZER_FILES, load_tokenizer

    src, other = original("tied-fp32-single"), original("untied-fp32-single")
    copy = tmp_path / "copy"
    copy.mkdir()
    for pattern in TOKENIZER_FILES:
        for path in src.glob(pattern):
            shutil.copy(path, copy / path.name)
    kept = load_tokenizer(src)
    assert load_tokenizer(copy) is kept and load_tokenizer(other) is kept
    (copy / "chat_template.jinja").write_text("{{ 'changed' }}")
    fresh = load_tokenizer(copy)
    assert fresh is not kept and fresh.chat_template == "{{ 'changed' }}"
    assert load_tokenizer(src) is kept
