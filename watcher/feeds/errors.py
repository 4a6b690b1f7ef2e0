"""Typed errors of the feed layer.

LiqwatchError (state.errors)
 └── FeedError          something a venue sent that the feeds refuse
      ├── FrameError    a whole frame that cannot be parsed (not JSON, wrong shape)
      └── PriceRejected one mark refused (bad price, unknown symbol, out of order)

Each carries a short, stable ``reason`` code: it is the key of the rejection
counters and of the ``reason`` field in logs, so never reword an existing one.
"""

from __future__ import annotations

from typing import Literal

from state.errors import LiqwatchError

FrameReason = Literal["not_json", "bad_shape", "missing", "bad_type", "bad_ts"]

RejectReason = Literal[
    # the price grammar
    "missing",
    "bad_type",
    "empty",
    "too_long",
    "not_ascii",
    "nan",
    "infinity",
    "negative",
    "zero",
    "exponent",
    "syntax",
    "too_many_digits",
    "out_of_range",
    # the rest of a mark
    "bad_symbol",
    "bad_ts",
    # a delta of a venue that sends snapshot + deltas, before this connection's snapshot
    "no_snapshot",
    # stamped further ahead of our wall clock than the feed's max_ahead
    "future_ts",
    # the mark book
    "unknown_symbol",
    "stale_ts",
    "duplicate_ts",
]

# A raw value is quoted in messages only this far: a 5,000-digit price must not
# become a 5,000-character log line.
_QUOTE_LIMIT = 40


def quote(raw: object) -> str:
    """Return a bounded repr of ``raw`` for an error message."""
    text = repr(raw)
    if len(text) > _QUOTE_LIMIT:
        return f"{text[:_QUOTE_LIMIT]}...({len(text)} chars)"
    return text


class FeedError(LiqwatchError):
    """Refuse something a venue sent; ``reason`` is the stable code counted and logged."""

    reason: str

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class FrameError(FeedError):
    """Refuse a whole frame that cannot be parsed."""

    reason: FrameReason

    def __init__(self, reason: FrameReason, detail: str = "") -> None:
        super().__init__(reason, detail)


class PriceRejected(FeedError):
    """Refuse one mark; ``symbol`` is the venue symbol when it is known."""

    reason: RejectReason

    def __init__(
        self, reason: RejectReason, detail: str = "", *, symbol: str | None = None
    ) -> None:
        super().__init__(reason, detail)
        self.symbol = symbol
