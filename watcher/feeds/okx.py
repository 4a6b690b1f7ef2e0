"""OKX v5 public ``mark-price`` channel, one subscription per instrument.

Wire facts (docs/feeds.md; frames in tests/watcher/feeds/samples/okx): data
is ``{"arg":{...},"data":[{"instId","instType","markPx","ts"}]}`` with
``ts`` and ``markPx`` as strings; the heartbeat is the text frame ``ping``,
answered with the text ``pong`` (not JSON), and must be sent before 30 s of
silence; ``{"event":"notice","code":"64008"}`` warns 60 s ahead of a service
restart, so the feed reconnects at once instead of being cut."""

from __future__ import annotations

from collections.abc import Sequence

from watcher.feeds.errors import FrameError, PriceRejected
from watcher.feeds.prices import parse_venue_ts
from watcher.feeds.venue import IGNORED, MarkCollector, ParseResult, dump_json, load_json

CHANNEL = "mark-price"
PING = "ping"
PONG = "pong"
RESTART_NOTICE_CODE = "64008"
# OKX caps a request at 64 KB and counts subscribe requests per hour: a
# hundred instruments per request keeps both far away.
MAX_ARGS_PER_REQUEST = 100


class OkxVenue:
    """Parse OKX mark-price pushes, control events and the text pong."""

    name = "okx"
    # ts is a real millisecond time: an equal one is a replay.
    equal_ts_ok = False

    def __init__(self, *, keepalive_interval: float = 20.0) -> None:
        self.keepalive_interval: float | None = keepalive_interval

    def url(self, base_url: str, symbols: Sequence[str]) -> str:
        """Return ``base_url`` unchanged: it already names ``/ws/v5/public``."""
        return base_url

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        """Return subscribe frames naming one ``mark-price`` arg per instrument."""
        args = [{"channel": CHANNEL, "instId": symbol} for symbol in symbols]
        return [
            dump_json({"op": "subscribe", "args": args[i : i + MAX_ARGS_PER_REQUEST]})
            for i in range(0, len(args), MAX_ARGS_PER_REQUEST)
        ]

    def keepalive_message(self) -> str | None:
        """Return the text ``ping``: OKX's heartbeat is not JSON."""
        return PING

    def reset(self) -> None:
        """Do nothing: every OKX mark push is complete in itself."""

    def parse(self, frame: str | bytes, recv_ts: float) -> ParseResult:
        """Parse one OKX frame; the pong and other channels parse to an empty result."""
        if frame in (PONG, PONG.encode()):
            return IGNORED
        msg = load_json(frame)
        if not isinstance(msg, dict):
            raise FrameError("bad_shape", type(msg).__name__)
        event = msg.get("event")
        if event is not None:
            return _event(event, msg)
        arg = msg.get("arg")
        if not isinstance(arg, dict) or arg.get("channel") != CHANNEL:
            return IGNORED
        data = msg.get("data")
        if not isinstance(data, list):
            raise FrameError("bad_shape", "mark-price data is not a list")
        return _marks(data, arg.get("instId"), recv_ts)


def _event(event: object, msg: dict[str, object]) -> ParseResult:
    if event == "subscribe":
        return ParseResult(ack=True)
    if event == "error":
        return ParseResult(error=f"{msg.get('code')}: {str(msg.get('msg'))[:200]}")
    if event == "notice" and str(msg.get("code")) == RESTART_NOTICE_CODE:
        return ParseResult(reconnect=True)
    return IGNORED


def _marks(data: list[object], arg_inst: object, recv_ts: float) -> ParseResult:
    out = MarkCollector()
    for item in data:
        if not isinstance(item, dict):
            out.reject(PriceRejected("bad_type", f"item is {type(item).__name__}"))
            continue
        inst = item.get("instId")
        hint = inst[:64] if isinstance(inst, str) else None
        # A mark pushed under another instrument's arg is a venue bug; trust neither.
        if arg_inst is not None and inst != arg_inst:
            out.reject(PriceRejected("bad_symbol", "instId differs from arg", symbol=hint))
            continue
        try:
            ts = parse_venue_ts(item.get("ts"), symbol=hint)
        except PriceRejected as exc:
            out.reject(exc)
            continue
        out.add(inst, item.get("markPx"), ts, recv_ts)
    return out.result()
