"""Built-in (query, document) pairs that look like real reranking traffic."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pair:
    query: str
    document: str
    instruction: str | None = None


SEED_PAIRS = (
    Pair("What is the capital of China?", "The capital of China is Beijing."),
    Pair(
        "Explain gravity",
        "Gravity is a force that attracts two bodies towards each other. It gives weight to physical objects "
        "and is responsible for the movement of planets around the sun.",
    ),
)

DEMO_PAIRS = (
    *SEED_PAIRS,
    Pair(
        "Which planet is known as the Red Planet?",
        "Mars, known for its reddish appearance, is often called the Red Planet.",
    ),
    Pair("Which planet is known as the Red Planet?", "Venus is often called Earth's twin because of its similar size."),
    Pair("北京有哪些著名景点？", "故宫、长城和颐和园是北京最著名的景点。"),
    Pair(
        "how to pad a batch for a causal LM",
        "Use left padding so the last position holds a real token.",
        "Given a programming question, retrieve passages that answer it",
    ),
    Pair("empty document", ""),
)
