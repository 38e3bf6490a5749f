"""The card's usage sections per loader: vLLM, vllm-ascend, sentence-transformers and transformers."""

from __future__ import annotations

from ..templates import SCORE_TEMPLATE_FILE
from .facts import CardFacts
from .references import local_copy
from .vision import multimodal_usage


def usage(f: CardFacts, ref: str) -> str:
    """``## Usage``: serving with vLLM and vllm-ascend, then the Python loaders."""
    r = f.recipe
    model_dir, download = local_copy(f, ref)
    download = f"{download}\n" if download else ""
    template_flag = f" --chat-template {model_dir}/{SCORE_TEMPLATE_FILE}" if r.has_prompt else ""
    return f"""## Usage

### vLLM (GPU, CPU)

```bash
{download}vllm serve {model_dir} --runner pooling --dtype {f.dtype} --max-model-len {f.max_length}{template_flag}
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
{_python_usage(f, ref)}"""


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


def _python_usage(f: CardFacts, ref: str) -> str:
    """The sentence-transformers and transformers snippets (the tests run them), for single-label checkpoints with a
    prompt format: without one the pairs need the user's own formatting."""
    r = f.recipe
    if r.num_labels != 1:
        return ""
    if not r.has_prompt:
        return _generic_st_usage(ref)
    if r.multimodal:
        return multimodal_usage(f, ref)
    prompt_hint = ""
    if r.takes_instruction:
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
{_long_documents(f)}
"""


def _long_documents(f: CardFacts) -> str:
    """What each loader does with a pair over the reference's length, and how to get the reference's score."""
    n = f"{f.max_length:,}"
    return f"""
### Long documents

The family's reference cuts a pair whose prompt passes {n} tokens by its **document**, keeping the instruction,
the query and the prompt's end (the question the head reads). sentence-transformers (6.3 or newer) does the same
with this checkpoint (its tokenizer's `model_max_length` is {n}). vLLM, with the command above, and llama-server,
as `seqcls serve` starts it, refuse a longer pair; the transformers snippet above scores it whole. For the
reference's score, cut the document first: `converter.truncation.cut_document` in seqcls. Never truncate the whole
prompt (`truncation=True`, vLLM's `truncate_prompt_tokens`): that cuts its end."""
