"""dYdX v4 indexer ``v4_markets``: a snapshot of every market, then deltas of changed ones.

Wire facts (docs/feeds.md; frames in tests/watcher/feeds/samples/dydx): the
``subscribed`` frame holds ``contents.markets.<TICKER>.oraclePrice`` and no
time; ``channel_data`` deltas hold ``contents.oraclePrices.<TICKER>`` with
``oraclePrice`` and ``effectiveAt`` (ISO 8601, UTC), or ``contents.trading``
with market parameters and no price. Pings are websocket control frames (the
library answers; a late pong gets the socket closed with 1011); close code
1012 means the indexer restarts, and the feed reconnects like after any
close.

Timestamps: ``effectiveAt`` where the frame has it, else the wall clock at
parse time. The two clocks differ, so on one connection each symbol's
stamps are forced to increase in the order the indexer sent them: a delta
sent after the snapshot is newer than it even if its ``effectiveAt`` is
earlier than our clock was when the snapshot arrived.
"""

from __future__ import annotations

from collections.abc import Sequence

from watcher.clock import wall_ms
from watcher.feeds.errors import FrameError, PriceRejected
from watcher.feeds.prices import parse_iso_ts, parse_symbol
from watcher.feeds.venue import (
    IGNORED,
    MarkCollector,
    ParseResult,
    WallClock,
    dump_json,
    load_json,
)

CHANNEL = "v4_markets"


class DydxVenue:
    """Parse the dYdX market snapshot and its oracle-price deltas."""

    name = "dydx"
    # Stamps strictly increase per symbol on a connection (see the module docstring).
    equal_ts_ok = False
    # The indexer pings at the websocket level; the library answers.
    keepalive_interval: float | None = None

    def __init__(self, *, clock_ms: WallClock = wall_ms) -> None:
        self._clock_ms = clock_ms
        # symbol -> the last stamp given on this connection.
        self._last_ts: dict[str, int] = {}

    def url(self, base_url: str, symbols: Sequence[str]) -> str:
        """Return ``base_url`` unchanged: it already names ``/v4/ws``."""
        return base_url

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        """Return the one subscription to every market: v4_markets takes no id."""
        return [dump_json({"type": "subscribe", "channel": CHANNEL})]

    def keepalive_message(self) -> str | None:
        """Return None: the indexer pings at the websocket level."""
        return None

    def reset(self) -> None:
        """Forget the stamps of the previous connection: its order binds only itself."""
        self._last_ts.clear()

    def parse(self, frame: str | bytes, recv_ts: float) -> ParseResult:
        """Parse one indexer frame; other channels and message types parse to nothing."""
        msg = load_json(frame)
        if not isinstance(msg, dict):
            raise FrameError("bad_shape", type(msg).__name__)
        kind = msg.get("type")
        if kind == "error":
            return ParseResult(error=str(msg.get("message"))[:200])
        if msg.get("channel") != CHANNEL or kind not in ("subscribed", "channel_data"):
            return IGNORED
        contents = msg.get("contents")
        if not isinstance(contents, dict):
            raise FrameError("bad_shape", "v4_markets contents is not an object")
        if kind == "subscribed":
            markets = contents.get("markets")
            if not isinstance(markets, dict):
                raise FrameError("bad_shape", "v4_markets snapshot has no markets object")
            snapshot = self._marks(markets, recv_ts, timed=False)
            return ParseResult(marks=snapshot.marks, rejects=snapshot.rejects, ack=True)
        oracle = contents.get("oraclePrices")
        if oracle is None:
            # A ``trading`` delta: funding, volume, margin fractions; no price.
            return IGNORED
        if not isinstance(oracle, dict):
            raise FrameError("bad_shape", "oraclePrices is not an object")
        return self._marks(oracle, recv_ts, timed=True)

    def _marks(self, entries: dict[str, object], recv_ts: float, *, timed: bool) -> ParseResult:
        """Return a mark per entry, stamped with its ``effectiveAt`` if ``timed``, else now."""
        out = MarkCollector()
        now = self._clock_ms()
        for ticker, entry in entries.items():
            try:
                symbol = parse_symbol(ticker)
                if not isinstance(entry, dict):
                    raise PriceRejected("bad_type", type(entry).__name__, symbol=symbol)
                raw_ts = parse_iso_ts(entry.get("effectiveAt"), symbol=symbol) if timed else now
            except PriceRejected as exc:
                out.reject(exc)
                continue
            out.add(symbol, entry.get("oraclePrice"), self._stamp(symbol, raw_ts), recv_ts)
        return out.result()

    def _stamp(self, symbol: str, raw_ts: int) -> int:
        stamp = max(raw_ts, self._last_ts.get(symbol, 0) + 1)
        self._last_ts[symbol] = stamp
        return stamp
