"""Hub ids as sources, through the libraries' own cache and offline paths and their own error types.

There is no network here: successes come from a hub cache laid out as the libraries lay it out, failures from a
loopback stub that answers as the hubs do (status codes and error headers), or from a closed port."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import loopback_server
from huggingface_hub import ModelCard

from converter.errors import SeqclsError
from converter.source import DOWNLOAD_PATTERNS, parse_hub_spec

SECRET = "hf_seqclsTESTtokenNEVERprint123"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("spec", "env", "expected"),
    [
        ("Qwen/Qwen3-Reranker-8B", {}, ("hf", "Qwen/Qwen3-Reranker-8B", None)),
        ("Qwen/Qwen3-Reranker-8B@v1.0", {}, ("hf", "Qwen/Qwen3-Reranker-8B", "v1.0")),
        ("modelscope:Qwen/Qwen3-Reranker-8B", {}, ("modelscope", "Qwen/Qwen3-Reranker-8B", None)),
        ("Qwen/Qwen3-Reranker-8B", {"VLLM_USE_MODELSCOPE": "True"}, ("modelscope", "Qwen/Qwen3-Reranker-8B", None)),
        ("hf:Qwen/Qwen3-Reranker-8B", {"VLLM_USE_MODELSCOPE": "True"}, ("hf", "Qwen/Qwen3-Reranker-8B", None)),
        ("models/a/b", {}, ("hf", None, None)),
    ],
)
def test_spec_parsing(monkeypatch, spec, env, expected):
    monkeypatch.delenv("VLLM_USE_MODELSCOPE", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert parse_hub_spec(spec) == expected


def test_download_patterns_never_fetch_pickles():
    from fnmatch import fnmatch

    for name in ("pytorch_model.bin", "model.pt", "training_args.bin", "optimizer.pt"):
        assert not any(fnmatch(name, p) for p in DOWNLOAD_PATTERNS), name
    for name in ("model-00001-of-00004.safetensors", "model.safetensors.index.json", "tokenizer.json", "README.md"):
        assert any(fnmatch(name, p) for p in DOWNLOAD_PATTERNS), name


def hf_cache(src: Path, cache: Path, repo_id: str) -> Path:
    """``src`` as huggingface_hub caches a download: content-addressed blobs, a snapshot of symlinks, a ref."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        os.link(f, repo / "blobs" / digest)
        (snapshot / f.name).symlink_to(Path("..", "..", "blobs", digest))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return repo


def seqcls(*args: str, env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "MODELSCOPE", "VLLM_USE"))}
    return subprocess.run(
        [sys.executable, "-m", "converter", *args],
        capture_output=True,
        text=True,
        env=base | {"HF_TOKEN": SECRET, "MODELSCOPE_API_TOKEN": SECRET} | env,
        cwd=cwd,
        timeout=300,
    )


