"""A simulated Bybit v5 linear public stream: ``tickers.<SYMBOL>`` snapshots and deltas."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Unpack

import orjson

from watcher.demo.sim.base import SimClient, SimOptions, SimServer

TOPIC_PREFIX = "tickers."


class BybitMarkServer(SimServer):
    """Play Bybit: a snapshot per subscribed ticker, then deltas of the fields that changed.

    As on the real venue, the snapshot is sent before the subscribe ack, a
    delta carries ``markPrice`` only when it moved since this client last
    got it, and ``{"op":"ping"}`` is answered with a pong. With
    ``snapshot_on_subscribe`` off, snapshots wait for :meth:`send_snapshots`,
    so a test can push deltas before them.
    """

    def __init__(
        self,
        prices: Mapping[str, Decimal],
        *,
        snapshot_on_subscribe: bool = True,
        **options: Unpack[SimOptions],
    ) -> None:
        super().__init__(prices, **options)
        self.snapshot_on_subscribe = snapshot_on_subscribe
        self._cross_seq = 0

    @property
    def url(self) -> str:
        """Return ``ws://127.0.0.1:<port>/v5/public/linear``."""
        return f"{self.base_url}/v5/public/linear"

    async def on_message(self, client: SimClient, message: str | bytes) -> None:
        """Answer pings; snapshot then ack known tickers; refuse a request naming another."""
        try:
            msg = orjson.loads(message)
        except orjson.JSONDecodeError:
            await self._reply(client, "", False, "error:request not json")
            return
        if not isinstance(msg, dict):
            return
        op = msg.get("op")
        req_id = str(msg.get("req_id", ""))
        if op == "ping":
            self.client_pings += 1
            await self._reply(client, "ping", True, "pong", req_id)
        elif op == "subscribe":
            self.subscribe_messages += 1
            await self._subscribe(client, msg.get("args"), req_id)

    async def _subscribe(self, client: SimClient, args: object, req_id: str) -> None:
        symbols: list[str] = []
        for arg in args if isinstance(args, list) else [args]:
            symbol = arg.removeprefix(TOPIC_PREFIX) if isinstance(arg, str) else ""
            if (
                not isinstance(arg, str)
                or not arg.startswith(TOPIC_PREFIX)
                or (symbol not in self.prices)
            ):
                # The whole request is refused, in the words of the recorded error.
                error = f"error:handler not found,topic:{arg}"
                await self._reply(client, "subscribe", False, error, req_id)
                return
            symbols.append(symbol)
        client.topics.update(symbols)
        if self.snapshot_on_subscribe:
            for symbol in symbols:
                await self._send(client, self._snapshot(client, symbol))
        await self._reply(client, "subscribe", True, "", req_id)

    async def send_snapshots(self) -> None:
        """Send every client a snapshot of each ticker it subscribed to (even while paused)."""
        for client in list(self.clients):
            for symbol in sorted(client.topics):
                if symbol in self.prices:
                    await self._send(client, self._snapshot(client, symbol))

    async def _reply(
        self, client: SimClient, op: str, success: bool, ret_msg: str, req_id: str = ""
    ) -> None:
        reply = {
            "success": success,
            "ret_msg": ret_msg,
            "conn_id": f"sim-{id(client):x}",
            "req_id": req_id,
            "op": op,
        }
        await self._send(client, orjson.dumps(reply).decode())

    def _frame(self, symbol: str, kind: str, data: dict[str, str]) -> str:
        self._cross_seq += 1
        frame = {
            "topic": f"{TOPIC_PREFIX}{symbol}",
            "type": kind,
            "data": data,
            "cs": self._cross_seq,
            "ts": self.event_ms(),
        }
        return orjson.dumps(frame).decode()

    def _snapshot(self, client: SimClient, symbol: str) -> str:
        price = self.prices[symbol]
        client.sent[symbol] = price
        text = str(price)
        data = {
            "symbol": symbol,
            "lastPrice": text,
            "markPrice": text,
            "indexPrice": text,
            "bid1Price": text,
            "bid1Size": "1",
            "ask1Price": text,
            "ask1Size": "1",
            "fundingRate": "0.0001",
        }
        return self._frame(symbol, "snapshot", data)

    def frames_for(self, client: SimClient) -> list[str]:
        """Return one delta per subscribed ticker; ``markPrice`` only if it moved."""
        frames: list[str] = []
        for symbol in sorted(client.topics):
            if symbol in self.silent or symbol not in self.prices:
                continue
            price = self.prices[symbol]
            data = {"symbol": symbol, "bid1Price": str(price), "bid1Size": "2"}
            if client.sent.get(symbol) != price:
                data["markPrice"] = str(price)
                client.sent[symbol] = price
            frames.append(self._frame(symbol, "delta", data))
        return frames
