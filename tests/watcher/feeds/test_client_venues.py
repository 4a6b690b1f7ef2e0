"""run_feed against the Bybit, OKX, Hyperliquid and dYdX sims: the whole life of a connection.

Each venue: subscribe, marks into the book, keepalive answered, server
close, reconnect and resubscribe, marks again. Then what only that venue
does: Bybit's deltas and their per-connection state, OKX's restart notice,
Hyperliquid's null marks, dYdX's snapshot and restart close code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import orjson
import pytest

from tests.helpers.feeds import WAIT, eventually, feeding, take
from watcher.demo.sim.base import SimServer
from watcher.demo.sim.bybit import BybitMarkServer
from watcher.demo.sim.dydx import DydxMarkServer
from watcher.demo.sim.hyperliquid import HyperliquidMarkServer
from watcher.demo.sim.okx import OkxMarkServer
from watcher.feeds.book import MarkBook
from watcher.feeds.bybit import BybitVenue
from watcher.feeds.client import FeedState
from watcher.feeds.dydx import DydxVenue
from watcher.feeds.hyperliquid import HyperliquidVenue
from watcher.feeds.okx import OkxVenue
from watcher.feeds.spec import FeedSpec
from watcher.feeds.venue import Venue

BTC = "PERP_BTC_USDC"
ETH = "PERP_ETH_USDC"
KEEPALIVE = 0.02


@dataclass(frozen=True)
class Case:
    server: Callable[[dict[str, Decimal]], SimServer]
    venue: Callable[[], Venue]
    symbols: tuple[str, str]

    def prices(self) -> dict[str, Decimal]:
        btc, eth = self.symbols
        return {btc: Decimal("60000.5"), eth: Decimal("2300.1"), "OTHER": Decimal("1.5")}


def pinged_back(server: SimServer) -> bool:
    """Tell whether every client answered the server's websocket pings (dYdX)."""
    return bool(server.clients) and all(c.ws.latency > 0 for c in server.clients)


CASES = {
    "bybit": Case(
        lambda p: BybitMarkServer(p, interval=0),
        lambda: BybitVenue(keepalive_interval=KEEPALIVE),
        ("BTCUSDT", "ETHUSDT"),
    ),
    "okx": Case(
        lambda p: OkxMarkServer(p, interval=0),
        lambda: OkxVenue(keepalive_interval=KEEPALIVE),
        ("BTC-USDT-SWAP", "ETH-USDT-SWAP"),
    ),
    "hyperliquid": Case(
        lambda p: HyperliquidMarkServer(p, interval=0),
        lambda: HyperliquidVenue(keepalive_interval=KEEPALIVE),
        ("BTC", "ETH"),
    ),
    "dydx": Case(
        lambda p: DydxMarkServer(p, interval=0, ws_ping_interval=KEEPALIVE),
        DydxVenue,
        ("BTC-USD", "ETH-USD"),
    ),
}


def spec_for(server: SimServer, case: Case, venue: str) -> FeedSpec:
    btc, eth = case.symbols
    symbol_map = {btc: BTC, eth: ETH}
    return FeedSpec(venue, server.url, case.symbols, stale_after=5.0, symbol_map=symbol_map)


@pytest.mark.parametrize("name", sorted(CASES))
async def test_subscribe_flow_keepalive_close_reconnect_flow_again(name: str) -> None:
    case = CASES[name]
    btc, _ = case.symbols
    async with case.server(case.prices()) as server:
        spec = spec_for(server, case, name)
        book = MarkBook.from_feeds([spec])
        async with feeding(spec, case.venue(), book) as feed:
            async with asyncio.timeout(WAIT):
                await server.wait_until(lambda: server.subscribe_messages >= 1)
            await server.push()
            await eventually(lambda: book.latest(ETH) is not None and book.latest(BTC) is not None)
            assert book.latest(BTC).price == Decimal("60000.5")  # type: ignore[union-attr]
            assert feed.stats.state is FeedState.LIVE
            # Only dYdX sends markets nobody asked for: its snapshot holds them all.
            assert feed.stats.unrouted == (1 if name == "dydx" else 0)
            # The keepalive is answered, and an answer is no error.
            if name == "dydx":
                await eventually(lambda: pinged_back(server))
            else:
                async with asyncio.timeout(WAIT):
                    await server.wait_until(lambda: server.client_pings >= 2)
            assert not feed.stats.frame_errors
            subscribed = server.subscribe_messages
            await server.close_clients()
            async with asyncio.timeout(WAIT):
                await server.wait_until(
                    lambda: server.subscribe_messages == 2 * subscribed and len(server.clients) == 1
                )
            server.set_price(btc, Decimal("61000.25"))
            await server.push()
            await eventually(
                lambda: (m := book.latest(BTC)) is not None and m.price == Decimal("61000.25")
            )
        assert (feed.stats.connects, server.connections) == (2, 2)
        assert book.rejected.get("stale_ts", 0) == 0
        assert len(feed.events("feed.reconnecting")) == 1


