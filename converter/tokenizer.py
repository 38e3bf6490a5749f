"""The two facts the converter needs from a tokenizer: the label token ids and the pad id.

It reads ``tokenizer.json`` with the ``tokenizers`` library, the same file transformers and vLLM load, so the ids
are the ones the model sees at serving time, and loading it costs neither torch nor transformers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import SeqclsError

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"


@dataclass(frozen=True)
class Vocabulary:
    label_ids: tuple[int, ...]
    pad_token_id: int
    pad_token: str


def read_tokenizer_config(folder: Path) -> dict | None:
    path = Path(folder) / TOKENIZER_CONFIG
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise SeqclsError(f"{path} is not valid JSON ({e}); fix or re-download it") from None
    if not isinstance(data, dict):
        raise SeqclsError(f"{path} must hold a JSON object; fix or re-download it")
    return data


def read_vocabulary(
    folder: Path, label_tokens: tuple[str, ...], config: dict, tokenizer_config: dict | None
) -> Vocabulary:
    from tokenizers import Tokenizer

    path = Path(folder) / TOKENIZER_FILE
    if not path.is_file():
        raise SeqclsError(f"{folder} has no {TOKENIZER_FILE}; copy the model's tokenizer files into it")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust library raises its own exception type for any parse error
        raise SeqclsError(f"{path} is not a readable tokenizer ({str(e).splitlines()[0]}); re-download it") from None
    label_ids = tuple(_single_token_id(tok, t) for t in label_tokens)
    pad_id = _pad_token_id(tok, tokenizer_config or {}, config)
    pad_token = tok.id_to_token(pad_id)
    if pad_token is None:
        raise SeqclsError(f"pad_token_id {pad_id} is not in {path}; fix pad_token_id in config.json")
    return Vocabulary(label_ids=label_ids, pad_token_id=pad_id, pad_token=pad_token)


def _single_token_id(tok, token: str) -> int:
    token_id = tok.token_to_id(token)
    if token_id is not None:
        return token_id
    ids = tok.encode(token, add_special_tokens=False).ids
    if len(ids) != 1:
        raise SeqclsError(
            f"label token {token!r} is {len(ids)} tokens in this tokenizer, not one; "
            "a classifier head needs single-token labels"
        )
    return ids[0]


def _pad_token_id(tok, tokenizer_config: dict, config: dict) -> int:
    pad = tokenizer_config.get("pad_token")
    if isinstance(pad, dict):
        pad = pad.get("content")
    if isinstance(pad, str) and tok.token_to_id(pad) is not None:
        return tok.token_to_id(pad)
    if type(config.get("pad_token_id")) is int:
        return config["pad_token_id"]
    raise SeqclsError(
        f"neither {TOKENIZER_CONFIG} nor config.json defines a pad token; batched sequence classification "
        "needs one, add pad_token to tokenizer_config.json"
    )
