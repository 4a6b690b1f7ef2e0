"""Shards on a real 3-master Redis Cluster: workers share them, take them over, hand them back.

Every decision is compared with a brute-force recompute of the whole book;
every worker is a real ``liqwatch run`` process where a crash matters
(kill -9), in-process where the test watches the shares move.
"""

from __future__ import annotations

import asyncio
import random
import time
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from state.keys import Keys
from state.rules import Rules
from state.shards import shard_of
from state.store.client import open_client
from state.store.shards import ShardCountMismatch
from tests.helpers.harness import Harness, config_text, settings_for
from tests.helpers.model import Model, decided, random_book, walk
from tests.helpers.processes import DaemonProcess
from tests.helpers.rig import MARKS
from watcher.daemon.app import Daemon
from watcher.daemon.config import parse_settings
from watcher.demo.redis_cluster import RedisClusterServers
from watcher.demo.sim.orderly import OrderlyMarkServer

S = 16
ETH = "PERP_ETH_USDC"


async def _flushed(url: str) -> None:
    client = open_client(url, cluster=True)
    try:
        await client.flushall()
    finally:
        await client.aclose()


async def _load(redis, book: list[dict[str, object]], shards: int) -> None:
    """Append each message to its account's shard, as a producer routes."""
    pipe = redis.pipeline(transaction=False)
    for m in book:
        keys = Keys("liq", shard_of(str(m["account"]), shards))
        pipe.xadd(keys.input, {"msg": orjson.dumps(m)})
    await pipe.execute()


