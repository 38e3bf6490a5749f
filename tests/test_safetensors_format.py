"""Our safetensors reader and writer, cross-checked against the safetensors library."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import write_raw
from safetensors import safe_open
from safetensors.torch import save_file

from converter.errors import SeqclsError
from converter.io.safetensors_format import NewTensor, encode_header, read_header, read_row, write_file


@pytest.fixture
def sample(tmp_path):
    tensors = {
        "a": torch.arange(12, dtype=torch.float32).reshape(3, 4),
        "b": torch.arange(10, dtype=torch.bfloat16).reshape(5, 2),
        "c": torch.tensor([1, 2, 3], dtype=torch.int64),
        "empty": torch.zeros((0, 7), dtype=torch.float16),
    }
    path = tmp_path / "sample.safetensors"
    save_file(tensors, path, metadata={"format": "pt"})
    return path, tensors


def test_reader_agrees_with_the_library(sample):
    path, tensors = sample
    f = read_header(path)
    assert f.metadata == {"format": "pt"}
    assert set(f.tensors) == set(tensors)
    raw = path.read_bytes()
    for name, t in f.tensors.items():
        assert t.shape == tuple(tensors[name].shape)
        assert raw[t.begin : t.end] == tensors[name].contiguous().view(torch.uint8).numpy().tobytes()


def test_read_row_reads_exactly_one_row(sample):
    path, tensors = sample
    f = read_header(path)
    assert read_row(f.tensors["b"], 3) == tensors["b"][3].view(torch.uint8).numpy().tobytes()
    with pytest.raises(SeqclsError, match="outside"):
        read_row(f.tensors["b"], 5)


def test_written_file_loads_in_the_library(sample, tmp_path):
    path, tensors = sample
    src = read_header(path)
    new = NewTensor("score.weight", "F32", (1, 3), torch.tensor([[1.5, -2.0, 3.25]]).numpy().tobytes())
    out = tmp_path / "out.safetensors"
    copied = []
    write_file(out, [new, src.tensors["b"], src.tensors["a"], src.tensors["empty"]], {"format": "pt"}, copied.append)
    assert sum(copied) == 12 + src.tensors["b"].nbytes + src.tensors["a"].nbytes
    with safe_open(out, "pt") as st:
        assert st.metadata() == {"format": "pt"}
        assert list(st.keys()) == sorted(["score.weight", "b", "a", "empty"])
        assert torch.equal(st.get_tensor("score.weight"), torch.tensor([[1.5, -2.0, 3.25]]))
        for name in ("a", "b", "empty"):
            assert torch.equal(st.get_tensor(name), tensors[name])
    assert read_header(out).tensors.keys() == {"score.weight", "b", "a", "empty"}


def test_header_is_padded_to_eight_bytes():
    raw = encode_header([NewTensor("x", "F32", (1,), b"\0" * 4)], {"format": "pt"})
    n = int.from_bytes(raw[:8], "little")
    assert len(raw) == 8 + n and n % 8 == 0
    assert json.loads(raw[8:])["x"]["data_offsets"] == [0, 4]


def _entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


@pytest.mark.parametrize(
    ("header", "data", "length", "message"),
    [
        (b"", b"", None, "truncated"),
        ({"x": _entry()}, b"\0" * 8, 10_000, "runs past the end"),
        ({"x": _entry()}, b"\0" * 8, 100_000_001, "above the 100 MB limit"),
        (b"not json", b"", None, "not valid JSON"),
        (b"[1, 2]", b"", None, "not a JSON object"),
        (b'{"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "x": {}}', b"\0" * 4, None, "duplicate"),
        ({"x": _entry(offsets=(0, 16))}, b"\0" * 8, None, "needs 8"),
        ({"x": _entry(offsets=(8, 16))}, b"\0" * 8, None, "unreferenced bytes"),
        ({"x": _entry(), "y": _entry(offsets=(4, 12))}, b"\0" * 12, None, "overlaps"),
        ({"x": _entry()}, b"\0" * 4, None, "ends past the end"),
        ({"x": _entry()}, b"\0" * 12, None, "trailing bytes"),
        ({"x": _entry(offsets=(8, 0))}, b"\0" * 8, None, "invalid data_offsets"),
        ({"x": _entry(dtype="Q7")}, b"\0" * 8, None, "unsupported dtype"),
        ({"x": _entry(shape=(-2,))}, b"\0" * 8, None, "invalid shape"),
        ({"__metadata__": {"format": 1}}, b"", None, "__metadata__"),
    ],
)
def test_bad_headers_are_refused(tmp_path, header, data, length, message):
    path = tmp_path / "bad.safetensors"
    if header == b"" and length is None:
        path.write_bytes(b"\1\2\3")
    else:
        write_raw(path, header, data, length)
    with pytest.raises(SeqclsError, match=message):
        read_header(path)
