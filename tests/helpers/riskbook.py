"""A generated book in a real Redis, loaded the daemon's way, for the risk views' tests.

The book goes through the input stream and the daemon's InputConsumer, with
the engine holding marks, so every index entry (isolated prices, cross
bands) is what the daemon writes. A brute force over every account in
Redis is the reference the views are checked against.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path

import redis.asyncio as aioredis

from state.account import AccountState
from state.keys import Keys
from state.models import Market, MarkPrice
from state.rules import Rules
from state.store import Store
from state.store.client import open_client
from state.store.risk import all_accounts
from watcher.cli.risk import model_spec
from watcher.daemon.consumer import InputConsumer
from watcher.daemon.engine import Engine
from watcher.demo.book import Shape, demo_markets, demo_marks, demo_specs, generate
from watcher.feeds.book import MarkBook

PREFIX = "risk"
KEYS = Keys(PREFIX)
_TS = itertools.count(1_700_000_000_000, 1000)


def config_text(url: str, markets: Mapping[str, Market], *, at_equality: bool = False) -> str:
    """A config for ``markets`` on the Redis at ``url`` under the test prefix."""
    lines = [
        "[redis]",
        f'url = "{url}"',
        f'prefix = "{PREFIX}"',
        "[liquidation]",
        f"at_equality = {'true' if at_equality else 'false'}",
        "[[feeds]]",
        'venue = "orderly"',
        'url = "ws://127.0.0.1:9/ws"',
        f"symbols = {json.dumps(sorted(markets))}",
        "stale_after = 3600",
    ]
    for symbol, market in markets.items():
        spec = model_spec(market.maintenance)
        body = ", ".join(f"{k} = {json.dumps(v)}" for k, v in spec.items())
        lines += [f"[markets.{symbol}]", f"maintenance = {{ {body} }}"]
        if market.partial is None and spec["model"] == "orderly":
            lines.append("partial = false")
    return "\n".join(lines) + "\n"


def write_config(directory: Path, url: str, markets: Mapping[str, Market] | None = None) -> Path:
    path = directory / "risk.toml"
    path.write_text(config_text(url, markets or demo_markets()))
    return path


class Loaded:
    """The daemon's pieces around one Redis: marks in, input applied, decisions taken."""

    def __init__(self, redis: aioredis.Redis, markets: Mapping[str, Market]) -> None:
        self.redis = redis
        self.store = Store(redis, KEYS)
        self.rules = Rules(KEYS, markets)
        self.book = MarkBook(dict.fromkeys(markets, 3600.0))
        self.engine = Engine(self.store, self.rules, self.book)
        self.consumer = InputConsumer(
            self.store,
            self.rules,
            owner="risk-test",
            live_marks=self.engine.live_marks,
            generation=lambda: self.engine.generation,
            nudge=self.engine.nudge,
            block=0.001,
        )

    async def start(self) -> None:
        await self.consumer.ensure_group()
        assert await self.store.acquire_lease("risk-test", 3_600_000)

    async def tick(self, marks: Mapping[str, Decimal]) -> None:
        now = time.monotonic()
        for symbol, price in marks.items():
            self.book.offer(MarkPrice(symbol, price, next(_TS), now, "test"))
        await self.engine.process(self.book.take(time.monotonic()))

    async def apply(self, messages: Sequence[bytes]) -> None:
        await self.store.append_input(messages)
        while True:
            taken = await self.consumer.step()
            await self.consumer.settle()
            if not taken:
                break
        await self.engine.process({})


async def load_demo_book(
    url: str, *, accounts: int, seed: int, shape: Shape | None = None
) -> dict[str, Decimal]:
    """Load a generated book on the demo's markets at the demo's marks; return the marks."""
    redis = open_client(url)
    try:
        loaded = Loaded(redis, demo_markets())
        await loaded.start()
        marks = demo_marks()
        await loaded.tick(marks)
        book = generate(demo_specs(), shape or Shape(), seed=seed, accounts=accounts, prefix="r-")
        await loaded.apply(book.messages)
        return marks
    finally:
        await redis.aclose()


async def every_account(url: str) -> list[AccountState]:
    """Every account Redis holds under the test prefix (the brute force reads them all)."""
    redis = open_client(url)
    try:
        store = Store(redis, KEYS)
        names = await all_accounts(store)
        states = await store.load_many(names)
        return [states[n] for n in names]
    finally:
        await redis.aclose()


async def set_mark(url: str, symbol: str, price: Decimal) -> None:
    """Write a mark hash as the daemon would, without the daemon acting on it."""
    redis = open_client(url)
    try:
        await redis.hset(KEYS.mark(symbol), mapping={"price": str(price), "status": "LIVE"})
    finally:
        await redis.aclose()
