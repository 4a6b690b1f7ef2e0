"""The simulated venues speak their venue's format, as checked by the real parsers."""

from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from watcher.demo.sim.binance import BinanceMarkServer
from watcher.demo.sim.orderly import OrderlyMarkServer
from watcher.demo.sim.walk import PriceWalk, round_significant
from watcher.feeds.binance import BinanceVenue
from watcher.feeds.orderly import OrderlyVenue

ETH = "PERP_ETH_USDC"
BTC = "PERP_BTC_USDC"
PRICES = {ETH: Decimal("2300.1"), BTC: Decimal("60000.5")}
WAIT = 5.0


async def recv_json(ws: object) -> object:
    async with asyncio.timeout(WAIT):
        return orjson.loads(await ws.recv())  # type: ignore[attr-defined]


async def subscribe(ws: object, topic: str, id_: str = "1") -> object:
    await ws.send(orjson.dumps({"id": id_, "event": "subscribe", "topic": topic}).decode())  # type: ignore[attr-defined]
    return await recv_json(ws)


async def test_orderly_acks_and_pushes_both_topic_forms() -> None:
    async with OrderlyMarkServer(PRICES, interval=0, ping_interval=0) as server:
        assert server.url.startswith("ws://127.0.0.1:")
        assert server.url.endswith("/ws/stream/sim")
        async with connect(server.url) as ws:
            ack = await subscribe(ws, "markprices", "a")
            assert ack == {"id": "a", "event": "subscribe", "success": True, "ts": ack["ts"]}  # type: ignore[index]
            assert OrderlyVenue().parse(orjson.dumps(ack), 0.0).ack
            await subscribe(ws, f"{ETH}@markprice", "b")
            await server.push()
            all_marks = OrderlyVenue().parse(await ws.recv(), 0.0)
            one_mark = OrderlyVenue().parse(await ws.recv(), 0.0)
        assert {m.symbol: m.price for m in all_marks.marks} == PRICES
        assert [(m.symbol, m.price) for m in one_mark.marks] == [(ETH, PRICES[ETH])]
        assert all_marks.marks[0].venue_ts % 1000 == 0  # whole seconds, like Orderly
        assert server.subscribe_messages == 2


async def test_orderly_mistyped_topic_is_acked_then_silent() -> None:
    async with (
        OrderlyMarkServer(PRICES, interval=0, ping_interval=0) as server,
        connect(server.url) as ws,
    ):
        ack = await subscribe(ws, "markprice")
        assert ack["success"] is True  # type: ignore[index]
        await server.push()
        await server.send_raw('{"event":"marker"}')
        assert await recv_json(ws) == {"event": "marker"}


async def test_orderly_drops_a_client_that_does_not_pong() -> None:
    async with (
        OrderlyMarkServer(PRICES, interval=0, ping_interval=0, max_missed_pongs=2) as server,
        connect(server.url) as ws,
    ):
        for _ in range(3):
            await server.ping()
        pings = [await recv_json(ws) for _ in range(2)]
        assert [p["event"] for p in pings] == ["ping", "ping"]  # type: ignore[index]
        with pytest.raises(ConnectionClosed) as closed:
            await recv_json(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008
    assert server.pongs == []


async def test_orderly_pause_silences_and_periodic_push_walks() -> None:
    async with (
        OrderlyMarkServer(
            PRICES, interval=0.01, ping_interval=0, random_walk=True, seed=3, volatility=0.01
        ) as server,
        connect(server.url) as ws,
    ):
        await subscribe(ws, "markprices")
        first = OrderlyVenue().parse(await ws.recv(), 0.0)
        second = OrderlyVenue().parse(await ws.recv(), 0.0)
        assert [m.price for m in first.marks] != [m.price for m in second.marks]
        server.pause()
        pushes = server.pushes
        await asyncio.sleep(0.05)
        assert server.pushes == pushes
        server.resume()
        await recv_json(ws)


@pytest.mark.parametrize(
    ("symbols", "all_market", "expected"),
    [
        (["BTCUSDT"], False, [["BTCUSDT"]]),
        (["BTCUSDT", "ETHUSDT"], False, [["BTCUSDT"], ["ETHUSDT"]]),
        (["BTCUSDT"], True, [["BTCUSDT", "ETHUSDT"]]),
    ],
    ids=["single", "combined", "array"],
)
async def test_binance_streams_follow_the_path(
    symbols: list[str], all_market: bool, expected: list[list[str]]
) -> None:
    prices = {"BTCUSDT": Decimal("86141.5"), "ETHUSDT": Decimal("2715.93")}
    venue = BinanceVenue(all_market=all_market)
    async with (
        BinanceMarkServer(prices, interval=0) as server,
        connect(venue.url(server.url, symbols)) as ws,
    ):
        async with asyncio.timeout(WAIT):
            await server.wait_until(lambda: bool(server.clients))
        await server.push()
        frames = [await ws.recv() for _ in expected]
    got = [[m.symbol for m in venue.parse(f, 0.0).marks] for f in frames]
    assert got == expected
    if len(symbols) > 1:
        assert orjson.loads(frames[0])["stream"] == "btcusdt@markPrice@1s"


async def test_binance_elsewhere_acks_subscribe_and_sends_nothing() -> None:
    async with (
        BinanceMarkServer({"BTCUSDT": Decimal(1)}, interval=0) as server,
        connect(f"{server.url}/ws") as ws,
    ):
        request = {"method": "SUBSCRIBE", "params": ["btcusdt@markPrice"], "id": 1}
        await ws.send(orjson.dumps(request).decode())
        assert await recv_json(ws) == {"result": None, "id": 1}
        await server.push()
        await server.send_raw('{"marker":1}')
        assert await recv_json(ws) == {"marker": 1}


async def test_binance_event_times_strictly_increase() -> None:
    server = BinanceMarkServer({"BTCUSDT": Decimal(1)}, clock_ms=lambda: 1_000)
    assert [server.event_ms() for _ in range(3)] == [1_000, 1_001, 1_002]


def test_price_walk_is_seeded_positive_and_jumps() -> None:
    def path(seed: int) -> list[Decimal]:
        walk, price, out = (
            PriceWalk(seed=seed, jump_probability=0.1, jump_size=0.05),
            Decimal("2300"),
            [],
        )
        for _ in range(500):
            price = walk.step(price)
            out.append(price)
        return out

    assert path(1) == path(1) != path(2)
    prices = path(1)
    assert all(p > 0 and len(p.as_tuple().digits) <= 6 for p in prices)
    moves = [abs(b / a - 1) for a, b in itertools.pairwise(prices)]
    assert max(moves) > Decimal("0.02")  # sharp moves happen
    assert round_significant(Decimal("2300.123456")) == Decimal("2300.12")
