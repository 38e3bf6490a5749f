"""Every preset family converts exactly and is recognised as data says; --tokens/--method convert any causal LM with a
seq-cls counterpart; the reference token ids follow each family's published reference code."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from conftest import FAMILY_ORIGINALS
from helpers import ctxl_reference_ids, load_all, rewrite_tensor, zerank_reference_ids
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from converter import convert
from converter.cli import run
from converter.errors import SeqclsError
from converter.inspection import inspect_checkpoint
from converter.pairs import DEMO_PAIRS, builtin_pairs
from converter.recipes import (
    BGE_RERANKER_V2_GEMMA,
    MXBAI_RERANK_V2,
    PRESETS,
    QWEN3_RERANKER,
    preset,
    recipe_for_converted,
)
from converter.reference import encode_official
from converter.verify import verify
from converter.verify.backends.base import load_tokenizer

PAIRS = builtin_pairs("A long document about rerankers. " * 40)


def config_of(folder):
    return json.loads((folder / "config.json").read_text())


@pytest.mark.parametrize("family", list(FAMILY_ORIGINALS))
def test_each_preset_is_recognised_and_its_head_is_exact(pair_of, family):
    src, out = pair_of(FAMILY_ORIGINALS[family])
    recipe = preset(family)
    config = config_of(out)
    assert config["architectures"] == [recipe.target_architecture]
    calibrated = {"temperature": recipe.temperature} if recipe.calibration else {}
    assert config["seqcls"] == {"recipe": family, "method": recipe.method, "label_tokens": list(recipe.label_tokens),
                                **calibrated, "head_from": recipe.embed_tensor}  # fmt: skip
    assert not {"method", "classifier_from_token", "is_original_qwen3_reranker"} & set(config)
    assert recipe_for_converted(config) == recipe
    ids = load_tokenizer(src).convert_tokens_to_ids(list(recipe.label_tokens))
    assert recipe.label_ids in (None, tuple(ids))
    w = load_all(src)["model.embed_tokens.weight"].float()
    expected = w[ids[1]] - w[ids[0]] if recipe.method == "from_2_way_softmax" else w[ids] / recipe.temperature
    score = load_all(out)["score.weight"]
    assert score.dtype == torch.float32 and torch.equal(score, expected.reshape(score.shape))
    assert inspect_checkpoint(out)["problems"] == []


def test_the_label_ids_are_the_real_ones(pair_of):
    """Qwen's real vocabulary: '0' = 15 and '1' = 16 for mxbai; Gemma's 'Yes' is one token, spelled so."""
    src, _ = pair_of("tiny-mxbai-rerank-base-v2")
    assert load_tokenizer(src).convert_tokens_to_ids(["0", "1"]) == [15, 16]
    src, _ = pair_of("tiny-bge-reranker-v2-gemma")
    tokenizer = load_tokenizer(src)
    assert len(tokenizer.encode("Yes", add_special_tokens=False)) == 1
    assert tokenizer.encode("x")[0] == tokenizer.bos_token_id, "Gemma's tokenizer adds BOS"


def mxbai_reference_ids(tokenizer, query, document, instruction=None):
    """mixedbread-ai/mxbai-rerank ``mxbai_rerank_v2.py`` (as in vLLM's mteb test), written out independently."""

    def enc(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    query_prompt = f"query: {query}"
    if instruction:
        query_prompt = f"instruction: {instruction}\n{query_prompt}"
    task = (
        "You are a search relevance expert who evaluates how well documents match search queries. For each "
        "query-document pair, carefully analyze the semantic relationship between them, then provide your binary "
        "relevance judgment (0 for not relevant, 1 for relevant).\nRelevance:"
    )
    prefix = (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n"
    )
    body = enc(query_prompt) + enc("\n") + enc(f"document: {document}")
    return enc(prefix) + body + enc("\n") + enc(task) + enc("<|im_end|>\n<|im_start|>assistant\n")


def bge_gemma_reference_ids(tokenizer, query, document):
    """FlagEmbedding's ``FlagLLMReranker``: BOS, then each part tokenized alone."""

    def enc(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    prompt = (
        "Given a query A and a passage B, determine whether the passage contains an answer to the query by providing "
        "a prediction of either 'Yes' or 'No'."
    )
    sep = enc("\n")
    return [tokenizer.bos_token_id, *enc(f"A: {query}"), *sep, *enc(f"B: {document}"), *sep, *enc(prompt)]


def qwen3_reference_ids(tokenizer, query, document, instruction=None):
    """Qwen's model card: prefix, the whole body in one call, suffix."""
    prefix = (
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
        'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
    )
    instruction = instruction or "Given a web search query, retrieve relevant passages that answer the query"
    body = f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"
    suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    return tokenizer.encode(prefix) + tokenizer.encode(body) + tokenizer.encode(suffix)


@pytest.mark.parametrize(
    ("family", "reference"),
    [
        ("qwen3-reranker", qwen3_reference_ids),
        ("mxbai-rerank-v2", mxbai_reference_ids),
        ("bge-reranker-v2-gemma", bge_gemma_reference_ids),
        ("zerank-2", zerank_reference_ids),
        ("ctxl-rerank-v2", ctxl_reference_ids),
    ],
)
def test_official_ids_follow_each_reference(original, family, reference):
    src = original(FAMILY_ORIGINALS[family])
    tokenizer = load_tokenizer(src)
    recipe = preset(family)
    ours = encode_official(tokenizer, recipe, PAIRS)
    for pair, ids in zip(PAIRS, ours):
        extra = (pair.instruction,) if pair.instruction and recipe.takes_instruction else ()
        assert ids == reference(tokenizer, pair.query, pair.document, *extra), pair
    rendered = tokenizer([recipe.format_pair(p.query, p.document, p.instruction) for p in PAIRS])["input_ids"]
    differ = [i for i, (a, b) in enumerate(zip(rendered, ours)) if a != b]
    if family == "mxbai-rerank-v2":
        # mixedbread's code tokenizes "query: ..." and "\n" apart; one rendered string joins "?\n" or ".\n" into
        # one token (Qwen's pre-tokenizer), as every template, and vLLM's own serving of the original, does.
        assert "What is the capital of China?\n" in recipe.format_pair(PAIRS[0].query, "")
        assert 0 in differ
    else:
        assert differ == [], "the rendered prompt (vLLM's and the loaders' path) tokenizes to the same ids"


def test_qwen2_without_a_reranker_name_needs_a_preset_to_convert_and_inspect(original, tmp_path):
    src = tmp_path / "some-qwen2-chat-model"
    shutil.copytree(original("tiny-mxbai-rerank-base-v2"), src)
    with pytest.raises(SeqclsError, match=r"--preset \(mxbai-rerank-v2\) or --tokens/--method"):
        convert(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    plan, _ = convert(src, tmp_path / "out", preset="mxbai-rerank-v2")
    assert plan.recipe == MXBAI_RERANK_V2
    assert inspect_checkpoint(src)["kind"] == "neither"
    info = inspect_checkpoint(src, preset="mxbai-rerank-v2")
    assert info["kind"] == "original" and info["family"] == "mxbai-rerank-v2" and info["problems"] == []
    assert info["labels"] == [{"token": "0", "id": 15}, {"token": "1", "id": 16}]
    with pytest.raises(SeqclsError, match="preset qwen3-reranker converts Qwen3ForCausalLM, but this checkpoint"):
        inspect_checkpoint(src, preset="qwen3-reranker")


def test_a_preset_for_another_architecture_is_refused(original, tmp_path):
    with pytest.raises(SeqclsError, match="preset bge-reranker-v2-gemma converts GemmaForCausalLM"):
        convert(original("tied-fp32-single"), tmp_path / "out", preset="bge-reranker-v2-gemma")


def test_generic_from_2_way_softmax_gives_the_preset_head(pair_of, tmp_path):
    src, preset_out = pair_of("tied-fp32-single")
    plan, _ = convert(src, tmp_path / "out", tokens=["no", "yes"], method="from_2_way_softmax")
    out = tmp_path / "out"
    assert plan.recipe.name == "generic" and not plan.recipe.has_prompt
    assert torch.equal(load_all(out)["score.weight"], load_all(preset_out)["score.weight"])
    assert not (out / "score_template.jinja").exists() and not (out / "chat_template.jinja").exists()
    assert recipe_for_converted(config_of(out)).label_tokens == ("no", "yes")
    assert inspect_checkpoint(out)["problems"] == []
    assert "No prompt format is known" in (out / "README.md").read_text()


@pytest.mark.slow  # inner loop: see docs/testing.md
def test_generic_no_post_processing_keeps_one_label_per_token(original, tmp_path):
    """N tokens give N labels whose logits are the original's LM logits of those tokens; labels are vocabulary
    entries, spelled as such ("Ġmaybe" is " maybe")."""
    src = original("untied-fp32-single")
    tokens = ["no", "yes", "Ġmaybe"]
    convert(src, tmp_path / "out", tokens=tokens, method="no_post_processing")
    out = tmp_path / "out"
    config = config_of(out)
    assert config["id2label"] == {"0": "no", "1": "yes", "2": "Ġmaybe"}
    tokenizer = AutoTokenizer.from_pretrained(src, padding_side="left")
    ids = tokenizer(["What is the capital of China? Beijing.", "Gravity"], padding=True, return_tensors="pt")
    token_ids = tokenizer.convert_tokens_to_ids(tokens)
    with torch.no_grad():
        lm = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)(**ids).logits[:, -1, token_ids]
        cls = AutoModelForSequenceClassification.from_pretrained(out, dtype=torch.float32)(**ids).logits
    assert cls.shape == (2, 3) and torch.allclose(cls, lm, atol=1e-5)
    assert inspect_checkpoint(out)["problems"] == []
    assert not (out / "modules.json").exists(), "a sigmoid cross-encoder config would be wrong for 3 labels"

    report = verify(out, src, pairs=list(DEMO_PAIRS))
    endpoints = report["metrics"]["endpoints"]
    assert report["verdict"] == "pass" and list(endpoints) == ["label no", "label yes", "label Ġmaybe"]
    assert report["metrics"]["max_abs_logit_delta"] <= 1e-4
    head = load_all(out)["score.weight"]
    rewrite_tensor(out, "score.weight", head[[0, 2, 1]])  # planted fault: two label rows swapped
    report = verify(out, src, pairs=list(DEMO_PAIRS))
    assert report["verdict"] == "fail" and not endpoints_failed(report, "label no")
    assert endpoints_failed(report, "label yes") and endpoints_failed(report, "label Ġmaybe")


def endpoints_failed(report: dict, name: str) -> list[int]:
    return report["metrics"]["endpoints"][name]["failed_pairs"]


def test_presets_are_data_with_what_vllm_documents():
    """vLLM's documented hf_overrides for serving each original."""
    assert MXBAI_RERANK_V2.vllm_hf_overrides() == {
        "architectures": ["Qwen2ForSequenceClassification"],
        "classifier_from_token": ["0", "1"],
        "method": "from_2_way_softmax",
    }
    assert BGE_RERANKER_V2_GEMMA.vllm_hf_overrides() == {
        "architectures": ["GemmaForSequenceClassification"],
        "classifier_from_token": ["Yes"],
        "method": "no_post_processing",
    }
    assert QWEN3_RERANKER.vllm_hf_overrides()["is_original_qwen3_reranker"] is True
    assert len({r.name for r in PRESETS}) == len(PRESETS)


@pytest.mark.slow  # inner loop: see docs/testing.md
@pytest.mark.parametrize("family", ["mxbai-rerank-v2", "bge-reranker-v2-gemma"])
def test_convert_verify_publish_with_the_same_commands(original, tmp_path, capsys, family):
    """The Qwen3-Reranker commands, unchanged: the family comes from the name, verify and publish from the config."""
    src = original(FAMILY_ORIGINALS[family])
    out = tmp_path / f"{src.name}-seq-cls"
    assert run(["convert", str(src), "-o", str(out)]) == 0
    assert run(["verify", str(out), "--original", str(src), "--report", str(tmp_path / f"{out.name}.verify.json"),
                "--update-card"]) == 0  # fmt: skip
    assert run(["publish", str(out), "--repo-id", f"me/{out.name}", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "dry run: nothing was uploaded" in printed and family in printed
    card = (out / "README.md").read_text()
    assert f"recipe `{family}`" in card and re.search(r"\| transformers +\| cpu +\| float32 .*\| PASS", card)


@pytest.mark.slow  # inner loop: see docs/testing.md
@pytest.mark.parametrize("family", ["mxbai-rerank-v2", "bge-reranker-v2-gemma"])
def test_a_head_from_the_wrong_rows_fails_verify(pair_of, tmp_path, capsys, family):
    """Planted fault: the head built from a neighbouring vocabulary row."""
    src, good = pair_of(FAMILY_ORIGINALS[family])
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    w = load_all(src)["model.embed_tokens.weight"].float()
    ids = load_tokenizer(src).convert_tokens_to_ids(list(preset(family).label_tokens))
    wrong = w[ids[-1] + 1] - w[ids[0]] if len(ids) == 2 else w[ids[0] + 1]
    rewrite_tensor(bad, "score.weight", wrong.reshape(1, -1).contiguous())
    assert run(["verify", str(bad), "--original", str(src)]) == 1
    assert "seqcls verify: FAIL" in capsys.readouterr().out


@pytest.mark.slow  # inner loop: see docs/testing.md
def test_generic_conversion_verifies_on_raw_pairs(original, tmp_path):
    """Without a prompt format both sides get ``query + document`` as the tokenizer encodes it."""
    src = original("untied-fp32-single")
    convert(src, tmp_path / "out", tokens=["no", "yes"], method="from_2_way_softmax")
    report = verify(tmp_path / "out", src, pairs=list(DEMO_PAIRS))
    assert report["verdict"] == "pass" and report["token_ids"]["official_mismatched_pairs"] == []


@pytest.mark.parametrize("family", ["mxbai-rerank-v2", "bge-reranker-v2-gemma"])
def test_inspect_names_the_family_of_an_original_and_its_labels(original, family):
    info = inspect_checkpoint(original(FAMILY_ORIGINALS[family]))
    assert info["kind"] == "original" and info["family"] == family
    assert [x["token"] for x in info["labels"]] == list(preset(family).label_tokens)
    assert info["head"]["tensor"] == "model.embed_tokens.weight" and info["problems"] == []


def test_recognition_by_hub_id_and_hub_cache_folder(tmp_path):
    from converter.recipes import recipe_for, recipe_for_original

    assert recipe_for(["Qwen2ForCausalLM"], ("mixedbread-ai/mxbai-rerank-large-v2",)) == MXBAI_RERANK_V2
    assert recipe_for(["GemmaForCausalLM"], ("BAAI/bge-reranker-v2-gemma",)) == BGE_RERANKER_V2_GEMMA
    assert recipe_for(["Qwen2ForCausalLM"], ("Qwen/Qwen2.5-0.5B-Instruct",)) is None
    assert recipe_for(["GemmaForCausalLM"], ("google/gemma-2b",)) is None
    assert recipe_for(["Qwen3ForCausalLM"], ()) == QWEN3_RERANKER
    snapshot = tmp_path / "hub" / "models--BAAI--bge-reranker-v2-gemma" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    config = {"architectures": ["GemmaForCausalLM"]}
    assert recipe_for_original(config, snapshot) == BGE_RERANKER_V2_GEMMA
    assert recipe_for_original(config | {"_name_or_path": "BAAI/bge-reranker-v2-gemma"}, tmp_path) is not None
