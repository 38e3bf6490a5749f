"""Qwen3-VL-Reranker with video: seqcls samples each video once, as Qwen's scorer does, and every side scores those
frames. The sampling and the reference's inputs are checked against qwen-vl-utils and the processor as the scorer
runs them (in the vision venv: tests/video_checks.py); pair files with bad videos are refused when loaded."""

from __future__ import annotations

import base64
import json
import re

import pytest
from test_vision_vllm import VISION_PYTHON, vision_python

from converter import SeqclsError
from converter.drawn import drawn_video, video_pairs
from converter.media import Part, engine_limits
from converter.pairs import load_pairs
from converter.verify import verify

TIED = "tiny-qwen3-vl-reranker-2b"


@pytest.mark.vision
def test_videos_are_sampled_and_processed_as_qwens_scorer_does(vl_pair_of, tmp_path):
    """A file (1 frame a second, even count, the per-frame budget, bicubic) and a list of 70 frames (cut to 64 as the
    scorer cuts them): the same frames and metadata as qwen-vl-utils' own ``fetch_video``; the reference's ids, grid
    and video pixels as the processor makes them from the scorer's messages (timestamps in the prompt); verify with
    the transformers backend passes with each video sampled once for both sides, and fails a conversion whose video
    processor normalizes otherwise (a finding naming the pairs); a video past the model length, and two videos timed
    differently in one pair for a server, are refused naming the pair."""
    src, out = vl_pair_of(TIED)
    run = vision_python(str(VISION_PYTHON.parents[2] / "tests" / "video_checks.py"), str(src), str(out), str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["file"]["same_frames"] and found["file"]["ours"] == found["file"]["theirs"]
    assert found["file"]["ours"]["frames_indices"] == [0, 4, 7, 11] and found["file"]["shape"] == [4, 288, 480, 3]
    assert found["list"] == {"same_frames": True, "count": 64, "fps": 4.0, "total_num_frames": 64.0}
    for name in ("inputs_file", "inputs_list"):
        assert found[name] == {"ids": True, "grid": True, "pixels": True, "timestamps": True}, name
    assert found["verify"]["verdict"] == "pass" and found["verify"]["decodes"] == 2 and found["threads_decodes"] == 1
    assert len(set(found["verify"]["scores"])) == 3
    same = {"converted": "the reference's"}
    assert found["verify"]["videos"] == [[0, "official on every side", 1, same], [1, "official on every side", 1, same],
                                         [2, "official on every side", 1, same]]  # fmt: skip
    # The planted fault: the converted processor's other mean: the same ids and bytes, normalized otherwise.
    tampered = found["tampered"]
    assert tampered["model_inputs"] == [{"converted": "DIFFER: normalization"}] * 3 and tampered["token_ids"] == []
    assert tampered["findings"] == [
        "the converted path hands the model other video inputs than the reference (normalization) in pairs 0, 1, 2: "
        "the same frames met another processor"
    ]
    assert tampered["verdict"] == "fail"
    # A server request carries one video timing for all its videos: a 3-second and a 5-second clip in one pair are
    # refused, naming the pair, when verify starts, before any server does.
    assert found["two_timings"] == {
        "error": "pair 1: its 2 videos are timed differently (fps, frame indices or length), and a server request "
        "carries one timing for all; verify it with --backend vllm or transformers",
        "report": False,
        "logs": [],
    }
    assert re.match(
        r"pair 0: its prompt is \d+ tokens \(270 of them video\), over the model length 200; give a "
        "shorter video",
        found["too_long"],
    ), found["too_long"]


def test_the_drawn_video_is_the_same_every_time_and_in_the_built_in_pairs():
    first, again = drawn_video(), drawn_video()
    assert first.startswith("data:video/mp4;base64,") and len(first) > 1000
    assert first == again, f"libx264 wrote other bytes: {len(first)} and {len(again)} characters"
    pairs = video_pairs()
    assert engine_limits(pairs) == {"image": 1, "video": 2}
    assert {type(p.query) for p in pairs} == {str, tuple} and any(len(p.document) == 3 for p in pairs)


def _frames(folder, count: int, broken: int | None = None) -> list[str]:
    from PIL import Image

    names = []
    for i in range(count):
        names.append(f"f{i}.png")
        Image.new("RGB", (64, 64), (i, 0, 0)).save(folder / names[-1])
    if broken is not None:
        (folder / names[broken]).write_bytes(b"not a png")
    return names


@pytest.mark.parametrize(
    "part, setup, message",
    [
        ({"video": "missing.mp4"}, None, "the video file .*missing.mp4 does not exist"),
        ({"video": "bad.mp4"}, b"not a video at all", "the video .*bad.mp4 is not a readable video"),
        ({"video": "still.png"}, "image", "has 1 decodable frame"),
        ({"video": "https://example.com/a.mp4"}, None, "remote URL; download it"),
        ({"video": "frames"}, (4, 2), r"frame 2: the image .*f2.png is not a readable image"),
        ({"video": "frames"}, (3, None), "the video is 3 frames; give an even number"),
        ({"video": []}, None, "a non-empty list of image paths"),
        ({"video": "clip.mp4", "fps": 2}, "clip", '"fps" goes with a video given as a list of frames'),
        ({"video": "frames", "fps": -1}, (2, None), '"fps" goes with .* a positive number'),
        ({"video": "clip.mp4", "image": "a.png"}, None, "each part is"),
    ],
)
def test_bad_videos_are_one_line_naming_the_pair(tmp_path, part, setup, message):
    if isinstance(setup, bytes):
        (tmp_path / "bad.mp4").write_bytes(setup)
    elif setup == "image":
        from PIL import Image

        Image.new("RGB", (8, 8)).save(tmp_path / "still.png")
    elif setup == "clip":
        (tmp_path / "clip.mp4").write_bytes(base64.b64decode(drawn_video().split(",", 1)[1]))
    elif isinstance(setup, tuple):
        part = part | {"video": _frames(tmp_path, *setup)}
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"query": "q", "document": [part]}) + "\n")
    with pytest.raises(SeqclsError, match=f"pairs.jsonl:1 \\(document\\).*({message})"):
        load_pairs(path)


