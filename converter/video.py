"""Videos in pairs, sampled once as Qwen3-VL-Reranker's scorer samples them, so that every side scores the same frames.

Two engines that each sample a video their own way disagree about the frames, not the model (QwenLM/Qwen3-VL #1557,
vLLM #33219). So seqcls samples each video once, as the scorer does for that input, and hands every side the frames
and their metadata (``fps``, ``frames_indices``, ``total_num_frames``: Qwen3-VL writes each frame's timestamp into
the prompt from it), with resizing and sampling switched off downstream.

- A file: decoded whole with PyAV (what torchvision's ``read_video``, qwen-vl-utils' fallback reader, used; it is gone
  from torchvision 0.28), ``fps`` frames a second at qwen-vl-utils' indices (``smart_nframes``: at least 4, at most
  ``max_frames``, an even count; ``linspace`` rounded), sized by its ``smart_resize`` into its per-frame budget and
  resized bicubic with antialiasing, as its ``fetch_video`` does after its reader.
- A list of frames: at most ``max_frames`` picked as the scorer picks them (``numpy.linspace``, truncated), then
  qwen-vl-utils' ``fetch_video`` itself, with the scorer's pixel budget for frame lists. An odd count is refused:
  the scorer repeats the last frame, vLLM would not.

The frames come out as uint8 (torchvision's resize of uint8 frames rounds to uint8 before the scorer's ``.float()``),
so a server that receives them as PNG images gets the same pixels.
"""

from __future__ import annotations

import functools
import io
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import SeqclsError
from .media import REMOTE, Part, has_media, load_image, ordered, read_bytes

SPATIAL_MERGE = 2
PRESAMPLED = {"do_resize": False, "do_sample_frames": False}
"""The video processor's options for frames seqcls sampled and sized: no sampling, no resizing downstream."""


@dataclass(frozen=True)
class VideoSampling:
    """How a family's reference samples videos (Qwen3-VL-Reranker's scorer, ``qwen3_vl_reranker.py``: a file at
    ``FPS = 1`` and ``MAX_FRAMES = 64`` with qwen-vl-utils' default budget; a frame list cut to 64 frames with
    ``total_pixels = 10 * 768 * 32 * 32``)."""

    fps: float = 1.0
    max_frames: int = 64
    list_total_pixels: int = 10 * 768 * 32 * 32


@dataclass(frozen=True, eq=False)
class Clip:
    """A sampled video: the frames every side gets, and the metadata Qwen3-VL's processor times them by."""

    frames: object
    """uint8 numpy array (frames, height, width, 3), sized: no processor resizes it again."""
    fps: float
    frames_indices: tuple[int, ...]
    total_num_frames: float

    @property
    def metadata(self) -> dict:
        return {"fps": self.fps, "frames_indices": list(self.frames_indices),
                "total_num_frames": self.total_num_frames}  # fmt: skip

    @functools.cached_property
    def digest(self) -> str:
        """The frames' sha256 (with their shape), computed once per clip."""
        import hashlib

        import numpy as np

        frames = np.ascontiguousarray(self.frames)
        digest = hashlib.sha256(repr(frames.shape).encode())
        digest.update(frames.data)
        return digest.hexdigest()

    def summary(self) -> dict:
        """What a report says of the clip: the frames' digest, count and size, and the metadata."""
        count, height, width, _ = self.frames.shape
        return {"frames_sha256": self.digest, "frames": count, "size": f"{width}x{height}"} | self.metadata

    def tensor(self):
        """(frames, channels, height, width) float32, as the scorer hands the processor its frames."""
        import torch

        return torch.from_numpy(self.frames).permute(0, 3, 1, 2).float()

    def tokens(self, patch: int) -> int:
        """The language-model tokens the video becomes: one per 2x2 patches of every 2 frames."""
        count, height, width, _ = self.frames.shape
        factor = patch * SPATIAL_MERGE
        return count // 2 * (height // factor) * (width // factor)


DECODES = {"count": 0}
"""Videos decoded or frame lists fetched in this process (the benchmark checks that each is done once)."""
KEPT = 8
"""Clips held in memory (a 64-frame clip at the scorer's budget is up to 150 MB); older ones wait on disk."""


