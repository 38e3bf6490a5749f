"""The vLLM server, real (CPU build here): ``seqcls serve`` of a conversion, ``verify --backend server`` against
servers already running and against one it starts itself, and the seed-style Ascend client. Servers run in vLLM's
default process layout, as users run them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import engines
import pytest
from helpers import official_scores

from converter.cli import run
from converter.pairs import DEMO_PAIRS, SEED_PAIRS, Pair
from converter.recipes import QWEN3_RERANKER
from converter.templates import INPUT_FORMS
from converter.verify import verify
from converter.verify.backends.base import MANUAL, TEMPLATE
from converter.verify.backends.server import HOST
from converter.vllm_compat import EngineSpec, engine_env, require, serve_argv

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.vllm_processes]
ROOT = Path(__file__).resolve().parents[1]
# The Qwen3 original's server and its conversion's (``original_server``, ``converted_server``) serve the tests of
# the xdist group "qwen3-servers", which run on one worker; the servers stop when that worker leaves this module, so
# that their memory (about 3 GiB each) is free for the rest of the run. A test that starts a server of its own says
# why.


def _servers_running(model: Path) -> int:
    count = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"vllm.entrypoints.openai.api_server" in args and str(model).encode() in args:
            count += 1
    return count


@pytest.fixture(scope="module")
def _original_engine(original, engine_for_one_test):
    src = original("tied-bf16-single")
    spec = EngineSpec(str(src), "float32", "cpu", QWEN3_RERANKER.vllm_hf_overrides(), max_model_len=4096)

    def argv(port: int) -> list[str]:
        return serve_argv(spec, require(), host=HOST, port=port)

    with engine_for_one_test("qwen3-original-server", argv, engine_env("cpu")) as engine:
        yield src, engine


@pytest.fixture(scope="module")
def _converted_engine(pair_of, engine_for_one_test):
    src, out = pair_of("tied-bf16-single")

    def argv(port: int) -> list[str]:
        return [sys.executable, "-m", "converter", "serve", str(out), "--host", HOST, "--port", str(port), "--dtype",
                "float32", "--max-model-len", "4096", "--gpu-memory-utilization", "0.1"]  # fmt: skip

    with engine_for_one_test("qwen3-converted-server", argv) as engine:
        yield src, engine


@pytest.fixture
def original_server(_original_engine):
    """The server of the tied bf16 original (seed overrides), for the tests of the ``qwen3-servers`` group."""
    src, engine = _original_engine
    with engines.in_use(engine):
        yield src, engine.url


@pytest.fixture
def converted_server(_converted_engine):
    """``seqcls serve`` of that original's conversion, for the tests of the ``qwen3-servers`` group."""
    src, engine = _converted_engine
    with engines.in_use(engine):
        yield src, engine.url, Path(engine.log)


@pytest.mark.xdist_group("qwen3-servers")
@pytest.mark.vllm_processes
def test_seqcls_serve_scores_raw_seed_formatted_and_mixed_input(converted_server):
    """``seqcls serve`` of the converted checkpoint: /v1/rerank and /score give the official scores whether clients
    send raw pairs, pairs formatted by hand as the seed does, or a mix (instructions as chat_template_kwargs)."""
    from converter.verify.backends.server import _query

    src, url, log = converted_server
    pairs = [*DEMO_PAIRS, Pair(SEED_PAIRS[0].query, "北京是中国的首都。")]
    assert any(p.instruction for p in pairs) and any(not p.document for p in pairs)
    want = official_scores(src, pairs)
    for form in INPUT_FORMS:
        for endpoint, got in _query(url, QWEN3_RERANKER, pairs, form, templated=True).items():
            assert max(abs(a - b) for a, b in zip(got, want)) <= 1e-4, (form, endpoint)
    assert "--chat-template" in log.read_text()


