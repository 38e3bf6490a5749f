"""Usage of a multimodal (Qwen3-VL) conversion: image requests to vLLM, and transformers' base model with the head,
since transformers has no sequence-classification class for it."""

from __future__ import annotations

from ..templates import SCORE_TEMPLATE_FILE
from .facts import CardFacts
from .references import local_copy


def multimodal_usage(f: CardFacts, ref: str) -> str:
    """transformers has no sequence-classification class for Qwen3-VL: its base model and this head score as Qwen's
    own script does (the tests run this snippet)."""
    r = f.recipe
    model_dir, download = local_copy(f, ref)
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