class _Clips:
    """Each clip sampled once per process: the last ``KEPT`` in memory, the rest as ``.npy`` files (no pickle) in a
    temporary folder removed at exit. verify scores all pairs with one side, then with the other, so every clip is
    asked for again after many others."""

    def __init__(self) -> None:
        self.memory: dict[tuple, Clip] = {}
        self.spilled: dict[tuple, tuple[str, Clip]] = {}
        self.folder: str | None = None

    def get(self, key: tuple) -> Clip | None:
        if key in self.memory:
            return self.memory[key]
        if key in self.spilled:
            import numpy as np

            path, shell = self.spilled[key]
            return self._keep(key, replace(shell, frames=np.load(path, allow_pickle=False)))
        return None

    def put(self, key: tuple, clip: Clip) -> Clip:
        return self._keep(key, clip)

    def _keep(self, key: tuple, clip: Clip) -> Clip:
        while len(self.memory) >= KEPT:
            old_key = next(iter(self.memory))
            old = self.memory.pop(old_key)
            if old_key not in self.spilled:
                self.spilled[old_key] = (self._spill(old), replace(old, frames=None))
        self.memory[key] = clip
        return clip

    def _spill(self, clip: Clip) -> str:
        import atexit
        import shutil
        import tempfile

        import numpy as np

        if self.folder is None:
            self.folder = tempfile.mkdtemp(prefix="seqcls-clips-")
            atexit.register(shutil.rmtree, self.folder, True)
        path = f"{self.folder}/{len(self.spilled)}.npy"
        np.save(path, clip.frames, allow_pickle=False)
        return path


_CLIPS = _Clips()
_SAMPLING = threading.Lock()
"""verify's official ids are computed in a thread while the engine backends send the same pairs: one samples, the
other waits for its clip."""


def has_video(pair) -> bool:
    return has_media(pair.query, "video") or has_media(pair.document, "video")


def pair_clips(pair, recipe, where: str) -> list[Clip]:
    """The pair's videos, query first, each as the recipe's reference samples it (``sample``)."""
    parts = [p for side in (pair.query, pair.document) for p in ordered(side) if p.kind == "video"]
    if parts and recipe.video is None:
        raise SeqclsError(f"{where}: holds a video, and {recipe.title} reads no video")
    return [sample(p, recipe.video, recipe.image_patch, where) for p in parts]


def sample(part: Part, sampling: VideoSampling, patch: int, where: str = "") -> Clip:
    """The video part's frames and metadata as the reference samples them: once per process for the same part and
    settings."""
    key = (part, sampling, patch)
    with _SAMPLING:
        clip = _CLIPS.get(key)
        if clip is None:
            _need_qwen_vl_utils()
            DECODES["count"] += 1
            sampler = _frame_list if isinstance(part.value, tuple) else _file
            clip = _CLIPS.put(key, sampler(part, sampling, patch, where))
    return clip


def check_frame_count(count: int, sampling: VideoSampling, where: str) -> None:
    """A frame list the scorer would pad (an odd count after its cut to ``max_frames``) or that is empty."""
    kept = min(count, sampling.max_frames)
    if kept == 0 or kept % 2:
        raise SeqclsError(
            f"{where}: the video is {count} frames; give an even number of frames (at least 2): Qwen's scorer "
            "repeats the last frame of an odd count and vLLM does not"
        )


def _frame_list(part: Part, sampling: VideoSampling, patch: int, where: str) -> Clip:
    import numpy as np
    import torch
    from qwen_vl_utils import fetch_video

    paths = part.value
    check_frame_count(len(paths), sampling, where)
    if len(paths) > sampling.max_frames:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, sampling.max_frames, dtype=int).tolist()]
    images = [load_image(Part("image", p), f"{where}, frame {i}") for i, p in enumerate(paths)]
    ele = {"video": images, "total_pixels": sampling.list_total_pixels}
    if part.fps is not None:
        ele["sample_fps"] = part.fps
    video, meta = fetch_video(ele, image_patch_size=patch, return_video_metadata=True)
    frames = video.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    return Clip(frames, float(meta["fps"]), tuple(int(i) for i in meta["frames_indices"]),
                float(meta["total_num_frames"]))  # fmt: skip


