"""Bybit v5 linear ``tickers.<SYMBOL>``: a snapshot, then deltas of the fields that changed.

Wire facts (docs/feeds.md; frames in tests/watcher/feeds/samples/bybit): a
delta carries only changed fields, so one without ``markPrice`` means
"unchanged" and yields no mark; ``""`` means unknown and is refused for that
symbol alone. Delta state belongs to one connection: after a reconnect,
deltas that arrive before the new snapshot are refused (``no_snapshot``),
never applied to the old state. The first snapshot can arrive before the
subscribe ack. ``ts`` is the frame's time in milliseconds. The client keeps
the socket alive with ``{"op":"ping"}``, answered by
``{"success":true,"ret_msg":"pong","op":"ping"}``."""

from __future__ import annotations

from collections.abc import Sequence

from watcher.feeds.errors import FrameError, PriceRejected
from watcher.feeds.prices import parse_symbol
from watcher.feeds.venue import (
    IGNORED,
    MarkCollector,
    ParseResult,
    dump_json,
    frame_ts,
    load_json,
)

TOPIC_PREFIX = "tickers."
# Bybit documents 10 args per subscribe request for spot and none for
# linear; 10 is safe everywhere and still one frame for a typical feed.
MAX_ARGS_PER_REQUEST = 10
# "You cannot have length of args array over 21,000 characters" per public connection.
MAX_ARGS_CHARS = 21_000


class BybitVenue:
    """Parse Bybit linear ticker snapshots and deltas; remember which symbols had a snapshot."""

    name = "bybit"
    # ts is a real millisecond time: an equal one is a replay.
    equal_ts_ok = False

    def __init__(self, *, keepalive_interval: float = 20.0) -> None:
        self.keepalive_interval: float | None = keepalive_interval
        # Symbols whose snapshot arrived on the current connection.
        self._snapshots: set[str] = set()

    def url(self, base_url: str, symbols: Sequence[str]) -> str:
        """Return ``base_url`` unchanged: it already names ``/v5/public/linear``."""
        return base_url

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        """Return subscribe frames of at most MAX_ARGS_PER_REQUEST topics each.

        Raise ValueError if the topics exceed what one connection may hold:
        that is a configuration to split across feeds, not a retryable failure.
        """
        args = [f"{TOPIC_PREFIX}{symbol}" for symbol in symbols]
        if len(dump_json(args)) > MAX_ARGS_CHARS:
            raise ValueError(f"{len(args)} Bybit topics exceed {MAX_ARGS_CHARS} characters")
        return [
            dump_json({"op": "subscribe", "args": args[i : i + MAX_ARGS_PER_REQUEST]})
            for i in range(0, len(args), MAX_ARGS_PER_REQUEST)
        ]

    def keepalive_message(self) -> str | None:
        """Return Bybit's application ping."""
        return dump_json({"op": "ping"})

    def reset(self) -> None:
        """Forget every snapshot: a new connection starts from its own."""
        self._snapshots.clear()

    def parse(self, frame: str | bytes, recv_ts: float) -> ParseResult:
        """Parse one Bybit frame; other topics and the pong parse to an empty result."""
        msg = load_json(frame)
        if not isinstance(msg, dict):
            raise FrameError("bad_shape", type(msg).__name__)
        # Replies to the client's own requests carry ``op``; data carries ``topic``.
        if "op" in msg:
            if msg.get("success") is False:
                return ParseResult(error=str(msg.get("ret_msg"))[:200])
            if msg.get("op") == "subscribe" and msg.get("success") is True:
                return ParseResult(ack=True)
            return IGNORED
        topic = msg.get("topic")
        if not isinstance(topic, str) or not topic.startswith(TOPIC_PREFIX):
            return IGNORED
        return self._ticker(msg, topic.removeprefix(TOPIC_PREFIX), recv_ts)

    def _ticker(self, msg: dict[str, object], topic_symbol: str, recv_ts: float) -> ParseResult:
        kind = msg.get("type")
        if kind not in ("snapshot", "delta"):
            raise FrameError("bad_shape", "tickers type is neither snapshot nor delta")
        data = msg.get("data")
        if not isinstance(data, dict):
            raise FrameError("bad_shape", "tickers data is not an object")
        ts = frame_ts(msg)
        out = MarkCollector()
        try:
            symbol = parse_symbol(topic_symbol)
        except PriceRejected as exc:
            out.reject(exc)
            return out.result()
        # A ticker filed under another symbol's topic is a venue bug; trust neither.
        if data.get("symbol") != symbol:
            out.reject(PriceRejected("bad_symbol", "symbol differs from topic", symbol=symbol))
        elif kind == "snapshot":
            self._snapshots.add(symbol)
            out.add(symbol, data.get("markPrice"), ts, recv_ts)
        elif symbol not in self._snapshots:
            out.reject(PriceRejected("no_snapshot", "delta before snapshot", symbol=symbol))
        elif "markPrice" in data:
            out.add(symbol, data["markPrice"], ts, recv_ts)
        return out.result()