async def _drained(redis, shards: int, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        for k in range(shards):
            stream = Keys("liq", k).input
            while True:
                last = await redis.xrevrange(stream, count=1)
                if not last:
                    break
                groups = await redis.xinfo_groups(stream)
                group = next((g for g in groups if g["name"] == b"liqwatch"), None)
                if group and group["pending"] == 0 and group["last-delivered-id"] == last[0][0]:
                    break
                await asyncio.sleep(0.05)


async def _decisions(redis, shards: int) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for k in range(shards):
        entries = await redis.xrange(Keys("liq", k).events)
        out += decided([{a.decode(): b.decode() for a, b in f.items()} for _, f in entries])
    return out


def test_shard_of_is_the_documented_hash() -> None:
    """First 8 hex digits of SHA-1, mod S: stable, spread, and S = 1 is always shard 0."""
    assert shard_of("acct-1", 1) == 0
    assert shard_of("alice", 16) == int("522b276a", 16) % 16  # sha1("alice") = 522b276a...
    counts = [0] * S
    for i in range(16_000):
        counts[shard_of(f"acct{i}", S)] += 1
    assert min(counts) > 800
    assert max(counts) < 1200


async def test_the_redis_snippet_agrees_with_shard_of(redis_client) -> None:
    """The README's redis-cli EVAL routes every account where the daemon looks for it."""
    snippet = "return tonumber(string.sub(redis.sha1hex(ARGV[1]), 1, 8), 16) % tonumber(ARGV[2])"
    rng = random.Random(7)
    names = ["", "a", "Ω-unicode", *(f"{rng.getrandbits(64):x}:{i}" for i in range(300))]
    for name in names:
        for count in (2, 16, 1000):
            assert await redis_client.eval(snippet, 0, name, count) == shard_of(name, count), name


async def test_a_worker_with_another_shard_count_refuses_to_start(redis_cluster) -> None:
    await _flushed(redis_cluster.url)
    async with Harness(redis_cluster.url, {ETH: "3000"}, shards=S, cluster=True) as h:
        await h.start("w16")
        await h.balanced()
        text = config_text(redis_cluster.url, h.server.url, [ETH], shards=8, cluster=True)
        redis = open_client(redis_cluster.url, cluster=True)
        try:
            with pytest.raises(ExceptionGroup) as failed:
                await Daemon(parse_settings(text, {}), redis).run(asyncio.Event())
            assert failed.group_contains(ShardCountMismatch, match="laid out for 16 shards")
        finally:
            await redis.aclose()


async def test_input_in_the_wrong_shard_is_dead_lettered(redis_cluster) -> None:
    await _flushed(redis_cluster.url)
    async with Harness(redis_cluster.url, {ETH: "3000"}, shards=S, cluster=True) as h:
        await h.start("w")
        await h.balanced()
        wrong = (shard_of("A", S) + 1) % S
        msg = {"type": "balance", "account": "A", "balance": "5", "seq": 1}
        await h.redis.xadd(Keys("liq", wrong).input, {"msg": orjson.dumps(msg)})
        await h.drained()
        (letter,) = await h.dead()
        assert f"belongs to shard {shard_of('A', S)} of {S}" in letter["reason"]
        assert await h.redis.exists(Keys("liq", wrong).account("A")) == 0


async def test_entries_left_pending_by_a_dead_worker_are_applied_by_the_next(
    redis_cluster,
) -> None:
    """A worker read an entry and died before acknowledging it: the shard's next holder applies it.

    The shard coordinator takes the lease for the worker, so its input
    consumer first sees the lease as already its own: that is a takeover too.
    """
    await _flushed(redis_cluster.url)
    keys = Keys("liq", shard_of("A", S))
    msg = {"type": "balance", "account": "A", "balance": "5", "seq": 1}
    async with Harness(redis_cluster.url, {ETH: "3000"}, shards=S, cluster=True) as h:
        await h.redis.xgroup_create(keys.input, "liqwatch", id="0", mkstream=True)
        await h.redis.xadd(keys.input, {"msg": orjson.dumps(msg)})
        # Read by a worker that then died: pending under its name, never acknowledged.
        await h.redis.xreadgroup("liqwatch", "dead-worker", {keys.input: ">"})
        await h.start("w")
        await h.balanced()
        await h.drained()
        assert await h.redis.hget(keys.account("A"), "balance") == b"5"
        assert (await h.redis.xpending(keys.input, "liqwatch"))["pending"] == 0
        await h.daemon.beat()
        beat = orjson.loads(await h.redis.get(Keys().worker_health("w")))
        assert shard_of("A", S) in beat["input_leader"]


async def test_workers_join_and_leave_while_marks_move(redis_cluster) -> None:
    """Shares follow the workers (at most ceil(S/W) each); nothing missed or doubled."""
    await _flushed(redis_cluster.url)
    rng = random.Random(11)
    book = random_book(rng, 400)
    marks = dict(MARKS)
    async with Harness(
        redis_cluster.url, {s: str(p) for s, p in marks.items()}, shards=S, cluster=True
    ) as h:
        await h.start("w0")
        await h.start("w1")
        await h.balanced()
        await h.tick({s: str(p) for s, p in marks.items()})
        for m in book:
            await h.send(m)
        await h.drained(timeout=30)
        model = Model(book, Rules(Keys(), h.settings("x").markets))
        model.step(marks)
        for step in range(60):
            if step == 15:
                await h.start("w2")  # joins: the others hand shards over
            if step == 35:
                await h.stop(0)  # leaves cleanly: its shards are handed back at once
            moved = walk(rng, marks)
            marks.update(moved)
            if moved:
                # A shard handed over is conflated for a moment (see the
                # failover test below): every mark is stepped once it is held.
                await h.balanced()
                await h.tick({s: str(p) for s, p in moved.items()})
                model.step(marks)
        await h.balanced()
        shares = [len(d.units) for d, _, t in h.daemons if not t.done()]
        assert sorted(shares) == [8, 8]
        got = decided(await h.events())
    assert len(got) == len(set(got)), "a decision was emitted twice"
    assert set(got) == model.liquidated
    assert len(model.liquidated) > 20


async def test_a_crossing_while_a_shard_has_no_holder_is_acted_on(redis_cluster) -> None:
    """A worker dies; before its shards are taken over, ETH dips through a position and back.

    The worker taking the shard over looks back at every mark since the last
    one decided there: the isolated position is liquidated at the dip.
    """
    await _flushed(redis_cluster.url)
    async with Harness(redis_cluster.url, {ETH: "3000"}, shards=S, cluster=True) as h:
        await h.start("w0")
        await h.start("w1")
        await h.balanced()
        await h.tick({ETH: "3000"})
        victim = h.daemons[1][0]
        held = {u.shard for u in victim.units}
        name = next(f"v{i}" for i in range(10_000) if shard_of(f"v{i}", S) in held)
        await h.isolated_long(name)  # liquidated below 2,716.30
        await h.kill(1)  # no hand-back: its leases lapse after lease_ttl (1 s)
        await h.tick({ETH: "2700"})
        await h.tick({ETH: "2900"})
        assert await h.events() == []
        await h.balanced()
        await h.tick({ETH: "2901"})
        (event,) = await h.events()
        assert event["account"] == name
        assert Decimal(event["mark_price"]) == 2700


async def test_kill_9_of_one_worker_mid_cascade(redis_cluster, tmp_path: Path) -> None:
    """3 worker processes, S = 16; one killed -9 in a cascade of 10,000+ positions.

    Its shards are taken over within lease_ttl of its last renewal (plus a
    round); every decision once; the set equals a brute-force recompute.
    """
    await _flushed(redis_cluster.url)
    book = random_book(random.Random(12), 6000)
    assert sum(1 for m in book if m["type"] == "position") > 10_000
    crash = {s: (p * Decimal("0.88")).quantize(Decimal("0.01")) for s, p in MARKS.items()}
    async with OrderlyMarkServer(MARKS, interval=0.2, ping_interval=0) as sim:
        workers = []
        for name in ("w0", "w1", "w2"):
            config = tmp_path / f"{name}.toml"
            text = config_text(
                redis_cluster.url, sim.url, list(MARKS), instance=name, shards=S, cluster=True
            )
            config.write_text(text)
            workers.append(DaemonProcess(config, tmp_path / f"{name}.log").start())
        redis = open_client(redis_cluster.url, cluster=True)
        try:
            for w in workers:
                await w.wait_log("shards.taken")
            await _load(redis, book, S)
            await _drained(redis, S, timeout=90)
            settings = settings_for(redis_cluster.url, sim.url, list(MARKS))
            model = Model(book, Rules(Keys(), settings.markets))
            model.step(MARKS)
            model.step(crash)
            victim_shards = await _held_by(redis, "w0")
            assert victim_shards
            for symbol, price in crash.items():
                sim.set_price(symbol, price)
            async with asyncio.timeout(30):
                while await _event_count(redis) < 50:
                    await asyncio.sleep(0.002)
            workers[0].kill()
            killed = time.monotonic()
            at_kill = await _event_count(redis)
            # Its shards are taken over: each shard is held by a live worker again.
            async with asyncio.timeout(10):
                while set(await _held_by(redis, "w0")):
                    await asyncio.sleep(0.05)
                while None in await _owners(redis):
                    await asyncio.sleep(0.05)
            takeover = time.monotonic() - killed
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                if len(set(await _decisions(redis, S))) >= len(model.liquidated):
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)
            got = await _decisions(redis, S)
        finally:
            await redis.aclose()
            for w in workers:
                w.kill()
    assert len(got) == len(set(got)), "a decision was emitted twice"
    assert set(got) == model.liquidated
    assert len(model.liquidated) > 1000
    assert at_kill < len(model.liquidated) / 2, (at_kill, len(model.liquidated))
    # lease_ttl is 1 s in these configs; a round is lease_ttl / 5.
    assert takeover < 1.0 + 0.2 + 1.0, takeover


