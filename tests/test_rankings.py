"""verify on the user's own data, judged as rankings: BEIR-layout folders and JSONL with judgements, NDCG@10 and
MRR@10 of each side, and a summary that stays short at any size."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers import load_all, rewrite_tensor

from converter.cli import run
from converter.errors import SeqclsError
from converter.pairs import RANKING, Pair, PairFile, load_pair_set
from converter.verify import parity, verify
from converter.verify.outputs import markdown
from converter.verify.rankings import mrr_at, ndcg_at, ranked

TOPICS = [
    ("Which planet is known as the Red Planet?", [d.document for d in RANKING]),
    ("What is the capital of China?", ["The capital of China is Beijing.", "Shanghai is China's largest city.",
                                       "Gravity gives weight to objects.", "Beijing hosted the 2008 Olympics."]),
]  # fmt: skip


def beir_folder(root: Path, queries: int = 2, with_run: bool = False) -> Path:
    """``queries`` queries cycling over TOPICS; the first document of each is judged 2, the second 1, a third 0."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "qrels").mkdir(exist_ok=True)
    corpus, lines, qrels, run_lines = [], [], ["query-id\tcorpus-id\tscore"], []
    for q in range(queries):
        text, docs = TOPICS[q % len(TOPICS)]
        lines.append({"_id": f"q{q}", "text": f"{text} ({q})" if q >= len(TOPICS) else text})
        for d, doc in enumerate(docs):
            corpus.append({"_id": f"q{q}-d{d}", "title": "", "text": doc})
            if d < 3:
                qrels.append(f"q{q}\tq{q}-d{d}\t{2 - d}")
            run_lines.append(f"q{q} Q0 q{q}-d{d} {d + 1} {10 - d} bm25")
    corpus.append({"_id": "unjudged", "title": "Noise", "text": "Not a candidate of any query."})
    (root / "corpus.jsonl").write_text("".join(json.dumps(c) + "\n" for c in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in lines))
    (root / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
    if with_run:
        (root / "run.trec").write_text("\n".join(run_lines) + "\n")
    return root


def test_ndcg_and_mrr_as_trec_eval_computes_them():
    doc_ids = ["a", "b", "c", "d"]
    judged = {"a": 0, "b": 2, "c": 1, "z": 3}  # z is judged but not a candidate: it still counts for the ideal
    order = ranked([0.9, 0.8, 0.1, 0.5], doc_ids)
    assert order == [0, 1, 3, 2]
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    idcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at(order, doc_ids, judged) == pytest.approx(dcg / idcg)
    assert mrr_at(order, doc_ids, judged) == 0.5
    assert mrr_at(order, doc_ids, {"a": 0}) == 0.0 and ndcg_at(order, doc_ids, {"a": 0}) == 0.0
    assert ranked([1.0, 1.0], ["b", "a"]) == [1, 0], "ties go by document id"


def test_beir_folder_loads_judged_documents_or_a_run(tmp_path):
    folder = beir_folder(tmp_path / "beir", with_run=True)
    judged = load_pair_set(folder)
    assert len(judged.pairs) == 6 and judged.qrels["q0"] == {"q0-d0": 2, "q0-d1": 1, "q0-d2": 0}
    assert {p.query_id for p in judged.pairs} == {"q0", "q1"} and judged.pairs[0].document_id == "q0-d0"
    candidates = load_pair_set(folder, run=folder / "run.trec")
    assert len(candidates.pairs) == len(TOPICS[0][1]) + len(TOPICS[1][1])
    assert all(p.document != "Not a candidate of any query." for p in candidates.pairs)
    expected = [
        Pair(TOPICS[q][0], doc, None, f"q{q}", f"q{q}-d{d}") for q in (0, 1) for d, doc in enumerate(TOPICS[q][1])
    ]
    assert list(candidates.pairs) == expected and candidates.pairs[-1] == expected[-1]
    assert isinstance(candidates.pairs, PairFile), "documents are read from corpus.jsonl when used, not held"
    with open(folder / "corpus.jsonl", "a") as f:
        f.write('{"_id": "late", "text": "added while verifying"}\n')
    with pytest.raises(SeqclsError, match=r"corpus\.jsonl changed while it was being verified"):
        candidates.pairs[0]


def test_verify_judges_rankings_on_a_beir_folder(pair_of, tmp_path, capsys, monkeypatch):
    """Many queries: NDCG@10 and MRR@10 per side and their difference lead the summary, which stays short (the
    worst pairs and queries only). Above ``PAIR_ROWS_INLINE`` pairs (lowered here to 50), every pair's row goes to
    a JSONL file beside the report, and the JUnit XML holds the failures rather than a case per pair."""
    monkeypatch.setattr(parity, "PAIR_ROWS_INLINE", 50)
    src, out = pair_of("tied-fp32-single")
    folder = beir_folder(tmp_path / "beir", queries=12, with_run=True)
    args = ["verify", str(out), "--original", str(src), "--pairs", str(folder), "--run", str(folder / "run.trec")]
    outputs = ["--report", str(tmp_path / "r.json"), "--plot", str(tmp_path / "p.png"), "--junit", str(tmp_path / "j")]
    assert run([*args, *outputs]) == 0
    text = capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    summary = report["ranking_summary"]
    assert summary["judged_queries"] == 12 and summary["ndcg_ok"] and abs(summary["delta_ndcg10"]) <= 1e-4
    assert set(summary["ndcg10"]) == {"original", "converted"} and 0 < summary["ndcg10"]["original"] <= 1
    assert "pairs" not in report and report["pair_count"] == 72 and len(report["rankings"]) == 12
    rows = [json.loads(line) for line in Path(report["pairs_file"]).read_text().splitlines()]
    assert report["pairs_file"] == str(tmp_path / "r.pairs.jsonl") and [r["index"] for r in rows] == list(range(72))
    assert [r["abs_delta"] for r in rows] == report["metrics"]["endpoints"]["score"]["deltas"]
    assert rows[0]["document"] == TOPICS[0][1][0] and all(r["ok"] for r in rows)
    worst = sorted(rows, key=lambda r: r["abs_delta"], reverse=True)[:20]
    assert [r["abs_delta"] for r in report["shown_pairs"]] == [r["abs_delta"] for r in worst]
    suite = ET.parse(tmp_path / "j").getroot()
    assert suite.get("tests") == "2" and suite.get("failures") == "0", "one case for the score, one for the ids"
    assert all(r["ndcg10"] is not None and r["top10_overlap"] == 1.0 for r in report["rankings"])
    lines = text.splitlines()
    assert lines[2].startswith("**ΔNDCG@10 ") and "12 judged queries" in lines[2], "the summary leads with it"
    assert len(lines) <= 100 and f"the 20 pairs of 72 with the largest abs Δ (every pair: {tmp_path}" in text
    assert "12 rankings: Kendall τ min" in text and text.count("\nranking ") == 10
    assert "pairs/s" in text and report["timings"]["converted"]["tokens_per_second"] > 0
    assert (tmp_path / "p.png").stat().st_size > 10_000


def test_a_reversed_ranking_fails_on_ndcg_even_within_the_score_tolerance(pair_of, tmp_path, capsys):
    """Planted fault: a head from swapped tokens scores 1 − p. With --atol 1 every pair passes; NDCG@10 must not."""
    src, good = pair_of("tied-fp32-single")
    bad = tmp_path / "swapped"
    from converter import convert

    convert(src, bad)
    rewrite_tensor(bad, "score.weight", -load_all(good)["score.weight"])
    folder = beir_folder(tmp_path / "beir", queries=1)
    assert run(["verify", str(bad), "--original", str(src), "--pairs", str(folder), "--atol", "1"]) == 1
    text = capsys.readouterr().out
    assert "seqcls verify: FAIL: NDCG@10 moves by -" in text and "(tolerance 1e-04, 1 judged queries)" in text
    assert "OUTSIDE ±1e-04" in text


def test_jsonl_with_judgements(pair_of, tmp_path):
    src, out = pair_of("tied-fp32-single")
    rows = [
        {"query": TOPICS[0][0], "document": doc, "query_id": "mars", "document_id": i, "relevance": int(i == 0)}
        for i, doc in enumerate(TOPICS[0][1])
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = verify(out, src, pairs_file=path)
    assert report["verdict"] == "pass" and report["ranking_summary"]["judged_queries"] == 1
    ranking = report["rankings"][0]
    assert ranking["query_id"] == "mars" and set(ranking["mrr10"]) == {"original", "converted"}


def test_without_judgements_the_summary_has_no_ndcg(pair_of, tmp_path):
    src, out = pair_of("tied-fp32-single")
    report = verify(out, src, pairs=list(RANKING))
    assert "ndcg10" not in report["ranking_summary"] and report["rankings"][0]["ndcg10"] is None
    assert "ΔNDCG" not in markdown(report)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "corpus.jsonl").unlink(), "is not a BEIR-layout folder: corpus.jsonl is missing"),
        (lambda f: (f / "qrels" / "test.tsv").rename(f / "qrels" / "dev.tsv"), "(splits here: dev; choose one"),
        (lambda f: (f / "qrels" / "test.tsv").write_text("q0\tnowhere\t1\n"), "names corpus id 'nowhere'"),
        (lambda f: (f / "qrels" / "test.tsv").write_text("q9\tq0-d0\t1\n"), "names query id 'q9'"),
        (lambda f: (f / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n"), "names no (query, document)"),
        (
            lambda f: (f / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0 q0-d0\n"),
            "expected query-id, corpus-id and an integer",
        ),
    ],
)
def test_bad_beir_folders(pair_of, tmp_path, capsys, damage, message):
    src, out = pair_of("tied-fp32-single")
    folder = beir_folder(tmp_path / "beir")
    damage(folder)
    assert run(["verify", str(out), "--original", str(src), "--pairs", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
