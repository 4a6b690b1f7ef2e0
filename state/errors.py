"""Typed errors of the state layer.

LiqwatchError
 ├── MarginError        bad parameters or inputs to the margin math
 ├── InputError         an input-stream message that cannot be applied
 └── StoreError         Redis holds something the store cannot read
"""

from __future__ import annotations


class LiqwatchError(Exception):
    """Base of every error liqwatch raises on purpose."""


class MarginError(LiqwatchError, ValueError):
    """Reject a margin computation whose parameters or inputs are invalid."""


class InputError(LiqwatchError, ValueError):
    """Reject an input message; ``reason`` is what goes to the dead-letter stream."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StoreError(LiqwatchError):
    """Report state in Redis that does not match what the store wrote."""
