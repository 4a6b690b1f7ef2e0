"""run_feed against the simulated venues on loopback: subscribe, heartbeat, reconnect, survive.

Timings are shortened (backoff in milliseconds, stale_after in tenths of a
second); every wait is bounded by ``asyncio.timeout`` so a hang fails fast.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import orjson
import pytest

from tests.helpers.feeds import BTC, ETH, PRICES, WAIT, eventually, feeding, take
from watcher.demo.sim.binance import BinanceMarkServer
from watcher.demo.sim.orderly import OrderlyMarkServer
from watcher.feeds.backoff import Backoff
from watcher.feeds.binance import BinanceVenue
from watcher.feeds.book import MarkBook, SymbolStatus, Tick
from watcher.feeds.client import FeedState, is_retryable, run_feed
from watcher.feeds.orderly import OrderlyVenue
from watcher.feeds.spec import FeedSpec


def orderly_spec(server: OrderlyMarkServer, **kwargs: Any) -> FeedSpec:
    kwargs.setdefault("stale_after", 5.0)
    return FeedSpec("orderly", server.url, (ETH, BTC), **kwargs)


def markprices(ts: int, **prices: float) -> str:
    data = [{"symbol": s, "price": p} for s, p in prices.items()]
    return orjson.dumps({"topic": "markprices", "ts": ts, "data": data}).decode()


@pytest.fixture
async def orderly() -> AsyncIterator[OrderlyMarkServer]:
    async with OrderlyMarkServer(PRICES, interval=0, ping_interval=0) as server:
        yield server


async def test_orderly_subscribes_and_marks_flow_into_the_book(orderly: OrderlyMarkServer) -> None:
    book = MarkBook({ETH: 5.0, BTC: 5.0})
    async with feeding(orderly_spec(orderly), OrderlyVenue(), book) as feed:
        async with asyncio.timeout(WAIT):
            await orderly.wait_until(lambda: orderly.subscribe_messages == 1)
        assert feed.stats.state.value != "LIVE"  # subscribed is not LIVE
        await orderly.push()
        ticks = await take(book)
        assert {s: t.mark.price for s, t in ticks.items()} == {ETH: PRICES[ETH], BTC: PRICES[BTC]}
        assert str(ticks[ETH].mark.price) == "2300.1"
        assert feed.stats.state is FeedState.LIVE
        assert feed.stats.unrouted == 1  # PERP_SOL_USDC: in markprices, not asked for
        # Taken, the symbols are reported LIVE with the tick, not again by the check.
        assert all(t.revived for t in ticks.values())
        assert book.check_staleness(time.monotonic()) == []
        assert [e["event"] for e in feed.logs] == ["feed.connected", "feed.subscribed", "feed.live"]


async def test_orderly_ping_is_answered_with_its_ts(orderly: OrderlyMarkServer) -> None:
    async with feeding(
        orderly_spec(orderly), OrderlyVenue(), MarkBook({ETH: 5.0, BTC: 5.0})
    ) as feed:
        async with asyncio.timeout(WAIT):
            await orderly.wait_until(lambda: orderly.subscribe_messages == 1)
            for _ in range(3):
                await orderly.ping()
                await orderly.wait_until(lambda: len(orderly.pongs) == len(orderly.pings))
        assert orderly.pongs == orderly.pings
        assert feed.stats.replies == 3
        # max_missed_pongs is 2: had any pong been missing, we would have been dropped.
        assert orderly.connections == 1


async def test_server_close_reconnects_resubscribes_and_flows_again(
    orderly: OrderlyMarkServer,
) -> None:
    book = MarkBook({ETH: 5.0, BTC: 5.0})
    async with feeding(orderly_spec(orderly), OrderlyVenue(), book) as feed:
        async with asyncio.timeout(WAIT):
            await orderly.wait_until(lambda: orderly.subscribe_messages == 1)
            await orderly.push()
            await take(book)
            await orderly.close_clients()
            await orderly.wait_until(
                lambda: orderly.subscribe_messages == 2 and bool(orderly.clients)
            )
        orderly.set_price(ETH, Decimal("2250.5"))
        await orderly.push()
        ticks = await take(book)
        assert ticks[ETH].mark.price == Decimal("2250.5")
        assert (feed.stats.connects, orderly.connections) == (2, 2)
        [reconnecting] = feed.events("feed.reconnecting")
        assert reconnecting["failures"] == 1


@pytest.mark.parametrize(
    ("symbols", "all_market"),
    [(("BTCUSDT",), False), (("BTCUSDT", "ETHUSDT"), False), (("BTCUSDT", "ETHUSDT"), True)],
    ids=["single", "combined", "array"],
)
async def test_binance_stream_forms(symbols: tuple[str, ...], all_market: bool) -> None:
    prices = {
        "BTCUSDT": Decimal("86141.5"),
        "ETHUSDT": Decimal("2715.93"),
        "XRPUSDT": Decimal("0.5"),
    }
    symbol_map = {s: {"BTCUSDT": BTC, "ETHUSDT": ETH}[s] for s in symbols}
    async with BinanceMarkServer(prices, interval=0) as server:
        spec = FeedSpec("binance", server.url, symbols, stale_after=5.0, symbol_map=symbol_map)
        book = MarkBook.from_feeds([spec])
        venue = BinanceVenue(all_market=all_market)
        async with feeding(spec, venue, book) as feed:
            async with asyncio.timeout(WAIT):
                await server.wait_until(lambda: bool(server.clients))
            await server.push()
            ticks = await take(book)
            expected = {spec.routes[s]: prices[s] for s in symbols}
            assert {s: t.mark.price for s, t in ticks.items()} == expected
            assert feed.stats.unrouted == (1 if all_market else 0)
            # Event times only move forward: a second push is not a duplicate.
            server.set_price("BTCUSDT", Decimal("86000"))
            await server.push()
            assert (await take(book))[BTC].mark.price == Decimal("86000")
            assert book.rejected == {}


async def test_accept_then_close_follows_the_backoff(orderly: OrderlyMarkServer) -> None:
    orderly.drop_on_accept = True
    backoff = Backoff(0.02, 0.08, rng=lambda: 1.0)
    async with feeding(
        orderly_spec(orderly), OrderlyVenue(), MarkBook({ETH: 5.0}), backoff=backoff
    ) as feed:
        await asyncio.sleep(0.5)
    delays = [e["delay"] for e in feed.events("feed.reconnecting")]
    # Doubling from base to the cap, never reset: the server never delivered data.
    assert delays[:4] == [0.02, 0.04, 0.08, 0.08]
    assert set(delays[2:]) == {0.08}
    # 0.5 s fits 0.02 + 0.04 + 0.08 * 5.5: at most 8 attempts (a tight loop makes hundreds).
    assert 3 <= orderly.connections <= 8
    assert feed.stats.attempts == orderly.connections
    assert backoff.failures == len(delays)


async def test_a_healthy_connection_resets_the_backoff(orderly: OrderlyMarkServer) -> None:
    orderly.drop_on_accept = True
    backoff = Backoff(0.005, 0.01, reset_after=0.05, rng=lambda: 1.0)
    book = MarkBook({ETH: 5.0, BTC: 5.0})
    async with feeding(orderly_spec(orderly), OrderlyVenue(), book, backoff=backoff) as feed:
        async with asyncio.timeout(WAIT):
            await orderly.wait_until(lambda: orderly.connections >= 4)
            orderly.drop_on_accept = False
            await orderly.wait_until(lambda: orderly.subscribe_messages == 1)
        assert backoff.failures >= 4
        # Deliver data for longer than reset_after, then drop the client.
        started = time.monotonic()
        step = 0
        while time.monotonic() - started < 0.08:
            step += 1
            orderly.set_price(ETH, Decimal(2300 + step))
            await orderly.push()
            await take(book)
        await orderly.close_clients()
        await eventually(lambda: feed.stats.state is not FeedState.LIVE)
        await eventually(lambda: backoff.failures == 1)
        assert feed.events("feed.reconnecting")[-1]["failures"] == 1


async def test_oversized_frame_closes_and_reopens(orderly: OrderlyMarkServer) -> None:
    book = MarkBook({ETH: 5.0, BTC: 5.0})
    async with feeding(orderly_spec(orderly), OrderlyVenue(), book, max_size=1024) as feed:
        async with asyncio.timeout(WAIT):
            await orderly.wait_until(lambda: orderly.subscribe_messages == 1)
            await orderly.send_raw(markprices(1790132432000, **{ETH: 1.5}) + " " * 2000)
            await orderly.wait_until(
                lambda: orderly.subscribe_messages == 2 and bool(orderly.clients)
            )
        await orderly.push()
        assert (await take(book))[ETH].mark.price == PRICES[ETH]
        [reconnecting] = feed.events("feed.reconnecting")
        assert "1009" in reconnecting["error"]
        assert book.latest(ETH) is not None
        assert book.latest(ETH).price == PRICES[ETH]  # type: ignore[union-attr]


async def test_bad_frames_and_prices_are_counted_logged_once_and_survived(
    orderly: OrderlyMarkServer,
) -> None:
    book = MarkBook({ETH: 5.0, BTC: 5.0})
    ts = 1790132432000
    async with feeding(orderly_spec(orderly), OrderlyVenue(), book, log_interval=60.0) as feed:
        async with asyncio.timeout(WAIT):
            await orderly.wait_until(lambda: orderly.subscribe_messages == 1)
        await orderly.send_raw("not json")
        await orderly.send_raw('{"topic":"markprices","ts":"soon","data":[]}')
        for bad in [-1, 0, "NaN", "1e400", "1_000", "\u0661\u0662", " 5", True, None]:
            await orderly.send_raw(
                orjson.dumps(
                    {"topic": "markprices", "ts": ts, "data": [{"symbol": ETH, "price": bad}]}
                )
            )
        await orderly.send_raw(markprices(ts, PERP_DOGE_USDC=0))  # not asked for: not counted
        await orderly.send_raw(markprices(ts, **{ETH: 2301.5}))
        ticks = await take(book)
        assert ticks == {ETH: Tick(ticks[ETH].mark, Decimal("2301.5"), Decimal("2301.5"))}
        assert dict(feed.stats.frame_errors) == {"not_json": 1, "bad_ts": 1}
        assert book.rejected == {
            "negative": 1,
            "zero": 1,
            "nan": 1,
            "exponent": 1,
            "syntax": 2,
            "not_ascii": 1,
            "bad_type": 1,
            "missing": 1,
        }
        assert orderly.connections == 1
        # One log line per burst, however many refusals.
        assert len(feed.events("price.rejected")) == 1
        assert len(feed.events("feed.frame_rejected")) == 1
    # The rest of the burst is flushed when the connection ends.
    assert sum(e["counts"].get("syntax", 0) for e in feed.events("price.rejected")) == 2


async def test_replayed_and_out_of_order_ticks_are_dropped(orderly: OrderlyMarkServer) -> None:
    book = MarkBook({ETH: 5.0, BTC: 5.0})
    ts = 1790132432000
    async with feeding(orderly_spec(orderly), OrderlyVenue(), book) as feed:
        async with asyncio.timeout(WAIT):
            await orderly.wait_until(lambda: orderly.subscribe_messages == 1)
            await orderly.send_raw(markprices(ts, **{ETH: 2300.5}))
            first = (await take(book))[ETH].mark
            await orderly.close_clients()
            await orderly.wait_until(
                lambda: orderly.subscribe_messages == 2 and bool(orderly.clients)
            )
        # The venue replays the last frame after a reconnect, then an older one.
        await orderly.send_raw(markprices(ts, **{ETH: 2300.5}))
        await orderly.send_raw(markprices(ts - 1000, **{ETH: 2100.0}))
        await orderly.send_raw(markprices(ts + 1000, **{ETH: 2310.0}))
        ticks = await take(book)
        assert ticks[ETH].mark.price == Decimal("2310.0")
        assert (ticks[ETH].low, ticks[ETH].high) == (Decimal("2310.0"), Decimal("2310.0"))
        assert book.rejected == {"duplicate_ts": 1, "stale_ts": 1}
        assert first.price == Decimal("2300.5")
        assert feed.stats.connects == 2


async def test_silent_feed_goes_stale_then_reconnects_and_recovers(
    orderly: OrderlyMarkServer,
) -> None:
    book = MarkBook({ETH: 0.15, BTC: 0.15})
    spec = orderly_spec(orderly, stale_after=0.15, silence_timeout=0.2)
    async with feeding(spec, OrderlyVenue(), book) as feed:
        async with asyncio.timeout(WAIT):
            await orderly.wait_until(lambda: orderly.subscribe_messages == 1)
        await orderly.push()
        assert {s for s, t in (await take(book)).items() if t.revived} == {ETH, BTC}
        orderly.pause()  # TCP open, no frames
        await eventually(lambda: book.check_staleness(time.monotonic()) != [])
        assert book.status(ETH, time.monotonic()) is SymbolStatus.STALE
        assert book.take(time.monotonic()) == {}
        await eventually(lambda: feed.stats.silences == 1)
        async with asyncio.timeout(WAIT):
            await orderly.wait_until(
                lambda: orderly.subscribe_messages == 2 and bool(orderly.clients)
            )
        orderly.resume()
        orderly.set_price(ETH, Decimal("2200"))
        await orderly.push()
        tick = (await take(book))[ETH]
        assert tick.mark.price == Decimal("2200")
        assert tick.revived
        assert feed.events("feed.silent")[0]["seconds"] == 0.2


class KeepaliveOrderly(OrderlyVenue):
    keepalive_interval = 0.03

    def keepalive_message(self) -> str | None:
        return '{"event":"ping"}'


async def test_client_keepalive_is_sent_on_schedule(orderly: OrderlyMarkServer) -> None:
    async with feeding(orderly_spec(orderly), KeepaliveOrderly(), MarkBook({ETH: 5.0})) as feed:
        async with asyncio.timeout(WAIT):
            await orderly.wait_until(lambda: orderly.client_pings >= 3)
        assert feed.stats.keepalives >= 3


async def test_a_flood_is_conflated_and_the_loop_keeps_turning(orderly: OrderlyMarkServer) -> None:
    book = MarkBook({ETH: 5.0, BTC: 5.0})
    gaps: list[float] = []

    async def heartbeat() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async with feeding(orderly_spec(orderly), OrderlyVenue(), book):
        async with asyncio.timeout(WAIT):
            await orderly.wait_until(lambda: orderly.subscribe_messages == 1)
        beat = asyncio.create_task(heartbeat())
        ts = 1790132432000
        for i in range(3000):
            price = 2000.5 + (i % 500) if i < 2999 else 2400.25
            await orderly.send_raw(markprices(ts + i * 1000, **{ETH: price}))
        await eventually(
            lambda: (m := book.latest(ETH)) is not None and m.venue_ts == ts + 2999_000
        )
        beat.cancel()
        await asyncio.wait([beat])
        tick = book.take(time.monotonic())[ETH]
        assert tick.mark.price == Decimal("2400.25")
        assert (tick.low, tick.high) == (Decimal("2000.5"), Decimal("2499.5"))
        assert book.accepted == 3000
        assert max(gaps) < 0.1


async def test_cancellation_propagates_while_connected_and_while_backing_off(
    orderly: OrderlyMarkServer,
) -> None:
    book = MarkBook({ETH: 5.0})
    task = asyncio.create_task(
        run_feed(orderly_spec(orderly), OrderlyVenue(), book, backoff=Backoff(0.01, 0.05))
    )
    async with asyncio.timeout(WAIT):
        await orderly.wait_until(lambda: orderly.subscribe_messages == 1)
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled()
    async with asyncio.timeout(WAIT):
        await orderly.wait_until(lambda: not orderly.clients)

    backing_off = asyncio.create_task(
        run_feed(
            orderly_spec(orderly),
            OrderlyVenue(),
            book,
            backoff=Backoff(30.0, 30.0, rng=lambda: 1.0),
        )
    )
    orderly.drop_on_accept = True
    async with asyncio.timeout(WAIT):
        await orderly.wait_until(lambda: orderly.connections == 2)
    await asyncio.sleep(0.02)
    backing_off.cancel()
    await asyncio.wait([backing_off])
    assert backing_off.cancelled()


async def test_a_fatal_error_ends_the_task() -> None:
    spec = FeedSpec("orderly", "http://127.0.0.1:1/ws", (ETH,), stale_after=1.0)
    with pytest.raises(Exception, match="isn't a valid URI"):
        async with asyncio.timeout(WAIT):
            await run_feed(spec, OrderlyVenue(), MarkBook({ETH: 1.0}), backoff=Backoff(0.01, 0.01))


async def test_refused_connections_are_retried() -> None:
    spec = FeedSpec("orderly", "ws://127.0.0.1:9/ws", (ETH,), stale_after=1.0)
    async with feeding(
        spec, OrderlyVenue(), MarkBook({ETH: 1.0}), backoff=Backoff(0.001, 0.002)
    ) as feed:
        await eventually(lambda: feed.stats.attempts >= 3)
    assert feed.stats.connects == 0
    assert "ConnectionRefusedError" in feed.events("feed.reconnecting")[0]["error"]


def test_retryable_errors_are_classified() -> None:
    assert is_retryable(ConnectionRefusedError())
    assert is_retryable(TimeoutError())
    assert not is_retryable(ValueError("a bug"))
    assert not is_retryable(KeyError("a bug"))
