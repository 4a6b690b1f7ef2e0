"""Orderly's public mark-price stream: ``markprices`` and ``<SYMBOL>@markprice``.

Wire facts (docs/feeds.md; frames in tests/watcher/feeds/samples/orderly):
prices are JSON numbers; ``ts`` is in milliseconds but on whole seconds; the
server pings with ``{"event":"ping","ts":..}`` and drops clients that do not
pong; error replies carry ``"success": false`` and may lack ``event``."""

from __future__ import annotations

from collections.abc import Sequence

from watcher.feeds.errors import FrameError, PriceRejected
from watcher.feeds.venue import (
    IGNORED,
    MarkCollector,
    ParseResult,
    dump_json,
    frame_ts,
    load_json,
)

ALL_MARKS_TOPIC = "markprices"
SYMBOL_TOPIC_SUFFIX = "@markprice"


class OrderlyVenue:
    """Parse Orderly mark-price frames and say what to send to subscribe and stay alive."""

    name = "orderly"
    # ts is on whole seconds: two different marks a second apart in real time
    # can share a ts, so an equal ts with a new price is a real update.
    equal_ts_ok = True
    # The server pings us; a client keepalive would be noise.
    keepalive_interval: float | None = None

    def __init__(self, *, per_symbol_topics: bool = False) -> None:
        self.per_symbol_topics = per_symbol_topics

    def url(self, base_url: str, symbols: Sequence[str]) -> str:
        """Return ``base_url`` unchanged: it already names ``/ws/stream/<account_id>``."""
        return base_url

    def topics(self, symbols: Sequence[str]) -> list[str]:
        """Return the topics to subscribe to: one per symbol, or the all-symbols one."""
        if self.per_symbol_topics:
            return [f"{symbol}{SYMBOL_TOPIC_SUFFIX}" for symbol in symbols]
        return [ALL_MARKS_TOPIC]

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        """Return one subscribe frame per topic: Orderly takes one topic per frame."""
        return [
            dump_json({"id": str(i), "event": "subscribe", "topic": topic})
            for i, topic in enumerate(self.topics(symbols), start=1)
        ]

    def keepalive_message(self) -> str | None:
        """Return None: Orderly keeps the connection alive with its own pings."""
        return None

    def reset(self) -> None:
        """Do nothing: every Orderly mark frame is complete in itself."""

    def parse(self, frame: str | bytes, recv_ts: float) -> ParseResult:
        """Parse one Orderly frame; other topics parse to an empty result."""
        msg = load_json(frame)
        if not isinstance(msg, dict):
            raise FrameError("bad_shape", type(msg).__name__)
        # Control replies first: they may lack ``event`` (errors) and a client's
        # own request echoed back names a topic without being data.
        if msg.get("success") is False:
            return ParseResult(error=_error_text(msg))
        event = msg.get("event")
        if event is not None:
            if event == "ping":
                return ParseResult(reply=_pong(msg.get("ts")))
            if event == "subscribe" and msg.get("success") is True:
                return ParseResult(ack=True)
            return IGNORED
        topic = msg.get("topic")
        if topic == ALL_MARKS_TOPIC:
            return _all_marks(msg, recv_ts)
        if isinstance(topic, str) and topic.endswith(SYMBOL_TOPIC_SUFFIX):
            return _one_mark(msg, topic.removesuffix(SYMBOL_TOPIC_SUFFIX), recv_ts)
        return IGNORED


def _all_marks(msg: dict[str, object], recv_ts: float) -> ParseResult:
    ts = frame_ts(msg)
    data = msg.get("data")
    if not isinstance(data, list):
        raise FrameError("bad_shape", "markprices data is not a list")
    out = MarkCollector()
    for item in data:
        if isinstance(item, dict):
            out.add(item.get("symbol"), item.get("price"), ts, recv_ts)
        else:
            out.reject(PriceRejected("bad_type", f"item is {type(item).__name__}"))
    return out.result()


def _one_mark(msg: dict[str, object], topic_symbol: str, recv_ts: float) -> ParseResult:
    ts = frame_ts(msg)
    data = msg.get("data")
    if not isinstance(data, dict):
        raise FrameError("bad_shape", "markprice data is not an object")
    out = MarkCollector()
    # A mark filed under another symbol's topic is a venue bug; trust neither.
    if data.get("symbol") != topic_symbol:
        out.reject(PriceRejected("bad_symbol", "symbol differs from topic", symbol=topic_symbol))
    else:
        out.add(data.get("symbol"), data.get("price"), ts, recv_ts)
    return out.result()


def _pong(ts: object) -> str:
    # Echo the server's ts when it sent one: it is how Orderly matches pongs.
    if isinstance(ts, int) and not isinstance(ts, bool):
        return dump_json({"event": "pong", "ts": ts})
    return dump_json({"event": "pong"})


def _error_text(msg: dict[str, object]) -> str:
    text = msg.get("errorMsg")
    return str(text)[:200] if text is not None else "success=false"
