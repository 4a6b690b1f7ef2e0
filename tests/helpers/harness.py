"""A whole liqwatch daemon on loopback: real redis-server, a simulated Orderly feed."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from types import TracebackType
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from state.keys import Keys
from state.shards import shard_of
from state.store.client import open_client
from watcher.daemon.app import Daemon
from watcher.daemon.config import Settings, parse_settings
from watcher.daemon.link import TRANSIENT
from watcher.daemon.unit import ShardUnit
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
    shards: int = 1,
    cluster: bool = False,
) -> str:
    """A config for one Orderly feed and the test markets, with test timings."""
    return f"""
[redis]
url = "{redis_url}"
prefix = "liq"
cluster = {"true" if cluster else "false"}
[shards]
count = {shards}
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
        shards: int = 1,
        cluster: bool = False,
    ) -> None:
        self.jump_band = jump_band
        self.shards = shards
        self.cluster = cluster
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
        self.redis: aioredis.Redis = open_client(redis_url, cluster=cluster)
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
            shards=self.shards,
            cluster=self.cluster,
        )

    def keys(self, account: str | None = None) -> Keys:
        """The keys of ``account``'s shard (of shard 0 without one)."""
        return Keys("liq", 0 if account is None else shard_of(account, self.shards))

    @property
    def all_keys(self) -> list[Keys]:
        """The keys of every shard."""
        return [Keys("liq", k) for k in range(self.shards)]

    def units(self) -> list[ShardUnit]:
        """Every shard unit running in a live daemon."""
        return [u for d, _, t in self.daemons if not t.done() for u in d.units]

    async def balanced(self, timeout: float = 20.0) -> None:
        """Wait until every shard runs in exactly one live daemon, each within its share."""
        live = [d for d, _, t in self.daemons if not t.done()]
        share = -(-self.shards // max(1, len(live)))
        async with asyncio.timeout(timeout):
            while True:
                held = [u.shard for u in self.units() if u.started]
                if sorted(held) == list(range(self.shards)) and all(
                    len(d.units) <= share for d in live
                ):
                    return
                await asyncio.sleep(0.02)

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
        redis = open_client(self.redis_url, cluster=self.cluster)
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
            await daemon.redis.aclose()

    async def kill(self, index: int = 0) -> None:
        """Cancel a daemon wherever it is, as a crash would (no clean shutdown)."""
        daemon, _, task = self.daemons[index]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await daemon.redis.aclose()

    async def send(self, *messages: Mapping[str, Any]) -> str:
        """Append input messages (seq filled in per account when absent); return the last id."""
        last = ""
        for m in messages:
            msg = dict(m)
            if "seq" not in msg:
                self._seq[msg["account"]] = self._seq.get(msg["account"], 0) + 1
                msg["seq"] = self._seq[msg["account"]]
            raw = json.dumps(msg).encode()  # orjson refuses ints past 64 bits
            last = await self.send_raw(raw)
        return last

    async def send_raw(self, raw: bytes) -> str:
        """Append one message as given to its account's shard (shard 0 if it names none)."""
        account = None
        with contextlib.suppress(ValueError, RecursionError):
            doc = json.loads(raw)
            if isinstance(doc, dict) and isinstance(doc.get("account"), str):
                account = doc["account"]
        entry = await self.redis.xadd(self.keys(account).input, {"msg": raw})
        return str(entry.decode())

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
        """Wait until every shard's input group has delivered and acknowledged everything."""
        async with asyncio.timeout(timeout):
            for keys in self.all_keys:
                while True:
                    last = await self.redis.xrevrange(keys.input, count=1)
                    if not last:
                        break
                    info = await _groups(self.redis, keys.input)
                    group = next((g for g in info if g["name"] == b"liqwatch"), None)
                    if group and group["pending"] == 0 and group["last-delivered-id"] == last[0][0]:
                        break
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
            while not task.done() and any(
                u.engine.processed.get(s) != ts for u in daemon.units for s in prices
            ):
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(
                        f"{daemon.settings.instance} did not decide on ts {ts} for {dict(prices)}:"
                        f" processed {[u.engine.processed for u in daemon.units]}"
                    )
                await asyncio.sleep(0.005)

    async def events(self) -> list[dict[str, str]]:
        """Every shard's events, in the order they were appended (by entry id)."""
        return await self._read_all([k.events for k in self.all_keys])

    async def dead(self) -> list[dict[str, str]]:
        """Every shard's dead letters, in the order they were appended (by entry id)."""
        return await self._read_all([k.dead for k in self.all_keys])

    async def _read_all(self, streams: list[str]) -> list[dict[str, str]]:
        entries = []
        for stream in streams:
            # The test's own client rides out a cluster failover too.
            for attempt in range(100):
                try:
                    entries += await self.redis.xrange(stream)
                    break
                except TRANSIENT:
                    if attempt == 99:
                        raise
                    await asyncio.sleep(0.1)
        entries.sort(key=lambda e: tuple(int(x) for x in e[0].split(b"-")))
        return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]


async def _groups(redis: aioredis.Redis, stream: str) -> list[dict[str, Any]]:
    try:
        return list(await redis.xinfo_groups(stream))
    except ResponseError:  # no such key yet
        return []


# The two ways the contract tests run the daemon: one shard on one
# redis-server, and 16 shards over 3 workers on a 3-master Redis Cluster.
TOPOLOGIES = ("one", "cluster-16x3")


@contextlib.asynccontextmanager
async def topology_harness(
    topology: str, redis_url: str, cluster_url: str | None, prices: Mapping[str, str], **kw: Any
) -> AsyncIterator[Harness]:
    """A started harness of ``topology`` (see :data:`TOPOLOGIES`), on a flushed Redis."""
    if topology == "one":
        async with Harness(redis_url, prices, **kw) as h:
            await h.start()
            yield h
        return
    assert cluster_url is not None
    client = open_client(cluster_url, cluster=True)
    try:
        await client.flushall()
    finally:
        await client.aclose()
    async with Harness(cluster_url, prices, shards=16, cluster=True, **kw) as h:
        for i in range(3):
            await h.start(f"worker-{i}")
        await h.balanced()
        yield h
