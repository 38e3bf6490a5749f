"""A small reader and writer of the safetensors format, ours because the library exposes no byte ranges.

Layout: 8-byte little-endian header length N, N bytes of JSON, then the data. The header maps each tensor name
to ``{dtype, shape, data_offsets: [begin, end]}`` relative to the start of the data; ``__metadata__`` is optional.
The reader validates as strictly as the library does (bounds, overlaps, gaps, dtype x shape), so a file we accept
is a file every loader accepts.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import SeqclsError

MAX_HEADER_BYTES = 100_000_000
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4,
    "U64": 8, "I64": 8, "F64": 8,
}  # fmt: skip


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor's bytes live: absolute offsets into ``path``."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    path: Path
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True)
class SafetensorsFile:
    path: Path
    metadata: dict[str, str] | None
    tensors: dict[str, TensorInfo]
    """In data order."""

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def _bad(path: Path, what: str) -> SeqclsError:
    return SeqclsError(f"{path.name}: {what}; the file is damaged or not safetensors, re-download it")


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        dup = sorted({k for k in keys if keys.count(k) > 1})[0]
        raise ValueError(f"duplicate key {dup!r}")
    return dict(pairs)


def read_header(path: Path) -> SafetensorsFile:
    """Parse and validate the header of one safetensors file without reading its data."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 8:
                raise _bad(path, f"truncated ({size} bytes, shorter than the 8-byte header length)")
            n = int.from_bytes(f.read(8), "little")
            if n > MAX_HEADER_BYTES:
                raise _bad(path, f"header length {n} is above the 100 MB limit")
            if 8 + n > size:
                raise _bad(path, f"header length {n} runs past the end of the {size}-byte file (truncated?)")
            raw = f.read(n)
    except OSError as e:
        raise SeqclsError(f"cannot read {path}: {e.strerror}") from e
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        raise _bad(path, f"header is not valid JSON ({e})") from e
    if not isinstance(header, dict):
        raise _bad(path, "header is not a JSON object")

    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise _bad(path, "__metadata__ must map strings to strings")

    data_start, data_len = 8 + n, size - 8 - n
    tensors = [_tensor_info(path, name, entry, data_start) for name, entry in header.items()]
    tensors.sort(key=lambda t: (t.begin, t.end))
    cursor = data_start
    for prev, t in zip([None, *tensors], tensors):
        if t.begin < cursor:
            raise _bad(path, f"tensor {t.name!r} overlaps {prev.name!r}")
        if t.begin > cursor:
            raise _bad(path, f"unreferenced bytes before tensor {t.name!r}")
        cursor = t.end
    if cursor - data_start > data_len:
        last = tensors[-1].name
        raise _bad(path, f"tensor {last!r} ends past the end of the file (truncated?)")
    if cursor - data_start < data_len:
        raise _bad(path, f"{data_len - (cursor - data_start)} trailing bytes after the last tensor")
    return SafetensorsFile(path=path, metadata=metadata, tensors={t.name: t for t in tensors})


def _tensor_info(path: Path, name: str, entry: object, data_start: int) -> TensorInfo:
    if not isinstance(entry, dict):
        raise _bad(path, f"entry {name!r} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_BYTES:
        raise _bad(path, f"tensor {name!r} has unsupported dtype {dtype!r}")
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        raise _bad(path, f"tensor {name!r} has an invalid shape {shape!r}")
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(type(o) is int for o in offsets)
        and 0 <= offsets[0] <= offsets[1]
    ):
        raise _bad(path, f"tensor {name!r} has invalid data_offsets {offsets!r}")
    expected = math.prod(shape) * DTYPE_BYTES[dtype]
    if offsets[1] - offsets[0] != expected:
        raise _bad(
            path,
            f"tensor {name!r} spans {offsets[1] - offsets[0]} bytes but {dtype} x {shape} needs {expected}",
        )
    return TensorInfo(name, dtype, tuple(shape), path, data_start + offsets[0], data_start + offsets[1])


def read_row(t: TensorInfo, row: int) -> bytes:
    """One row of a 2-D tensor, read by offset: the rest of the tensor is never touched."""
    rows, cols = t.shape
    if not 0 <= row < rows:
        raise SeqclsError(f"row {row} is outside {t.name!r}, which has {rows} rows")
    width = cols * DTYPE_BYTES[t.dtype]
    with open(t.path, "rb") as f:
        f.seek(t.begin + row * width)
        data = f.read(width)
    if len(data) != width:
        raise _bad(t.path, f"short read in {t.name!r}")
    return data


@dataclass(frozen=True)
class NewTensor:
    """A tensor whose bytes we computed, as opposed to one copied by range from a source file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    data: bytes

    @property
    def nbytes(self) -> int:
        return len(self.data)


def encode_header(entries: list, metadata: dict[str, str]) -> bytes:
    """Header bytes for ``entries`` (anything with name, dtype, shape, nbytes) laid back to back, padded with
    spaces to 8-byte alignment as the library does."""
    header: dict[str, object] = {"__metadata__": metadata}
    offset = 0
    for e in entries:
        header[e.name] = {"dtype": e.dtype, "shape": list(e.shape), "data_offsets": [offset, offset + e.nbytes]}
        offset += e.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-(8 + len(raw)) % 8)
    return len(raw).to_bytes(8, "little") + raw


def write_file(
    path: Path,
    entries: list[TensorInfo | NewTensor],
    metadata: dict[str, str],
    on_bytes: Callable[[int], None] = lambda n: None,
) -> None:
    """Write a safetensors file; source tensors are copied by byte range inside the kernel. The caller fsyncs,
    once everything is written, so that writeback of one file overlaps the copying of the next."""
    with open(path, "wb", buffering=0) as out:
        _write_all(out, encode_header(entries, metadata))
        for e in entries:
            if isinstance(e, NewTensor):
                _write_all(out, e.data)
                on_bytes(len(e.data))
            else:
                with open(e.path, "rb") as src:
                    copy_range(src, out, e.begin, e.nbytes, on_bytes)


def _write_all(out: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[out.write(view) :]


CHUNK = 64 << 20


def copy_range(
    src: BinaryIO, dst: BinaryIO, offset: int, length: int, on_bytes: Callable[[int], None] = lambda n: None
) -> None:
    """Append ``length`` bytes of ``src`` from ``offset`` to ``dst`` without passing them through Python.

    ``copy_file_range`` lets the file system share blocks where it can (btrfs, XFS); where the kernel refuses it,
    ``sendfile`` still copies in the kernel.
    """
    sfd, dfd = src.fileno(), dst.fileno()
    pos, end = offset, offset + length
    use_cfr = hasattr(os, "copy_file_range")
    while pos < end:
        want = min(CHUNK, end - pos)
        if use_cfr:
            try:
                n = os.copy_file_range(sfd, dfd, want, pos)
            except OSError:
                use_cfr = False
                continue
        else:
            n = os.sendfile(dfd, sfd, pos, want)
        if n == 0:
            raise SeqclsError(f"{Path(src.name).name} ended early while copying; it was truncated or changed")
        pos += n
        on_bytes(n)
