"""The card's opening sections: what was converted (the scoring formula, the facts table, how the head was computed)
and the prompt format."""

from __future__ import annotations

from ..recipes import FROM_2_WAY_SOFTMAX, Recipe
from ..report import markdown_table
from ..templates import SCORE_TEMPLATE_FILE, half_marks
from .facts import CardFacts


def what_was_converted(f: CardFacts) -> str:
    """The title, the scoring formula, ``## What was converted`` and ``## Prompt format``."""
    r = f.recipe
    lines, head, (label_text, how) = _formula(f)
    base = f.base_model or "the original checkpoint"
    labels = "one label" if r.num_labels == 1 else f"{r.num_labels} labels"
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
"""


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
    if r.calibration:
        return _calibrated_formula(f, tokens[0])
    if r.logit_score:
        lines = (
            f"original:  logit_{names}   at the last token (the family's score is the raw logit)\n"
            f"converted: score(h) = h · W[{names}] = logit_{names}"
        )
        how = (
            "The row is stored in float32, which holds the model's values exactly. vLLM and sentence-transformers "
            "apply a sigmoid\nto the logit, which keeps the ranking but not the family's published values; ask them "
            "for the logit (vLLM:\n`use_activation: false`; sentence-transformers: "
            "`activation_fn=torch.nn.Identity()`)."
        )
        return lines, f"rows `W[{ids}]`, float32, shape [1, {f.hidden_size}]", (", ".join(tokens), how)
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


def _calibrated_formula(f: CardFacts, token: str) -> tuple[str, str, tuple[str, str]]:
    """A family with a calibrated score: the head carries it (default) or the raw logit (``--raw-logit``)."""
    r = f.recipe
    name, (row,) = r.label_tokens[0], f.label_ids
    if not r.raw_logit:
        t = f"{r.temperature:g}"
        lines = (
            f"original:  p = sigmoid(logit_{name} / {t})   at the last token (the family's calibrated score)\n"
            f"converted: p = sigmoid(h · W[{name}] / {t}) = sigmoid(score(h))"
        )
        head = f"`fp32(W[{row}]) / {t}`, float32, shape [1, {f.hidden_size}]"
        how = (
            f"The row is stored in float32 divided by {t}, so the sigmoid that vLLM, sentence-transformers and "
            f"llama.cpp apply gives the calibrated score.\nCalibration: {r.calibration.source}. "
            "`seqcls convert --raw-logit` keeps the raw logit instead."
        )
        return lines, head, (token, how)
    lines = (
        f"original:  logit_{name}   at the last token (the raw logit; calibrated: {r.calibration.formula})\n"
        f"converted: score(h) = h · W[{name}] = logit_{name}"
    )
    head = f"`W[{row}]`, float32, shape [1, {f.hidden_size}]"
    how = (
        "Converted with `--raw-logit`: the checkpoint returns the raw logit. vLLM and sentence-transformers apply "
        f"a sigmoid to it, which is not the family's calibrated score ({r.calibration.formula}); ask them for the "
        "logit (vLLM: `use_activation: false`; sentence-transformers: `activation_fn=torch.nn.Identity()`).\n"
        f"Calibration: {r.calibration.source}."
    )
    return lines, head, (token, how)


def _prompt_section(r: Recipe) -> str:
    if not r.has_prompt:
        return (
            "No prompt format is known for this conversion (`seqcls convert --tokens/--method`), so the checkpoint "
            "carries no template. Format each pair exactly as the original model expects, or scores will be close "
            "to random."
        )
    instruction = ""
    if r.takes_instruction:
        default = f'defaults to "{r.default_instruction}"' if r.default_instruction else "is left out unless given"
        if r.instructed_query:
            default += " (without one, the query stands alone, untagged)"
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
{_formatted_input(r)} The one ambiguity: a raw part that itself opens and closes like a formatted one
({_marks(r)}) is taken as formatted.
{notes}"""


def _formatted_input(r: Recipe) -> str:
    """What the card says of input formatted by hand (its line breaks are the card's)."""
    if r.document_first:
        return (
            "Pairs already formatted by hand as the original's clients send them to vLLM (the prompt up to the query "
            "as\nthe query, the rest as the document, which vLLM joins) pass through unchanged, so existing clients "
            "keep working; a\nraw side beside a formatted one does not, as the document comes first."
        )
    return (
        "Queries and documents already formatted by hand this way (the query up to the document, and the document "
        "with\nthe rest, as the original's clients send them) pass through unchanged, so existing clients keep "
        "working; a mix of\nraw and formatted parts works too."
    )


def _marks(r: Recipe) -> str:
    """How a formatted query and document open and close, shortened, for one line of prose."""

    def shown(text: str) -> str:
        text = text.replace("\n", "\\n")
        return f"`{text[:30]}…`" if len(text) > 32 else f"`{text}`"

    halves = r.pieces[: r.document_from], r.pieces[r.document_from :]
    (q_open, q_close), (d_open, d_close) = map(half_marks, halves)

    def how(opening: str, closing: str) -> str:
        marks = [f"opens with {shown(opening)}"] if opening else []
        return " and ".join(marks + ([f"ends with {shown(closing)}"] if closing else []))

    return f"a query that {how(q_open, q_close)}, a document that {how(d_open, d_close)}"


def _visible(text: str) -> str:
    """Newlines shown as ``\\n`` at line ends, so the trailing ones of the suffix stay visible."""
    return text.replace("\n", "\\n\n").rstrip("\n")
