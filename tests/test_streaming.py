"""What keeps verify's memory flat as the pair set grows: pairs read again from their file instead of held, prompts
tokenized a chunk at a time and kept as digests, and large reports' rows streamed to a sidecar. (The memory itself
is measured by scripts/bench_verify_memory.py, not asserted here.)"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET

import pytest

from converter.errors import SeqclsError
from converter.pairs import MULTILINGUAL, Pair, PairFile, builtin_pairs, load_pair_set
from converter.recipes import QWEN3_RERANKER
from converter.reference import CHUNK, iter_official
from converter.verify.backends.base import load_tokenizer
from converter.verify.digests import PromptDigests
from converter.verify.outputs import write_junit


def test_prompt_digests_tell_equal_prompts_from_different_ones():
    prompts = [[1, 2, 3], [151643, 9693], [], [2**40, 5]]
    digests = PromptDigests.of(prompts)
    assert len(digests) == 4 and digests.tokens == 7 and digests.longest == 3 and list(digests.lengths) == [3, 2, 0, 2]
    changed = PromptDigests.of([[1, 2, 3], [151643, 2152], [], [5, 2**40]])
    assert digests.mismatches(changed) == [1, 3] and digests.mismatches(PromptDigests.of(prompts)) == []
    assert digests.select([3, 0]) == PromptDigests.of([prompts[3], prompts[0]])
    assert PromptDigests.from_json(json.loads(json.dumps(digests.to_json()))) == digests
    assert digests.key() == PromptDigests.of(prompts).key() != changed.key()
    seen = PromptDigests()
    assert list(seen.recording(iter(prompts))) == prompts and seen == digests


def test_a_jsonl_pair_file_is_read_again_not_held(tmp_path):
    """Byte offsets survive multibyte text, blank lines and CRLF; a file changed after loading is refused."""
    pairs = [*MULTILINGUAL, Pair("q", "d", "an instruction", "7", "doc-1")]
    path = tmp_path / "pairs.jsonl"
    fields = ("query", "document", "instruction", "query_id", "document_id")
    lines = [json.dumps({f: getattr(p, f) for f in fields}, ensure_ascii=False) for p in pairs]
    path.write_text("\n\n".join(lines[:3]) + "\r\n" + "\n".join(lines[3:]) + "\n", encoding="utf-8")
    loaded = load_pair_set(path).pairs
    assert isinstance(loaded, PairFile) and len(loaded) == len(pairs)
    assert list(loaded) == pairs and list(loaded) == pairs, "each pass reads the file again"
    assert loaded[-1] == pairs[-1] and loaded[3] == pairs[3] and loaded[1:3] == pairs[1:3]
    os.utime(path, ns=(0, 0))
    with pytest.raises(SeqclsError, match="changed while it was being verified; run verify again"):
        list(loaded)


def test_official_ids_are_the_same_tokenized_a_chunk_at_a_time(original):
    """Each piece is tokenized for a chunk of pairs in one call: across a chunk's edge the ids must be those of
    tokenizing every piece alone, as the family's reference code does."""
    tokenizer = load_tokenizer(original("tied-fp32-single"))
    pairs = (builtin_pairs("a long document " * 50) * 12)[: CHUNK + 20]
    one_by_one = [
        [i for piece in QWEN3_RERANKER.render_pieces(p.query, p.document, p.instruction)
         for i in tokenizer.encode(piece, add_special_tokens=False)]
        for p in pairs
    ]  # fmt: skip
    assert list(iter_official(tokenizer, QWEN3_RERANKER, iter(pairs))) == one_by_one


def test_junit_of_a_sidecar_report_names_the_failures_not_every_pair(tmp_path):
    deltas = [0.0] * 50_000
    deltas[3], deltas[40_000] = 0.5, 0.25
    report = {
        "backend": "transformers", "atol": 1e-4, "pair_count": 50_000, "reference": None,
        "metrics": {"endpoints": {"score": {"failed_pairs": [3, 40_000], "deltas": deltas}}},
        "token_ids": {"mismatched_pairs": []},
    }  # fmt: skip
    write_junit(report, tmp_path / "j.xml")
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("4", "3")
    names = [case.get("name") for case in suite.iter("testcase")]
    assert names == ["50000 pairs", "pair 3", "pair 40000", "prompt token ids"]
    assert "2 pairs outside 1e-04" in ET.tostring(suite, encoding="unicode")