def test_a_video_file_and_frames_load_and_round_trip(tmp_path):
    from converter.media import as_json, fingerprint

    (tmp_path / "clip.mp4").write_bytes(base64.b64decode(drawn_video().split(",", 1)[1]))
    names = _frames(tmp_path, 4)
    rows = [{"query": "q", "document": [{"video": "clip.mp4"}, {"text": "t"}]},
            {"query": [{"video": names, "fps": 2}], "document": "d"}]  # fmt: skip
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = load_pairs(path)
    assert loaded.video_at == f"{path}:1" and loaded.media_at == f"{path}:1"
    first, second = loaded.pairs
    assert first.document[0] == Part("video", str((tmp_path / "clip.mp4").resolve()))
    assert second.query[0] == Part("video", tuple(str((tmp_path / n).resolve()) for n in names), 2.0)
    assert as_json(second.query) == [{"video": [str((tmp_path / n).resolve()) for n in names], "fps": 2.0}]
    before = fingerprint(second.query)
    (tmp_path / names[3]).write_bytes((tmp_path / names[0]).read_bytes())
    assert fingerprint(second.query) != before, "a frame's bytes changed: the digest must change"


def test_a_video_sent_to_a_text_family_is_refused(pair_of, tmp_path):
    (tmp_path / "clip.mp4").write_bytes(base64.b64decode(drawn_video().split(",", 1)[1]))
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"query": "q", "document": "d"}) + "\n"
                    + json.dumps({"query": "q", "document": [{"video": "clip.mp4"}]}) + "\n")  # fmt: skip
    src, out = pair_of("tied-fp32-single")
    with pytest.raises(SeqclsError, match=r"pairs.jsonl:2 holds an image or video, and .* reads text only"):
        verify(out, src, pairs_file=str(path), report=str(tmp_path / "r.json"))
    assert not (tmp_path / "r.json").exists()


