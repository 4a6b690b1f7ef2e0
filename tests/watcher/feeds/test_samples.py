"""Every recorded frame of every venue parses to what it holds, or to a named refusal.

The tables name every file of ``samples/<venue>``: a new sample
without an entry fails the test, so nothing is skipped silently. Files that
are not websocket mark-price frames (REST responses, private topics, client
requests) are listed as ignored: the parser must return nothing for them,
not misread a ``markPrice`` field. Deribit has no parser: its files are
listed as unsupported, and no other venue's parser may find a mark in them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from watcher.feeds.binance import BinanceVenue
from watcher.feeds.bybit import BybitVenue
from watcher.feeds.dydx import DydxVenue
from watcher.feeds.errors import FrameError
from watcher.feeds.hyperliquid import HyperliquidVenue
from watcher.feeds.okx import OkxVenue
from watcher.feeds.orderly import OrderlyVenue
from watcher.feeds.venue import IGNORED, ParseResult, Venue

# Recorded frames kept beside this test; samples/README.md says where each set is from.
SAMPLES = Path(__file__).resolve().parent / "samples"
RECV_TS = 123.5
# The wall clock of venues that stamp nothing (Hyperliquid, dYdX snapshots).
WALL_MS = 1790132432000


@dataclass(frozen=True)
class Marks:
    marks: tuple[tuple[str, str, int], ...]
    # A snapshot that is also the subscribe ack (dYdX ``subscribed``).
    ack: bool = False


@dataclass(frozen=True)
class ManyMarks:
    count: int
    first: tuple[str, str, int]
    ack: bool = False


@dataclass(frozen=True)
class Rejected:
    rejects: tuple[tuple[str, str], ...]
    why: str


@dataclass(frozen=True)
class Reconnect:
    why: str


@dataclass(frozen=True)
class Reply:
    text: str


@dataclass(frozen=True)
class Ack:
    pass


@dataclass(frozen=True)
class VenueError:
    text: str


@dataclass(frozen=True)
class Ignored:
    why: str


@dataclass(frozen=True)
class Refused:
    reason: str
    why: str


Expected = Marks | ManyMarks | Rejected | Reconnect | Reply | Ack | VenueError | Ignored | Refused

REST = "a REST response, not a websocket frame"
PRIVATE = "a topic the mark feed never subscribes to"
REQUEST = "a frame the client sends"

ORDERLY: dict[str, Expected] = {
    "markprice_single.json": Marks((("PERP_ETH_USDC", "2300.0", 1682241796000),)),
    "markprices.json": Marks(
        (("PERP_ETH_USDC", "2300.0", 1682242806000), ("PERP_NEAR_USDC", "2.15", 1682242806000))
    ),
    "wire_markprices_trimmed.json": Marks(
        (("PERP_WOO_USDC", "0.01292", 1790132432000), ("PERP_SEI_USDC", "0.06171", 1790132432000))
    ),
    "markprices.doc.txt": Refused("not_json", "the docs' copy has a trailing comma"),
    "indexprices.doc.txt": Refused("not_json", "the docs elide items with '...'"),
    "liquidation_public.doc.txt": Refused("not_json", "the docs elide items with '...'"),
    "ping.json": Reply('{"event":"pong"}'),
    "wire_ping_server.json": Reply('{"event":"pong","ts":1790132430000}'),
    "pong.json": Ignored("a pong to a client ping"),
    "wire_pong_to_client_ping.json": Ignored("a pong to a client ping"),
    "subscribe_ack.json": Ack(),
    "subscribe_markprices_ack.json": Ack(),
    "subscribe_position_ack.json": Ack(),
    "wire_subscribe_ack.json": Ack(),
    "error_subscribe.json": VenueError("invalid symbol PERP_BTC_USDC"),
    "wire_error_invalid_symbol.json": VenueError("invalid symbol PERP_NOPE_USDC"),
    "ccxt_error_auth_needed.json": VenueError("Auth is needed."),
    "auth_ack.json": Ignored("an auth ack: the mark feed never authenticates"),
    "indexprice_single.json": Ignored("index, not mark, price"),
    "indexprices.json": Ignored("index, not mark, price"),
    "balance.json": Ignored(PRIVATE),
    "position.json": Ignored(PRIVATE),
    "executionreport.json": Ignored(PRIVATE),
    "liquidation_public.json": Ignored(PRIVATE),
    "liquidationsaccount.json": Ignored(PRIVATE),
    "liquidatorliquidations.json": Ignored(PRIVATE),
    "account.json": Ignored(REST),
    "client_holding.json": Ignored(REST),
    "client_info.json": Ignored(REST),
    "client_leverage.json": Ignored(REST),
    "client_margin_modes.json": Ignored(REST),
    "position_symbol.json": Ignored(REST),
    "positions.json": Ignored(REST),
    "public_futures.json": Ignored(REST),
    "public_futures_symbol_as_specified.json": Ignored(REST),
    "public_futures_symbol_single_object_schema.json": Ignored(REST),
    "public_info.json": Ignored(REST),
    "public_info_symbol.json": Ignored(REST),
    "public_liquidation.json": Ignored(REST),
    "wire_public_info_row_subset.json": Ignored(REST),
    "auth_request.json": Ignored(REQUEST),
    "subscribe_executionreport_request.json": Ignored(REQUEST),
    "subscribe_indexprice_request.json": Ignored(REQUEST),
    "subscribe_markprice_request.json": Ignored(REQUEST),
    "subscribe_markprices_request.json": Ignored(REQUEST),
    "subscribe_position_request.json": Ignored(REQUEST),
    "wire_subscribe_request.json": Ignored(REQUEST),
}

BTC_DOC = ("BTCUSDT", "11794.15000000", 1562305380000)
BINANCE: dict[str, Expected] = {
    "markprice_single.doc.json": Marks((BTC_DOC,)),
    "markprice_single_with_st.nautilus.json": Marks((BTC_DOC,)),
    "markprice_combined.constructed.json": Marks((BTC_DOC,)),
    "markprice_arr.doc.json": Marks((("BTCUSDT", "11185.87786614", 1562305380000),)),
    "markprice_arr_1s.thirdparty-live-2026-10-05.json": Marks(
        (("BTCUSDT", "86141.00000000", 1791201678000), ("ETHUSDT", "2715.93000000", 1791201678000))
    ),
    "subscribe_response.doc.json": Ack(),
    "list_subscriptions_response.doc.json": Ack(),
    "subscribe_request.doc.json": Ignored(REQUEST),
    "list_subscriptions_request.doc.json": Ignored(REQUEST),
    # One error reply per line; checked line by line below.
    "errors.doc.txt": Refused("not_json", "a table of frames, one per line"),
}

NO_SNAPSHOT = "a delta on a connection that has not had its symbol's snapshot"
KEEPALIVE = "the reply to the client keepalive"
BYBIT: dict[str, Expected] = {
    "tickers_snapshot.doc.json": Marks((("BTCUSDT", "66666.60", 1760325052630),)),
    "tickers_snapshot_BTCUSDT_2023.nautilus-doc.json": Marks(
        (("BTCUSDT", "17217.33", 1673272861686),)
    ),
    "tickers_snapshot.live-ccxt-21451.json": Marks((("NKNUSDT", "0.13946", 1709202837189),)),
    "tickers_snapshot_futures.doc.json": Marks((("BTC-26DEC25", "121144.63", 1760409119857),)),
    # Both deltas carry no markPrice; after their snapshot they yield nothing (tested below).
    "tickers_delta.ccxt-comment.json": Rejected((("no_snapshot", "AAVEUSDT"),), NO_SNAPSHOT),
    "tickers_delta.live-ccxt-21451.json": Rejected((("no_snapshot", "NKNUSDT"),), NO_SNAPSHOT),
    "subscribe_ack_linear.doc.json": Ack(),
    "subscribe_error_linear.live-bybit-api-561.json": VenueError(
        "error:handler not found,topic:dcp.future"
    ),
    "pong_linear.doc.json": Ignored(KEEPALIVE),
    "ping_request.doc.json": Ignored(REQUEST),
    "subscribe_request.doc.json": Ignored(REQUEST),
    "unsubscribe_request.doc.json": Ignored(REQUEST),
}

OKX: dict[str, Expected] = {
    "mark_price.doc.json": Marks((("LTC-USD-190628", "0.1", 1597026383085),)),
    "mark_price_swap.thirdparty-live.json": Marks((("BTC-USDT-SWAP", "110562.0", 1762079224447),)),
    "notice_64008.doc.json": Reconnect("a service restart within 60 s"),
    "pong.txt": Ignored(KEEPALIVE),
    "ping.txt": Refused("not_json", "a frame only the client sends, and not JSON"),
    "subscribe_ack.doc.json": Ack(),
    "subscribe_error.doc.json": VenueError(
        '60012: Invalid request: {"op": "subscribe", "argss":[{ "channel" : "mark-price",'
        ' "instId" : "LTC-USD-190628"}]}'
    ),
    "subscribe_request.doc.json": Ignored(REQUEST),
}

HYPERLIQUID: dict[str, Expected] = {
    "activeAssetCtx.thirdparty-live-2026-09.json": Marks((("BTC", "84148.0", WALL_MS),)),
    "subscription_response.doc.json": Ack(),
    "error_already_subscribed.thirdparty-live.json": VenueError(
        'Already subscribed: {"type":"l2Book","coin":"SOL","nSigFigs":null,"mantissa":null,'
        '"fast":false}'
    ),
    "greeting.python-sdk-source.txt": Ignored("the text the server sends on connect"),
    "pong.doc.json": Ignored(KEEPALIVE),
    "allMids.nautilus.json": Ignored("mid, not mark, prices"),
    "allDexsAssetCtxs.nautilus-live.json": Ignored("a channel the feed never subscribes to"),
    "ping.doc.json": Ignored(REQUEST),
    "subscribe_request.doc.json": Ignored(REQUEST),
}

NO_PRICE = "a trading delta: market parameters, no oracle price"
DYDX: dict[str, Expected] = {
    "v4_markets_subscribed.doc.json": Marks(
        (("BTC-USD", "27752.92", WALL_MS), ("ETH-USD", "1808.2", WALL_MS)), ack=True
    ),
    "v4_markets_subscribed.nautilus-live.json": ManyMarks(
        98, ("AAVE-USD", "110.98719743", WALL_MS), ack=True
    ),
    "v4_markets_oracle_prices_FTM.nautilus-live.json": Marks(
        (("FTM-USD", "0.3866273177", 1723917025837),)
    ),
    "v4_markets_oracle_prices_JASMY.nautilus-live.json": Marks(
        (("JASMY-USD", "0.02069413882", 1723915476330),)
    ),
    "v4_markets_channel_data_trading.doc.json": Ignored(NO_PRICE),
    "v4_markets_trading_full.nautilus-live.json": Ignored(NO_PRICE),
    "v4_markets_trading_partial.nautilus-live.json": Ignored(NO_PRICE),
    "error_internal.nautilus-live.json": VenueError(
        "Internal error, could not fetch data for subscription: v4_orderbook."
    ),
    "connected.doc.json": Ignored("the greeting on connect"),
    "connected.nautilus-live.json": Ignored("the greeting on connect"),
    "unsubscribed.nautilus-live.json": Ignored("a channel the feed never subscribes to"),
    "ping_request.v4-chain-source.txt": Ignored(REQUEST),
    "subscribe_request.constructed.json": Ignored(REQUEST),
    "unsubscribe_request.doc.json": Ignored(REQUEST),
}

VENUES: dict[str, tuple[Venue, dict[str, Expected]]] = {
    "orderly": (OrderlyVenue(), ORDERLY),
    "binance": (BinanceVenue(), BINANCE),
    "bybit": (BybitVenue(), BYBIT),
    "okx": (OkxVenue(), OKX),
    "hyperliquid": (HyperliquidVenue(clock_ms=lambda: WALL_MS), HYPERLIQUID),
    "dydx": (DydxVenue(clock_ms=lambda: WALL_MS), DYDX),
}

# No Deribit parser: every file is named here so that a new one is noticed.
UNSUPPORTED = "Deribit is not a configured venue"
DERIBIT = {
    "ticker_BTC-PERPETUAL_100ms.nautilus-live.json": UNSUPPORTED,
    "incremental_ticker_snapshot_data.doc.json": UNSUPPORTED,
    "notification_price_index.doc.json": UNSUPPORTED,
    "subscribe_response.doc.json": UNSUPPORTED,
    "subscribe_response_testnet.nautilus.json": UNSUPPORTED,
    "set_heartbeat_response.doc.json": UNSUPPORTED,
    "public_test_response.doc.json": UNSUPPORTED,
    "error_too_many_requests.nautilus.json": UNSUPPORTED,
    "heartbeat_test_request.nautilus.json": UNSUPPORTED,
    "subscribe_request.doc.json": REQUEST,
    "set_heartbeat_request.doc.json": REQUEST,
    "public_test_request.doc.json": REQUEST,
}


def sample_dir(venue: str) -> Path:
    folder = SAMPLES / venue
    if not folder.is_dir():
        pytest.fail(f"sample frames not found at {folder}")
    return folder


TABLES: dict[str, Mapping[str, object]] = {name: table for name, (_, table) in VENUES.items()} | {
    "deribit": DERIBIT
}


@pytest.mark.parametrize("venue", sorted(TABLES))
def test_every_sample_file_has_an_expectation(venue: str) -> None:
    on_disk = {p.name for p in sample_dir(venue).iterdir() if p.is_file()}
    assert on_disk == set(TABLES[venue]), "add new samples to the table"


def read_frame(path: Path) -> bytes:
    """Return a recorded frame; a ``.txt`` file holds one text frame plus a final newline."""
    raw = path.read_bytes()
    return raw.removesuffix(b"\n") if path.suffix == ".txt" else raw


def check(venue: Venue, frame: bytes, expected: Expected) -> None:
    # The venues are shared by all cases: each frame is the first of a connection.
    venue.reset()
    if isinstance(expected, Refused):
        with pytest.raises(FrameError) as caught:
            venue.parse(frame, RECV_TS)
        assert caught.value.reason == expected.reason
        return
    result = venue.parse(frame, RECV_TS)
    if isinstance(expected, Rejected):
        assert [(r.reason, r.symbol) for r in result.rejects] == list(expected.rejects)
        assert result == ParseResult(rejects=result.rejects)
        return
    assert result.rejects == ()
    if isinstance(expected, Marks):
        got = [(m.symbol, m.price, m.venue_ts, m.recv_ts) for m in result.marks]
        assert got == [(s, Decimal(p), ts, RECV_TS) for s, p, ts in expected.marks]
        # Exact digits, not just equal values: 2300.0 stays 2300.0.
        assert [str(m.price) for m in result.marks] == [p for _, p, _ in expected.marks]
        assert result == ParseResult(marks=result.marks, ack=expected.ack)
    elif isinstance(expected, ManyMarks):
        assert len(result.marks) == expected.count
        first = result.marks[0]
        assert (first.symbol, str(first.price), first.venue_ts) == expected.first
        assert len({m.symbol for m in result.marks}) == expected.count
        assert result == ParseResult(marks=result.marks, ack=expected.ack)
    elif isinstance(expected, Reconnect):
        assert result == ParseResult(reconnect=True)
    elif isinstance(expected, Reply):
        assert result == ParseResult(reply=expected.text)
    elif isinstance(expected, Ack):
        assert result == ParseResult(ack=True)
    elif isinstance(expected, VenueError):
        assert result == ParseResult(error=expected.text)
    else:
        assert result == IGNORED


CASES = [
    pytest.param(venue, name, id=f"{venue}/{name}")
    for venue, (_, table) in sorted(VENUES.items())
    for name in sorted(table)
]


@pytest.mark.parametrize(("venue_name", "name"), CASES)
def test_sample_frame(venue_name: str, name: str) -> None:
    venue, table = VENUES[venue_name]
    check(venue, read_frame(sample_dir(venue_name) / name), table[name])


@pytest.mark.parametrize("name", sorted(DERIBIT))
def test_no_parser_finds_a_mark_in_another_venues_frames(name: str) -> None:
    frame = read_frame(sample_dir("deribit") / name)
    for venue, _ in VENUES.values():
        venue.reset()
        result = venue.parse(frame, RECV_TS)
        # Binance reads any ``{"id", "result"}`` as its ack: harmless, as long as no mark.
        assert (result.marks, result.rejects, result.reconnect) == ((), (), False)


def test_bybit_recorded_delta_after_its_snapshot_keeps_the_mark() -> None:
    # Both frames come from the same capture: the delta moves the book, not the mark.
    venue = BybitVenue()
    folder = sample_dir("bybit")
    snapshot = venue.parse(read_frame(folder / "tickers_snapshot.live-ccxt-21451.json"), RECV_TS)
    assert [m.symbol for m in snapshot.marks] == ["NKNUSDT"]
    assert venue.parse(read_frame(folder / "tickers_delta.live-ccxt-21451.json"), RECV_TS) == (
        IGNORED
    )


def test_binance_error_table_line_by_line() -> None:
    lines = (sample_dir("binance") / "errors.doc.txt").read_text().splitlines()
    frames = [line for line in lines if line.strip() and not line.startswith("#")]
    assert len(frames) == 9
    for frame in frames:
        result = BinanceVenue().parse(frame, RECV_TS)
        assert result.error is not None
        assert result.marks == ()
        assert result.error.split(":", 1)[0] in {"0", "1", "2", "3"}
