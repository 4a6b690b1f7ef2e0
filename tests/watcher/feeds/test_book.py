"""MarkBook: order rule, conflation with extremes, unknown symbols, staleness on a fake clock."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from state.models import MarkPrice
from watcher.feeds.book import ACCEPTED, HELD, MarkBook, Offer, SymbolStatus, Tick
from watcher.feeds.errors import PriceRejected
from watcher.feeds.spec import FeedSpec

ETH = "PERP_ETH_USDC"
BTC = "PERP_BTC_USDC"
LIVE, STALE = SymbolStatus.LIVE, SymbolStatus.STALE
D2301 = Decimal("2301")


def mark(price: str, ts: int, recv: float = 0.0, symbol: str = ETH) -> MarkPrice:
    return MarkPrice(symbol, Decimal(price), ts, recv)


@pytest.fixture
def book() -> MarkBook:
    return MarkBook({ETH: 5.0, BTC: 2.0})


def test_older_venue_ts_is_dropped_and_counted(book: MarkBook) -> None:
    assert book.offer(mark("2300", 2000)) == ACCEPTED
    assert book.offer(mark("2100", 1000)) == Offer(False, reason="stale_ts")
    assert book.latest(ETH) == mark("2300", 2000)
    assert book.rejected == {"stale_ts": 1}


def test_equal_ts_is_a_duplicate_unless_the_venue_stamps_coarsely(book: MarkBook) -> None:
    assert book.offer(mark("2300", 2000)).accepted
    assert not book.offer(mark("2300", 2000)).accepted
    assert not book.offer(mark("2301", 2000)).accepted
    assert book.rejected == {"duplicate_ts": 2}
    # Orderly: same whole-second ts, new price: a real update.
    assert book.offer(mark("2301", 2000), equal_ts_ok=True).accepted
    # ... but the same price again is still a duplicate.
    assert not book.offer(mark("2301", 2000), equal_ts_ok=True).accepted
    assert book.rejected == {"duplicate_ts": 3}
    assert book.latest(ETH) == mark("2301", 2000)


def test_unknown_symbol_is_refused_and_changes_nothing(book: MarkBook) -> None:
    assert not book.offer(mark("1", 1, symbol="PERP_DOGE_USDC")).accepted
    assert book.rejected == {"unknown_symbol": 1}
    assert book.take(0.0) == {}
    assert book.latest("PERP_DOGE_USDC") is None
    assert book.offer(mark("1", 1, symbol="PERP_DOGE_USDC")) == Offer(
        False, reason="unknown_symbol"
    )


def test_take_conflates_to_latest_with_low_and_high(book: MarkBook) -> None:
    for ts, price in enumerate(["2300", "2250", "2400", "2350"], start=1):
        assert book.offer(mark(price, ts)).accepted
    book.offer(mark("60000", 1, symbol=BTC))
    assert book.take(0.0) == {
        ETH: Tick(mark("2350", 4), Decimal("2250"), Decimal("2400")),
        BTC: Tick(mark("60000", 1, symbol=BTC), Decimal("60000"), Decimal("60000")),
    }
    assert book.take(0.0) == {}
    # Extremes restart from the first mark after a take.
    book.offer(mark("2360", 5))
    assert book.take(0.0) == {ETH: Tick(mark("2360", 5), Decimal("2360"), Decimal("2360"))}
    assert book.accepted == 6


def test_refused_marks_do_not_widen_the_extremes(book: MarkBook) -> None:
    book.offer(mark("2300", 10))
    book.offer(mark("1", 5))
    book.offer(mark("9999", 10))
    assert book.take(0.0) == {ETH: Tick(mark("2300", 10), Decimal("2300"), Decimal("2300"))}


async def test_wait_returns_when_a_mark_arrives(book: MarkBook) -> None:
    waiter = asyncio.create_task(book.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    book.offer(mark("2300", 1))
    async with asyncio.timeout(1):
        await waiter
    # Still dirty: wait returns at once until the engine takes.
    async with asyncio.timeout(1):
        await book.wait()
    book.take(0.0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await book.wait()


def test_staleness_transitions_on_a_fake_clock(book: MarkBook) -> None:
    assert book.status(ETH, 0.0) is STALE
    assert book.check_staleness(0.0) == []
    assert book.next_stale_at() is None

    book.offer(mark("2300", 1, recv=10.0))
    book.offer(mark("60000", 1, recv=10.0, symbol=BTC))
    assert book.last_recv(ETH) == 10.0
    assert sorted(book.check_staleness(10.0)) == [(BTC, LIVE), (ETH, LIVE)]
    assert book.check_staleness(11.0) == []
    assert book.next_stale_at() == 12.0  # BTC: recv 10 + stale_after 2

    assert book.check_staleness(12.0) == []  # exactly stale_after old: still LIVE
    assert book.check_staleness(12.001) == [(BTC, STALE)]
    assert book.status(BTC, 12.5) is STALE
    assert book.next_stale_at() == 15.0

    # A refused mark does not refresh freshness.
    assert not book.offer(mark("2300", 1, recv=14.0)).accepted
    assert book.check_staleness(15.5) == [(ETH, STALE)]

    book.offer(mark("60100", 2, recv=16.0, symbol=BTC))
    assert book.check_staleness(16.0) == [(BTC, LIVE)]
    assert book.check_staleness(16.5) == []


def test_parser_rejections_are_counted_with_book_refusals(book: MarkBook) -> None:
    book.note_rejects([PriceRejected("nan"), PriceRejected("nan"), PriceRejected("negative")])
    book.offer(mark("1", 1, symbol="PERP_DOGE_USDC"))
    assert book.rejected == {"nan": 2, "negative": 1, "unknown_symbol": 1}


def test_from_feeds_takes_position_symbols_and_the_strictest_stale_after() -> None:
    feeds = [
        FeedSpec("orderly", "ws://x", (ETH, BTC), stale_after=5.0),
        FeedSpec("binance", "ws://y", ("BTCUSDT",), stale_after=3.0, symbol_map={"BTCUSDT": BTC}),
    ]
    book = MarkBook.from_feeds(feeds)
    assert book.symbols == {ETH, BTC}
    book.offer(mark("60000", 1, recv=0.0, symbol=BTC))
    assert book.status(BTC, 3.0) is LIVE
    assert book.status(BTC, 3.5) is STALE


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="stale_after"):
        MarkBook({ETH: 0.0})
    with pytest.raises(ValueError, match="no symbols"):
        FeedSpec("orderly", "ws://x", (), stale_after=1.0)
    with pytest.raises(ValueError, match="unsubscribed"):
        FeedSpec("binance", "ws://x", ("BTCUSDT",), stale_after=1.0, symbol_map={"ETHUSDT": ETH})
    with pytest.raises(ValueError, match="same position symbol"):
        FeedSpec(
            "binance", "ws://x", ("BTCUSDT", "X"), stale_after=1.0, symbol_map={"X": "BTCUSDT"}
        )


def test_two_sources_of_one_symbol_keep_their_own_clocks() -> None:
    book = MarkBook({"PERP_BTC_USDC": 5.0})
    sym = "PERP_BTC_USDC"
    # Orderly stamps whole seconds; Binance stamps event milliseconds, here behind.
    assert book.offer(MarkPrice(sym, Decimal("100"), 2_000, 1.0, "orderly")).accepted
    assert book.offer(MarkPrice(sym, Decimal("101"), 1_500, 1.1, "binance")).accepted
    assert book.latest(sym).price == Decimal("101")
    # Each source's own order rule still holds.
    assert not book.offer(MarkPrice(sym, Decimal("99"), 1_999, 1.2, "orderly")).accepted
    assert not book.offer(MarkPrice(sym, Decimal("98"), 1_400, 1.3, "binance")).accepted
    assert book.rejected["stale_ts"] == 2


def test_offer_says_whether_a_jump_is_held_and_confirmed() -> None:
    book = MarkBook({ETH: 5.0}, jump_band={ETH: 0.25})
    assert book.offer(mark("2000", 1)) == ACCEPTED
    assert book.offer(mark("1400", 2)) == HELD
    assert book.held(ETH) == mark("1400", 2)
    # The next mark within the band of the held one confirms the move.
    assert book.offer(mark("1410", 3)) == ACCEPTED
    assert book.latest(ETH) == mark("1410", 3)
    assert book.jumps_confirmed == 1
    assert book.rejected == {"jump_held": 1}


def test_take_skips_a_mark_gone_stale_and_reports_a_revival_once() -> None:
    book = MarkBook({ETH: 5.0})
    book.offer(mark("2300", 1, recv=0.0))
    assert book.take(6.0) == {}  # taken too late: stale, not acted on
    book.offer(mark("2301", 2, recv=10.0))
    tick = book.take(10.0)[ETH]
    assert tick == Tick(mark("2301", 2, recv=10.0), D2301, D2301)
    assert tick.revived
    # Taking it reported it LIVE: the check has nothing new to say ...
    assert book.check_staleness(11.0) == []
    # ... until it goes STALE, with no check having run while it was LIVE.
    assert book.check_staleness(15.5) == [(ETH, STALE)]
    book.offer(mark("2302", 3, recv=16.0))
    assert book.check_staleness(16.0) == [(ETH, LIVE)]
    tick = book.take(16.0)[ETH]
    assert not tick.revived  # already reported by the check


def test_is_fresh_is_the_one_definition_of_live() -> None:
    book = MarkBook({ETH: 5.0})
    m = mark("2300", 1, recv=10.0)
    book.offer(m)
    assert book.is_fresh(m, 15.0)
    assert book.status(ETH, 15.0) is LIVE
    assert not book.is_fresh(m, 15.001)
    assert book.status(ETH, 15.001) is STALE
    assert not book.is_fresh(mark("1", 1, symbol="PERP_DOGE_USDC"), 0.0)


HOUR_MS = 3_600_000


def test_a_mark_stamped_past_not_after_is_refused_and_never_the_reference() -> None:
    book = MarkBook({ETH: 5.0})
    # The first mark of a symbol too: no reference yet, still refused.
    assert book.offer(mark("2300", 70_000), not_after=60_000) == Offer(False, reason="future_ts")
    assert book.latest(ETH) is None
    assert book.offer(mark("2300", 1_000), not_after=60_000) == ACCEPTED
    glitch = mark("2301", 1_000 + 24 * HOUR_MS, recv=1.0)
    assert book.offer(glitch, not_after=61_000) == Offer(False, reason="future_ts")
    assert book.latest(ETH) == mark("2300", 1_000)
    # The correct marks after it are ordered against the last accepted one, not the glitch.
    assert book.offer(mark("2302", 2_000, recv=1.0), not_after=62_000) == ACCEPTED
    # Exactly at the bound is not ahead of it.
    assert book.offer(mark("2303", 63_000, recv=2.0), not_after=63_000) == ACCEPTED
    assert book.rejected == {"future_ts": 2}
    assert book.resyncs == 0
    # Without a bound (a caller that reads no clock), nothing is "future".
    assert book.offer(mark("2304", 24 * HOUR_MS, recv=3.0)) == ACCEPTED


def old_marks(book: MarkBook, start_ts: int, start_recv: float, count: int) -> list[Offer]:
    """Offer ``count`` marks of a venue clock running behind: 1 s of venue time per 0.5 s."""
    return [
        book.offer(mark(f"{2300 + i}", start_ts + i * 1000, recv=start_recv + i * 0.5))
        for i in range(count)
    ]


def test_a_run_of_old_marks_resyncs_after_half_stale_after_not_before() -> None:
    book = MarkBook({ETH: 5.0})
    reference = 10 * HOUR_MS
    assert book.offer(mark("2300", reference, recv=0.0)).accepted
    # The venue's clock goes back an hour and stays there; marks keep coming.
    behind = reference - HOUR_MS
    offers = old_marks(book, behind, 1.0, 7)
    # recv 1.0 .. 3.5: at most stale_after / 2 (2.5 s) into the run, still refused ...
    assert offers[:6] == [Offer(False, reason="stale_ts")] * 6
    # ... recv 4.0, past it: the reference is forgotten and the mark taken.
    assert offers[6] == Offer(True, resynced_from=reference)
    assert offers[6].resynced
    assert book.latest(ETH) == mark("2306", behind + 6000, recv=4.0)
    # Taken within stale_after of the last good mark: the symbol never went STALE.
    assert book.status(ETH, 4.0) is LIVE
    # From now on the venue's new clock is the reference, as usual.
    assert book.offer(mark("2307", behind + 7000, recv=4.5)) == ACCEPTED
    assert book.offer(mark("2300", behind + 5000, recv=4.6)) == Offer(False, reason="stale_ts")
    assert book.rejected == {"stale_ts": 7}
    assert book.resyncs == 1


def test_a_resynced_mark_still_meets_the_jump_guard() -> None:
    book = MarkBook({ETH: 2.0}, jump_band={ETH: 0.25})
    assert book.offer(mark("2000", 10 * HOUR_MS, recv=0.0)).accepted
    behind = 9 * HOUR_MS
    for i, recv in enumerate((0.5, 1.0, 1.5)):
        assert not book.offer(mark("2000", behind + i, recv=recv)).accepted
    # Past half of stale_after (1 s): resynced, but 50% away from the last mark: held.
    offer = book.offer(mark("3000", behind + 3, recv=1.6))
    assert offer == Offer(False, held=True, resynced_from=10 * HOUR_MS)
    assert book.latest(ETH) == mark("2000", 10 * HOUR_MS)
    # The next mark confirms it, ordered against nothing older than the new clock.
    assert book.offer(mark("3001", behind + 4, recv=1.7)) == ACCEPTED
    assert book.rejected == {"stale_ts": 3, "jump_held": 1}


def test_replayed_ticks_are_dropped_and_never_resync() -> None:
    book = MarkBook({ETH: 5.0})
    assert book.offer(mark("2300", 50_000, recv=0.0)).accepted
    # A reconnect: the venue replays a few older ticks, then goes on.
    for ts in (47_000, 48_000, 49_000, 50_000):
        assert not book.offer(mark("2299", ts, recv=0.1)).accepted
    assert book.offer(mark("2301", 51_000, recv=0.2)).accepted
    # One old tick sent again and again for longer than stale_after / 2: the
    # venue's clock does not move, so it is a replay, not a clock gone back.
    for i in range(20):
        assert not book.offer(mark("2299", 49_000, recv=1.0 + i * 0.5)).accepted
    # Single old ticks further apart than stale_after: the source was not delivering.
    for i in range(5):
        assert not book.offer(mark("2299", 49_100 + i, recv=20.0 + i * 6)).accepted
    # A run of old ticks broken by a good mark starts again from nothing.
    offers = old_marks(book, 40_000, 50.0, 5)  # recv 50.0 .. 52.0
    assert book.offer(mark("2302", 52_000, recv=52.1)).accepted
    offers += old_marks(book, 45_000, 52.2, 5)  # recv 52.2 .. 54.2
    assert not any(o.accepted or o.resynced for o in offers)
    assert book.resyncs == 0
    assert book.latest(ETH) == mark("2302", 52_000, recv=52.1)


def test_a_resync_is_per_source() -> None:
    sym = "PERP_BTC_USDC"
    book = MarkBook({sym: 5.0})
    assert book.offer(MarkPrice(sym, Decimal("100"), 10 * HOUR_MS, 0.0, "a")).accepted
    assert book.offer(MarkPrice(sym, Decimal("100"), 20 * HOUR_MS, 0.0, "b")).accepted
    resynced = []
    for i in range(4):
        offer = book.offer(MarkPrice(sym, Decimal(100 + i), 9 * HOUR_MS + i * 1000, 1.0 + i, "a"))
        resynced.append(offer.resynced)
        # Source b's marks in between, in order with its own clock, leave a's run alone.
        b = MarkPrice(sym, Decimal(200 + i), 20 * HOUR_MS + i + 1, 1.1 + i, "b")
        assert book.offer(b).accepted
    assert resynced == [False, False, False, True]
    assert book.offer(MarkPrice(sym, Decimal("201"), 19 * HOUR_MS, 4.5, "b")) == Offer(
        False, reason="stale_ts"
    )
    assert book.resyncs == 1
