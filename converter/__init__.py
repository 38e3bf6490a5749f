"""seqcls: turn LLM-as-reranker checkpoints into sequence-classification checkpoints, and prove it exact."""

from .convert import convert
from .errors import SeqclsError

__all__ = ["SeqclsError", "convert"]
