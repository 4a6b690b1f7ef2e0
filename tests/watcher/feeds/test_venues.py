"""Bybit, OKX, Hyperliquid and dYdX parsers: state, stamps, damaged frames, subscribe frames."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from watcher.feeds.bybit import BybitVenue
from watcher.feeds.dydx import DydxVenue
from watcher.feeds.errors import FrameError
from watcher.feeds.hyperliquid import HyperliquidVenue
from watcher.feeds.okx import OkxVenue
from watcher.feeds.venue import IGNORED, ParseResult

TS = 1790132432000


def bybit(kind: str, ts: object = TS, topic: str = "tickers.BTCUSDT", **data: object) -> bytes:
    return orjson.dumps({"topic": topic, "type": kind, "data": data, "cs": 1, "ts": ts})


def marks(result: ParseResult) -> list[tuple[str, str, int]]:
    return [(m.symbol, str(m.price), m.venue_ts) for m in result.marks]


def rejects(result: ParseResult) -> list[tuple[str, str | None]]:
    return [(r.reason, r.symbol) for r in result.rejects]


def test_bybit_delta_without_mark_price_keeps_the_last_and_empty_means_unknown() -> None:
    venue = BybitVenue()
    snapshot = venue.parse(bybit("snapshot", symbol="BTCUSDT", markPrice="66666.60"), 1.0)
    assert marks(snapshot) == [("BTCUSDT", "66666.60", TS)]
    # Only the book moved: no mark, nothing refused.
    assert venue.parse(bybit("delta", TS + 100, symbol="BTCUSDT", bid1Price="1"), 1.1) == IGNORED
    moved = venue.parse(bybit("delta", TS + 200, symbol="BTCUSDT", markPrice="66670.1"), 1.2)
    assert marks(moved) == [("BTCUSDT", "66670.1", TS + 200)]
    unknown = venue.parse(bybit("delta", TS + 300, symbol="BTCUSDT", markPrice=""), 1.3)
    assert (marks(unknown), rejects(unknown)) == ([], [("empty", "BTCUSDT")])


def test_bybit_delta_state_belongs_to_one_connection() -> None:
    venue = BybitVenue()
    venue.parse(bybit("snapshot", symbol="BTCUSDT", markPrice="1.5"), 1.0)
    venue.reset()
    early = venue.parse(bybit("delta", TS + 1, symbol="BTCUSDT", markPrice="1.6"), 2.0)
    assert (marks(early), rejects(early)) == ([], [("no_snapshot", "BTCUSDT")])
    venue.parse(bybit("snapshot", TS + 2, symbol="BTCUSDT", markPrice="1.7"), 2.1)
    later = venue.parse(bybit("delta", TS + 3, symbol="BTCUSDT", markPrice="1.8"), 2.2)
    assert marks(later) == [("BTCUSDT", "1.8", TS + 3)]
    # Another symbol's snapshot does not open the door for this one.
    other = venue.parse(bybit("delta", TS + 4, "tickers.ETHUSDT", symbol="ETHUSDT"), 2.3)
    assert rejects(other) == [("no_snapshot", "ETHUSDT")]


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"pong", "not_json"),
        (b"[]", "bad_shape"),
        (bybit("update", symbol="BTCUSDT"), "bad_shape"),
        (
            orjson.dumps({"topic": "tickers.BTCUSDT", "type": "snapshot", "data": [], "ts": TS}),
            "bad_shape",
        ),
        (bybit("snapshot", None, symbol="BTCUSDT", markPrice="1"), "missing"),
        (bybit("snapshot", "soon", symbol="BTCUSDT", markPrice="1"), "bad_ts"),
    ],
)
def test_bybit_unusable_frames_raise_frame_error(frame: bytes, reason: str) -> None:
    with pytest.raises(FrameError) as caught:
        BybitVenue().parse(frame, 1.0)
    assert caught.value.reason == reason


def test_bybit_refuses_a_ticker_under_another_topic_or_a_bad_price() -> None:
    venue = BybitVenue()
    swapped = venue.parse(bybit("snapshot", symbol="ETHUSDT", markPrice="1"), 1.0)
    assert rejects(swapped) == [("bad_symbol", "BTCUSDT")]
    garbage = venue.parse(bybit("snapshot", topic="tickers.BTC USDT", symbol="BTC USDT"), 1.0)
    assert rejects(garbage) == [("bad_symbol", None)]
    nan = venue.parse(bybit("snapshot", symbol="BTCUSDT", markPrice="NaN"), 1.0)
    assert rejects(nan) == [("nan", "BTCUSDT")]
    assert venue.parse(bybit("snapshot", topic="orderbook.1.BTCUSDT"), 1.0) == IGNORED


def test_bybit_subscribes_ten_topics_per_frame_and_refuses_too_many() -> None:
    venue = BybitVenue()
    symbols = [f"C{i}USDT" for i in range(23)]
    frames = [orjson.loads(m) for m in venue.subscribe_messages(symbols)]
    assert [len(f["args"]) for f in frames] == [10, 10, 3]
    assert [a for f in frames for a in f["args"]] == [f"tickers.{s}" for s in symbols]
    assert {f["op"] for f in frames} == {"subscribe"}
    assert orjson.loads(venue.keepalive_message() or "") == {"op": "ping"}
    assert venue.keepalive_interval == 20.0
    with pytest.raises(ValueError, match="21000"):
        venue.subscribe_messages([f"C{i}USDT" for i in range(2000)])


def okx(*items: object, inst: str = "BTC-USDT-SWAP") -> bytes:
    return orjson.dumps({"arg": {"channel": "mark-price", "instId": inst}, "data": list(items)})


def okx_item(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "instId": "BTC-USDT-SWAP",
        "instType": "SWAP",
        "markPx": "110562.0",
        "ts": str(TS),
    }
    return base | fields


def test_okx_items_are_refused_one_by_one() -> None:
    frame = okx(
        okx_item(),
        okx_item(markPx="1e5"),
        okx_item(markPx=None),
        okx_item(ts="later"),
        okx_item(ts=None),
        okx_item(instId="ETH-USDT-SWAP"),
        "x",
    )
    result = OkxVenue().parse(frame, 1.0)
    assert marks(result) == [("BTC-USDT-SWAP", "110562.0", TS)]
    assert rejects(result) == [
        ("exponent", "BTC-USDT-SWAP"),
        ("missing", "BTC-USDT-SWAP"),
        ("bad_ts", "BTC-USDT-SWAP"),
        ("missing", "BTC-USDT-SWAP"),
        ("bad_symbol", "ETH-USDT-SWAP"),
        ("bad_type", None),
    ]


def test_okx_text_pong_notices_and_errors() -> None:
    venue = OkxVenue()
    assert venue.parse("pong", 1.0) == IGNORED
    assert venue.parse(b"pong", 1.0) == IGNORED
    restart = {"event": "notice", "code": "64008", "msg": "restart", "connId": "x"}
    assert venue.parse(orjson.dumps(restart), 1.0) == ParseResult(reconnect=True)
    other = {"event": "notice", "code": "64009", "msg": "something else"}
    assert venue.parse(orjson.dumps(other), 1.0) == IGNORED
    count = {"event": "channel-conn-count", "channel": "mark-price", "connCount": "2"}
    assert venue.parse(orjson.dumps(count), 1.0) == IGNORED
    error = {"event": "error", "code": "60018", "msg": "Wrong URL or channel"}
    assert venue.parse(orjson.dumps(error), 1.0) == ParseResult(error="60018: Wrong URL or channel")
    other_channel = {"arg": {"channel": "tickers", "instId": "BTC-USDT"}, "data": [{"last": "1"}]}
    assert venue.parse(orjson.dumps(other_channel), 1.0) == IGNORED
    with pytest.raises(FrameError, match="bad_shape"):
        venue.parse(orjson.dumps({"arg": {"channel": "mark-price"}, "data": {}}), 1.0)
    with pytest.raises(FrameError, match="not_json"):
        venue.parse("ping", 1.0)


def test_okx_subscribe_frames_and_text_ping() -> None:
    venue = OkxVenue()
    [frame] = venue.subscribe_messages(["BTC-USDT-SWAP", "ETH-USDT-SWAP"])
    assert orjson.loads(frame) == {
        "op": "subscribe",
        "args": [
            {"channel": "mark-price", "instId": "BTC-USDT-SWAP"},
            {"channel": "mark-price", "instId": "ETH-USDT-SWAP"},
        ],
    }
    assert len(venue.subscribe_messages([f"C{i}-USDT-SWAP" for i in range(250)])) == 3
    assert venue.keepalive_message() == "ping"
    # Sent well inside the 30 s the venue allows without traffic.
    assert venue.keepalive_interval is not None
    assert venue.keepalive_interval < 30


def hl_ctx(coin: object = "BTC", mark: object = "84148.0") -> bytes:
    ctx = {"funding": "0.0", "oraclePx": "84198.0", "markPx": mark, "midPx": "84143.5"}
    return orjson.dumps({"channel": "activeAssetCtx", "data": {"coin": coin, "ctx": ctx}})


def test_hyperliquid_stamps_with_the_wall_clock_never_backwards() -> None:
    now = [TS]
    venue = HyperliquidVenue(clock_ms=lambda: now[0])
    assert marks(venue.parse(hl_ctx(), 1.0)) == [("BTC", "84148.0", TS)]
    now[0] = TS - 5_000  # the wall clock stepped back
    assert marks(venue.parse(hl_ctx(mark="84150.0"), 1.1)) == [("BTC", "84150.0", TS)]
    venue.reset()
    now[0] = TS + 1
    assert marks(venue.parse(hl_ctx(), 1.2))[0][2] == TS + 1


def test_hyperliquid_null_mark_is_counted_not_fatal() -> None:
    venue = HyperliquidVenue(clock_ms=lambda: TS)
    assert rejects(venue.parse(hl_ctx(mark=None), 1.0)) == [("missing", "BTC")]
    assert rejects(venue.parse(hl_ctx(coin=None), 1.0)) == [("missing", None)]
    assert rejects(venue.parse(hl_ctx(mark=84148.0), 1.0)) == []  # a number is still a price
    assert venue.parse("Websocket connection established.", 1.0) == IGNORED
    assert venue.parse(b'{"channel":"pong"}', 1.0) == IGNORED
    with pytest.raises(FrameError, match="bad_shape"):
        venue.parse(b'{"channel":"activeAssetCtx","data":{"coin":"BTC","ctx":null}}', 1.0)
    with pytest.raises(FrameError, match="bad_shape"):
        venue.parse(b'{"channel":"activeAssetCtx","data":[]}', 1.0)


def test_hyperliquid_subscribes_one_coin_per_frame() -> None:
    venue = HyperliquidVenue()
    assert [orjson.loads(m) for m in venue.subscribe_messages(["BTC", "ETH"])] == [
        {"method": "subscribe", "subscription": {"type": "activeAssetCtx", "coin": "BTC"}},
        {"method": "subscribe", "subscription": {"type": "activeAssetCtx", "coin": "ETH"}},
    ]
    assert orjson.loads(venue.keepalive_message() or "") == {"method": "ping"}
    assert venue.keepalive_interval is not None
    assert venue.keepalive_interval < 60


def dydx_snapshot(**prices: object) -> bytes:
    markets = {t: {"ticker": t, "status": "ACTIVE", "oraclePrice": p} for t, p in prices.items()}
    return orjson.dumps(
        {"type": "subscribed", "channel": "v4_markets", "contents": {"markets": markets}}
    )


def dydx_oracle(effective_at: object, **prices: object) -> bytes:
    entries = {
        t: {"oraclePrice": p, "effectiveAt": effective_at, "effectiveAtHeight": "1", "marketId": 1}
        for t, p in prices.items()
    }
    return orjson.dumps(
        {"type": "channel_data", "channel": "v4_markets", "contents": {"oraclePrices": entries}}
    )


BTC = "BTC-USD"


def test_dydx_snapshot_then_deltas_in_stream_order() -> None:
    # Our clock runs 2 s ahead of the chain's: the first delta's effectiveAt is
    # earlier than the snapshot's stamp, yet it was sent after it.
    venue = DydxVenue(clock_ms=lambda: TS)
    snapshot = venue.parse(dydx_snapshot(**{BTC: "60000.5", "ETH-USD": "2300"}), 1.0)
    assert snapshot.ack
    assert marks(snapshot) == [(BTC, "60000.5", TS), ("ETH-USD", "2300", TS)]
    first = venue.parse(dydx_oracle("2026-09-23T03:00:30.000Z", **{BTC: "60010"}), 1.1)
    assert marks(first) == [(BTC, "60010", TS + 1)]
    second = venue.parse(dydx_oracle("2026-09-23T03:00:33.500Z", **{BTC: "60020"}), 1.2)
    assert marks(second) == [(BTC, "60020", TS + 1500)]
    # A new connection is ordered by itself: the venue times hold again.
    venue.reset()
    again = venue.parse(dydx_oracle("2026-09-23T03:00:30.000Z", **{BTC: "60030"}), 2.0)
    assert marks(again) == [(BTC, "60030", TS - 2000)]


def test_dydx_refuses_bad_entries_one_by_one() -> None:
    venue = DydxVenue(clock_ms=lambda: TS)
    frame = orjson.dumps(
        {
            "type": "channel_data",
            "channel": "v4_markets",
            "contents": {
                "oraclePrices": {
                    "A-USD": {"oraclePrice": "1", "effectiveAt": "2026-02-30T00:00:00Z"},
                    "B-USD": {"oraclePrice": "1", "effectiveAt": "yesterday"},
                    "C-USD": {"oraclePrice": "1"},
                    "D-USD": {"oraclePrice": "-1", "effectiveAt": "2026-09-23T03:00:30Z"},
                    "E-USD": "1",
                    "F USD": {"oraclePrice": "1", "effectiveAt": "2026-09-23T03:00:30Z"},
                    "G-USD": {"oraclePrice": "2.5", "effectiveAt": "2026-09-23T03:00:30.1Z"},
                }
            },
        }
    )
    result = venue.parse(frame, 1.0)
    assert marks(result) == [("G-USD", "2.5", 1790132430100)]
    assert rejects(result) == [
        ("bad_ts", "A-USD"),
        ("bad_ts", "B-USD"),
        ("missing", "C-USD"),
        ("negative", "D-USD"),
        ("bad_type", "E-USD"),
        ("bad_symbol", None),
    ]


@pytest.mark.parametrize(
    "frame",
    [
        b'{"type":"subscribed","channel":"v4_markets","contents":[]}',
        b'{"type":"subscribed","channel":"v4_markets","contents":{"markets":[]}}',
        b'{"type":"channel_data","channel":"v4_markets","contents":{"oraclePrices":[]}}',
        b"7",
    ],
)
def test_dydx_unusable_frames_raise_frame_error(frame: bytes) -> None:
    with pytest.raises(FrameError, match="bad_shape"):
        DydxVenue().parse(frame, 1.0)


def test_dydx_other_messages_and_subscribe_frame() -> None:
    venue = DydxVenue()
    trading = {
        "type": "channel_data",
        "channel": "v4_markets",
        "contents": {"trading": {BTC: {"nextFundingRate": "0.0001"}}},
    }
    assert venue.parse(orjson.dumps(trading), 1.0) == IGNORED
    trades = {"type": "channel_data", "channel": "v4_trades", "contents": {"trades": []}}
    assert venue.parse(orjson.dumps(trades), 1.0) == IGNORED
    error = {"type": "error", "message": "Invalid subscribe message"}
    assert venue.parse(orjson.dumps(error), 1.0) == ParseResult(error="Invalid subscribe message")
    assert [orjson.loads(m) for m in venue.subscribe_messages([BTC, "ETH-USD"])] == [
        {"type": "subscribe", "channel": "v4_markets"}
    ]
    assert (venue.keepalive_interval, venue.keepalive_message()) == (None, None)


def test_prices_keep_their_digits() -> None:
    result = OkxVenue().parse(okx(okx_item(markPx="0.000012300")), 1.0)
    assert result.marks[0].price.as_tuple() == Decimal("0.000012300").as_tuple()