def test_hugging_face_cache_offline(original, tmp_path):
    repo = hf_cache(original("untied-fp32-sharded"), tmp_path / "hub", "org/tiny-reranker")
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    result = seqcls("convert", "org/tiny-reranker", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "converted" / "tiny-reranker-seq-cls"
    blobs = {p.stat().st_ino for p in (repo / "blobs").iterdir()}
    linked = [p for p in out.glob("*.safetensors") if p.stat().st_ino in blobs]
    assert linked and not any(p.is_symlink() for p in out.iterdir()), "untouched shards must be hard links to blobs"
    assert ModelCard.load(out / "README.md").data.base_model == "org/tiny-reranker"
    pinned = seqcls("convert", f"org/tiny-reranker@{COMMIT}", "-o", str(tmp_path / "pinned"), env=env)
    assert pinned.returncode == 0, pinned.stderr
    assert SECRET not in result.stdout + result.stderr + pinned.stdout + pinned.stderr


@pytest.mark.slow  # inner loop: see docs/testing.md
def test_verify_takes_a_hub_id_for_the_original(original, pair_of, tmp_path):
    src, out = pair_of("tied-bf16-single")
    hf_cache(src, tmp_path / "hub", "org/tiny-reranker")
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    result = seqcls("verify", str(out), "--original", "org/tiny-reranker", env=env)
    assert result.returncode == 0, result.stderr
    assert "seqcls verify: PASS" in result.stdout


class Hub(http.server.BaseHTTPRequestHandler):
    """Answers every request the way the hubs answer for repos named missing, gated or norev."""

    def do_GET(self):
        path = self.path
        if "missing" in path:
            status, code, message = 404, "RepoNotFound", "Model does not exist."
        elif "gated" in path:
            status, code, message = (
                (403 if "/api/models/" in path and "hf" in self.server.kind else 401),
                ("GatedRepo"),
                "Access to model is restricted.",
            )
        elif "norev" in path:
            status, code, message = 404, "RevisionNotFound", "Revision does not exist."
        else:
            status, code, message = 500, None, "unexpected"
        body = json.dumps({"Code": 10010205001, "Message": message, "error": message}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


def closed_port() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def refused(result: subprocess.CompletedProcess, message: str) -> None:
    """Exit 2 and one error line of ours, last (a library may log its retries before it)."""
    lines = result.stderr.strip().splitlines()
    ours = [line for line in lines if line.startswith("seqcls:")]
    assert result.returncode == 2, result.stderr
    assert len(ours) == 1 and lines[-1] == ours[0] and message in ours[0], result.stderr
    assert "Traceback" not in result.stderr and SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("org/missing", "Hugging Face has no repo org/missing"),
        ("org/gated", "org/gated is gated"),
        ("org/model-norev@nope", "has no revision 'nope'"),
    ],
)
def test_hugging_face_errors(tmp_path, spec, message):
    with loopback_server(Hub, kind="hf") as (url, _):
        env = {"HF_ENDPOINT": url, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_ETAG_TIMEOUT": "5"}
        refused(seqcls("convert", spec, "-o", str(tmp_path / "out"), env=env), message)
    assert not (tmp_path / "out").exists()


def test_hugging_face_unreachable_and_offline(tmp_path):
    env = {"HF_ENDPOINT": closed_port(), "HF_HUB_CACHE": str(tmp_path / "hub")}
    refused(seqcls("convert", "org/model", env=env), "the Hub cannot be reached")
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    refused(seqcls("convert", "org/model", env=env), "offline mode is on")
    refused(seqcls("convert", "org/model", "--offline", env={"HF_HUB_CACHE": str(tmp_path / "hub")}), "offline mode")


@pytest.mark.parametrize(
    ("spec", "message"),
    [("modelscope:org/missing", "ModelScope has no modelscope:org/missing"), ("modelscope:org/gated", "denied")],
)
def test_modelscope_errors(tmp_path, spec, message):
    pytest.importorskip("modelscope")
    with loopback_server(Hub, kind="modelscope") as (url, _):
        env = {"MODELSCOPE_ENDPOINT": url, "MODELSCOPE_CACHE": str(tmp_path / "ms")}
        refused(seqcls("convert", spec, "-o", str(tmp_path / "out"), env=env), message)


def test_modelscope_offline_and_vllm_use_modelscope(tmp_path):
    pytest.importorskip("modelscope")
    env = {"MODELSCOPE_CACHE": str(tmp_path / "ms"), "VLLM_USE_MODELSCOPE": "True"}
    refused(seqcls("convert", "org/model", "--offline", env=env), "not in the local ModelScope cache")


def test_hub_choice_is_validated():
    from converter.source import resolve_source

    with pytest.raises(SeqclsError, match="--hub must be one of"):
        resolve_source("org/model", hub="github")


@pytest.mark.slow  # inner loop: see docs/testing.md
def test_modelscope_unreachable(tmp_path):
    pytest.importorskip("modelscope")
    env = {"MODELSCOPE_ENDPOINT": closed_port(), "MODELSCOPE_CACHE": str(tmp_path / "ms")}
    refused(seqcls("convert", "modelscope:org/model", env=env), "cannot reach ModelScope")
