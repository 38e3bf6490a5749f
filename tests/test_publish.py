"""``seqcls publish``: dry-run plans for both hubs, every refusal before any network access, and tokens that never
reach output or files. No hub is reachable here; a loopback stub stands in where a request must fail."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import loopback_server

from converter.pairs import DEMO_PAIRS
from converter.verify import verify

SECRET = "hf_seqclsPUBLISHtokenNEVERshown42"


@pytest.fixture(scope="session")
def verified_once(pair_of, tmp_path_factory):
    src, shared = pair_of("tied-bf16-single")
    root = tmp_path_factory.mktemp("verified")
    folder = root / "tiny-seq-cls"
    shutil.copytree(shared, folder)
    report = root / "tiny-seq-cls.verify.json"
    assert verify(folder, src, pairs=list(DEMO_PAIRS), report=report)["verdict"] == "pass"
    return folder, report


@pytest.fixture
def verified(verified_once, tmp_path):
    """A writable converted checkpoint with a passing verify report beside it: (folder, report path). A copy of
    one verified once per session, with the report as verify would have written it for the copy."""
    folder, report = (tmp_path / p.name for p in verified_once)
    shutil.copytree(verified_once[0], folder)
    data = json.loads(verified_once[1].read_text())
    data["inputs"]["converted"]["path"] = str(folder)
    report.write_text(json.dumps(data))
    return folder, report


def seqcls(*args, env: dict | None = None, home: Path | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "MODELSCOPE"))}
    if home is not None:
        clean |= {"HOME": str(home), "HF_HOME": str(home / "hf"), "MODELSCOPE_CACHE": str(home / "ms")}
    return subprocess.run(
        [sys.executable, "-m", "converter", "publish", *map(str, args)],
        capture_output=True,
        text=True,
        env=clean | (env or {}),
        timeout=300,
    )


def test_dry_run_hugging_face(verified, tmp_path):
    folder, report = verified
    card_before = (folder / "README.md").read_bytes()
    result = seqcls(folder, "--repo-id", "me/x", "--dry-run", env={"HF_TOKEN": SECRET}, home=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "publish to Hugging Face: me/x (branch main, public)" in out
    assert f"verify report: {report}" in out and "credentials: environment (HF_TOKEN)" in out
    for path in folder.iterdir():
        if path.name != "README.md":
            assert f"| {path.name} " in out and hashlib.sha256(path.read_bytes()).hexdigest() in out, path.name
    assert '"pipeline_tag": "text-ranking"' in out and "dry run: nothing was uploaded" in out
    assert (folder / "README.md").read_bytes() == card_before, "a dry run writes nothing"
    assert SECRET not in result.stdout + result.stderr


def test_dry_run_modelscope_private_branch(verified, tmp_path):
    folder, _ = verified
    args = [folder, "--repo-id", "me/x", "--hub", "modelscope", "--private", "--revision", "v1", "--dry-run"]
    result = seqcls(*args, home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "publish to ModelScope: me/x (branch v1, private)" in result.stdout
    assert "credentials: none" in result.stdout and "a real run would stop here" in result.stderr
    default = seqcls(folder, "--repo-id", "me/x", "--hub", "modelscope", "--dry-run", home=tmp_path)
    assert "(branch master, public)" in default.stdout


@pytest.mark.slow  # inner loop: see docs/testing.md
def test_dry_run_card_carries_the_parity_and_the_repo_id(verified, tmp_path):
    folder, _ = verified
    result = seqcls(folder, "--repo-id", "me/tiny", "--dry-run", home=tmp_path)
    assert result.returncode == 0, result.stderr
    from converter.card import card_for
    from converter.publish import find_report

    _, report = find_report(folder)
    card = card_for(folder, report, model_ref="me/tiny", hub_base_only=True)
    assert 'CrossEncoder("me/tiny")' in card and "| transformers " in card and "PASS" in card
    assert hashlib.sha256(card.encode()).hexdigest() in result.stdout
    assert '"base_model":' not in result.stdout, "a local path is no hub base_model"
    assert "convert with --base-model" in result.stdout


def refused(result: subprocess.CompletedProcess, message: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_no_report_is_refused_unless_skip_verify(pair_of, tmp_path):
    _, shared = pair_of("tied-bf16-single")
    folder = tmp_path / "alone"
    shutil.copytree(shared, folder)
    refused(seqcls(folder, "--repo-id", "me/x", "--dry-run", home=tmp_path), "no passing verify report beside")
    skipped = seqcls(folder, "--repo-id", "me/x", "--dry-run", "--skip-verify", home=tmp_path)
    assert skipped.returncode == 0 and "--skip-verify" in skipped.stdout


def test_stale_and_failing_reports_are_refused(verified, tmp_path):
    folder, report = verified
    data = json.loads(report.read_text())
    report.write_text(json.dumps(data | {"verdict": "fail"}))
    refused(seqcls(folder, "--repo-id", "me/x", "--dry-run", home=tmp_path), "says FAIL")
    report.write_text(json.dumps(data))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps(config | {"model_max_length": 7}))
    refused(seqcls(folder, "--repo-id", "me/x", "--dry-run", home=tmp_path), "does not match the files")
    refused(seqcls(folder, "--repo-id", "me/x", "--report", report, "--dry-run", home=tmp_path), "does not match")


def test_bad_arguments(verified, tmp_path):
    folder, _ = verified
    refused(seqcls(folder, "--repo-id", "not-a-repo", "--dry-run", home=tmp_path), "must look like ORG/NAME")
    refused(seqcls(folder.parent, "--repo-id", "me/x", "--dry-run", home=tmp_path), "has no config.json")


class JsonStub(http.server.BaseHTTPRequestHandler):
    """A hub endpoint stand-in: subclasses answer every method in ``_answer`` with ``_reply``."""

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, code: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._answer()

    do_POST = do_PUT = do_HEAD = do_GET

    def log_message(self, *args):
        pass


class Recorder(JsonStub):
    """Answers 403 to everything and remembers what was asked, and with which headers."""

    def _answer(self):
        self.server.seen.append((self.command, self.path, str(self.headers), self._body()))
        self._reply(403, {"error": "Forbidden", "Code": 403, "Message": "Forbidden"})


@pytest.mark.parametrize(("hub", "endpoint_var", "message"), [
    ("hf", "HF_ENDPOINT", "no Hugging Face token"),
    ("modelscope", "MODELSCOPE_ENDPOINT", "no ModelScope token"),
])  # fmt: skip
def test_no_token_no_upload_attempted(verified, tmp_path, hub, endpoint_var, message):
    folder, _ = verified
    with loopback_server(Recorder, seen=[]) as (url, server):
        seen = server.seen
        result = seqcls(folder, "--repo-id", "me/x", "--hub", hub, env={endpoint_var: url}, home=tmp_path)
    refused(result, message)
    assert seen == [], "nothing may reach the hub without credentials"


@pytest.mark.parametrize(("hub", "env_var", "endpoint_var"), [
    ("hf", "HF_TOKEN", "HF_ENDPOINT"),
    ("modelscope", "MODELSCOPE_API_TOKEN", "MODELSCOPE_ENDPOINT"),
])  # fmt: skip
def test_a_refused_upload_never_shows_the_token_nor_leaves_files(verified, tmp_path, hub, env_var, endpoint_var):
    folder, _ = verified
    with loopback_server(Recorder, seen=[]) as (url, server):
        seen = server.seen
        env = {env_var: SECRET, endpoint_var: url}
        result = seqcls(folder, "--repo-id", "me/x", "--hub", hub, env=env, home=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "upload of me/x failed" in result.stderr.strip().splitlines()[-1]
    assert SECRET not in result.stdout + result.stderr
    assert seen and any(SECRET in headers for _, _, headers, _ in seen), "the token goes to the hub, and only there"
    assert not (folder / ".ms_upload_cache").exists()
    for path in [*folder.rglob("*"), *folder.parent.glob("*.json")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.hub_upload
@pytest.mark.skipif(
    not (os.environ.get("SEQCLS_TEST_HF_TOKEN") and os.environ.get("SEQCLS_TEST_HF_REPO")),
    reason="needs SEQCLS_TEST_HF_TOKEN and SEQCLS_TEST_HF_REPO (a scratch repo) for a real upload",
)
def test_real_upload_to_hugging_face(verified, tmp_path):
    folder, _ = verified
    env = {"HF_TOKEN": os.environ["SEQCLS_TEST_HF_TOKEN"]}
    result = seqcls(folder, "--repo-id", os.environ["SEQCLS_TEST_HF_REPO"], "--private", env=env, home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert os.environ["SEQCLS_TEST_HF_TOKEN"] not in result.stdout + result.stderr


def test_modelscope_dry_run_works_without_the_package(verified, monkeypatch):
    """A newcomer with the base install still sees the ModelScope plan; only a real upload needs modelscope."""
    from converter.errors import SeqclsError
    from converter.publish import MODELSCOPE_MISSING, publish

    folder, _ = verified
    monkeypatch.setitem(sys.modules, "modelscope_hub.config", None)  # makes the import fail, as when not installed
    plan = publish(folder, "me/x", hub="modelscope", dry_run=True)
    assert plan.branch == "master" and plan.credentials == MODELSCOPE_MISSING
    with pytest.raises(SeqclsError, match=r"needs the modelscope package: pip install 'seqcls\[hub\]'"):
        publish(folder, "me/x", hub="modelscope")


class HubStub(JsonStub):
    """The Hugging Face endpoints an upload takes (create repo, preupload, commit), answering as the Hub does;
    the commit's files are recorded by path with their bytes."""

    def _answer(self):
        body = self._body()
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        payload: dict = {}
        if self.path == "/api/repos/create":
            payload = {"url": f"{base}/me/x", "name": "me/x", "id": "me/x"}
        elif "/preupload/" in self.path:
            files = json.loads(body)["files"]
            payload = {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
        elif "/commit/" in self.path:
            for line in body.decode().splitlines():
                entry = json.loads(line)
                if entry["key"] == "file":
                    self.server.committed[entry["value"]["path"]] = base64.b64decode(entry["value"]["content"])
            payload = {"commitUrl": f"{base}/me/x/commit/{'a' * 40}", "commitOid": "a" * 40}
        self._reply(200, payload)


@pytest.mark.slow  # inner loop: see docs/testing.md
def test_upload_sends_exactly_the_checkpoint(original, tmp_path):
    """The real upload path against the stub: the conversion's hard-linked shards and every checkpoint file go up;
    a stray file does not; an --include'd one does; a link inside the folder goes up as the file it points to."""
    from converter import convert

    src = original("tied-fp16-sharded")

    folder = tmp_path / "out"
    convert(src, folder)
    source_inodes = {f.stat().st_ino for f in src.glob("*.safetensors")}
    assert any(f.stat().st_ino in source_inodes for f in folder.glob("*.safetensors")), "no shard is a hard link"
    (folder / "licenses").mkdir()
    (folder / "licenses" / "apache-2.0.txt").write_text("Apache License 2.0\n")
    (folder / "LICENSE").symlink_to(Path("licenses") / "apache-2.0.txt")
    (folder / "notes.md").write_text("my notes\n")
    (folder / "scratch.py").write_text("print('scratch')\n")
    assert verify(folder, src, pairs=list(DEMO_PAIRS), report=tmp_path / "out.verify.json")["verdict"] == "pass"

    with loopback_server(HubStub, committed={}) as (url, server):
        result = seqcls(folder, "--repo-id", "me/x", "--include", "notes.md", env={"HF_TOKEN": SECRET,
                        "HF_ENDPOINT": url}, home=tmp_path)  # fmt: skip
        committed = server.committed
    assert result.returncode == 0, result.stderr
    assert "left out (not part of the checkpoint; --include GLOB adds one): licenses/apache-2.0.txt, scratch.py" in (
        result.stdout
    )
    checkpoint = {p.name for p in folder.iterdir() if p.name not in ("licenses", "scratch.py")}
    assert set(committed) == checkpoint
    assert committed["LICENSE"] == b"Apache License 2.0\n" and committed["notes.md"] == b"my notes\n"
    for name, data in committed.items():
        assert data == (folder / name).read_bytes(), name
        assert f"| {name} " in result.stdout and hashlib.sha256(data).hexdigest() in result.stdout


def _link_outside(folder: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("key")
    (folder / "secret.txt").symlink_to(tmp_path / "secret.txt")


@pytest.mark.parametrize("hub", ["hf", "modelscope"])
def test_a_link_out_of_the_folder_is_refused_before_any_request(verified, tmp_path, hub):
    folder, _ = verified
    _link_outside(folder, tmp_path)
    refused(seqcls(folder, "--repo-id", "me/x", "--hub", hub, "--dry-run", home=tmp_path), "secret.txt is a symbolic")
    endpoint = "HF_ENDPOINT" if hub == "hf" else "MODELSCOPE_ENDPOINT"
    token = "HF_TOKEN" if hub == "hf" else "MODELSCOPE_API_TOKEN"
    with loopback_server(Recorder, seen=[]) as (url, server):
        result = seqcls(folder, "--repo-id", "me/x", "--hub", hub, env={token: SECRET, endpoint: url}, home=tmp_path)
        seen = server.seen
    refused(result, "secret.txt is a symbolic link to something outside")
    assert seen == []
    (folder / "secret.txt").unlink()
    (folder / "dangling").symlink_to(tmp_path / "nowhere")
    refused(seqcls(folder, "--repo-id", "me/x", "--dry-run", home=tmp_path), "dangling is a symbolic link")


def test_stray_files_are_left_out_and_include_adds_them(verified, tmp_path):
    folder, _ = verified
    (folder / "notes.md").write_text("my notes\n")
    (folder / "logs").mkdir()
    (folder / "logs" / "run.log").write_text("log\n")
    (folder / "inside-link.json").symlink_to("config.json")
    plain = seqcls(folder, "--repo-id", "me/x", "--dry-run", home=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert (
        "left out (not part of the checkpoint; --include GLOB adds one): inside-link.json, logs/run.log, notes.md"
        in (plain.stdout)
    )
    assert "| notes.md " not in plain.stdout and "| logs/run.log " not in plain.stdout
    assert "| inside-link.json " not in plain.stdout, "a link to a checkpoint file is still a stray name"
    args = [folder, "--repo-id", "me/x", "--dry-run", "--include", "notes.md", "--include", "logs/*"]
    included = seqcls(*args, home=tmp_path)
    assert included.returncode == 0, included.stderr
    for name in ("notes.md", "logs/run.log"):
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert f"| {name} " in included.stdout and digest in included.stdout
    assert "left out (not part of the checkpoint; --include GLOB adds one): inside-link.json" in included.stdout


def test_inspect_names_stray_files_and_links_out(verified, tmp_path, capsys):
    from converter.cli import run

    folder, _ = verified
    assert run(["inspect", str(folder)]) == 0
    capsys.readouterr()
    (folder / "notes.md").write_text("my notes\n")
    assert run(["inspect", str(folder)]) == 1
    assert "problem: stray file notes.md: not part of the checkpoint; publish leaves it out" in capsys.readouterr().out
    _link_outside(folder, tmp_path)
    assert run(["inspect", str(folder), "--json"]) == 1
    info = json.loads(capsys.readouterr().out)
    assert info["left_out"] == ["notes.md"]
    assert info["problems"] == ["secret.txt links outside the folder: publish refuses it"]
