"""The built-in pairs' media, drawn here so that verify needs no download: images as PNG ``data:`` URLs and a short
video as an MP4 ``data:`` URL, the same bytes on every run."""

from __future__ import annotations

import base64
import io

from .media import Part
from .pairs import Pair


def _png_url(image) -> str:
    """A PIL image as a PNG ``data:`` URL, the same bytes on every run."""

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def drawn_images() -> dict[str, str]:
    """The built-in images, drawn here as PNG ``data:`` URLs: shapes in colours, a bar chart, a photo-like
    gradient. Sizes are multiples of 32 within Qwen3-VL's pixel bounds, so that no loader resizes them and every path
    sees the same pixels."""
    from PIL import Image, ImageDraw

    images = {}
    for name, (shape, colour, size) in {
        "red-circle": ("ellipse", (220, 30, 30), (256, 256)),
        "blue-square": ("rectangle", (30, 60, 220), (256, 256)),
        "green-triangle": ("polygon", (30, 170, 60), (320, 256)),
    }.items():
        image = Image.new("RGB", size, "white")
        draw = ImageDraw.Draw(image)
        w, h = size
        box = (w // 4, h // 4, 3 * w // 4, 3 * h // 4)
        if shape == "polygon":
            draw.polygon([(w // 2, h // 5), (w // 5, 4 * h // 5), (4 * w // 5, 4 * h // 5)], fill=colour)
        else:
            getattr(draw, shape)(box, fill=colour)
        images[name] = _png_url(image)
    chart = Image.new("RGB", (384, 256), "white")
    draw = ImageDraw.Draw(chart)
    draw.line((32, 224, 360, 224), fill="black", width=2)
    for i, (value, colour) in enumerate(zip((60, 150, 110, 190), ("#4c72b0", "#dd8452", "#55a868", "#c44e52"))):
        draw.rectangle((56 + 76 * i, 224 - value, 104 + 76 * i, 224), fill=colour)
    images["bar-chart"] = _png_url(chart)
    ramp = Image.linear_gradient("L").resize((256, 320))
    across = ramp.transpose(Image.Transpose.ROTATE_90).resize((256, 320))
    images["gradient"] = _png_url(Image.merge("RGB", (ramp, across, ramp.transpose(Image.Transpose.FLIP_TOP_BOTTOM))))
    return images


def small_icon() -> str:
    """A 64x64 PNG ``data:`` URL: within Qwen's scorer's bounds (4,096 pixels and up), below Qwen3-VL's processor's
    (65,536), so vLLM enlarges it to 256x256 where Qwen's scorer keeps it; verify names the pair (official ids)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(image).ellipse((8, 8, 56, 56), fill=(220, 30, 30))
    return _png_url(image)


def vision_pairs() -> list[Pair]:
    """Pairs with images for multimodal families: an image as the document, as the query, on both sides, with text
    beside it, and against text; with the drawn images (``drawn_images``), and last a small icon that vLLM sizes
    otherwise than Qwen's scorer (``small_icon``)."""

    img = {name: (Part("image", url),) for name, url in drawn_images().items()}

    def text(value: str):
        return (Part("text", value),)

    return [
        Pair("Which picture shows a red circle?", img["red-circle"]),
        Pair("Which picture shows a red circle?", img["blue-square"]),
        Pair("Which picture shows a red circle?", "A red circle drawn on a white background."),
        Pair("What does the chart show?", img["bar-chart"] + text("Quarterly sales: the fourth quarter is highest.")),
        Pair(img["green-triangle"], "A green triangle."),
        Pair(img["green-triangle"], img["gradient"]),
        Pair(img["blue-square"] + text("Find the same shape in another colour."), img["red-circle"]),
        Pair("", img["gradient"]),
        Pair("a picture with nothing but colour", img["gradient"], "Given a description, retrieve matching images"),
        Pair("Which icon is a red circle?", (Part("image", small_icon()),)),
    ]


def drawn_video(seconds: int = 3, rate: int = 4) -> str:
    """An MP4 ``data:`` URL: a red square moving right and a green bar moving left on a dark ground, ``rate`` frames
    a second (H.264 through PyAV, one thread, so the bytes are the same on every run). 160x96, so every sampler
    resizes it: the sizing is part of what is checked."""
    import av
    import numpy as np

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        options = {"crf": "20", "preset": "fast", "x264-params": "threads=1:lookahead-threads=1"}
        stream = container.add_stream("libx264", rate=rate, options=options)
        stream.width, stream.height, stream.pix_fmt, stream.thread_count = 160, 96, "yuv420p", 1
        for i in range(seconds * rate):
            frame = np.empty((96, 160, 3), np.uint8)
            frame[:] = (20, 30, 60)
            frame[30:60, 10 + 10 * i : 40 + 10 * i] = (230, 40, 40)
            frame[60:80, 130 - 8 * i : 150 - 8 * i] = (40, 200, 90)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return "data:video/mp4;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def video_pairs() -> list[Pair]:
    """Pairs with the drawn video (``drawn_video``): as the document, as the query, beside an image and text, and on
    both sides (two videos in one prompt)."""
    clip = (Part("video", drawn_video()),)
    circle = (Part("image", drawn_images()["red-circle"]),)
    return [
        Pair("Which clip shows a red square moving to the right?", clip),
        Pair(clip, "A red square slides right while a green bar slides left."),
        Pair("Which shows a red shape?", clip + circle + (Part("text", "A clip and a picture."),)),
        Pair((*clip, Part("text", "Find this clip.")), clip),
    ]
