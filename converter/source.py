"""Where a checkpoint comes from: a local folder, a Hugging Face id, or a ModelScope id.

Hub sources are fetched with each library's own download function, limited to what conversion reads (never
pickle weights), into that library's cache. The cache keeps files as symlinks into a blob store beside the
snapshot, so ``Source.root`` is the repo's cache folder: links may point anywhere under it, and hard links made
from the snapshot land on the blobs.

    ./Qwen3-Reranker-8B                        local folder
    Qwen/Qwen3-Reranker-8B[@revision]          Hugging Face (ModelScope with --hub modelscope or
                                               VLLM_USE_MODELSCOPE=True, as vLLM does)
    modelscope:Qwen/Qwen3-Reranker-8B[@rev]    ModelScope
    hf:Qwen/Qwen3-Reranker-8B[@rev]            Hugging Face, whatever VLLM_USE_MODELSCOPE says
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import SeqclsError

DOWNLOAD_PATTERNS = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "*.jinja",
    "chat_template.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "processor_config.json",
    "model.safetensors.index.json",
    "*.safetensors",
    "README.md",
    "LICENSE*",
    "NOTICE",
]
"""What conversion reads, plus the card for the license. ``*.bin`` and other pickles are never fetched."""
HUBS = ("hf", "modelscope")
REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Source:
    spec: str
    """What the user passed; safe to record in outputs (never expanded to an absolute path)."""
    folder: Path
    root: Path
    """Symlinks in ``folder`` may lead anywhere under this (a hub cache keeps its blobs beside the snapshot)."""
    hub: str | None = None
    repo_id: str | None = None
    revision: str | None = None

    @property
    def name(self) -> str:
        return self.repo_id.split("/")[-1] if self.repo_id else self.folder.resolve().name


def resolve_source(spec: str | Path, hub: str | None = None, offline: bool = False) -> Source:
    text = str(spec)
    folder = Path(text).expanduser()
    if folder.is_dir():
        return Source(spec=text, folder=folder, root=folder)
    if folder.exists():
        raise SeqclsError(f"{spec} is a file; pass the checkpoint folder that holds config.json")
    hub, repo_id, revision = parse_hub_spec(text, hub)
    if repo_id is None:
        raise SeqclsError(f"{spec} does not exist; pass a local folder or a hub id like Qwen/Qwen3-Reranker-8B[@rev]")
    offline = offline or os.environ.get("HF_HUB_OFFLINE", "").lower() in TRUE
    fetch = _from_modelscope if hub == "modelscope" else _from_hugging_face
    folder, root = fetch(repo_id, revision, offline)
    return Source(spec=text, folder=folder, root=root, hub=hub, repo_id=repo_id, revision=revision)


def parse_hub_spec(text: str, hub: str | None = None) -> tuple[str, str | None, str | None]:
    """(hub, repo id, revision) of ``[hf:|modelscope:]ORG/NAME[@REV]``; repo id None when it is not one."""
    if hub is not None and hub not in HUBS:
        raise SeqclsError(f"--hub must be one of {', '.join(HUBS)}")
    prefix, sep, rest = text.partition(":")
    if sep and prefix in HUBS:
        hub, text = prefix, rest
    elif hub is None:
        hub = "modelscope" if os.environ.get("VLLM_USE_MODELSCOPE", "").lower() in TRUE else "hf"
    repo_id, _, revision = text.partition("@")
    if not REPO_ID.match(repo_id):
        return hub, None, None
    return hub, repo_id, revision or None


def _from_hugging_face(repo_id: str, revision: str | None, offline: bool) -> tuple[Path, Path]:
    from huggingface_hub import errors as hf
    from huggingface_hub import snapshot_download

    where = f"{repo_id}@{revision}" if revision else repo_id
    try:
        folder = Path(
            snapshot_download(repo_id, revision=revision, allow_patterns=DOWNLOAD_PATTERNS, local_files_only=offline)
        )
    except hf.GatedRepoError:
        raise SeqclsError(
            f"{repo_id} is gated: accept its terms on huggingface.co, then set HF_TOKEN or run `hf auth login`"
        ) from None
    except hf.RepositoryNotFoundError:
        raise SeqclsError(
            f"Hugging Face has no repo {repo_id} (or it is private: set HF_TOKEN); check the id"
        ) from None
    except hf.RevisionNotFoundError:
        raise SeqclsError(f"{repo_id} has no revision {revision!r}; pass a branch, tag or commit that exists") from None
    except hf.LocalEntryNotFoundError:
        why = "offline mode is on (HF_HUB_OFFLINE)" if offline else "the Hub cannot be reached"
        raise SeqclsError(
            f"{where} is no local folder, not in the local Hugging Face cache, and {why}; check the path or download it"
        ) from None
    except hf.HfHubHTTPError as e:
        raise SeqclsError(f"Hugging Face refused {where}: {_first_line(e)}") from None
    except OSError as e:
        raise SeqclsError(f"cannot download {where} from Hugging Face: {_first_line(e)}") from None
    return folder, snapshot_root(folder)


def _from_modelscope(repo_id: str, revision: str | None, offline: bool) -> tuple[Path, Path]:
    """ModelScope raises its own error types from some paths and ``requests`` errors from its compat layer."""
    try:
        import requests
        from modelscope.hub.snapshot_download import snapshot_download
        from modelscope_hub import errors as ms
    except ImportError:
        raise SeqclsError("ModelScope sources need the modelscope package: pip install 'seqcls[hub]'") from None
    where = f"modelscope:{repo_id}" + (f"@{revision}" if revision else "")
    missing = f"ModelScope has no {where} (or no such revision); check the id and revision"
    denied = f"ModelScope denied {where}: set MODELSCOPE_API_TOKEN for a private or gated repo"
    try:
        folder = Path(
            snapshot_download(repo_id, revision=revision, allow_patterns=DOWNLOAD_PATTERNS, local_files_only=offline)
        )
    except ms.CacheNotFound:
        raise SeqclsError(f"{where} is not in the local ModelScope cache and offline mode is on") from None
    except (ms.AuthenticationError, ms.PermissionDeniedError):
        raise SeqclsError(denied) from None
    except ms.NotExistError:
        raise SeqclsError(missing) from None
    except requests.HTTPError as e:
        status = getattr(e.response, "status_code", None)
        message = {404: missing, 401: denied, 403: denied}.get(status, f"ModelScope refused {where} (HTTP {status})")
        raise SeqclsError(message) from None
    except (ms.NetworkError, requests.ConnectionError, requests.Timeout) as e:
        raise SeqclsError(f"cannot reach ModelScope for {where}: {_first_line(e)}") from None
    except (ms.HubError, requests.RequestException) as e:
        raise SeqclsError(f"ModelScope refused {where}: {_first_line(e)}") from None
    return folder, snapshot_root(folder)


def snapshot_root(snapshot: Path) -> Path:
    """The repo's cache folder (``.../snapshots/<rev>`` -> its grandparent), where the blobs live."""
    return snapshot.parent.parent if snapshot.parent.name == "snapshots" else snapshot


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
