"""``seqcls inspect``: what a checkpoint folder is (original reranker, converted, or neither) and whether it carries
what each loader needs, from headers and small files only."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from .card import CARD_FILE, read_state
from .contents import checkpoint_contents
from .errors import SeqclsError
from .io.checkpoint import open_checkpoint
from .package import CHAT_TEMPLATE_FILE
from .recipes import original_recipe, recipe_for_converted
from .report import markdown_table
from .templates import SCORE_TEMPLATE_FILE, score_template
from .tokenizer import read_tokenizer_config, read_vocabulary

ST_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


def inspect_checkpoint(path: str | Path, preset: str | None = None, include: tuple[str, ...] = ()) -> dict:
    """``preset`` names the family of an original whose name does not (as for ``convert``). A converted checkpoint
    is also checked for what ``publish`` would refuse (links out of the folder) or leave out (stray files, unless
    ``include`` names them)."""
    folder = Path(path)
    ckpt = open_checkpoint(folder)
    config = ckpt.config
    archs = config.get("architectures") or []
    converted = recipe_for_converted(config)
    original = None if converted else original_recipe(config, folder, preset_name=preset)
    recipe = converted or original
    kind = "converted" if converted and "score.weight" in ckpt.tensors else "original" if original else "neither"
    info: dict = {
        "path": str(folder),
        "kind": kind,
        "family": recipe.name if recipe else None,
        "architectures": archs,
        "tied": recipe.tied(config) if recipe else bool(config.get("tie_word_embeddings", False)),
        "dtype": config.get("dtype") or config.get("torch_dtype"),
        "tensor_dtypes": dict(Counter(t.dtype for t in ckpt.tensors.values())),
        "shards": [
            {"name": f.path.name, "bytes": f.path.stat().st_size, "tensors": len(f.tensors)} for f in ckpt.files
        ],
        "total_bytes": sum(f.path.stat().st_size for f in ckpt.files),
        "labels": None,
        "head": None,
        "score_template": (folder / SCORE_TEMPLATE_FILE).is_file(),
        "chat_template_is_score_template": None,
        "sentence_transformers": all((folder / f).is_file() for f in ST_FILES),
        "card": (folder / CARD_FILE).is_file(),
        "verified": [],
        "left_out": [],
        "problems": [],
    }
    if recipe is None:
        return info
    if kind == "converted":
        info["score"] = recipe.score_statement()
    try:
        vocab = read_vocabulary(folder, recipe.label_tokens, config, read_tokenizer_config(folder))
        info["labels"] = [{"token": t, "id": i} for t, i in zip(recipe.label_tokens, vocab.label_ids)]
    except SeqclsError as e:
        info["problems"].append(str(e))
    head_name = (
        recipe.score_tensor if kind == "converted" else recipe.embed_tensor if info["tied"] else recipe.head_tensor
    )
    if head := ckpt.tensors.get(head_name):
        info["head"] = {"tensor": head.name, "dtype": head.dtype, "shape": list(head.shape), "file": head.path.name}
    elif kind != "neither":
        info["problems"].append(f"no {head_name} in the weights")
    if kind == "converted":
        _check_converted(folder, config, recipe, info)
        contents = checkpoint_contents(folder, include)
        info["left_out"] = contents.left_out
        info["problems"] += [f"{name} links outside the folder: publish refuses it" for name in contents.outside_links]
    return info


def _check_converted(folder: Path, config: dict, recipe, info: dict) -> None:
    chat = folder / CHAT_TEMPLATE_FILE
    if recipe.has_prompt and not recipe.multimodal:
        expected = score_template(recipe, for_tokenizer=True)
        info["chat_template_is_score_template"] = chat.is_file() and chat.read_text(encoding="utf-8") == expected
    if info["card"]:
        info["verified"] = read_state(folder).get("parity", [])
    problems = info["problems"]
    if left := [k for k in recipe.drop_config_keys if k in config]:
        problems.append(f"config.json still has {', '.join(left)}: vLLM would convert again at load time")
    if config.get("use_sep_token") is not False:
        problems.append("config.json lacks use_sep_token: false (vLLM defaults it to true)")
    if type(config.get("pad_token_id")) is not int:
        problems.append("config.json has no pad_token_id: transformers cannot score batches")
    labels = recipe.num_labels
    if (head := info["head"]) and (head["dtype"] != "F32" or head["shape"][:1] != [labels]):
        problems.append(f"score.weight is {head['dtype']} {head['shape']}; seqcls writes F32 [{labels}, hidden]")
    if recipe.has_prompt and not info["score_template"]:
        problems.append(f"no {SCORE_TEMPLATE_FILE}: vLLM would score raw pairs without the prompt format")


def render(info: dict) -> str:
    labels = ", ".join(f"{x['token']!r} = {x['id']}" for x in info["labels"] or []) or "n/a"
    head = info["head"]
    verified = ", ".join(f"{r['backend']}/{r['device']}/{r['dtype']} {r['verdict']}" for r in info["verified"]) or "no"
    rows = [
        ("kind", info["kind"] + (f" ({info['family']})" if info["family"] else "")),
        ("architectures", ", ".join(info["architectures"]) or "none"),
        ("label tokens", labels),
        ("head", f"{head['tensor']} {head['dtype']} {head['shape']} in {head['file']}" if head else "n/a"),
        *([("score", info["score"])] if info.get("score") else []),
        ("tied embeddings", "yes" if info["tied"] else "no"),
        ("dtype", f"{info['dtype']} ({', '.join(f'{k} x{v}' for k, v in info['tensor_dtypes'].items())})"),
        ("weights", f"{len(info['shards'])} file(s), {info['total_bytes'] / 1e9:.2f} GB"),
        ("score template", _yes(info["score_template"])),
        ("chat template = score template", _yes(info["chat_template_is_score_template"])),
        ("sentence-transformers files", _yes(info["sentence_transformers"])),
        ("model card", _yes(info["card"])),
        ("verified", verified),
    ]
    shards = markdown_table(
        ("shard", "bytes", "tensors"), [(s["name"], f"{s['bytes']:,}", str(s["tensors"])) for s in info["shards"]]
    )
    problems = "\n".join(
        [f"problem: {p}" for p in info["problems"]]
        + [
            f"problem: stray file {name}: not part of the checkpoint; publish leaves it out"
            for name in info["left_out"]
        ]
    )
    return "\n\n".join(x for x in (f"## {info['path']}", markdown_table(("", ""), rows), shards, problems) if x)


def _yes(value: bool | None) -> str:
    return "n/a" if value is None else "yes" if value else "no"
