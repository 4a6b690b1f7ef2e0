"""Venue parsers on damaged frames, URL and subscribe building, and fuzzing."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watcher.feeds import VENUES, make_venue
from watcher.feeds.binance import BinanceVenue
from watcher.feeds.errors import FrameError
from watcher.feeds.orderly import OrderlyVenue

TS = 1790132432000


def orderly_frame(*items: object, ts: object = TS) -> bytes:
    return orjson.dumps({"topic": "markprices", "ts": ts, "data": list(items)})


def test_orderly_one_bad_item_does_not_spoil_the_frame() -> None:
    frame = orderly_frame(
        {"symbol": "PERP_ETH_USDC", "price": 2300.1},
        {"symbol": "PERP_BTC_USDC", "price": -1},
        {"symbol": "PERP_SOL_USDC", "price": "NaN"},
        {"symbol": "PERP_NEAR_USDC"},
        {"symbol": "PERP_WOO_USDC", "price": True},
        {"symbol": 7, "price": 1.5},
        {"price": 1.5},
        "PERP_SEI_USDC",
        {"symbol": "PERP_ARB_USDC", "price": 0},
    )
    result = OrderlyVenue().parse(frame, 1.0)
    assert [(m.symbol, m.price) for m in result.marks] == [("PERP_ETH_USDC", Decimal("2300.1"))]
    assert [(r.reason, r.symbol) for r in result.rejects] == [
        ("negative", "PERP_BTC_USDC"),
        ("nan", "PERP_SOL_USDC"),
        ("missing", "PERP_NEAR_USDC"),
        ("bad_type", "PERP_WOO_USDC"),
        ("bad_symbol", None),
        ("missing", None),
        ("bad_type", None),
        ("zero", "PERP_ARB_USDC"),
    ]


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "not_json"),
        (b"\xff\xfe", "not_json"),
        (b'{"topic":"markprices"', "not_json"),
        (b"[1, 2]", "bad_shape"),
        (b'"ping"', "bad_shape"),
        (orderly_frame(ts=None), "missing"),
        (orderly_frame(ts="soon"), "bad_ts"),
        (orderly_frame(ts=-1), "bad_ts"),
        (orjson.dumps({"topic": "markprices", "ts": TS, "data": {}}), "bad_shape"),
        (orjson.dumps({"topic": "PERP_ETH_USDC@markprice", "ts": TS, "data": []}), "bad_shape"),
    ],
)
def test_orderly_unusable_frames_raise_frame_error(frame: bytes, reason: str) -> None:
    with pytest.raises(FrameError) as caught:
        OrderlyVenue().parse(frame, 1.0)
    assert caught.value.reason == reason


def test_orderly_single_topic_must_match_its_symbol() -> None:
    frame = orjson.dumps(
        {
            "topic": "PERP_ETH_USDC@markprice",
            "ts": TS,
            "data": {"symbol": "PERP_BTC_USDC", "price": 1.0},
        }
    )
    result = OrderlyVenue().parse(frame, 1.0)
    assert result.marks == ()
    assert [(r.reason, r.symbol) for r in result.rejects] == [("bad_symbol", "PERP_ETH_USDC")]


def test_orderly_subscribe_messages_one_topic_per_frame() -> None:
    assert [orjson.loads(m) for m in OrderlyVenue().subscribe_messages(["PERP_ETH_USDC"])] == [
        {"id": "1", "event": "subscribe", "topic": "markprices"}
    ]
    per_symbol = OrderlyVenue(per_symbol_topics=True)
    messages = [
        orjson.loads(m) for m in per_symbol.subscribe_messages(["PERP_ETH_USDC", "PERP_BTC_USDC"])
    ]
    assert messages == [
        {"id": "1", "event": "subscribe", "topic": "PERP_ETH_USDC@markprice"},
        {"id": "2", "event": "subscribe", "topic": "PERP_BTC_USDC@markprice"},
    ]
    url = "wss://ws-evm.orderly.org/ws/stream/abc"
    assert per_symbol.url(url, ["PERP_ETH_USDC"]) == url
    assert per_symbol.keepalive_message() is None


def binance_update(**fields: object) -> dict[str, object]:
    return {
        "e": "markPriceUpdate",
        "E": TS,
        "s": "BTCUSDT",
        "p": "86141.5",
        "ap": "1",
        "st": 1,
    } | fields


def test_binance_bad_items_are_rejected_by_reason() -> None:
    frame = orjson.dumps(
        [
            binance_update(),
            binance_update(s="ETHUSDT", p="1e5"),
            binance_update(s="SOLUSDT", p=None),
            binance_update(s="XRPUSDT", E="later"),
            binance_update(s="ADAUSDT", E=None),
            binance_update(s=None),
            {"e": "aggTrade", "E": TS, "s": "BTCUSDT", "p": "1"},
            17,
        ]
    )
    result = BinanceVenue().parse(frame, 2.0)
    assert [(m.symbol, str(m.price)) for m in result.marks] == [("BTCUSDT", "86141.5")]
    assert [(r.reason, r.symbol) for r in result.rejects] == [
        ("exponent", "ETHUSDT"),
        ("missing", "SOLUSDT"),
        ("bad_ts", "XRPUSDT"),
        ("missing", "ADAUSDT"),
        ("missing", None),
        ("bad_type", None),
    ]


def test_binance_combined_wrapper_may_hold_an_array() -> None:
    frame = orjson.dumps({"stream": "!markPrice@arr@1s", "data": [binance_update()]})
    assert [m.symbol for m in BinanceVenue().parse(frame, 1.0).marks] == ["BTCUSDT"]


def test_binance_urls_put_streams_in_the_path() -> None:
    base = "wss://fstream.binance.com/"
    venue = BinanceVenue()
    assert (
        venue.url(base, ["BTCUSDT"]) == "wss://fstream.binance.com/market/ws/btcusdt@markPrice@1s"
    )
    assert venue.url(base, ["BTCUSDT", "ETHUSDT"]) == (
        "wss://fstream.binance.com/market/stream?streams=btcusdt@markPrice@1s/ethusdt@markPrice@1s"
    )
    everything = BinanceVenue(all_market=True)
    assert (
        everything.url(base, ["BTCUSDT"]) == "wss://fstream.binance.com/market/ws/!markPrice@arr@1s"
    )
    assert venue.subscribe_messages(["BTCUSDT"]) == []


def test_venue_registry() -> None:
    assert set(VENUES) == {"orderly", "binance", "bybit", "okx", "hyperliquid", "dydx"}
    assert all(make_venue(name).name == name for name in VENUES)
    assert make_venue("orderly").equal_ts_ok is True
    assert make_venue("binance").equal_ts_ok is False
    assert make_venue("hyperliquid").equal_ts_ok is True  # stamped by our own clock
    with pytest.raises(KeyError, match="known"):
        make_venue("mtgox")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
# Fields a parser reads, filled with anything, something nearly right, or the
# right thing: the shapes that reach the deep branches, marks included.
plausible = st.sampled_from(["1.5", "", "NaN", str(TS), TS, 2300.1, None, "2026-02-30T00:00:00Z"])
field = plausible | json_values
GOOD = {
    "symbol": "BTCUSDT",
    "markPrice": "2300.1",
    "instId": "BTC-USDT-SWAP",
    "markPx": "2300.1",
    "ts": str(TS),
    "coin": "BTC",
    "oraclePrice": "0.0123",
    "effectiveAt": "2026-09-23T03:00:30.5Z",
}
item = st.fixed_dictionaries(
    {key: st.just(good) | field for key, good in GOOD.items()}
    | {"ctx": st.just({"markPx": "1.5"}) | json_values}
)
prices = st.dictionaries(
    st.sampled_from(["BTC-USD", "ETH-USD", "x y", ""]), item | json_values, max_size=3
)
shaped = st.one_of(
    st.fixed_dictionaries(
        {
            "topic": st.sampled_from(["markprices", "PERP_ETH_USDC@markprice", "x"]),
            "ts": json_values,
            "data": json_values,
        }
    ),
    st.fixed_dictionaries(
        {"e": st.just("markPriceUpdate"), "E": json_values, "s": json_values, "p": json_values}
    ),
    st.fixed_dictionaries(
        {
            "topic": st.sampled_from(["tickers.BTCUSDT", "tickers.", "tickers.a b"]),
            "type": st.sampled_from(["snapshot", "delta"]) | json_values,
            "data": item | json_values,
            "ts": st.just(TS) | field,
        }
    ),
    st.fixed_dictionaries({"op": json_values, "success": json_values, "ret_msg": json_values}),
    st.fixed_dictionaries(
        {
            "arg": st.fixed_dictionaries(
                {"channel": st.just("mark-price"), "instId": st.just("BTC-USDT-SWAP") | field}
            ),
            "data": st.lists(item, min_size=1, max_size=3) | json_values,
        }
    ),
    st.fixed_dictionaries(
        {"event": st.just("notice") | json_values, "code": st.just("64008") | json_values}
    ),
    st.fixed_dictionaries(
        {
            "channel": st.sampled_from(["activeAssetCtx", "error", "subscriptionResponse"]),
            "data": st.fixed_dictionaries(
                {"coin": st.just("BTC") | field, "ctx": item | json_values}
            )
            | json_values,
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["subscribed", "channel_data", "error"]),
            "channel": st.just("v4_markets"),
            "contents": st.fixed_dictionaries(
                {}, optional={"markets": prices | json_values, "oraclePrices": prices | json_values}
            )
            | json_values,
        }
    ),
)
texts = st.sampled_from(["ping", "pong", "Websocket connection established.", ""]).map(str.encode)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200), texts, json_values.map(orjson.dumps), shaped.map(orjson.dumps)
    )
)
def test_fuzz_only_frame_error_escapes(frame: bytes) -> None:
    for name in VENUES:
        venue = make_venue(name)
        # Twice: the second parse sees the state the first one left (a Bybit snapshot).
        for _ in range(2):
            try:
                result = venue.parse(frame, 0.0)
            except FrameError:
                continue
            for mark in result.marks:
                assert mark.price > 0
                assert mark.venue_ts > 0
