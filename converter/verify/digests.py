"""Prompt token ids as a length and a digest per prompt.

Parity needs two things of each prompt's ids: are they the same on both paths (and as the official formatting), and
how many tokens there are. A 16-byte digest and a length answer both in 20 bytes a prompt; the ids themselves, kept
as Python ints, take about 36 bytes a token and made verify's memory grow with the pair set.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable, Iterator, Sequence

SIZE = 16


def _digest(ids: Sequence[int]) -> bytes:
    return hashlib.blake2b(array("q", ids).tobytes(), digest_size=SIZE).digest()


class PromptDigests:
    """Append-only, in pair order. Two prompts are the same when their digests are."""

    def __init__(self, lengths: Iterable[int] = (), digests: bytes = b"") -> None:
        self.lengths = array("I", lengths)
        self._digests = bytearray(digests)
        if len(self._digests) != SIZE * len(self.lengths):
            raise ValueError("one digest per length")

    @classmethod
    def of(cls, prompts: Iterable[Sequence[int]]) -> PromptDigests:
        found = cls()
        for ids in prompts:
            found.add(ids)
        return found

    def add(self, ids: Sequence[int]) -> None:
        self.lengths.append(len(ids))
        self._digests += _digest(ids)

    def recording(self, prompts: Iterable[Sequence[int]]) -> Iterator[Sequence[int]]:
        """Passes ``prompts`` on, adding each as it goes by: a stream of ids is digested while it is scored."""
        for ids in prompts:
            self.add(ids)
            yield ids

    def __len__(self) -> int:
        return len(self.lengths)

    def digest(self, i: int) -> bytes:
        return bytes(self._digests[SIZE * i : SIZE * (i + 1)])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PromptDigests) and self.lengths == other.lengths and self._digests == other._digests

    def mismatches(self, other: PromptDigests) -> list[int]:
        """The prompts (by number) that differ, over the prompts both hold."""
        return [i for i in range(min(len(self), len(other))) if self.digest(i) != other.digest(i)]

    def select(self, indices: Iterable[int]) -> PromptDigests:
        chosen = list(indices)
        return PromptDigests((self.lengths[i] for i in chosen), b"".join(self.digest(i) for i in chosen))

    @property
    def tokens(self) -> int:
        return sum(self.lengths)

    @property
    def longest(self) -> int:
        return max(self.lengths, default=0)

    def key(self) -> str:
        """One sha256 over every prompt: how a whole set of prompts enters a cache key."""
        return hashlib.sha256(self.lengths.tobytes() + bytes(self._digests)).hexdigest()

    def to_json(self) -> dict:
        return {"lengths": self.lengths.tolist(), "digests": self._digests.hex()}

    @classmethod
    def from_json(cls, value: dict) -> PromptDigests:
        return cls(value["lengths"], bytes.fromhex(value["digests"]))
