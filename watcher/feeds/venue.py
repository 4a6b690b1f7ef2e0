"""What a venue module provides: URLs, subscribe frames and a pure frame parser.

A venue module owns one wire format and does no I/O: the connection task
(``watcher.feeds.client``) asks it what to send and hands it every frame it
receives. Adding a venue means adding one module with a class that
satisfies :class:`Venue` and registering it in ``watcher.feeds.VENUES``;
nothing downstream changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

import orjson

from state.models import MarkPrice
from watcher.feeds.errors import FrameError, PriceRejected
from watcher.feeds.prices import parse_price, parse_symbol, parse_venue_ts


@dataclass(frozen=True, slots=True)
class ParseResult:
    """What one frame said: marks, per-item rejections, and what to do about it.

    ``reply`` is a frame to send back now (an application-level pong);
    ``ack`` tells that a control request (a subscribe) was acknowledged;
    ``error`` is a venue's error reply, as text fit for a log field;
    ``reconnect`` asks for the connection to be closed and reopened now (a
    venue's notice of a coming restart: better a planned reconnect than a cut).
    A frame of a kind the feed did not ask for parses to an empty result.
    """

    marks: tuple[MarkPrice, ...] = ()
    rejects: tuple[PriceRejected, ...] = ()
    reply: str | None = None
    ack: bool = False
    error: str | None = None
    reconnect: bool = False


IGNORED = ParseResult()


class Venue(Protocol):
    """The contract every venue module meets; see the module docstring."""

    @property
    def name(self) -> str:
        """Name the venue in configs, logs and metrics."""
        ...

    @property
    def equal_ts_ok(self) -> bool:
        """Tell whether two different marks may carry the same venue timestamp."""
        ...

    @property
    def keepalive_interval(self) -> float | None:
        """Return seconds between client keepalives, or None if the venue needs none."""
        ...

    def url(self, base_url: str, symbols: Sequence[str]) -> str:
        """Return the URL to connect to for ``symbols`` (some venues put streams in it)."""
        ...

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        """Return the frames to send after connecting, in order."""
        ...

    def keepalive_message(self) -> str | None:
        """Return the client keepalive frame, or None."""
        ...

    def reset(self) -> None:
        """Forget per-connection parser state; called before each new connection."""
        ...

    def parse(self, frame: str | bytes, recv_ts: float) -> ParseResult:
        """Parse one frame received at monotonic ``recv_ts``; raise FrameError if unusable."""
        ...


WallClock = Callable[[], int]


def load_json(frame: str | bytes) -> object:
    """Decode one JSON frame or raise FrameError("not_json")."""
    try:
        return orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise FrameError("not_json", str(exc)) from None


def frame_ts(msg: dict[str, object], key: str = "ts") -> int:
    """Return a whole frame's millisecond timestamp or raise FrameError: no ts, no marks."""
    try:
        return parse_venue_ts(msg.get(key))
    except PriceRejected as exc:
        raise FrameError("bad_ts" if exc.reason == "bad_ts" else "missing", key) from None


def dump_json(value: object) -> str:
    """Encode ``value`` as the compact JSON text of one frame."""
    return orjson.dumps(value).decode()


def make_mark(raw_symbol: object, raw_price: object, venue_ts: int, recv_ts: float) -> MarkPrice:
    """Build a MarkPrice from raw fields, or raise PriceRejected naming the symbol if known."""
    symbol = parse_symbol(raw_symbol)
    try:
        price: Decimal = parse_price(raw_price)
    except PriceRejected as exc:
        exc.symbol = symbol
        raise
    return MarkPrice(symbol, price, venue_ts, recv_ts)


class MarkCollector:
    """Accumulate the marks and rejections of one frame, then freeze them into a result."""

    __slots__ = ("marks", "rejects")

    def __init__(self) -> None:
        self.marks: list[MarkPrice] = []
        self.rejects: list[PriceRejected] = []

    def add(self, raw_symbol: object, raw_price: object, venue_ts: int, recv_ts: float) -> None:
        """Add one item's mark, or its rejection: one bad item never spoils the frame."""
        try:
            self.marks.append(make_mark(raw_symbol, raw_price, venue_ts, recv_ts))
        except PriceRejected as exc:
            self.rejects.append(exc)

    def reject(self, exc: PriceRejected) -> None:
        """Record an item refused before it reached :meth:`add`."""
        self.rejects.append(exc)

    def result(self) -> ParseResult:
        """Return the frozen result."""
        if not self.marks and not self.rejects:
            return IGNORED
        return ParseResult(marks=tuple(self.marks), rejects=tuple(self.rejects))
