"""The Bybit, OKX, Hyperliquid and dYdX sims speak their venue's protocol, as parsers read it."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from watcher.demo.sim.bybit import BybitMarkServer
from watcher.demo.sim.dydx import DydxMarkServer
from watcher.demo.sim.hyperliquid import HyperliquidMarkServer
from watcher.demo.sim.okx import OkxMarkServer
from watcher.feeds.bybit import BybitVenue
from watcher.feeds.dydx import DydxVenue
from watcher.feeds.hyperliquid import HyperliquidVenue
from watcher.feeds.okx import OkxVenue

WAIT = 5.0
NOW = 1790132432000


async def recv(ws: ClientConnection) -> str | bytes:
    async with asyncio.timeout(WAIT):
        return await ws.recv()


async def recv_json(ws: ClientConnection) -> Any:
    return orjson.loads(await recv(ws))


async def send_json(ws: ClientConnection, value: object) -> None:
    await ws.send(orjson.dumps(value).decode())


async def test_bybit_snapshot_beats_the_ack_then_deltas_carry_what_changed() -> None:
    prices = {"BTCUSDT": Decimal("66666.6"), "ETHUSDT": Decimal("2300.1")}
    venue = BybitVenue()
    async with BybitMarkServer(prices, interval=0) as server, connect(server.url) as ws:
        await send_json(ws, {"req_id": "7", "op": "subscribe", "args": ["tickers.BTCUSDT"]})
        snapshot = venue.parse(await recv(ws), 0.0)
        assert [(m.symbol, m.price) for m in snapshot.marks] == [("BTCUSDT", prices["BTCUSDT"])]
        ack = await recv_json(ws)
        assert (ack["op"], ack["success"], ack["req_id"]) == ("subscribe", True, "7")
        assert venue.parse(orjson.dumps(ack), 0.0).ack
        await server.push()
        unchanged = await recv_json(ws)
        assert unchanged["type"] == "delta"
        assert "markPrice" not in unchanged["data"]
        server.set_price("BTCUSDT", Decimal("66700"))
        await server.push()
        moved = venue.parse(await recv(ws), 0.0)
        assert [m.price for m in moved.marks] == [Decimal("66700")]
        await send_json(ws, {"op": "ping"})
        assert (await recv_json(ws))["ret_msg"] == "pong"
        await send_json(ws, {"op": "subscribe", "args": ["tickers.NOPEUSDT"]})
        error = venue.parse(await recv(ws), 0.0)
        assert error.error == "error:handler not found,topic:tickers.NOPEUSDT"
    assert (server.subscribe_messages, server.client_pings) == (2, 1)


async def test_bybit_snapshots_can_be_held_back() -> None:
    prices = {"BTCUSDT": Decimal("1.5")}
    server = BybitMarkServer(prices, interval=0, snapshot_on_subscribe=False, clock_ms=lambda: NOW)
    async with server, connect(server.url) as ws:
        await send_json(ws, {"op": "subscribe", "args": ["tickers.BTCUSDT"]})
        assert (await recv_json(ws))["success"] is True
        await server.push()
        delta = await recv_json(ws)
        assert (delta["type"], delta["data"]["markPrice"], delta["ts"]) == ("delta", "1.5", NOW)
        await server.send_snapshots()
        snapshot = await recv_json(ws)
        assert (snapshot["type"], snapshot["ts"]) == ("snapshot", NOW + 1)


async def test_okx_acks_each_arg_pushes_strings_and_pongs_in_text() -> None:
    prices = {"BTC-USDT-SWAP": Decimal("110562.0")}
    venue = OkxVenue()
    async with OkxMarkServer(prices, interval=0) as server, connect(server.url) as ws:
        args = [
            {"channel": "mark-price", "instId": "BTC-USDT-SWAP"},
            {"channel": "mark-price", "instId": "NOPE-USDT-SWAP"},
        ]
        await send_json(ws, {"op": "subscribe", "args": args})
        assert venue.parse(await recv(ws), 0.0).ack
        refused = venue.parse(await recv(ws), 0.0)
        assert refused.error is not None
        assert refused.error.startswith("60018: ")
        await server.push()
        frame = await recv_json(ws)
        assert isinstance(frame["data"][0]["ts"], str)
        assert isinstance(frame["data"][0]["markPx"], str)
        [mark] = venue.parse(orjson.dumps(frame), 0.0).marks
        assert (mark.symbol, mark.price) == ("BTC-USDT-SWAP", Decimal("110562.0"))
        await ws.send("ping")
        assert await recv(ws) == "pong"
        await server.notice_restart()
        assert venue.parse(await recv(ws), 0.0).reconnect
        await ws.send("nonsense")
        assert (await recv_json(ws))["code"] == "60012"
    assert (server.client_pings, server.notices) == (1, 1)


async def test_an_idle_client_is_closed() -> None:
    async with (
        OkxMarkServer({"BTC-USDT-SWAP": Decimal(1)}, interval=0, idle_timeout=0.05) as server,
        connect(server.url) as ws,
    ):
        with pytest.raises(ConnectionClosed):
            await recv(ws)
    assert server.idle_closes == 1


async def test_hyperliquid_greets_echoes_and_closes_on_an_unknown_coin() -> None:
    venue = HyperliquidVenue(clock_ms=lambda: NOW)
    server = HyperliquidMarkServer({"BTC": Decimal("84148.0")}, interval=0)
    async with server, connect(server.url) as ws:
        assert await recv(ws) == "Websocket connection established."
        request = {"method": "subscribe", "subscription": {"type": "activeAssetCtx", "coin": "BTC"}}
        await send_json(ws, request)
        response = await recv_json(ws)
        assert response == {"channel": "subscriptionResponse", "data": request}
        await send_json(ws, request)
        assert venue.parse(await recv(ws), 0.0).error == (
            'Already subscribed: {"type":"activeAssetCtx","coin":"BTC"}'
        )
        await server.push()
        frame = await recv_json(ws)
        assert set(frame["data"]) == {"coin", "ctx"}  # no time anywhere
        assert "ts" not in frame["data"]["ctx"]
        [mark] = venue.parse(orjson.dumps(frame), 0.0).marks
        assert (mark.symbol, mark.price, mark.venue_ts) == ("BTC", Decimal("84148.0"), NOW)
        await send_json(ws, {"method": "ping"})
        assert await recv_json(ws) == {"channel": "pong"}
        await send_json(
            ws, {"method": "subscribe", "subscription": {"type": "activeAssetCtx", "coin": "NOPE"}}
        )
        with pytest.raises(ConnectionClosed) as closed:
            await recv(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008


async def test_dydx_greets_snapshots_and_numbers_its_deltas() -> None:
    prices = {"BTC-USD": Decimal("60000.5"), "ETH-USD": Decimal("2300.1")}
    venue = DydxVenue(clock_ms=lambda: NOW)
    server = DydxMarkServer(prices, interval=0, clock_ms=lambda: NOW + 5)
    async with server, connect(server.url) as ws:
        connected = await recv_json(ws)
        assert (connected["type"], connected["message_id"]) == ("connected", 0)
        await send_json(ws, {"type": "subscribe", "channel": "v4_markets"})
        snapshot = venue.parse(await recv(ws), 0.0)
        assert snapshot.ack
        assert {m.symbol: m.price for m in snapshot.marks} == prices
        await server.push()  # nothing moved: nothing sent
        server.set_price("ETH-USD", Decimal("2301"))
        await server.push()
        delta = await recv_json(ws)
        assert (delta["type"], delta["message_id"]) == ("channel_data", 2)
        assert list(delta["contents"]["oraclePrices"]) == ["ETH-USD"]
        [mark] = venue.parse(orjson.dumps(delta), 0.0).marks
        assert (mark.symbol, mark.price, mark.venue_ts) == ("ETH-USD", Decimal("2301"), NOW + 5)
        await send_json(ws, {"type": "subscribe", "channel": "v4_markets"})
        assert "already subscribed" in (venue.parse(await recv(ws), 0.0).error or "")
        await server.close_clients(1012, "service restart")
        with pytest.raises(ConnectionClosed) as closed:
            await recv(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1012