async def test_bybit_deltas_keep_the_mark_and_wait_for_the_snapshot_after_a_reconnect() -> None:
    case = CASES["bybit"]
    async with BybitMarkServer(case.prices(), interval=0) as server:
        spec = spec_for(server, case, "bybit")
        book = MarkBook.from_feeds([spec])
        async with feeding(spec, BybitVenue(), book) as feed:
            # The snapshot comes with the subscription, before the ack.
            ticks = await take(book)
            assert {s: t.mark.price for s, t in ticks.items()} == {
                BTC: Decimal("60000.5"),
                ETH: Decimal("2300.1"),
            }
            # Nothing moved: deltas without markPrice, no mark, no refusal.
            frames = feed.stats.frames
            await server.push()
            await eventually(lambda: feed.stats.frames == frames + 2)
            assert book.take(time.monotonic()) == {}
            assert book.rejected == {}
            server.set_price("BTCUSDT", Decimal("60100"))
            await server.push()
            assert {s: t.mark.price for s, t in (await take(book)).items()} == {
                BTC: Decimal("60100")
            }
            # Reconnect; the new snapshots are held back, deltas come first.
            server.snapshot_on_subscribe = False
            await server.close_clients()
            async with asyncio.timeout(WAIT):
                await server.wait_until(
                    lambda: server.subscribe_messages == 2 and len(server.clients) == 1
                )
            server.set_price("BTCUSDT", Decimal("60200"))
            await server.push()
            await eventually(lambda: book.rejected["no_snapshot"] == 2)
            assert book.latest(BTC).price == Decimal("60100")  # type: ignore[union-attr]
            assert book.take(time.monotonic()) == {}
            await server.send_snapshots()
            ticks = await take(book)
            assert ticks[BTC].mark.price == Decimal("60200")
            server.set_price("BTCUSDT", Decimal("60300"))
            await server.push()
            assert (await take(book))[BTC].mark.price == Decimal("60300")
            assert book.rejected == {"no_snapshot": 2}


async def test_okx_restart_notice_reconnects_ahead_of_the_cut() -> None:
    case = CASES["okx"]
    async with OkxMarkServer(case.prices(), interval=0) as server:
        spec = spec_for(server, case, "okx")
        book = MarkBook.from_feeds([spec])
        async with feeding(spec, OkxVenue(), book) as feed:
            async with asyncio.timeout(WAIT):
                await server.wait_until(lambda: server.subscribe_messages == 1)
            await server.push()
            await take(book)
            await server.notice_restart()
            # The client closes and reopens by itself: the server closes nothing.
            async with asyncio.timeout(WAIT):
                await server.wait_until(
                    lambda: server.subscribe_messages == 2 and len(server.clients) == 1
                )
            server.set_price("BTC-USDT-SWAP", Decimal("60001"))
            await server.push()
            assert (await take(book))[BTC].mark.price == Decimal("60001")
        assert (server.connections, feed.stats.restart_notices) == (2, 1)
        assert len(feed.events("feed.restart_notice")) == 1
        [reconnecting] = feed.events("feed.reconnecting")
        assert reconnecting["error"] is None  # a clean close of our own


async def test_okx_keepalive_holds_an_idle_connection_open() -> None:
    case = CASES["okx"]
    async with OkxMarkServer(case.prices(), interval=0, idle_timeout=0.1) as server:
        spec = spec_for(server, case, "okx")
        venue = OkxVenue(keepalive_interval=0.03)
        async with feeding(spec, venue, MarkBook.from_feeds([spec])):
            async with asyncio.timeout(WAIT):
                await server.wait_until(lambda: server.client_pings >= 8)
        assert (server.connections, server.idle_closes) == (1, 0)


async def test_hyperliquid_null_mark_is_counted_and_the_feed_goes_on() -> None:
    case = CASES["hyperliquid"]
    async with HyperliquidMarkServer(case.prices(), interval=0) as server:
        spec = spec_for(server, case, "hyperliquid")
        book = MarkBook.from_feeds([spec])
        async with feeding(spec, HyperliquidVenue(), book) as feed:
            async with asyncio.timeout(WAIT):
                await server.wait_until(lambda: server.subscribe_messages == 2)
            null = {"channel": "activeAssetCtx", "data": {"coin": "BTC", "ctx": {"markPx": None}}}
            await server.send_raw(orjson.dumps(null).decode())
            await eventually(lambda: book.rejected["missing"] == 1)
            await server.push()
            ticks = await take(book)
            assert ticks[BTC].mark.price == Decimal("60000.5")
        # The greeting and the acks are no frame errors; the null is one refused mark.
        assert not feed.stats.frame_errors
        assert book.rejected == {"missing": 1}
        assert feed.stats.connects == 1


async def test_dydx_snapshot_then_deltas_and_a_restart_close() -> None:
    case = CASES["dydx"]
    async with DydxMarkServer(case.prices(), interval=0) as server:
        spec = spec_for(server, case, "dydx")
        book = MarkBook.from_feeds([spec])
        async with feeding(spec, DydxVenue(), book) as feed:
            # The snapshot is the answer to the subscription: no push needed.
            ticks = await take(book)
            assert {s: t.mark.price for s, t in ticks.items()} == {
                BTC: Decimal("60000.5"),
                ETH: Decimal("2300.1"),
            }
            server.set_price("ETH-USD", Decimal("2301.7"))
            await server.push()
            assert {s: t.mark.price for s, t in (await take(book)).items()} == {
                ETH: Decimal("2301.7")
            }
            trading = {
                "type": "channel_data",
                "channel": "v4_markets",
                "contents": {"trading": {"ETH-USD": {"nextFundingRate": "0.0001"}}},
            }
            await server.send_raw(orjson.dumps(trading).decode())
            await server.close_clients(1012, "service restart")
            async with asyncio.timeout(WAIT):
                await server.wait_until(
                    lambda: server.subscribe_messages == 2 and len(server.clients) == 1
                )
            server.set_price("ETH-USD", Decimal("2302.9"))
            await server.push()
            await eventually(
                lambda: (m := book.latest(ETH)) is not None and m.price == Decimal("2302.9")
            )
        [reconnecting] = feed.events("feed.reconnecting")
        assert "1012" in reconnecting["error"]
        assert not feed.stats.frame_errors
        assert feed.stats.unrouted > 0  # OTHER is in every snapshot, asked for or not