@pytest.mark.xdist_group("qwen3-servers")
@pytest.mark.vllm_processes
def test_ascend_client_agrees_between_the_original_and_the_converted_server(original_server, converted_server):
    """scripts/ascend/client.py, the seed's request demo, against real servers of both: the official scores from
    the original, and the same from the converted one with the seed's formatting and with --raw."""
    src, original_url = original_server
    _, converted_url, _ = converted_server
    script = [sys.executable, str(ROOT / "scripts" / "ascend" / "client.py")]
    other = "Given a question about a country, retrieve passages that name its capital"
    for raw, instruction in (([], None), (["--raw"], None), (["--raw", "--instruction", other], other)):
        args = [*script, "--original-url", original_url, "--converted-url", converted_url, "--atol", "1e-4", *raw]
        result = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, (raw, result.stdout, result.stderr)
        shown = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
        want = official_scores(src, [Pair(shown["query"], d, instruction) for d in shown["documents"]])
        for side in ("original", "converted"):
            assert max(abs(a - b) for a, b in zip(shown["scores"][side], want)) <= 1e-4, (raw, side)
        assert result.stdout.rstrip().endswith("OK")


@pytest.mark.xdist_group("qwen3-servers")
def test_the_ascend_client_sends_ctxls_halves_in_prompt_order(original_server):
    """scripts/ascend/client.py --family ctxl-rerank-v2 on the shared Qwen3 original: ctxl-rerank-v2's halves in
    prompt order, one request per document (each document is in its first half). Each score is what the server gives
    that family's prompt, asked directly. (The client against zerank-2's own servers: the zerank-2 test below; the
    ctxl servers are verify's own.)"""
    from converter.recipes import preset
    from converter.verify.backends.server import post

    _, url = original_server
    query, documents = "What is the capital of China?", ["The capital of China is Beijing.", "Gravity."]
    script = [sys.executable, str(ROOT / "scripts" / "ascend" / "client.py"), "--original-url", url, "--query", query]
    argv = [*script, "--family", "ctxl-rerank-v2", *(x for d in documents for x in ("--document", d))]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout[: result.stdout.rindex("}") + 1])["scores"]["original"]
    want = []
    for d in documents:
        first, second = preset("ctxl-rerank-v2").halves(query, d)
        [answer] = post(url, "/v1/rerank", {"query": first, "documents": [second]})["results"]
        want.append(answer["relevance_score"])
    assert got == pytest.approx(want, abs=1e-6) and got[0] != got[1]


