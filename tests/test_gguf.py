"""``seqcls export gguf`` and ``seqcls verify FILE.gguf --backend llamacpp``, through llama.cpp's real library: the
exported files load as rerankers, score like the original (float types per pair, quantized ones on rankings), and
a GGUF with its head's rows swapped or cut to one row fails."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
from conftest import SHARED, _shared
from helpers import load_all
from test_bad_input import refuse
from test_rankings import beir_folder

from converter.cli import run
from converter.export import gguf as exporter
from converter.export.gguf import export_gguf, file_name, read_exported
from converter.export.llamacpp import GgufFile, RankModel
from converter.pairs import Pair
from converter.recipes import QWEN3_RERANKER
from converter.verify import verify
from converter.verify.backends.base import load_tokenizer

pytestmark = [pytest.mark.llamacpp, pytest.mark.xdist_group("gguf")]
TYPES = ["f32", "f16", "q8_0", "q4_k_m"]


@pytest.fixture(scope="module")
def exported(pair_of):
    """The tied fp32 fixture exported to four types once per run: (original, converted, {type: path})."""
    src, converted = pair_of("tied-fp32-single")
    folder = _shared(SHARED / "gguf" / "tied-fp32", lambda out: export_gguf(converted, out, types=TYPES))
    return src, converted, {t: folder / file_name(converted, t) for t in TYPES}


def short_pairs(folder) -> str:
    """The built-in ranking pairs without the near-context-length document, for tests that need a verdict, not that
    document: llama.cpp computes the vocabulary's logits for every token of a prompt (rank pooling ignores them)."""
    from converter.pairs import RANKING, SEED_PAIRS

    path = folder / "pairs.jsonl"
    rows = [{"query": p.query, "document": p.document} for p in (*SEED_PAIRS, *RANKING)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_type_is_a_reranker_that_llama_cpp_loads(exported):
    """The metadata llama.cpp reads (rank pooling, labels, the rerank template), the head as ``[w; 0]`` in float32
    in every type, the weights in the type asked for, and the official prompt from the template token for token."""
    src, converted, files = exported
    w = load_all(converted)["score.weight"][0].numpy()
    template = QWEN3_RERANKER.format_pair("{query}", "{document}")
    sizes = {}
    for type_, path in files.items():
        info = read_exported(path)
        assert (info.type, info.recipe, info.rerank_template) == (type_, QWEN3_RERANKER, template)
        with GgufFile(path) as g:
            kind, _, _ = g.tensors["cls.output.weight"]
            head = np.frombuffer(g.read("cls.output.weight"), "<f4").reshape(2, -1)
            embedding = g.tensors["token_embd.weight"][0]
            assert g.string("general.architecture") == "qwen3" and g.u32("qwen3.pooling_type") == 4
        assert kind == 0 and np.array_equal(head[0], w) and not head[1].any()
        floats = {"f32": 0, "f16": 1}
        assert embedding == floats[type_] if type_ in floats else embedding not in (0, 1, 30), (type_, embedding)
        sizes[type_] = path.stat().st_size
    assert sizes["f32"] > sizes["f16"] > sizes["q8_0"] >= sizes["q4_k_m"]
    pair = ("What is the capital of China?", "The capital of China is Beijing.")
    with RankModel(files["f32"], n_ctx=256) as model:
        ids = model.tokenize(model.rerank_template().replace("{query}", pair[0]).replace("{document}", pair[1]))
        assert model.outputs == 2
    official = load_tokenizer(src).encode(QWEN3_RERANKER.format_pair(*pair), add_special_tokens=False)
    assert ids == official


def test_a_rerun_is_byte_identical(exported, tmp_path):
    _, converted, files = exported
    again = export_gguf(converted, tmp_path / "again", types=["q4_k_m", "f16"])
    assert [e.type for e in again] == ["f16", "q4_k_m"]
    for e in again:
        assert sha256(e.path) == sha256(files[e.type]), e.type
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == sorted(e.path.name for e in again)


@pytest.mark.slow
def test_verify_float_types_per_pair_and_quantized_on_rankings(exported, tmp_path, capsys):
    """f32 within 5e-4 of the reference on every built-in pair, with the same token ids; q8_0 on a BEIR folder
    judged by its ranking gate, its |Δ| reported but not gated."""
    src, _, files = exported
    report = tmp_path / "f32.json"
    assert run(["verify", str(files["f32"]), "--original", str(src), "--backend", "llamacpp", "--report",
                str(report)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    r = json.loads(report.read_text())
    assert r["verdict"] == "pass" and r["gguf_type"] == "f32" and r["atol"] == 5e-4
    assert 0 < r["metrics"]["max_abs_delta"] < 5e-4 and r["token_ids"]["mismatched_pairs"] == []
    assert r["environment"]["llama-cpp-python"] == "0.3.36" and "llama-server fills it" in r["prompts"]["converted"]
    assert r["reference"] is None and r["inputs"]["converted"]["files"] == {files["f32"].name: sha256(files["f32"])}
    assert "seqcls verify: PASS" in text
    # The long built-in document passes the model length: llama.cpp got it cut as the reference cuts it.
    [cut] = r["cut_pairs"]
    assert r["pairs"][cut]["document"].startswith("Rerankers read") and cut not in r["failed_pairs"]

    folder = beir_folder(tmp_path / "beir", queries=6)
    report = tmp_path / "q8.json"
    assert run(["verify", str(files["q8_0"]), "--original", str(src), "--backend", "llamacpp", "--pairs",
                str(folder), "--report", str(report)]) == 0  # fmt: skip
    r = json.loads(report.read_text())
    summary = r["ranking_summary"]
    assert r["gguf_type"] == "q8_0" and summary["gate"]["median_tau"] == 0.95 and summary["gate_ok"]
    assert summary["ndcg_atol"] == 0.01 and summary["judged_queries"] == 6 and summary["ndcg_ok"]
    assert r["metrics"]["max_abs_delta"] > 1e-3, "a quantized file differs per pair; it is judged on rankings"
    assert "q8_0 judged on rankings (median τ ≥ 0.95" in capsys.readouterr().out


@pytest.mark.slow  # inner loop: see docs/testing.md
def test_a_path_that_cuts_the_prompts_end_is_named(exported, monkeypatch):
    """Planted fault: llama.cpp given the whole over-length prompt cut to the model length at its end (what an
    engine that truncates the prompt does) instead of the document cut: the pair fails, and the failure names the
    pair and the path."""
    from converter.verify.backends.llamacpp import LlamacppBackend
    from converter.verify.parity import _long_document

    src, _, files = exported
    long = Pair("What do long documents test?", _long_document(src, QWEN3_RERANKER, 4096))
    fill, tokenizer = LlamacppBackend.prompt, load_tokenizer(src)

    def cut_at_the_end(self, pair):
        if pair.query != long.query:
            return fill(self, pair)
        return tokenizer.decode(tokenizer(fill(self, long), add_special_tokens=False)["input_ids"][: self.s.max_length])

    monkeypatch.setattr(LlamacppBackend, "prompt", cut_at_the_end)
    report = verify(
        files["f32"], src, backend="llamacpp", pairs=[Pair("What is the capital of China?", "Beijing."), long]
    )
    assert report["verdict"] == "fail" and report["cut_pairs"] == [1] and report["failed_pairs"] == [1]
    assert "the converted path cut pair 1 over the model length elsewhere than the reference" in report["failure"]


def _planted(converted, tmp_path, monkeypatch, head):
    """An f32 export whose head is ``head(w)`` instead of ``[w; 0]``, with as many labels as rows (llama.cpp refuses
    a file whose head and labels disagree), and the export's own check switched off."""
    import gguf

    class Planted(exporter._Head):
        def __init__(self, t):
            super().__init__(t)
            self.array = np.ascontiguousarray(head(self.array[0]), dtype=np.float32)
            self.shape, self.nbytes = self.array.shape, self.array.nbytes

    labels = gguf.GGUFWriter.add_classifier_output_labels
    rows = len(head(np.zeros(4)))
    monkeypatch.setattr(gguf.GGUFWriter, "add_classifier_output_labels", lambda w, names: labels(w, names[:rows]))
    monkeypatch.setattr(exporter, "_Head", Planted)
    monkeypatch.setattr(exporter, "_check_written", lambda made, head: None)
    return export_gguf(converted, tmp_path / "planted", types=["f32"])[0].path


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["rows-swapped", "one-row"])
def test_a_wrong_head_fails(exported, tmp_path, monkeypatch, capsys, fault):
    """Planted faults: rows swapped (``[0; w]``) score 1 − p; one row scores 1.0 for every pair (llama.cpp softmaxes
    the rows). The swap is written into a copy of the f32 file; the one-row head needs an export of its own."""
    src, converted, files = exported
    if fault == "one-row":
        path = _planted(converted, tmp_path, monkeypatch, lambda w: w[None, :])
    else:
        path = tmp_path / files["f32"].name
        shutil.copy(files["f32"], path)
        with GgufFile(path) as g:
            _, offset, _ = g.tensors["cls.output.weight"]
            w = np.frombuffer(g.read("cls.output.weight"), "<f4").reshape(2, -1)[0]
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(np.stack([np.zeros_like(w), w]).astype("<f4").tobytes())
    args = ["verify", str(path), "--original", str(src), "--backend", "llamacpp", "--pairs", short_pairs(tmp_path)]
    assert run(args) == 1
    assert "seqcls verify: FAIL: the converted checkpoint deviates" in capsys.readouterr().out


def test_bad_input(exported, original, pair_of, tmp_path, capsys):
    src, converted, files = exported
    refuse(["export", "gguf", str(src)], capsys, "is not a checkpoint converted by seqcls; run seqcls convert")
    refuse(["export", "gguf", str(converted), "--type", "q3_k"], capsys, "unknown GGUF type q3_k; choose from f32")
    refuse(["export", "gguf", str(converted), "-o", str(converted / "gguf")], capsys, "overlaps the checkpoint")
    _, mxbai = pair_of("tiny-mxbai-rerank-base-v2")
    refuse(["export", "gguf", str(mxbai), "-o", str(tmp_path / "m")], capsys, "rank pooling reads the first token")
    assert not (tmp_path / "m").exists()
    truncated = tmp_path / "t.gguf"
    truncated.write_bytes(files["q8_0"].read_bytes()[:-4096])
    verify = ["verify", "--original", str(src), "--backend", "llamacpp"]
    refuse([verify[0], str(truncated), *verify[1:]], capsys, "is truncated; export it again")
    (tmp_path / "n.gguf").write_bytes(b"not a gguf file")
    refuse([verify[0], str(tmp_path / "n.gguf"), *verify[1:]], capsys, "is not a GGUF file")
    import gguf

    plain = gguf.GGUFWriter(tmp_path / "llm.gguf", "qwen3")  # an LLM's GGUF: no rank pooling, no head
    plain.write_header_to_file()
    plain.write_kv_data_to_file()
    plain.write_ti_data_to_file()
    plain.close()
    refuse([verify[0], str(tmp_path / "llm.gguf"), *verify[1:]], capsys, "is not a reranker GGUF (no rank pooling")
    refuse(["verify", str(files["f16"]), "--original", str(src)], capsys, "verify it with --backend llamacpp")


def test_a_failed_export_leaves_nothing(exported, tmp_path, monkeypatch, capsys):
    """Killed between files (here: the quantizer fails): neither the output folder nor a temporary one remains."""
    from converter.errors import SeqclsError
    from converter.export import llamacpp

    def fail(*args):
        raise SeqclsError("llama.cpp could not quantize (planted)")

    monkeypatch.setattr(llamacpp, "quantize", fail)
    out = tmp_path / "out"
    refuse(["export", "gguf", str(exported[1]), "-o", str(out), "--type", "f16", "q8_0"], capsys, "(planted)")
    assert os.listdir(tmp_path) == []
    shutil.rmtree(out, ignore_errors=True)


def test_card_and_publish_carry_verified_gguf_files(original, tmp_path, capsys):
    """verify --update-card records a GGUF in its converted checkpoint's card (found where export puts it by
    default); publish uploads GGUF files only with a passing llamacpp report each, to the repo or a GGUF repo."""
    from converter import convert
    from converter.card import read_state

    src = original("tied-fp32-single")
    converted = tmp_path / "Tiny-seq-cls"
    convert(src, converted)
    assert run(["export", "gguf", str(converted), "--type", "f16"]) == 0
    gguf_file = tmp_path / "Tiny-seq-cls-GGUF" / "Tiny-seq-cls-F16.gguf"
    assert "f16" in capsys.readouterr().out and gguf_file.is_file()
    report = gguf_file.with_suffix(".verify.json")
    assert run(["verify", str(gguf_file), "--original", str(src), "--backend", "llamacpp", "--report", str(report),
                "--update-card", "--pairs", short_pairs(tmp_path)]) == 0  # fmt: skip
    (row,) = read_state(converted)["gguf"]
    assert row["file"] == gguf_file.name and row["type"] == "f16" and row["sha256"] == sha256(gguf_file)
    assert row["verdict"] == "pass" and row["max_abs_delta"] < 5e-3 and row["judged"] == "per pair: |Δ| ≤ 5e-03"
    card = (converted / "README.md").read_text()
    assert "## GGUF for llama.cpp" in card and f"| `{gguf_file.name}` | f16  |" in card and "llama-server -m" in card

    capsys.readouterr()
    args = ["publish", str(converted), "--repo-id", "org/Tiny-seq-cls", "--dry-run", "--skip-verify"]
    assert run([*args, "--gguf", str(gguf_file), "--gguf-repo", "org/Tiny-seq-cls-GGUF"]) == 0
    text = capsys.readouterr().out
    assert f"| {gguf_file.name} |" in text and "org/Tiny-seq-cls-GGUF" in text and str(report) in text
    unverified = tmp_path / "other" / gguf_file.name
    unverified.parent.mkdir()
    shutil.copy(gguf_file, unverified)
    unverified.with_suffix(".gguf.part").write_bytes(b"")
    with open(unverified, "r+b") as f:  # same size, one byte off: its report no longer matches
        f.seek(-1, 2)
        f.write(b"\x01")
    refuse([*args, "--gguf", str(unverified)], capsys, "no passing verify report beside")
    refuse([*args, "--gguf", str(gguf_file), "--gguf-repo", "not a repo"], capsys, "--gguf-repo 'not a repo' must")


def test_serve_prints_the_llama_server_command(exported, capsys, monkeypatch):
    """--print: llama-server with rank pooling on, context, batch and micro-batch of the family's longest prompt
    (rank pooling needs a whole prompt in one micro-batch), one slot; and a /v1/rerank request. Without
    llama-server on PATH, running it is refused in one line."""
    path = exported[2]["q8_0"]
    assert run(["serve", str(path), "--print", "--port", "8081"]) == 0
    out = capsys.readouterr()
    command, request = out.out.strip().splitlines()
    want = f"llama-server -m {path} --reranking --ctx-size 8192 --batch-size 8192 --ubatch-size 8192 --parallel 1"
    assert command == f"{want} --port 8081" and "q8_0 GGUF of Qwen3-Reranker" in out.err
    assert "a pair whose prompt passes 8192 tokens is refused (HTTP 500" in out.err and "cut_document" in out.err
    body = json.loads(request.split(" -d ", 1)[1].strip("'"))
    assert request.startswith("curl -s http://127.0.0.1:8081/v1/rerank") and len(body["documents"]) == 2
    monkeypatch.setenv("PATH", "/nonexistent")
    refuse(["serve", str(path)], capsys, "llama-server is not on PATH; install llama.cpp's server, or add --print")


@pytest.mark.slow  # inner loop: see docs/testing.md
@pytest.mark.parametrize("raw_logit", [False, True], ids=["calibrated", "raw-logit"])
def test_zerank_2_gguf_scores_as_its_card_says(original, tmp_path, raw_logit):
    """zerank-2's GGUF (community ones give near-zero scores, llama.cpp #25447): llama.cpp's rank pooling over
    ``[w; 0]`` gives the reference's calibrated score sigmoid(logit / 5), or with ``--raw-logit`` sigmoid(logit),
    within f32's tolerance, and its rerank template gives the family's ids token for token (a document opening with a
    newline included); the GGUF records the temperature, and verify judges each against it (the two share one
    original, so a cache that ignored the temperature would pass the second wrongly)."""
    from converter import convert

    src = original("tiny-zerank-2")
    out = tmp_path / ("zerank-2-raw-seq-cls" if raw_logit else "zerank-2-seq-cls")
    convert(src, out, raw_logit=raw_logit)
    [gguf] = export_gguf(out, tmp_path / "gguf", types=["f32"])
    assert read_exported(gguf.path).recipe.temperature == (1.0 if raw_logit else 5.0)
    pairs = [Pair("What is the capital of China?", "The capital of China is Beijing."), Pair("Gravity?", "\nA force.")]
    report = verify(gguf.path, src, backend="llamacpp", pairs=pairs)
    assert report["verdict"] == "pass" and report["token_ids"]["mismatched_pairs"] == [], report["failure"]
    assert report["token_ids"]["official_mismatched_pairs"] == [] and report["metrics"]["max_abs_delta"] < 5e-4


@pytest.mark.slow  # inner loop: see docs/testing.md
def test_ctxl_rerank_v2_gguf_puts_the_document_first(original, tmp_path):
    """ctxl-rerank-v2's GGUF: its rerank template puts ``{document}`` before ``{query}`` as the family's prompt does,
    and llama-server fills it into the family's ids token for token (a document ending with a newline, which the
    prompt's own newline joins, and a pair with an instruction, formatted by hand); llama.cpp's rank pooling over
    ``[w; 0]`` gives sigmoid of the id-0 logit within f32's tolerance."""
    from converter import convert

    src = original("tiny-ctxl-rerank-v2")
    out = tmp_path / "ctxl-rerank-v2-seq-cls"
    convert(src, out)
    [gguf] = export_gguf(out, tmp_path / "gguf", types=["f32"])
    template = read_exported(gguf.path).rerank_template
    assert template.index("{document}") < template.index("{query}") and template.endswith("{query} ??")
    pairs = [Pair("What is the capital of China?", "The capital of China is Beijing.\n"),
             Pair("Gravity?", "A force.", "Prioritize recent research")]  # fmt: skip
    report = verify(gguf.path, src, backend="llamacpp", pairs=pairs)
    assert report["verdict"] == "pass" and report["token_ids"]["mismatched_pairs"] == [], report["failure"]
    assert report["token_ids"]["official_mismatched_pairs"] == [] and report["metrics"]["max_abs_delta"] < 5e-4
