"""The two facts the converter needs from a tokenizer: the label token ids and the pad id.

It reads ``tokenizer.json``, the same file transformers and vLLM load, so the ids are the ones the model sees at
serving time; it costs neither torch nor transformers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import msgspec

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
    path = Path(folder) / TOKENIZER_FILE
    if not path.is_file():
        raise SeqclsError(f"{folder} has no {TOKENIZER_FILE}; copy the model's tokenizer files into it")
    table = _TokenTable(path)
    label_ids = tuple(table.single_token_id(t) for t in label_tokens)
    pad_id = _pad_token_id(table, tokenizer_config or {}, config)
    pad_token = table.id_to_token(pad_id)
    if pad_token is None:
        raise SeqclsError(f"pad_token_id {pad_id} is not in {path}; fix pad_token_id in config.json")
    return Vocabulary(label_ids=label_ids, pad_token_id=pad_id, pad_token=pad_token)


class _Model(msgspec.Struct):
    vocab: dict[str, int] | list
    type: str = "BPE"


class _TokenizerFile(msgspec.Struct):
    """The parts of ``tokenizer.json`` the table needs. Decoding into these skips the rest (the BPE merges, most of a
    Qwen file) unbuilt: 0.07 s for the test fixtures' 19 MB file, where ``json.loads`` of all of it took 0.4-0.5 s,
    most of a tiny model's conversion."""

    model: _Model
    added_tokens: list | None = None


class _TokenTable:
    """Token string <-> id, as ``tokenizers``' ``token_to_id``/``id_to_token`` answer it: added tokens, then the
    model's vocabulary. Read from the JSON alone, because building the whole tokenizer (its BPE merges) took most of
    the converter's time and memory; the ``tokenizers`` library itself is loaded only to encode a label that is
    not a vocabulary entry, to say what it encodes to."""

    KNOWN_MODELS = ("BPE", "WordPiece", "WordLevel", "Unigram")

    def __init__(self, path: Path):
        self.path = path
        try:
            data = msgspec.json.decode(path.read_bytes(), type=_TokenizerFile)
        except (OSError, msgspec.MsgspecError) as e:
            raise SeqclsError(f"{path} is not a readable tokenizer ({type(e).__name__}: {e}); re-download it") from None
        kind, vocab, added = data.model.type, data.model.vocab, data.added_tokens or []
        if kind not in self.KNOWN_MODELS:
            raise SeqclsError(f"{path} is not a readable tokenizer (model type {kind!r}); re-download it")
        pieces = vocab.items() if isinstance(vocab, dict) else ((entry[0], i) for i, entry in enumerate(vocab))
        self.ids = dict(pieces)
        self.ids |= {t["content"]: t["id"] for t in added if isinstance(t, dict) and "content" in t and "id" in t}

    def token_to_id(self, token: str) -> int | None:
        return self.ids.get(token)

    def id_to_token(self, token_id: int) -> str | None:
        return next((t for t, i in self.ids.items() if i == token_id), None)

    def single_token_id(self, token: str) -> int:
        """Labels must be vocabulary entries: vLLM's ``classifier_from_token`` looks them up as such, so a label
        that merely encodes to one token (``" yes"`` to ``"Ġyes"``) would pick another row there."""
        token_id = self.token_to_id(token)
        if token_id is not None:
            return token_id
        from tokenizers import Tokenizer

        try:
            encoding = Tokenizer.from_file(str(self.path)).encode(token, add_special_tokens=False)
        except Exception as e:  # the Rust library raises its own exception type for any parse error
            raise SeqclsError(f"{self.path} is not a readable tokenizer ({str(e).splitlines()[0]})") from None
        if len(encoding.ids) != 1:
            raise SeqclsError(
                f"label token {token!r} is {len(encoding.ids)} tokens in this tokenizer, not one; "
                "a classifier head needs single-token labels"
            )
        raise SeqclsError(
            f"label token {token!r} is not a vocabulary entry; it encodes to the entry {encoding.tokens[0]!r}: "
            "pass that spelling (vLLM looks labels up as entries)"
        )


def _pad_token_id(table: _TokenTable, tokenizer_config: dict, config: dict) -> int:
    pad = tokenizer_config.get("pad_token")
    if isinstance(pad, dict):
        pad = pad.get("content")
    if isinstance(pad, str) and table.token_to_id(pad) is not None:
        return table.token_to_id(pad)
    if type(config.get("pad_token_id")) is int:
        return config["pad_token_id"]
    raise SeqclsError(
        f"neither {TOKENIZER_CONFIG} nor config.json defines a pad token; batched sequence classification "
        "needs one, add pad_token to tokenizer_config.json"
    )