@pytest.mark.xdist_group("qwen3-servers")
@pytest.mark.vllm_processes
def test_a_pair_over_the_length_is_refused_unless_its_document_is_cut(original_server, converted_server):
    """Both servers run with the reference's length (4,096 for this model, as ``seqcls serve`` sets it). A pair over
    it: the seed-style client is refused (one line, exit 2); with ``--max-length`` it cuts the document where Qwen's
    reference cuts it, and both servers give the reference's score of the whole pair. The other ways vLLM offers, on
    the converted server (docs/verify.md's table): ``max_tokens_per_doc`` keeps the prompt's end but cuts the
    document a token or two early (close, not the same score); ``truncate_prompt_tokens`` cuts the prompt's end
    (another score)."""
    from converter.truncation import cut_document, document_token_limit
    from converter.verify.backends.base import load_tokenizer
    from converter.verify.backends.server import post
    from converter.verify.parity import _long_document

    src, original_url = original_server
    _, converted_url, _ = converted_server
    query, long = "What do long documents test?", _long_document(src, QWEN3_RERANKER, 4096)
    script = [sys.executable, str(ROOT / "scripts" / "ascend" / "client.py"), "--original-url", original_url,
              "--converted-url", converted_url, "--atol", "1e-4", "--query", query, "--document", long,
              "--document", "Beijing."]  # fmt: skip
    refused = subprocess.run(script, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "the server refused the request (400)" in refused.stderr
    cut = subprocess.run([*script, "--max-length", "4096", "--tokenizer", str(src)], capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert cut.returncode == 0, (cut.stdout, cut.stderr)
    shown = json.loads(cut.stdout[: cut.stdout.rindex("}") + 1])
    want = official_scores(src, [Pair(query, long), Pair(query, "Beijing.")])
    for side in ("original", "converted"):
        assert max(abs(a - b) for a, b in zip(shown["scores"][side], want)) <= 1e-4, side
    tokenizer = load_tokenizer(src)
    assert shown["documents"][0] == cut_document(tokenizer, QWEN3_RERANKER, query, long, max_length=4096)

    def score(**options) -> float:
        return post(converted_url, "/score", {"queries": query, "documents": [long], **options})["data"][0]["score"]

    per_doc = score(max_tokens_per_doc=document_token_limit(tokenizer, QWEN3_RERANKER, query, max_length=4096))
    assert 0 < abs(per_doc - want[0]) < 0.05, "the prompt's end kept, the document cut a token or two early"
    assert abs(score(truncate_prompt_tokens=4096, truncation_side="right") - want[0]) > 1e-3, "the prompt's end cut"


@pytest.mark.xdist_group("qwen3-servers")
def test_server_backend_rerank_and_score(original_server, converted_server, pair_of, tmp_path, capsys):
    """Both servers already running (``--original-url``, ``--converted-url``): both get the seed's request format, so
    the converted server's template must pass the seed-formatted input through."""
    src, url = original_server
    _, converted_url, _ = converted_server
    _, out = pair_of("tied-bf16-single")
    args = ["verify", str(out), "--original", str(src), "--backend", "server", "--original-url", url]
    args += ["--converted-url", converted_url, "--report", str(tmp_path / "r.json"), "--chunk", "4"]
    assert run(args) == 0, capsys.readouterr()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["timings"]["converted"]["chunks"] == 6 and "/v1/rerank and /score" in report["timing"]
    assert set(report["metrics"]["endpoints"]) == {"/v1/rerank", "/score"}
    assert report["metrics"]["max_abs_delta"] <= 1e-4
    assert not report["token_ids"]["mismatched_pairs"]
    assert report["prompts"] == {"original": MANUAL, "converted": MANUAL}
    assert report["cache"]["original"] == "n/a", "a server started elsewhere is not cached"
    against = report["reference"]["converted"]
    assert set(against) == {"/v1/rerank", "/score"} and max(e["max_abs_delta"] for e in against.values()) <= 1e-4


@pytest.mark.xdist_group("qwen3-servers")
def test_server_backend_fails_a_served_conversion_that_deviates_from_the_reference(
    original_server, converted_server, pair_of, tmp_path, capsys
):
    """Planted fault, on the shared servers: the reference's copy of the original has its ``yes`` row replaced by its
    ``no`` row (every reference score 0.5), so the served conversion, which agrees with the served original, deviates
    from it. The backend must fail the conversion, not take the two servers' agreement as proof. (A tampered
    checkpoint of its own would cost a server start; the vllm backend's swapped-token test serves one.)"""
    from helpers import load_all, rewrite_tensor

    src, url = original_server
    _, converted_url, _ = converted_server
    _, out = pair_of("tied-bf16-single")
    flat = tmp_path / "original-without-an-answer"
    shutil.copytree(src, flat)
    embed = load_all(src)["model.embed_tokens.weight"].clone()
    embed[9693] = embed[2152]
    rewrite_tensor(flat, "model.embed_tokens.weight", embed)
    args = ["verify", str(out), "--original", str(flat), "--backend", "server", "--original-url", url,
            "--converted-url", converted_url, "--report", str(tmp_path / "r.json")]  # fmt: skip
    assert run(args) == 1
    assert "seqcls verify: FAIL: the converted checkpoint deviates from the reference" in capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert all(abs(r["reference"] - 0.5) < 1e-6 for r in report["pairs"])
    assert max(abs(r["original"] - r["converted"]) for r in report["pairs"]) <= 1e-4, "the servers agree"


@pytest.mark.xdist_group("qwen3-servers")
def test_reference_only_judges_a_served_conversion_with_no_original_server(converted_server, pair_of, tmp_path, capsys):
    """``--reference-only``: only the converted model's server (already running), judged against the transformers
    reference on the ids it used; the report and the printed verdict say the original did not run. Planted fault: the
    same served conversion against a reference whose original lost its ``yes`` row fails. Options that need an
    original path are refused."""
    from helpers import load_all, rewrite_tensor

    _, converted_url, _ = converted_server
    src, out = pair_of("tied-bf16-single")
    args = ["verify", str(out), "--backend", "server", "--reference-only", "--converted-url", converted_url]
    assert run([*args, "--original", str(src), "--report", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert "seqcls verify: PASS" in printed and "original: not run (--reference-only)" in printed
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["original_side"].startswith("not run") and report["cache"]["original"] == "skipped"
    assert report["findings"] == [] and report["environment"]["vllm"] == "external servers"
    assert max(abs(r["reference"] - r["converted"]) for r in report["pairs"]) <= 1e-4
    assert all(r["original"] == r["reference"] for r in report["pairs"])
    flat = tmp_path / "original-without-an-answer"
    shutil.copytree(src, flat)
    embed = load_all(src)["model.embed_tokens.weight"].clone()
    embed[9693] = embed[2152]
    rewrite_tensor(flat, "model.embed_tokens.weight", embed)
    assert run([*args, "--original", str(flat)]) == 1
    assert "seqcls verify: FAIL: the converted checkpoint deviates from the reference" in capsys.readouterr().out
    for extra in (["--no-reference"], ["--original-url", converted_url], ["--original-overrides", "{}"]):
        assert run([*args, "--original", str(src), *extra]) == 2
        err = capsys.readouterr().err
        assert f"--reference-only runs no original path, so {extra[0]}" in err and "Traceback" not in err
    assert run(["verify", str(out), "--original", str(src), "--reference-only"]) == 2
    assert "--reference-only applies to the engine backends" in capsys.readouterr().err


def _seqcls_serve(checkpoint: Path) -> Callable[[int], list[str]]:
    """``seqcls serve CHECKPOINT`` as a user runs it (the command it prints and runs: overrides for an original, the
    score template for a conversion)."""
    return lambda port: [sys.executable, "-m", "converter", "serve", str(checkpoint), "--host", HOST, "--port",
                         str(port)]  # fmt: skip


def test_zerank_2_is_served_with_its_cards_score_to_every_client(pair_of, engine_for_one_test, tmp_path, capsys):
    """zerank-2, both checkpoints run by ``seqcls serve`` (the original through the overrides users pass today, the
    conversion as-is with its score template): ``/v1/rerank`` and ``/score`` of the conversion give the card's
    calibrated score, sigmoid(logit / 5), to raw, seed-formatted and mixed input; the seed-style client
    (scripts/ascend/client.py --family zerank-2) gets the same from both servers, the original's raw logit
    calibrated by the client; ``verify --backend server`` judges both against the family's reference. The one zerank-2
    server pair: its vLLM path (the original's overrides, the conversion's template) is tested here, not offline."""
    from dataclasses import replace

    from converter.recipes import preset
    from converter.verify.backends.server import _query

    recipe = preset("zerank-2")
    src, out = pair_of("tiny-zerank-2")
    original = engine_for_one_test("zerank-2-original-server", _seqcls_serve(src))
    converted = engine_for_one_test("zerank-2-converted-server", _seqcls_serve(out))
    with original as served_original, converted as served_converted:
        original_url, converted_url = served_original.url, served_converted.url
        printed = Path(served_original.log).read_text(), Path(served_converted.log).read_text()
        pairs = [*DEMO_PAIRS, Pair(SEED_PAIRS[0].query, "北京是中国的首都。")]
        want = official_scores(src, pairs, recipe, rendered=True)
        uncalibrated = official_scores(src, pairs, replace(recipe, calibration=None), rendered=True)
        assert max(abs(a - b) for a, b in zip(want, uncalibrated)) > 1e-3, "the calibration shows"
        for form in INPUT_FORMS:
            for endpoint, got in _query(converted_url, recipe, pairs, form, templated=True).items():
                assert max(abs(a - b) for a, b in zip(got, want)) <= 1e-4, (form, endpoint)
        client = [sys.executable, str(ROOT / "scripts" / "ascend" / "client.py"), "--family", "zerank-2",
                  "--original-url", original_url, "--converted-url", converted_url, "--atol", "1e-4"]  # fmt: skip
        for raw in ([], ["--raw"]):
            result = subprocess.run([*client, *raw], capture_output=True, text=True, timeout=300)
            assert result.returncode == 0 and result.stdout.rstrip().endswith("OK"), (raw, result.stdout, result.stderr)
            shown = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
            asked = [Pair(shown["query"], d) for d in shown["documents"]]
            expected = official_scores(src, asked, recipe, rendered=True)
            for side in ("original", "converted"):
                assert shown["scores"][side] == pytest.approx(expected, abs=1e-4), (raw, side)
        args = ["verify", str(out), "--original", str(src), "--backend", "server", "--original-url", original_url,
                "--converted-url", converted_url, "--report", str(tmp_path / "r.json")]  # fmt: skip
        assert run(args) == 0, capsys.readouterr()
    assert _servers_running(src) == 0 and _servers_running(out) == 0, "stopped with the test: memory for the rest"
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["findings"] == [] and report["metrics"]["max_abs_delta"] <= 1e-4
    assert report["prompts"] == {"original": MANUAL, "converted": MANUAL}
    for side in ("original", "converted"):
        against = report["reference"][side]
        assert set(against) == {"/v1/rerank", "/score"}, side
        assert max(e["max_abs_delta"] for e in against.values()) <= 1e-4, side
    # What seqcls serve printed and ran: the documented overrides for the original, the template for the conversion.
    ran = [next(line for line in log.splitlines() if line.startswith("seqcls: running ")) for log in printed]
    overrides = json.dumps(recipe.vllm_hf_overrides(), separators=(",", ":"))
    assert overrides in ran[0] and "--chat-template" not in ran[0] and "--hf-overrides" not in ran[1]
    assert f"--chat-template {out / 'score_template.jinja'}" in ran[1]
    assert '"use_activation": false and calibrate' in printed[0] and "sigmoid(logit / 5)" in printed[0]


def test_verify_serves_ctxl_itself_and_judges_both_servers_against_the_familys_scores(pair_of, tmp_path):
    """``verify --backend server`` with no URL: verify starts both ctxl-rerank-v2 servers itself (the original through
    the family's overrides, sent its prompt, document first, as two halves that vLLM joins; the conversion with its
    score template, sent raw pairs and seed-formatted halves), through ``/v1/rerank`` and ``/score``, judges both
    against the family's own scores (the reference), and stops them. The one passing test of servers that verify
    starts, and the one ctxl pair of servers: its vLLM path is tested here, not offline."""
    src, out = pair_of("tiny-ctxl-rerank-v2")
    report = verify(out, src, backend="server", log_dir=tmp_path, report=tmp_path / "r.json")
    assert report["verdict"] == "pass" and report["findings"] == [], report.get("failure")
    assert sorted(p.name for p in tmp_path.glob("server-*.log")) == ["server-converted.log", "server-original.log"]
    assert all(report["timings"][side]["load_seconds"] > 0 for side in ("original", "converted"))
    assert _servers_running(out) == 0 and _servers_running(src) == 0
    assert report["prompts"] == {"original": MANUAL, "converted": TEMPLATE}
    assert report["token_ids"] == {"mismatched_pairs": [], "official_mismatched_pairs": []}
    assert report["metrics"]["max_abs_delta"] <= 1e-4
    assert set(report["input_forms"]) == {"seed-formatted"} and report["input_forms"]["seed-formatted"]["pairs"] > 0
    for side in ("original", "converted"):
        against = report["reference"][side]
        assert set(against) == {"/v1/rerank", "/score"}, side
        assert max(e["max_abs_delta"] for e in against.values()) <= 1e-4, side


@pytest.mark.vllm_processes
def test_server_that_cannot_start_is_a_clean_error(pair_of, tmp_path, capsys):
    """A start that fails (a model length over the model's) is one line and exit 2, and nothing is left running:
    a start of its own, by the test's nature."""
    src, out = pair_of("untied-fp32-single")  # not the model original_server is serving
    args = ["verify", str(out), "--original", str(src), "--backend", "server", "--max-length", "100000"]
    assert run([*args, "--log-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vLLM server for" in err[0] and "server-original.log" in err[0]
    assert _servers_running(src) == 0
