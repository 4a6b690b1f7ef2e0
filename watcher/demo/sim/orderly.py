"""A simulated Orderly public websocket: ``markprices``, ``<SYMBOL>@markprice``, server pings."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from decimal import Decimal
from typing import Any, Unpack

import orjson

from watcher.clock import wall_ms
from watcher.demo.sim.base import SimClient, SimOptions, SimServer

ALL_MARKS_TOPIC = "markprices"
SYMBOL_TOPIC_SUFFIX = "@markprice"


class OrderlyMarkServer(SimServer):
    """Play Orderly: ack subscribes, push marks as JSON numbers, ping and expect pongs.

    Like the real server, a mistyped topic is acknowledged and then silent,
    ``ts`` is on whole seconds, and a client that leaves ``max_missed_pongs``
    pings in a row unanswered is disconnected.
    """

    def __init__(
        self,
        prices: Mapping[str, Decimal],
        *,
        ping_interval: float = 10.0,
        max_missed_pongs: int = 2,
        account_id: str = "sim",
        **options: Unpack[SimOptions],
    ) -> None:
        super().__init__(prices, **options)
        self.ping_interval = ping_interval
        self.max_missed_pongs = max_missed_pongs
        self.account_id = account_id
        # ts of every ping sent and every pong received, in order.
        self.pings: list[int] = []
        self.pongs: list[int | None] = []

    @property
    def url(self) -> str:
        """Return the stream URL, ``ws://127.0.0.1:<port>/ws/stream/<account_id>``."""
        return f"{self.base_url}/ws/stream/{self.account_id}"

    def frame_ts(self) -> int:
        """Return the ts of a frame sent now: milliseconds on a whole second, as Orderly."""
        return self.clock_ms() // 1000 * 1000

    def background(self) -> list[Coroutine[Any, Any, None]]:
        """Run the server heartbeat."""
        return [self._ping_every(self.ping_interval)] if self.ping_interval > 0 else []

    async def ping(self) -> None:
        """Ping every client now; drop those that left too many pings unanswered."""
        if self.paused:
            return
        ts = self.clock_ms()
        self.pings.append(ts)
        frame = orjson.dumps({"event": "ping", "ts": ts}).decode()
        for client in list(self.clients):
            if client.unanswered_pings >= self.max_missed_pongs:
                await client.ws.close(1008, "ping timeout")
                continue
            client.unanswered_pings += 1
            await self._send(client, frame)

    async def _ping_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.ping()

    async def on_message(self, client: SimClient, message: str | bytes) -> None:
        """Ack subscribes, record pongs, answer client pings; ignore anything else."""
        try:
            msg = orjson.loads(message)
        except orjson.JSONDecodeError:
            return
        if not isinstance(msg, dict):
            return
        event = msg.get("event")
        if event == "subscribe":
            self.subscribe_messages += 1
            topic = msg.get("topic")
            if isinstance(topic, str):
                client.topics.add(topic)
            ack = {"id": msg.get("id"), "event": "subscribe", "success": True, "ts": wall_ms()}
            await self._send(client, orjson.dumps(ack).decode())
        elif event == "pong":
            ts = msg.get("ts")
            self.pongs.append(ts if isinstance(ts, int) else None)
            client.unanswered_pings = 0
        elif event == "ping":
            self.client_pings += 1
            await self._send(client, orjson.dumps({"event": "pong", "ts": wall_ms()}).decode())

    def frames_for(self, client: SimClient) -> list[str]:
        """Return a ``markprices`` frame and one frame per ``<SYMBOL>@markprice`` topic."""
        ts = self.frame_ts()
        frames: list[str] = []
        if ALL_MARKS_TOPIC in client.topics:
            data = [
                {"symbol": s, "price": float(p)}
                for s, p in self.prices.items()
                if s not in self.silent
            ]
            frames.append(orjson.dumps({"topic": ALL_MARKS_TOPIC, "ts": ts, "data": data}).decode())
        for topic in sorted(client.topics):
            symbol = topic.removesuffix(SYMBOL_TOPIC_SUFFIX)
            if (
                topic.endswith(SYMBOL_TOPIC_SUFFIX)
                and symbol in self.prices
                and symbol not in self.silent
            ):
                item = {"symbol": symbol, "price": float(self.prices[symbol])}
                frames.append(orjson.dumps({"topic": topic, "ts": ts, "data": item}).decode())
        return frames
