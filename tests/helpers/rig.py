"""A daemon process with its redis-server (AOF on) and its Orderly sim, and what drives them."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from state.keys import Keys
from state.rules import Rules
from state.store.client import open_client
from tests.helpers.harness import config_text, settings_for
from tests.helpers.model import BTC, ETH, SOL, Model, decided, random_book
from tests.helpers.processes import DaemonProcess, drained
from watcher.clock import wall_ms
from watcher.demo.redis_server import RedisServer
from watcher.demo.sim.orderly import OrderlyMarkServer

D = Decimal
MARKS = {ETH: D(3000), BTC: D(60000), SOL: D(150)}
CRASH = {s: (p * D("0.91")).quantize(D("0.01")) for s, p in MARKS.items()}
KEYS = Keys("liq")
SETTLE = 60.0


@dataclass
class Rig:
    server: RedisServer
    sim: OrderlyMarkServer
    daemon: DaemonProcess
    config: Path
    rules: Rules

    async def client(self) -> aioredis.Redis:
        return open_client(self.server.url)

    async def send(self, messages: list[dict[str, object]]) -> None:
        redis = await self.client()
        try:
            pipe = redis.pipeline(transaction=False)
            for m in messages:
                pipe.xadd(KEYS.input, {"msg": orjson.dumps(m)})
            await pipe.execute()
            await drained(redis, KEYS.input)
        finally:
            await redis.aclose()

    async def decisions(self) -> list[tuple[str, str, str]]:
        redis = await self.client()
        try:
            entries = await redis.xrange(KEYS.events)
        finally:
            await redis.aclose()
        return decided([{k.decode(): v.decode() for k, v in f.items()} for _, f in entries])

    def move(self, marks: Mapping[str, Decimal]) -> None:
        for symbol, price in marks.items():
            self.sim.set_price(symbol, price)


@contextlib.asynccontextmanager
async def open_rig(
    tmp_path: Path,
    *,
    before_start: Callable[[aioredis.Redis], Awaitable[None]] | None = None,
    clock_ms: Callable[[], int] = wall_ms,
) -> AsyncIterator[Rig]:
    """A redis-server with AOF, an Orderly sim pushing every 0.2 s, a daemon process ready.

    ``before_start`` prepares Redis before the daemon starts; ``clock_ms``
    stamps the sim's frames.
    """
    with RedisServer(appendonly=True) as server:
        if before_start is not None:
            redis = open_client(server.url)
            try:
                await before_start(redis)
            finally:
                await redis.aclose()
        async with OrderlyMarkServer(
            MARKS, interval=0.2, ping_interval=0, clock_ms=clock_ms
        ) as sim:
            text = config_text(server.url, sim.url, list(MARKS), instance="fault")
            config = tmp_path / "liqwatch.toml"
            config.write_text(text)
            rules = Rules(KEYS, settings_for(server.url, sim.url, list(MARKS)).markets)
            daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
            try:
                await daemon.wait_log("input.lease_acquired")
                yield Rig(server, sim, daemon, config, rules)
            finally:
                daemon.kill()


async def loaded(rig: Rig, accounts: int, seed: int) -> Model:
    """Load a random book through the input stream; return its brute-force model."""
    book = random_book(random.Random(seed), accounts)
    await rig.send(book)
    model = Model(book, rig.rules)
    # Decided at once: what the book holds liquidatable at the starting marks.
    model.step(MARKS)
    return model


async def settled(rig: Rig, expected: set[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Wait until the daemon has made as many decisions as expected, and a moment more."""
    deadline = time.monotonic() + SETTLE
    got = await rig.decisions()
    while len(got) < len(expected) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        got = await rig.decisions()
    await asyncio.sleep(1.0)
    return await rig.decisions()


def logged_at(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
