"""Parity verification: score the same pairs through the original and the converted checkpoint, and compare."""

from .parity import VerifyOptions, verify

__all__ = ["VerifyOptions", "verify"]
