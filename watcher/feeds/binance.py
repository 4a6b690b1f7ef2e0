"""Binance USD-M futures mark prices: ``<sym>@markPrice``, combined streams, ``!markPrice@arr``.

Wire facts (docs/feeds.md; frames in tests/watcher/feeds/samples/binance):
mark prices only flow under ``/market/...`` (elsewhere a subscribe is
acknowledged and nothing arrives), so streams go in the URL and nothing is
sent after connecting. ``p`` is the mark as text, ``E`` the event time in
ms; unknown keys (``ap``, ``st``) are ignored. Pings are websocket control
frames, answered by the library."""

from __future__ import annotations

from collections.abc import Sequence

from watcher.feeds.errors import FrameError, PriceRejected
from watcher.feeds.prices import parse_venue_ts
from watcher.feeds.venue import IGNORED, MarkCollector, ParseResult, load_json

MARK_EVENT = "markPriceUpdate"


class BinanceVenue:
    """Parse Binance USD-M mark-price frames and build the stream URL."""

    name = "binance"
    # E is a real millisecond event time: an equal one is a replay.
    equal_ts_ok = False
    keepalive_interval: float | None = None
    # Binance cuts every connection at 24 h: reconnect on our terms before that.
    max_connection_age: float | None = 23.5 * 3600

    def __init__(self, *, all_market: bool = False, update_speed: str = "@1s") -> None:
        self.all_market = all_market
        self.update_speed = update_speed

    def url(self, base_url: str, symbols: Sequence[str]) -> str:
        """Return the stream URL under ``base_url`` (scheme and host, no path)."""
        base = base_url.rstrip("/")
        if self.all_market:
            return f"{base}/market/ws/!markPrice@arr{self.update_speed}"
        streams = [f"{symbol.lower()}@markPrice{self.update_speed}" for symbol in symbols]
        if len(streams) == 1:
            return f"{base}/market/ws/{streams[0]}"
        return f"{base}/market/stream?streams={'/'.join(streams)}"

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        """Return nothing to send: the streams are in the URL."""
        return []

    def keepalive_message(self) -> str | None:
        """Return None: Binance pings at the websocket level."""
        return None

    def reset(self) -> None:
        """Do nothing: every Binance mark frame is complete in itself."""

    def parse(self, frame: str | bytes, recv_ts: float) -> ParseResult:
        """Parse one Binance frame; other events parse to an empty result."""
        msg = load_json(frame)
        if isinstance(msg, dict) and "stream" in msg and "data" in msg:
            msg = msg["data"]
        if isinstance(msg, list):
            return _updates(msg, recv_ts)
        if not isinstance(msg, dict):
            raise FrameError("bad_shape", type(msg).__name__)
        if "e" in msg:
            return _updates([msg], recv_ts)
        if "result" in msg and "id" in msg:
            return ParseResult(ack=True)
        if "code" in msg:
            return ParseResult(error=f"{msg.get('code')}: {str(msg.get('msg'))[:200]}")
        return IGNORED


def _updates(items: list[object], recv_ts: float) -> ParseResult:
    out = MarkCollector()
    for item in items:
        if not isinstance(item, dict):
            out.reject(PriceRejected("bad_type", f"item is {type(item).__name__}"))
            continue
        if item.get("e") != MARK_EVENT:
            continue
        try:
            ts = parse_venue_ts(item.get("E"), symbol=_symbol_hint(item))
        except PriceRejected as exc:
            out.reject(exc)
            continue
        out.add(item.get("s"), item.get("p"), ts, recv_ts)
    return out.result()


def _symbol_hint(item: dict[str, object]) -> str | None:
    # Only for naming the rejection: a bounded string, not yet a validated symbol.
    symbol = item.get("s")
    return symbol[:64] if isinstance(symbol, str) else None
