"""A whole liqwatch daemon on loopback: real redis-server, a simulated Orderly feed."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Mapping
from decimal import Decimal
from types import TracebackType
from typing import Any

import orjson
import redis.asyncio as aioredis

from state.store.client import open_client
from watcher.daemon.app import Daemon
from watcher.daemon.config import Settings, parse_settings
from watcher.demo.sim.orderly import OrderlyMarkServer

DEFAULT_MARKETS = """
[markets.PERP_ETH_USDC]
maintenance = { model = "flat", rate = "0.006" }
[markets.PERP_BTC_USDC.maintenance]
model = "orderly"
base_imr = "0.01"
base_mmr = "0.006"
imr_factor = "0.000000091"
[markets.PERP_SOL_USDC]
maintenance = { model = "brackets", brackets = [["0", "0.01"], ["50000", "0.02"]] }
"""


def config_text(
    redis_url: str,
    feed_url: str,
    symbols: list[str],
    *,
    markets: str = DEFAULT_MARKETS,
    stale_after: float = 30.0,
    extra: str = "",
    instance: str = "test",
    jump_band: float = 0,
) -> str:
    """A config for one Orderly feed and the test markets, with test timings."""
    return f"""
[redis]
url = "{redis_url}"
prefix = "liq"
[[feeds]]
venue = "orderly"
url = "{feed_url}"
symbols = {orjson.dumps(symbols).decode()}
stale_after = {stale_after}
jump_band = {jump_band}
[daemon]
instance = "{instance}"
heartbeat_interval = 0.2
lease_ttl = 1.0
backoff_base = 0.05
backoff_cap = 0.2
{extra}
{markets}
"""


def settings_for(redis_url: str, feed_url: str, symbols: list[str], **options: Any) -> Settings:
    """The settings of :func:`config_text`."""
    return parse_settings(config_text(redis_url, feed_url, symbols, **options), {})


class Harness:
    """Start a feed server and daemons; drive ticks and input; read events."""

    def __init__(
        self,
        redis_url: str,
        prices: Mapping[str, str],
        *,
        stale_after: float = 30.0,
        markets: str = DEFAULT_MARKETS,
        extra: str = "",
        jump_band: float = 0,
    ) -> None:
        self.jump_band = jump_band
        self.redis_url = redis_url
        self._ts = itertools.count(1_700_000_000_000, 1000)
        self.last_ts = 0
        self.server = OrderlyMarkServer(
            {s: Decimal(p) for s, p in prices.items()},
            interval=0,
            ping_interval=0,
            clock_ms=self._next_ts,
        )
        self.symbols = list(prices)
        self.stale_after = stale_after
        self.markets = markets
        self.extra = extra
        self.redis: aioredis.Redis = open_client(redis_url)
        self.daemons: list[tuple[Daemon, asyncio.Event, asyncio.Task[None]]] = []
        self._seq: dict[str, int] = {}

    def _next_ts(self) -> int:
        # One ts per push, whatever the number of clients.
        return self.last_ts

    @property
    def daemon(self) -> Daemon:
        return self.daemons[0][0]

    def settings(self, instance: str) -> Settings:
        return settings_for(
            self.redis_url,
            self.server.url,
            self.symbols,
            markets=self.markets,
            stale_after=self.stale_after,
            extra=self.extra,
            instance=instance,
            jump_band=self.jump_band,
        )

    async def __aenter__(self) -> Harness:
        await self.server.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for i in range(len(self.daemons)):
            await self.stop(i)
        await self.server.__aexit__(et, e, tb)
        await self.redis.aclose()

    async def start(self, instance: str = "test-1") -> Daemon:
        redis = open_client(self.redis_url)
        daemon = Daemon(self.settings(instance), redis)
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        self.daemons.append((daemon, stop, task))
        # Connected and subscribed before anything is pushed.
        await self.server.wait_until(lambda: self.server.subscribe_messages >= len(self.daemons))
        return daemon

    async def stop(self, index: int = 0) -> None:
        daemon, stop, task = self.daemons[index]
        if not task.done():
            stop.set()
            await asyncio.wait_for(task, 10)
            await daemon.store.redis.aclose()

    async def kill(self, index: int = 0) -> None:
        """Cancel a daemon wherever it is, as a crash would (no clean shutdown)."""
        daemon, _, task = self.daemons[index]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await daemon.store.redis.aclose()

    async def send(self, *messages: Mapping[str, Any]) -> str:
        """Append input messages (seq filled in per account when absent); return the last id."""
        last = ""
        for m in messages:
            msg = dict(m)
            if "seq" not in msg:
                self._seq[msg["account"]] = self._seq.get(msg["account"], 0) + 1
                msg["seq"] = self._seq[msg["account"]]
            raw = json.dumps(msg).encode()  # orjson refuses ints past 64 bits
            entry = await self.redis.xadd(self.daemon.store.keys.input, {"msg": raw})
            last = entry.decode()
        return last

    async def isolated_long(self, account: str, symbol: str = "PERP_ETH_USDC") -> None:
        """Open docs/margin.md example 6 (1 @ 3,000, margin 300: liquidated < 2,716.30), applied."""
        await self.send(
            {
                "type": "position",
                "account": account,
                "symbol": symbol,
                "margin_mode": "ISOLATED",
                "qty": "1",
                "entry_price": "3000",
                "margin": "300",
            }
        )
        await self.drained()

    async def drained(self, timeout: float = 10.0) -> None:
        """Wait until the input group has delivered and acknowledged everything."""
        keys = self.daemon.store.keys
        async with asyncio.timeout(timeout):
            while True:
                info = await self.redis.xinfo_groups(keys.input)
                group = next((g for g in info if g["name"] == b"liqwatch"), None)
                last = await self.redis.xrevrange(keys.input, count=1)
                if (
                    group
                    and group["pending"] == 0
                    and (not last or group["last-delivered-id"] == last[0][0])
                ):
                    return
                await asyncio.sleep(0.01)

    async def tick(self, prices: Mapping[str, str], timeout: float = 10.0) -> None:
        """Push one markprices frame and wait until every daemon has decided on it."""
        for symbol, price in prices.items():
            self.server.set_price(symbol, Decimal(price))
        self.server.silent = set(self.symbols) - set(prices)
        self.last_ts = next(self._ts)
        await self.server.push()
        ts = self.last_ts
        for daemon, _, task in self.daemons:
            deadline = asyncio.get_running_loop().time() + timeout
            while not task.done() and any(daemon.engine.processed.get(s) != ts for s in prices):
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(
                        f"{daemon.settings.instance} did not decide on ts {ts} for {dict(prices)}:"
                        f" processed {daemon.engine.processed}"
                    )
                await asyncio.sleep(0.005)

    async def events(self) -> list[dict[str, str]]:
        entries = await self.redis.xrange(self.daemon.store.keys.events)
        return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]

    async def dead(self) -> list[dict[str, str]]:
        entries = await self.redis.xrange(self.daemon.store.keys.dead)
        return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]
