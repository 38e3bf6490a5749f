"""``seqcls publish``: upload a verified converted checkpoint to the Hugging Face Hub or ModelScope.

Nothing goes out unless a passing ``seqcls verify --report`` JSON beside the checkpoint still matches its files
(sha256), and the card carries that report's parity table. Uploads go through each library's own resumable folder
upload. Tokens come only from the environment or the libraries' login stores, and never reach output or files.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .card import CARD_FILE, card_for, write_card
from .contents import checkpoint_contents
from .errors import SeqclsError
from .io.fingerprint import fingerprint, sha256_file
from .source import REPO_ID
from .userdirs import cache_root

DEFAULT_BRANCH = {"hf": "main", "modelscope": "master"}
MS_UPLOAD_CACHE = ".ms_upload_cache"
REPORT_MAX_BYTES = 50 << 20
MODELSCOPE_MISSING = "none: the modelscope package is missing (pip install 'seqcls[hub]')"
"""A dry run still shows the whole plan without it; a real upload stops on it."""


@dataclass
class PublishPlan:
    hub: str
    repo_id: str
    branch: str
    private: bool
    files: list[dict]
    """name, bytes, sha256, in upload order; the card as it will be uploaded."""
    left_out: list[str]
    """Files in the folder that are not part of the checkpoint and were not ``--include``d."""
    card_metadata: dict
    report: str | None
    credentials: str
    """Where the token comes from ("environment", "login store") or "none"; never the token."""
    notes: list[str] = field(default_factory=list)
    gguf: list[dict] = field(default_factory=list)
    """GGUF files: name, path, bytes, sha256, repo (where it goes) and report (its passing llamacpp verify)."""
    gguf_card: str | None = None
    """The card of a separate GGUF repo (``--gguf-repo``)."""


def publish(
    folder: str | Path,
    repo_id: str,
    *,
    hub: str = "hf",
    private: bool = False,
    revision: str | None = None,
    dry_run: bool = False,
    skip_verify: bool = False,
    reports: list[str | Path] | None = None,
    include: list[str] | None = None,
    gguf: list[str | Path] | None = None,
    gguf_repo: str | None = None,
) -> PublishPlan:
    """Plan, and unless ``dry_run`` carry out, the upload of exactly the checkpoint (``contents``) plus the files
    ``include`` patterns name, and the ``gguf`` files (to the same repo, or to ``gguf_repo``), each only with a
    passing ``verify --backend llamacpp`` report (``--skip-verify`` does not cover them). Raises ``SeqclsError`` on
    every refusal, before any network access."""
    from huggingface_hub import ModelCard

    from .inspection import inspect_checkpoint

    folder = Path(folder)
    if hub not in DEFAULT_BRANCH:
        raise SeqclsError(f"--hub must be one of {', '.join(DEFAULT_BRANCH)}")
    if not REPO_ID.match(repo_id):
        raise SeqclsError(f"--repo-id {repo_id!r} must look like ORG/NAME")
    if not folder.is_dir():
        raise SeqclsError(f"{folder} is not a checkpoint folder")
    contents = checkpoint_contents(folder, include or ())
    if contents.outside_links:
        raise SeqclsError(
            f"{folder / contents.outside_links[0]} is a symbolic link to something outside {folder} (or to nothing); "
            "publishing it would upload a file from elsewhere: replace it with the file itself, or remove it"
        )
    info = inspect_checkpoint(folder, include=include or ())
    if info["kind"] != "converted":
        raise SeqclsError(f"{folder} is not a converted checkpoint (it is {info['kind']}); run seqcls convert first")
    if info["problems"]:
        raise SeqclsError(f"{folder}: {info['problems'][0]}; fix it (seqcls inspect lists all) before publishing")
    notes = []
    report_path, report = None, None
    if skip_verify:
        notes.append("--skip-verify: publishing without a parity check")
    else:
        report_path, report = find_report(folder, reports)
    if gguf_repo is not None and not REPO_ID.match(gguf_repo):
        raise SeqclsError(f"--gguf-repo {gguf_repo!r} must look like ORG/NAME")
    ggufs = [_gguf_file(Path(p), reports, gguf_repo or repo_id) for p in gguf or []]
    token, credentials = _token(hub)
    gguf_reports = [g.pop("verified") for g in ggufs]
    card = card_for(folder, report, model_ref=repo_id, hub_base_only=True, gguf_reports=gguf_reports)
    card_data = ModelCard(card).data.to_dict()
    if "base_model" not in card_data:
        notes.append("the card names no base_model (the source was a local path); convert with --base-model ORG/NAME")
    plan = PublishPlan(
        hub=hub,
        repo_id=repo_id,
        branch=revision or DEFAULT_BRANCH[hub],
        private=private,
        files=_files(folder, card, contents.files),
        left_out=contents.left_out,
        card_metadata=card_data,
        report=str(report_path) if report_path else None,
        credentials=credentials,
        notes=notes,
        gguf=ggufs,
        gguf_card=gguf_card(card, repo_id) if gguf_repo and ggufs else None,
    )
    if dry_run:
        return plan
    if credentials == MODELSCOPE_MISSING:
        raise SeqclsError("publishing to ModelScope needs the modelscope package: pip install 'seqcls[hub]'")
    if token is None:
        login = "set HF_TOKEN or run `hf auth login`" if hub == "hf" else "set MODELSCOPE_API_TOKEN"
        raise SeqclsError(f"no {_hub_name(hub)} token: {login}; nothing was uploaded")
    write_card(folder, card)
    try:
        (_upload_hf if hub == "hf" else _upload_modelscope)(plan, folder, token)
        _upload_gguf(plan, token)
    except SeqclsError:
        raise
    except Exception as e:  # the libraries raise many types; the token must not travel in the message
        message = _scrub(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__, token)
        raise SeqclsError(
            f"{_hub_name(hub)} upload of {repo_id} failed: {message[:300]}; run again to resume"
        ) from None
    return plan


def _gguf_file(path: Path, reports: list[str | Path] | None, repo: str) -> dict:
    from .export.gguf import read_exported

    read_exported(path)
    report_path, report = find_report(path, reports)
    if report.get("backend") != "llamacpp":
        raise SeqclsError(f"the report {report_path} is not a verify --backend llamacpp report of {path.name}")
    return {"name": path.name, "path": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path),
            "repo": repo, "report": str(report_path), "verified": report}  # fmt: skip


def gguf_card(card: str, repo_id: str) -> str:
    """A GGUF repo's card: the converted checkpoint's GGUF section, with metadata pointing at it as the base."""
    from huggingface_hub import ModelCard, ModelCardData

    section = card[card.index("## GGUF for llama.cpp") :].split("<!-- seqcls-card", 1)[0]
    data = ModelCardData(base_model=repo_id, pipeline_tag="text-ranking",
                         tags=["seqcls", "gguf", "llama.cpp", "reranker", "text-ranking"])  # fmt: skip
    name = repo_id.split("/")[-1]
    body = f"# {name}-GGUF\n\nGGUF files of [{repo_id}](https://huggingface.co/{repo_id}) for llama.cpp.\n\n{section}"
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


def find_report(folder: Path, reports: list[str | Path] | None = None) -> tuple[Path, dict]:
    """The passing verify report whose hashes match ``folder`` now, from ``reports`` or beside the folder (its
    parent's ``*.json`` and ``*/report.json``, where ``scripts/ci_parity.sh`` leaves one)."""
    candidates = [Path(p) for p in reports] if reports else sorted(
        {*folder.parent.glob("*.json"), *folder.parent.glob("*/report.json")}
    )  # fmt: skip
    current = fingerprint(folder)
    stale, failing = [], []
    for path in candidates:
        report = _load_report(path, explicit=bool(reports))
        if report is None:
            continue
        converted = report.get("inputs", {}).get("converted", {})
        if converted.get("files") != current:
            if Path(converted.get("path", "")).resolve() == folder.resolve() or reports:
                stale.append(path)
            continue
        if report.get("verdict") != "pass":
            failing.append(path)
            continue
        return path, report
    if failing:
        raise SeqclsError(f"the verify report {failing[0]} says FAIL; fix the conversion, or --skip-verify")
    if stale:
        raise SeqclsError(
            f"the verify report {stale[0]} does not match the files of {folder} any more; run seqcls verify again"
        )
    raise SeqclsError(
        f"no passing verify report beside {folder}; run `seqcls verify {folder} --original SRC "
        f"--report {folder.parent / (folder.name + '.verify.json')}` first, or pass --skip-verify"
    )


def _load_report(path: Path, explicit: bool) -> dict | None:
    try:
        if path.stat().st_size > REPORT_MAX_BYTES:
            return None
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        if explicit:
            raise SeqclsError(f"--report {path} is not a readable JSON file") from None
        return None
    if isinstance(report, dict) and report.get("tool") == "seqcls" and "inputs" in report:
        return report
    if explicit:
        raise SeqclsError(f"--report {path} is not a seqcls verify report")
    return None


def _token(hub: str) -> tuple[str | None, str]:
    if hub == "hf":
        from huggingface_hub import get_token

        token = get_token()
        source = "environment (HF_TOKEN)" if os.environ.get("HF_TOKEN") else "huggingface_hub login store"
    else:
        try:
            from modelscope_hub.config import get_default_config
        except ImportError:
            return None, MODELSCOPE_MISSING
        token = get_default_config().token
        source = "environment (MODELSCOPE_API_TOKEN)" if os.environ.get("MODELSCOPE_API_TOKEN") else "modelscope login"
    return (token, source) if token else (None, "none")


def _files(folder: Path, card: str, names: list[str]) -> list[dict]:
    """Every file the upload sends, the card as it will be; a link inside the folder as the file it points to."""
    data = card.encode("utf-8")
    rows = {CARD_FILE: {"name": CARD_FILE, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}}
    for name in names:
        if name != CARD_FILE:
            path = (folder / name).resolve()
            rows[name] = {"name": name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return [rows[name] for name in sorted(rows)]


def _allow_patterns(plan: PublishPlan) -> list[str]:
    """The planned files by exact name (both hubs match patterns with fnmatch, which ``glob.escape`` suits)."""
    return [glob.escape(f["name"]) for f in plan.files]


def _upload_hf(plan: PublishPlan, folder: Path, token: str) -> None:
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(plan.repo_id, private=plan.private, exist_ok=True)
    if plan.branch != DEFAULT_BRANCH["hf"]:
        api.create_branch(plan.repo_id, branch=plan.branch, exist_ok=True)
    api.upload_folder(
        repo_id=plan.repo_id,
        folder_path=folder,
        revision=plan.branch,
        commit_message="Upload a seqcls-converted, verified checkpoint",
        allow_patterns=_allow_patterns(plan),
        ignore_patterns=[".*", "**/.*"],
    )


def _upload_gguf(plan: PublishPlan, token: str) -> None:
    """Each GGUF file from where it lies, by exact name; a separate GGUF repo gets its card first."""
    if not plan.gguf:
        return
    if plan.hub == "hf":
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        repo = plan.gguf[0]["repo"]
        if repo != plan.repo_id:
            api.create_repo(repo, private=plan.private, exist_ok=True)
            api.upload_file(path_or_fileobj=plan.gguf_card.encode(), path_in_repo=CARD_FILE, repo_id=repo)
        for g in plan.gguf:
            api.upload_file(path_or_fileobj=g["path"], path_in_repo=g["name"], repo_id=repo,
                            revision=plan.branch if repo == plan.repo_id else None)  # fmt: skip
        return
    from modelscope.hub.api import HubApi

    api = HubApi(token=token)
    repo = plan.gguf[0]["repo"]
    if repo != plan.repo_id:
        api.create_repo(repo, visibility="private" if plan.private else "public", exist_ok=True)
        api.upload_file(path_or_fileobj=plan.gguf_card.encode(), path_in_repo=CARD_FILE, repo_id=repo)
    for g in plan.gguf:
        api.upload_file(path_or_fileobj=g["path"], path_in_repo=g["name"], repo_id=repo,
                        revision=plan.branch if repo == plan.repo_id else DEFAULT_BRANCH["modelscope"])  # fmt: skip


def _upload_modelscope(plan: PublishPlan, folder: Path, token: str) -> None:
    """ModelScope keeps its resume state in ``.ms_upload_cache`` inside the folder by default; it lives in a cache
    folder of ours instead, and a stray one is removed whatever happens."""
    from modelscope.hub.api import HubApi

    tracker = cache_root() / "ms-upload"
    tracker.mkdir(parents=True, exist_ok=True)
    stray = folder / MS_UPLOAD_CACHE
    try:
        api = HubApi(token=token)
        api.create_repo(plan.repo_id, visibility="private" if plan.private else "public", exist_ok=True)
        api.upload_folder(
            repo_id=plan.repo_id,
            folder_path=str(folder),
            revision=plan.branch,
            commit_message="Upload a seqcls-converted, verified checkpoint",
            allow_patterns=_allow_patterns(plan),
            ignore_patterns=[MS_UPLOAD_CACHE, ".*"],
            tracker_path=str(tracker / f"{plan.repo_id.replace('/', '--')}.json"),
        )
    finally:
        if stray.is_dir():
            shutil.rmtree(stray, ignore_errors=True)
        elif stray.exists():
            stray.unlink()


def _hub_name(hub: str) -> str:
    return "Hugging Face" if hub == "hf" else "ModelScope"


def _scrub(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text


def render_plan(plan: PublishPlan) -> str:
    from .report import markdown_table

    lines = [
        f"publish to {_hub_name(plan.hub)}: {plan.repo_id} (branch {plan.branch}, "
        f"{'private' if plan.private else 'public'})",
        f"verify report: {plan.report or 'none (--skip-verify)'}",
        f"credentials: {plan.credentials}",
        "",
        markdown_table(("file", "bytes", "sha256"), [(f["name"], f"{f['bytes']:,}", f["sha256"]) for f in plan.files]),
        "",
    ]
    if plan.gguf:
        lines += [
            markdown_table(("GGUF file", "bytes", "sha256", "to", "verify report"),
                           [(g["name"], f"{g['bytes']:,}", g["sha256"], g["repo"], g["report"]) for g in plan.gguf]),
            "",
        ]  # fmt: skip
    if plan.left_out:
        lines += [
            f"left out (not part of the checkpoint; --include GLOB adds one): {', '.join(plan.left_out)}",
            "",
        ]
    lines += [
        "card metadata:",
        json.dumps(plan.card_metadata, indent=2, ensure_ascii=False),
    ]
    lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)
