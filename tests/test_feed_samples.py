"""Every recorded frame of Orderly and Binance parses to what it holds, or to a named refusal.

The table names every file of ``shared/samples/orderly`` and
``shared/samples/binance``: a new sample without an entry fails the test, so
nothing is skipped silently. Files that are not websocket mark-price frames
(REST responses, private topics, client requests) are listed as ignored: the
parser must return nothing for them, not misread a ``markPrice`` field.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from watcher.feeds.binance import BinanceVenue
from watcher.feeds.errors import FrameError
from watcher.feeds.orderly import OrderlyVenue
from watcher.feeds.venue import IGNORED, ParseResult, Venue

# CI clones the repo next to a copy of shared/: resolve it from the repo root.
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
RECV_TS = 123.5


@dataclass(frozen=True)
class Marks:
    marks: tuple[tuple[str, str, int], ...]


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


Expected = Marks | Reply | Ack | VenueError | Ignored | Refused

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

VENUES: dict[str, tuple[Venue, dict[str, Expected]]] = {
    "orderly": (OrderlyVenue(), ORDERLY),
    "binance": (BinanceVenue(), BINANCE),
}


def sample_dir(venue: str) -> Path:
    folder = SAMPLES / venue
    if not folder.is_dir():
        pytest.fail(f"sample frames not found at {folder}: shared/ must sit beside the repo")
    return folder


@pytest.mark.parametrize("venue", sorted(VENUES))
def test_every_sample_file_has_an_expectation(venue: str) -> None:
    on_disk = {p.name for p in sample_dir(venue).iterdir() if p.is_file()}
    assert on_disk == set(VENUES[venue][1]), "add new samples to the table"


def check(venue: Venue, frame: bytes, expected: Expected) -> None:
    if isinstance(expected, Refused):
        with pytest.raises(FrameError) as caught:
            venue.parse(frame, RECV_TS)
        assert caught.value.reason == expected.reason
        return
    result = venue.parse(frame, RECV_TS)
    assert result.rejects == ()
    if isinstance(expected, Marks):
        got = [(m.symbol, m.price, m.venue_ts, m.recv_ts) for m in result.marks]
        assert got == [(s, Decimal(p), ts, RECV_TS) for s, p, ts in expected.marks]
        # Exact digits, not just equal values: 2300.0 stays 2300.0.
        assert [str(m.price) for m in result.marks] == [p for _, p, _ in expected.marks]
        assert (result.reply, result.ack, result.error) == (None, False, None)
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
    check(venue, (sample_dir(venue_name) / name).read_bytes(), table[name])


def test_binance_error_table_line_by_line() -> None:
    lines = (sample_dir("binance") / "errors.doc.txt").read_text().splitlines()
    frames = [line for line in lines if line.strip() and not line.startswith("#")]
    assert len(frames) == 9
    for frame in frames:
        result = BinanceVenue().parse(frame, RECV_TS)
        assert result.error is not None
        assert result.marks == ()
        assert result.error.split(":", 1)[0] in {"0", "1", "2", "3"}
