"""Long documents, cut as the reference cuts them: the document loses its end, the instruction, the query and the
prompt's suffix (the yes/no question the head reads) are kept whole.

An engine that cuts the prompt's end instead scores a prompt the model never saw; one that refuses gives an error
where a score was expected. A client that cannot rely on its engine cuts the document here first, as text, and
sends the result: the engine then gets a prompt that fits."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .errors import SeqclsError
from .pairs import Pair
from .recipes import Recipe
from .reference import MAX_LENGTH


def check_max_length(max_length: int, option: str = "--max-length") -> int:
    if max_length <= 0:
        raise SeqclsError(f"{option} must be a positive number of tokens, not {max_length}")
    return max_length


def template_length(tokenizer, recipe: Recipe, query: str = "", instruction: str | None = None) -> int:
    """Tokens the prompt takes with an empty document: what no document can have."""
    bos = 1 if recipe.bos else 0
    if not recipe.has_prompt:
        return bos + _length(tokenizer, query)
    pieces = recipe.render_pieces(query, "", instruction)
    pieces[recipe.document_piece] = recipe.document_head(query, instruction)
    return bos + sum(_length(tokenizer, p) for p in pieces)


def check_fits_template(tokenizer, recipe: Recipe, max_length: int, option: str = "--max-length") -> None:
    """``max_length`` must leave room for a document after the template (with the default instruction)."""
    own = template_length(tokenizer, recipe)
    if check_max_length(max_length, option) <= own:
        raise SeqclsError(
            f"{option} {max_length} is not longer than the {recipe.title} prompt's own {own} tokens; "
            f"give at least {own + 1}"
        )


def cut_document(
    tokenizer, recipe: Recipe, query: str, document: str, instruction: str | None = None, max_length: int = MAX_LENGTH
) -> str:
    """``document`` cut so that the pair's prompt fits ``max_length`` tokens as the reference's does: the document's
    piece keeps its first tokens and loses the rest, and the text returned is exactly those tokens' characters. Where
    the reference keeps the document whole, it comes back unchanged. A query (with its instruction and the
    template) that leaves no room for any document is an error: the reference would score a prompt without one."""
    check_max_length(max_length)
    if not recipe.has_prompt:
        raise SeqclsError(f"{recipe.title} has no known prompt format, so where its reference cuts is not known")
    own, head = template_length(tokenizer, recipe, query, instruction), recipe.document_head(query, instruction)
    budget = max_length - own + _length(tokenizer, head)
    piece = recipe.render_pieces(query, document, instruction)[recipe.document_piece]
    encoded = tokenizer(piece, add_special_tokens=False, return_offsets_mapping=True)
    if len(encoded["input_ids"]) <= budget:
        return document
    if max_length <= own:
        raise SeqclsError(
            f"the query and the prompt around it take {own} tokens, leaving no room for a document in {max_length}; "
            "shorten the query or raise the length"
        )
    start, end = len(head), encoded["offset_mapping"][budget - 1][1]
    while end > start:
        if _length(tokenizer, piece[:end]) <= budget:
            return document[: end - start]
        end = max((e for _, e in encoded["offset_mapping"] if e < end), default=start)
    return ""


def document_token_limit(
    tokenizer, recipe: Recipe, query: str, instruction: str | None = None, max_length: int = MAX_LENGTH
) -> int:
    """A ``max_tokens_per_doc`` for vLLM's ``/score`` and ``/v1/rerank`` with this query: a prompt cut by it always
    fits ``max_length`` and keeps its suffix. vLLM counts a document's own tokens, the reference counts them after the
    template's text before it (``<Document>: ``), where the first word takes the space: so vLLM's cut falls a token
    or two before the reference's for most documents (measured on the real vocabulary). ``cut_document`` is exact."""
    own = template_length(tokenizer, recipe, query, instruction)
    if max_length - own <= 0:
        raise SeqclsError(f"the query and the prompt around it take {own} tokens, leaving none of {max_length}")
    return max_length - own


def fit_pairs(tokenizer, recipe: Recipe, pairs: Sequence[Pair], max_length: int) -> tuple[list[Pair], list[int]]:
    """The pairs as a client sends them to an engine: each one whose prompt would pass ``max_length`` with its
    document cut by ``cut_document``; and the indices of those. A pair whose text has fewer bytes than the room the
    template leaves cannot be over (a token is at least one byte) and is not tokenized. A multimodal family and one
    without a known prompt format are sent as they are (their references refuse or join the pieces)."""
    if recipe.multimodal or not recipe.has_prompt:
        return list(pairs), []
    room = max_length - template_length(tokenizer, recipe)
    sent, cut = [], []
    for i, p in enumerate(pairs):
        if len(f"{p.query}{p.document}{p.instruction or ''}".encode()) < room:
            sent.append(p)
            continue
        try:
            document = cut_document(tokenizer, recipe, p.query, p.document, p.instruction, max_length)
        except SeqclsError as e:
            raise SeqclsError(f"pair {i}: {e}") from None
        if document != p.document:
            p = dataclasses.replace(p, document=document)
            cut.append(i)
        sent.append(p)
    return sent, cut


def _length(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])