def _file(part: Part, sampling: VideoSampling, patch: int, where: str) -> Clip:
    import torch
    from qwen_vl_utils import vision_process as qwen
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as tvf

    frames, video_fps = decode(part, where)
    total = len(frames)
    count = qwen.smart_nframes({"fps": sampling.fps, "max_frames": sampling.max_frames}, total, video_fps)
    indices = torch.linspace(0, total - 1, count).round().long()
    video = torch.from_numpy(frames[indices.numpy()]).permute(0, 3, 1, 2)
    factor = patch * SPATIAL_MERGE
    low = qwen.VIDEO_MIN_TOKEN_NUM * factor * factor
    budget = qwen.MODEL_SEQ_LEN * factor * factor * 0.9
    high = max(min(qwen.VIDEO_MAX_TOKEN_NUM * factor * factor, budget / count * qwen.FRAME_FACTOR), int(low * 1.05))
    height, width = qwen.smart_resize(video.shape[2], video.shape[3], factor=factor, min_pixels=low, max_pixels=high)
    video = tvf.resize(video, [height, width], interpolation=InterpolationMode.BICUBIC, antialias=True)
    frames = video.permute(0, 2, 3, 1).contiguous().numpy()
    return Clip(frames, float(video_fps), tuple(indices.tolist()), float(total))


def decode(part: Part, where: str = "", first: int | None = None):
    """The frames of a video file or ``data:`` URL as uint8 RGB (frames, height, width, 3), and the stream's average
    frame rate, as torchvision's PyAV reader gave them; ``first``: only that many frames. Fewer than 2 frames, no
    video stream, or a file FFmpeg cannot read is an error naming the pair."""
    import itertools

    import av
    import numpy as np

    if part.value.startswith(REMOTE):
        raise SeqclsError(f"{where}: the video {part.value} is a remote URL; download it and give its path")
    name = part.value if not part.value.startswith("data:") else "data URL"
    try:
        with av.open(io.BytesIO(read_bytes(part, where))) as container:
            if not container.streams.video:
                raise SeqclsError(f"{where}: {name} holds no video stream; give a video file (mp4, webm)")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            frames = container.decode(stream)
            frames = [f.to_ndarray(format="rgb24") for f in itertools.islice(frames, first)]
    except (av.FFmpegError, ValueError, EOFError) as e:
        raise SeqclsError(f"{where}: the video {name} is not a readable video ({type(e).__name__}: {e})") from None
    if len(frames) < 2 or not rate:
        raise SeqclsError(
            f"{where}: the video {name} has {len(frames)} decodable frame(s){'' if rate else ' and no frame rate'}; "
            "Qwen's scorer samples at least 2"
        )
    return np.stack(frames), float(rate)


def probe(part: Part, where: str = "") -> None:
    """The load-time check: the video opens and its first two frames decode (sampling reads the rest)."""
    decode(part, where, first=2)


def _need_qwen_vl_utils() -> None:
    try:
        import qwen_vl_utils  # noqa: F401
    except ImportError:
        raise SeqclsError(
            "sampling a video as Qwen's scorer does needs qwen-vl-utils and torchvision: pip install 'seqcls[vision]'"
        ) from None


def frame_paths(value: list, where: str, base: Path, locate) -> tuple[str, ...]:
    """A frame list's entries, located as image parts are (``locate``)."""
    if not value or not all(isinstance(v, str) and v for v in value):
        raise SeqclsError(f"{where}: a video given as frames is a non-empty list of image paths")
    return tuple(locate(v, "video frame", where, base) for v in value)


@functools.lru_cache(maxsize=2)
def frames_url(clip: Clip) -> str:
    """The clip as vLLM's servers take sampled frames: ``data:video/jpeg;base64,`` and each frame's base64, comma
    separated (each frame is opened by PIL, so PNG keeps every pixel). The last two are kept: a video query ranked
    against many documents is encoded once, not once a pair (64 frames take seconds)."""
    import base64

    from PIL import Image

    encoded = []
    for frame in clip.frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="PNG", compress_level=1)
        encoded.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    return "data:video/jpeg;base64," + ",".join(encoded)