async def _event_count(redis) -> int:
    """How many events every shard holds (XLEN: cheap enough to poll in a cascade)."""
    pipe = redis.pipeline(transaction=False)
    for k in range(S):
        pipe.xlen(Keys("liq", k).events)
    return sum(await pipe.execute())


async def _owners(redis) -> list[str | None]:
    pipe = redis.pipeline(transaction=False)
    for k in range(S):
        pipe.get(Keys("liq", k).input_lease)
    return [None if v is None else v.decode() for v in await pipe.execute()]


async def _held_by(redis, worker: str) -> list[int]:
    return [k for k, owner in enumerate(await _owners(redis)) if owner == worker]


async def test_a_master_killed_and_its_replica_promoted_while_deciding(tmp_path: Path) -> None:
    """3 masters + 3 replicas (AOF): a master dies mid-walk; its replica takes over.

    The workers ride the failover out (DEGRADED, then recovered); decisions
    made before and after are each made once, and none is missed.
    """
    with RedisClusterServers(masters=3, replicas=1, appendonly=True) as cluster:
        rng = random.Random(13)
        book = random_book(rng, 300)
        marks = dict(MARKS)
        async with Harness(
            cluster.url, {s: str(p) for s, p in marks.items()}, shards=S, cluster=True
        ) as h:
            await h.start("w0")
            await h.start("w1")
            await h.balanced()
            await h.tick({s: str(p) for s, p in marks.items()})
            for m in book:
                await h.send(m)
            await h.drained(timeout=30)
            # Replicas hold the book before their master dies (asynchronous
            # replication: what a master took in its last moments can be lost,
            # which the data-generation guard is there to notice).
            await asyncio.to_thread(cluster.wait_replicated)
            model = Model(book, Rules(Keys(), h.settings("x").markets))
            model.step(marks)
            masters = [n for n in cluster.nodes if cluster.role(n) == "master"]
            victim = next(n for n in masters if n.url != cluster.url)
            for step in range(40):
                if step == 10:
                    cluster.kill(victim)
                moved = walk(rng, marks)
                marks.update(moved)
                if moved:
                    # While a shard has no holder (its lease lapsed in the
                    # failover, and nobody has taken it yet) its marks are
                    # conflated as in any backlog: the holder that takes it
                    # queries the extremes since its last decided mark, but
                    # judges a cross account at the newest marks (README,
                    # "Conflation"). The brute force steps every mark, so
                    # the walk waits for every shard to be held.
                    await h.balanced()
                    await h.tick({s: str(p) for s, p in moved.items()}, timeout=30)
                    model.step(marks)
            await h.balanced()
            got = decided(await h.events())
            outages = sum(x.outages for d, _, t in h.daemons if not t.done() for x in d.links)
    assert outages >= 1, "the failover was not noticed"
    assert len(got) == len(set(got)), "a decision was emitted twice"
    assert set(got) == model.liquidated
    assert len(model.liquidated) > 10