def test_video_inputs_are_judged_per_pair_and_side_against_the_reference():
    """What each side's processor handed the model (``video.model_input``) against the reference's: another grid, other
    pixels, another number of videos are findings naming the side and the pairs; a side that gives none (a server) is
    not compared rather than passed."""
    from converter.pairs import Pair
    from converter.verify.backends.base import BackendRun, Side
    from converter.verify.comparison import compare
    from converter.verify.digests import PromptDigests
    from converter.verify.verdicts import judgement

    fed = {"grid": [2, 6, 10], "pixels": "0f" * 16}
    ids = PromptDigests.of([[1, 2], [3, 4], [5, 6]])
    scores = {"score": [0.25, 0.5, 0.75]}
    reference = Side(scores, token_ids=ids, videos={0: [fed], 1: [fed], 2: [fed, fed]})
    original = Side(scores, token_ids=ids, videos={0: [fed | {"grid": [2, 6, 12]}], 1: [fed], 2: [fed]})
    converted = Side(scores, token_ids=ids, videos={0: [fed], 1: [fed | {"pixels": "1f" * 16}]})
    run = BackendRun(original, converted, ids, {"backend": "vllm"}, reference)
    verdict = compare([Pair("q", "d")] * 3, run, 1e-5)
    assert verdict.video_inputs == {
        0: {"original": ["grid"], "converted": []},
        1: {"original": [], "converted": ["pixels"]},
        2: {"original": ["video count"], "converted": None},
    }
    findings, failure = judgement(verdict, run, 3)
    assert failure is None and findings == [
        "the original path hands the model other video inputs than the reference (grid, video count) in pairs 0, 2: "
        "the same frames met another processor",
        "the converted path hands the model other video inputs than the reference (pixels) in pair 1: the same "
        "frames met another processor",
    ]
    server = BackendRun(original, Side(scores, token_ids=ids), ids, {"backend": "server"}, reference)
    assert compare([Pair("q", "d")] * 3, server, 1e-5).video_inputs[1] == {"original": [], "converted": None}


def test_a_clip_is_encoded_for_a_server_once_for_the_pairs_that_share_it():
    """A video query ranked against many documents: its frames are PNG-encoded once, not once a pair; the frames
    survive the encoding whole (PNG), as vLLM's server opens them."""
    import io

    import numpy as np
    from PIL import Image

    from converter.video import Clip, frames_url

    frames = np.random.default_rng(0).integers(0, 256, (2, 32, 48, 3), dtype=np.uint8)
    clip = Clip(frames, 2.0, (0, 1), 2.0)
    first = frames_url(clip)
    assert frames_url(clip) is first, "encoded again"
    encoded = first.removeprefix("data:video/jpeg;base64,").split(",")
    back = [np.asarray(Image.open(io.BytesIO(base64.b64decode(e)))) for e in encoded]
    assert len(back) == 2 and all(np.array_equal(a, b) for a, b in zip(back, frames))


def test_a_cached_side_keeps_its_videos_model_inputs(tmp_path):
    """The verify cache keeps an original side's video model inputs by pair number (JSON has string keys), so that a
    cache hit is judged on them as a fresh run is."""
    from converter.verify import cache
    from converter.verify.backends.base import Side
    from converter.verify.digests import PromptDigests

    fed = {"grid": [2, 6, 10], "pixels": "0f" * 16, "normalization": {"mean": [0.5] * 3, "std": [0.5] * 3,
                                                                      "rescale": 1 / 255}}  # fmt: skip
    side = Side({"score": [0.5, 0.25]}, token_ids=PromptDigests.of([[1], [2]]), videos={1: [fed, fed]})
    cache.store(tmp_path, "ab" * 32, side)
    assert cache.load(tmp_path, "ab" * 32).videos == {1: [fed, fed]}


def test_model_inputs_compare_bytes_whether_normalized_in_the_processor_or_on_the_device():
    """vLLM hands the model uint8 patches (normalized on the device); transformers hands it the normalized floats.
    The same bytes digest the same either way; patches that were not made from bytes (resized again) differ, and so
    does another normalization."""
    import torch

    from converter.video import model_input

    norm = {"mean": [0.5, 0.4, 0.3], "std": [0.5, 0.6, 0.7], "rescale": 1 / 255}
    patches = torch.randint(0, 256, (12, 3 * 2 * 4 * 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = (torch.tensor(norm[k]).view(1, 3, 1) for k in ("mean", "std"))
    normalized = ((patches.view(12, 3, -1).float() * norm["rescale"] - mean) / std).view(12, -1)
    grid = torch.tensor([2, 2, 3])
    on_device, in_processor = model_input(grid, patches, norm), model_input(grid, normalized, norm)
    assert on_device == in_processor and on_device["grid"] == [2, 2, 3]
    resized = normalized + 0.3 / 255 / torch.tensor(norm["std"]).repeat_interleave(32)
    assert model_input(grid, resized, norm)["pixels"] != on_device["pixels"]
    assert model_input(grid, patches, norm | {"mean": [0.5] * 3}) != on_device