def model_input(grid, pixels, normalized: dict) -> dict:
    """One video as a processor hands it to the model, in a few bytes: its ``video_grid_thw``, a digest of its
    patches' pixel bytes, and the normalization the model sees them through (``normalized``: ``mean``, ``std`` per
    channel and ``rescale``). vLLM 0.32 sends uint8 patches and normalizes on the device; transformers normalizes in the
    processor, so its patches are taken back to their bytes with its own normalization (exact for patches made from
    bytes; patches that are not, a processor that resized again, are digested as they are and so differ)."""
    import hashlib

    import torch

    values = torch.as_tensor(pixels).detach().to("cpu")
    if values.dtype != torch.uint8:
        values = _as_bytes(values.float(), normalized)
    return {
        "grid": [int(x) for x in torch.as_tensor(grid).reshape(-1).tolist()],
        "pixels": hashlib.sha256(values.contiguous().numpy().tobytes()).hexdigest()[:32],
        "normalization": normalized,
    }


def _as_bytes(values, normalized: dict):
    """Normalized patches (patches, channels x the rest) back to the uint8 values they were made from; the float32
    values themselves where that is not what they were."""
    import torch

    channels = len(normalized["mean"])
    mean = torch.tensor(normalized["mean"]).view(1, channels, 1)
    std = torch.tensor(normalized["std"]).view(1, channels, 1)
    raw = (values.reshape(values.shape[0], channels, -1) * std + mean) / normalized["rescale"]
    whole = raw.round()
    if raw.numel() and ((raw - whole).abs().max() > 0.05 or whole.min() < 0 or whole.max() > 255):
        return values
    return whole.to(torch.uint8)


def normalization(video_processor) -> dict:
    """The affine map a transformers video processor applies to the bytes: ``(x * rescale - mean) / std``."""
    channels = len(video_processor.image_mean)
    normalize, rescale = getattr(video_processor, "do_normalize", True), getattr(video_processor, "do_rescale", True)
    return {
        "mean": [float(x) for x in video_processor.image_mean] if normalize else [0.0] * channels,
        "std": [float(x) for x in video_processor.image_std] if normalize else [1.0] * channels,
        "rescale": float(video_processor.rescale_factor) if rescale else 1.0,
    }


def model_inputs(processed, normalized: dict) -> list[dict]:
    """``model_input`` of each video in a processor's output for one prompt (``pixel_values_videos`` holds every
    video's patches, one after the other, ``video_grid_thw`` one row a video)."""
    if "video_grid_thw" not in processed:
        return []
    grids, pixels, start, found = processed["video_grid_thw"], processed["pixel_values_videos"], 0, []
    for grid in grids:
        rows = int(grid.prod())
        found.append(model_input(grid, pixels[start : start + rows], normalized))
        start += rows
    return found


def server_io_kwargs(clip: Clip, where: str = "") -> dict:
    """vLLM's ``media_io_kwargs`` for a clip sent as frames: all of them (``num_frames`` -1; 32 by default) and the
    metadata Qwen3-VL times them by, which a frame list cannot carry itself."""
    total = clip.total_num_frames
    if total != int(total):
        raise SeqclsError(f"{where}: the video's frame total {total} is not whole; vLLM's servers take whole totals")
    return {
        "num_frames": -1,
        "fps": clip.fps,
        "frames_indices": list(clip.frames_indices),
        "total_num_frames": int(total),
    }


def write_frames(source: str, out: Path, fps: float | None = None) -> Clip:
    """Samples a video as Qwen3-VL-Reranker's scorer does and writes its frames (``frame-000.png``, ...) and
    ``video.json`` (the metadata vLLM's servers take as ``media_io_kwargs``) into ``out``, whole or not at all: what
    scripts/ascend/client_vl.py sends from a machine without seqcls."""
    import json
    import shutil
    import tempfile

    from PIL import Image

    from .recipes import QWEN3_VL_RERANKER as recipe

    out = Path(out)
    if out.exists():
        raise SeqclsError(f"{out} exists; give a new folder")
    where = str(source)
    path = Path(source)
    if path.is_dir():
        frames = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
        part = Part("video", tuple(frames), fps)
        if not frames:
            raise SeqclsError(f"{path} holds no frames (.png, .jpg, .webp)")
        check_frame_count(len(frames), recipe.video, where)
    elif path.is_file():
        part = Part("video", str(path.resolve()))
        probe(part, where)
    else:
        raise SeqclsError(f"{path} does not exist; give a video file or a folder of frames")
    clip = sample(part, recipe.video, recipe.image_patch, where)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for i, frame in enumerate(clip.frames):
            Image.fromarray(frame).save(staging / f"frame-{i:03d}.png")
        (staging / "video.json").write_text(json.dumps(server_io_kwargs(clip, where), indent=1) + "\n")
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return clip
