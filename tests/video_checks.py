"""Run in the vision venv by test_video.py (torchvision and qwen-vl-utils live there): ``python tests/video_checks.py
ORIGINAL CONVERTED WORKDIR`` prints one JSON object of what it found. Qwen's scorer is run as its own code runs it
(qwen-vl-utils' ``process_vision_info``, then the processor), with one substitution: torchvision 0.28 has no
``read_video``, so qwen-vl-utils' torchvision reader gets the same PyAV decode that torchvision's read_video did."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from qwen_vl_utils import process_vision_info
from qwen_vl_utils import vision_process as qwen

from converter import SeqclsError, video
from converter.drawn import drawn_video
from converter.media import Part
from converter.pairs import Pair
from converter.recipes import QWEN3_VL_RERANKER as VL
from converter.verify import verify
from converter.verify.vision import load_processor, processed


def read_video_by_pyav(path, start_pts=0.0, end_pts=None, pts_unit="sec", output_format="TCHW"):
    """torchvision's ``io.read_video`` as qwen-vl-utils calls it: every frame (TCHW uint8) and the stream's rate."""
    frames, fps = video.decode(Part("video", path.removeprefix("file://")))
    return torch.from_numpy(frames).permute(0, 3, 1, 2), torch.empty(0), {"video_fps": fps}


def scorer_inputs(processor, pair_messages):
    """Qwen3VLReranker.tokenize, without its padding: the chat template, process_vision_info, the processor."""
    text = processor.apply_chat_template(pair_messages, tokenize=False, add_generation_prompt=True)
    images, videos, video_kwargs = process_vision_info(
        pair_messages, image_patch_size=16, return_video_kwargs=True, return_video_metadata=True
    )
    videos, metadata = (list(x) for x in zip(*videos))
    return processor(text=text, images=images, videos=videos, video_metadata=metadata, truncation=False,
                     padding=False, do_resize=False, return_tensors="pt", **video_kwargs)  # fmt: skip


def messages(query_content: list[dict], document: str) -> list[dict]:
    """``format_mm_instruction`` of a query with a video and a text document."""
    system = VL.pieces[0].split("system\n", 1)[1].split("<|im_end|>", 1)[0]
    user = [{"type": "text", "text": "<Instruct>: " + VL.default_instruction}, {"type": "text", "text": "<Query>:"},
            *query_content, {"type": "text", "text": "\n<Document>:"}, {"type": "text", "text": document}]  # fmt: skip
    return [{"role": "system", "content": [{"type": "text", "text": system}]}, {"role": "user", "content": user}]


def main() -> None:
    original, converted, work = (Path(a) for a in sys.argv[1:4])
    qwen.io.read_video = read_video_by_pyav
    qwen.get_video_reader_backend = lambda: "torchvision"
    clip_path = work / "clip.mp4"
    clip_path.write_bytes(__import__("base64").b64decode(drawn_video().split(",", 1)[1]))
    frames = []
    for i in range(70):
        frame = np.full((90, 150, 3), (i * 3) % 256, np.uint8)
        frame[20:40, i : i + 30] = (200, 40, 40)
        frames.append(work / f"frame{i:02d}.png")
        Image.fromarray(frame).save(frames[-1])
    found = {}

    # 1. Sampling: a file at 1 frame a second, at most 64, and a list of 70 frames cut to 64 as the scorer cuts it.
    file_part = Part("video", str(clip_path))
    ours = video.sample(file_part, VL.video, VL.image_patch)
    theirs, meta = qwen.fetch_video({"video": "file://" + str(clip_path), "fps": 1, "max_frames": 64},
                                    image_patch_size=16, return_video_metadata=True)  # fmt: skip
    their_meta = {"fps": float(meta["fps"]), "frames_indices": [int(i) for i in meta["frames_indices"]],
                  "total_num_frames": float(meta["total_num_frames"])}  # fmt: skip
    found["file"] = {"same_frames": bool(torch.equal(ours.tensor(), theirs)), "shape": list(ours.frames.shape),
                     "ours": ours.metadata, "theirs": their_meta}  # fmt: skip
    list_part = Part("video", tuple(str(p) for p in frames), 4.0)
    ours = video.sample(list_part, VL.video, VL.image_patch)
    picked = [str(frames[i]) for i in np.linspace(0, 69, 64, dtype=int)]
    theirs, meta = qwen.fetch_video({"video": ["file://" + p for p in picked], "total_pixels": 10 * 768 * 32 * 32,
                                     "sample_fps": 4.0}, image_patch_size=16, return_video_metadata=True)  # fmt: skip
    found["list"] = {"same_frames": bool(torch.equal(ours.tensor(), theirs)), "count": len(ours.frames),
                     "fps": ours.fps, "total_num_frames": ours.total_num_frames}  # fmt: skip

    # 2. The reference's inputs against the scorer's own, for a file and for a frame list.
    processor = load_processor(original)
    cases = {
        "file": (Pair((file_part,), "a red square"), [{"type": "video", "video": "file://" + str(clip_path),
                                                       "fps": 1, "max_frames": 64}]),
        "list": (Pair((Part("video", tuple(str(p) for p in frames[:8])),), "a red square"),
                 [{"type": "video", "video": ["file://" + str(p) for p in frames[:8]],
                   "total_pixels": 10 * 768 * 32 * 32}]),
    }  # fmt: skip
    for name, (pair, content) in cases.items():
        [mine] = processed(original, VL, [pair], 4096)
        official = scorer_inputs(processor, messages(content, "a red square"))
        found[f"inputs_{name}"] = {
            "ids": mine["input_ids"] == official["input_ids"][0].tolist(),
            "grid": mine["video_grid_thw"].tolist() == official["video_grid_thw"].tolist(),
            "pixels": bool(torch.equal(mine["pixel_values_videos"], official["pixel_values_videos"])),
            "timestamps": "seconds>" in processor.decode(mine["input_ids"]),
        }

    # 3. verify over a pair file with two videos in three pairs: each sampled once for both sides. A video past the
    # length is refused (the reference's inputs, as verify makes them).
    (work / "again.mp4").write_bytes(clip_path.read_bytes())
    rows = [{"query": "a red square moving right", "document": [{"video": "again.mp4"}, {"text": "shapes"}]},
            {"query": [{"video": "again.mp4"}], "document": "a green bar"},
            {"query": "frames", "document": [{"video": [p.name for p in frames[:8]], "fps": 2}]}]  # fmt: skip
    (work / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = video.DECODES["count"]
    report = verify(converted, original, pairs_file=str(work / "pairs.jsonl"), backend="transformers",
                    report=str(work / "report.json"), use_cache=False)  # fmt: skip
    found["verify"] = {"verdict": report["verdict"], "decodes": video.DECODES["count"] - before,
                       "scores": [r["converted"] for r in report["pairs"]],
                       "videos": [[v["index"], v["prompt_ids"], len(v["given_to_every_side"]), v["model_inputs"]]
                                  for v in report["videos"]]}  # fmt: skip
    # 4. The planted fault: the converted checkpoint's video processor normalizes otherwise, so the same frames and
    # ids meet other pixels: a finding that names the pairs and what differs.
    import shutil

    tampered = work / "tampered"
    shutil.copytree(converted, tampered)
    config = tampered / "video_preprocessor_config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"image_mean": [0.4, 0.4, 0.4]}))
    report = verify(tampered, original, pairs_file=str(work / "pairs.jsonl"), backend="transformers",
                    report=str(work / "tampered.json"), use_cache=False)  # fmt: skip
    found["tampered"] = {"verdict": report["verdict"], "findings": report["findings"],
                         "model_inputs": [v["model_inputs"] for v in report["videos"]],
                         "token_ids": report["token_ids"]["mismatched_pairs"]}  # fmt: skip
    # Two threads at once (verify's official ids and an engine backend's rows): one decode.
    import threading

    video._CLIPS.__init__()
    before = video.DECODES["count"]
    threads = [threading.Thread(target=video.sample, args=(file_part, VL.video, VL.image_patch)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    found["threads_decodes"] = video.DECODES["count"] - before
    try:
        list(processed(original, VL, [cases["file"][0]], 200))
    except SeqclsError as e:
        found["too_long"] = str(e)
    # 5. A server request carries one video timing: a 3-second and a 5-second clip in one pair are refused when verify
    # starts, before any server does (the clip on both sides of a built-in pair, timed alike, is served).
    from converter.drawn import drawn_video as draw

    for name, seconds in (("short.mp4", 3), ("long.mp4", 5)):
        (work / name).write_bytes(__import__("base64").b64decode(draw(seconds).split(",", 1)[1]))
    row = {"query": [{"video": "short.mp4"}], "document": [{"video": "long.mp4"}]}
    (work / "two.jsonl").write_text(json.dumps({"query": "q", "document": "d"}) + "\n" + json.dumps(row) + "\n")
    try:
        verify(converted, original, pairs_file=str(work / "two.jsonl"), backend="server",
               report=str(work / "two.json"), log_dir=str(work / "two-logs"))  # fmt: skip
    except SeqclsError as e:
        found["two_timings"] = {"error": str(e), "report": (work / "two.json").exists(),
                                "logs": sorted(p.name for p in (work / "two-logs").glob("*"))
                                if (work / "two-logs").exists() else []}  # fmt: skip
    print(json.dumps(found))


if __name__ == "__main__":
    main()
