"""Hyperliquid ``activeAssetCtx``: one subscription per coin, the mark in ``ctx.markPx``.

Wire facts (docs/feeds.md; frames in
tests/watcher/feeds/samples/hyperliquid): ``markPx`` is a string and can be
null (refused as ``missing``, counted); the context carries no time, so the
venue_ts is the wall clock when the frame is parsed; the server greets with
the text ``Websocket connection established.`` and answers the client
keepalive ``{"method":"ping"}`` with ``{"channel":"pong"}``; it closes a
socket silent for 60 s, and may close one that names an unknown coin."""

from __future__ import annotations

from collections.abc import Sequence

from watcher.clock import wall_ms
from watcher.feeds.errors import FrameError
from watcher.feeds.venue import (
    IGNORED,
    MarkCollector,
    ParseResult,
    WallClock,
    dump_json,
    load_json,
)

CHANNEL = "activeAssetCtx"
GREETING = "Websocket connection established."


class HyperliquidVenue:
    """Parse Hyperliquid asset contexts, stamping each with the receive wall clock."""

    name = "hyperliquid"
    # Our own millisecond clock stamps the marks: two contexts received in the
    # same millisecond are two real updates, not a replay.
    equal_ts_ok = True

    def __init__(self, *, keepalive_interval: float = 30.0, clock_ms: WallClock = wall_ms) -> None:
        self.keepalive_interval: float | None = keepalive_interval
        self._clock_ms = clock_ms
        # The highest stamp given so far: a wall clock stepped back (NTP) must
        # not make fresh marks look older than the last accepted one.
        self._last_ts = 0

    def url(self, base_url: str, symbols: Sequence[str]) -> str:
        """Return ``base_url`` unchanged: it already names ``/ws``."""
        return base_url

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        """Return one ``activeAssetCtx`` subscription per coin: Hyperliquid takes one per frame."""
        return [
            dump_json({"method": "subscribe", "subscription": {"type": CHANNEL, "coin": coin}})
            for coin in symbols
        ]

    def keepalive_message(self) -> str | None:
        """Return Hyperliquid's application ping."""
        return dump_json({"method": "ping"})

    def reset(self) -> None:
        """Do nothing: each context is complete, and the stamp floor outlives connections."""

    def parse(self, frame: str | bytes, recv_ts: float) -> ParseResult:
        """Parse one Hyperliquid frame; the greeting, pong and other channels parse to nothing."""
        if frame in (GREETING, GREETING.encode()):
            return IGNORED
        msg = load_json(frame)
        if not isinstance(msg, dict):
            raise FrameError("bad_shape", type(msg).__name__)
        channel = msg.get("channel")
        if channel == CHANNEL:
            return self._context(msg.get("data"), recv_ts)
        if channel == "subscriptionResponse":
            return ParseResult(ack=True)
        if channel == "error":
            return ParseResult(error=str(msg.get("data"))[:200])
        return IGNORED

    def _context(self, data: object, recv_ts: float) -> ParseResult:
        if not isinstance(data, dict):
            raise FrameError("bad_shape", "activeAssetCtx data is not an object")
        ctx = data.get("ctx")
        if not isinstance(ctx, dict):
            raise FrameError("bad_shape", "activeAssetCtx ctx is not an object")
        out = MarkCollector()
        out.add(data.get("coin"), ctx.get("markPx"), self._stamp(), recv_ts)
        return out.result()

    def _stamp(self) -> int:
        self._last_ts = max(self._clock_ms(), self._last_ts)
        return self._last_ts
