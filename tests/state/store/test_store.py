"""The store against a real redis-server: NOSCRIPT recovery, lease fencing, input takeover."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import orjson
import redis.asyncio as aioredis

from state.changes import ChangeSet
from state.keys import Keys
from state.models import FlatModel, Market
from state.rules import Rules
from state.store import Store
from watcher.daemon.consumer import GROUP, InputConsumer

KEYS = Keys("t")
MARKETS = {"PERP_ETH_USDC": Market("PERP_ETH_USDC", FlatModel(Decimal("0.006")))}


async def test_commit_survives_script_flush(redis_client: aioredis.Redis) -> None:
    store = Store(redis_client, KEYS)
    cs = ChangeSet(KEYS, "A").expect_version(0).bump().hset(KEYS.account("A"), "balance", "1")
    assert (await store.commit(cs)).ok
    # What a Redis restart does to the script cache.
    await redis_client.script_flush()
    cs = ChangeSet(KEYS, "A").expect_version(1).bump().hset(KEYS.account("A"), "balance", "2")
    assert (await store.commit(cs)).ok
    await redis_client.script_flush()
    results = await store.commit_many(
        [ChangeSet(KEYS, "A").expect_version(2).bump(), ChangeSet(KEYS, "A").expect_version(3)]
    )
    assert [r.outcome for r in results] == ["OK", "OK"]
    assert await redis_client.hget(KEYS.account("A"), "version") == b"3"


async def test_guards_are_checked_before_any_write(redis_client: aioredis.Redis) -> None:
    store = Store(redis_client, KEYS)
    cs = ChangeSet(KEYS, "A").expect_version(5).hset(KEYS.account("A"), "balance", "9")
    cs.xadd(KEYS.events, {"x": "1"})
    assert (await store.commit(cs)).outcome == "CONFLICT"
    assert await redis_client.exists(KEYS.account("A"), KEYS.events) == 0
    cs = ChangeSet(KEYS, "A").lease(KEYS.input_lease, "me").hset(KEYS.account("A"), "b", "1")
    assert (await store.commit(cs)).outcome == "LEASE"
    assert await redis_client.exists(KEYS.account("A")) == 0


async def test_lease_is_exclusive_and_renewed_only_by_its_holder(redis_client) -> None:
    store = Store(redis_client, KEYS)
    assert await store.acquire_lease("one", 200) == "acquired"
    assert not await store.acquire_lease("two", 200)
    assert await store.acquire_lease("one", 200) == "renewed"
    await asyncio.sleep(0.3)
    assert await store.acquire_lease("two", 200) == "acquired"  # lapsed: taken over
    await store.release_lease("one")  # not ours any more: a no-op
    assert await redis_client.get(KEYS.input_lease) == b"two"
    await store.release_lease("two")
    assert await redis_client.get(KEYS.input_lease) is None


async def test_pending_input_is_taken_over_in_order(redis_client: aioredis.Redis) -> None:
    rules = Rules(KEYS, MARKETS)

    def consumer(owner: str) -> InputConsumer:
        return InputConsumer(
            Store(redis_client, KEYS),
            rules,
            owner=owner,
            live_marks=dict,
            generation=lambda: 0,
            nudge=lambda _: None,
            lease_ttl=0.2,
            block=0.01,
        )

    first, second = consumer("first"), consumer("second")
    await first.ensure_group()
    for seq in range(1, 6):
        msg = {"type": "balance", "account": "A", "balance": str(seq * 100), "seq": seq}
        await redis_client.xadd(KEYS.input, {"msg": orjson.dumps(msg)})
    assert await first.store.acquire_lease("first", 200)
    # The first holder reads a batch and dies before applying it.
    assert len(await first._read(">")) == 5
    pending = await redis_client.xpending(KEYS.input, GROUP)
    assert pending["pending"] == 5
    stop = asyncio.Event()
    task = asyncio.create_task(second.run(stop))
    async with asyncio.timeout(5):
        while (await redis_client.xpending(KEYS.input, GROUP))["pending"]:
            await asyncio.sleep(0.02)
    stop.set()
    await task
    account = await redis_client.hgetall(KEYS.account("A"))
    assert account[b"balance"] == b"500"
    assert account[b"seq"] == b"5"
    assert account[b"version"] == b"5"  # every entry applied once, none twice
    assert second.counters["input_applied"] == 5


def balance_msg(seq: int, amount: str) -> bytes:
    return orjson.dumps({"type": "balance", "account": "A", "balance": amount, "seq": seq})


def consumer(redis_client: aioredis.Redis, owner: str) -> InputConsumer:
    return InputConsumer(
        Store(redis_client, KEYS),
        Rules(KEYS, MARKETS),
        owner=owner,
        live_marks=dict,
        generation=lambda: 0,
        nudge=lambda _: None,
        lease_ttl=5.0,
        block=0.01,
    )


async def drain(redis_client: aioredis.Redis, c: InputConsumer) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(c.run(stop))
    async with asyncio.timeout(5):
        while (await redis_client.xpending(KEYS.input, GROUP))["pending"] or (
            await redis_client.hget(KEYS.account("A"), "seq")
        ) != b"2":
            await asyncio.sleep(0.02)
    stop.set()
    await task


async def test_a_lease_won_back_takes_over_what_another_holder_left(redis_client) -> None:
    a, b = consumer(redis_client, "A"), consumer(redis_client, "B")
    await a.ensure_group()
    assert await a.store.acquire_lease("A", 5000) == "acquired"
    a.leader = True
    await redis_client.delete(KEYS.input_lease)  # A stalls past its TTL
    await redis_client.xadd(KEYS.input, {"msg": balance_msg(1, "100")})
    await redis_client.xadd(KEYS.input, {"msg": balance_msg(2, "200")})
    assert await b.store.acquire_lease("B", 5000) == "acquired"
    b.batch = 1
    assert len(await b._read(">")) == 1  # B reads seq 1, then dies
    await redis_client.delete(KEYS.input_lease)
    await drain(redis_client, a)  # A wins the lease back: it must take B's entry over
    account = await redis_client.hgetall(KEYS.account("A"))
    assert account[b"balance"] == b"200"
    assert account[b"version"] == b"2"  # seq 1 applied, then seq 2: none skipped
    assert a.counters["input_duplicates"] == 0


async def test_a_lost_read_reply_cannot_reorder_input(redis_client) -> None:
    c = consumer(redis_client, "C")
    await c.ensure_group()
    await redis_client.xadd(KEYS.input, {"msg": balance_msg(1, "100")})
    await redis_client.xadd(KEYS.input, {"msg": balance_msg(2, "200")})
    c.batch = 1
    read = c._read
    lost = True

    async def lossy(start: str):  # the client library's retry after a lost reply
        nonlocal lost
        if start == ">" and lost:
            lost = False
            await read(">")  # delivered seq 1, but the reply never reached us
        return await read(start)

    c._read = lossy  # type: ignore[method-assign]
    await drain(redis_client, c)
    account = await redis_client.hgetall(KEYS.account("A"))
    assert account[b"balance"] == b"200"
    assert account[b"version"] == b"2"
    assert c.counters["input_duplicates"] == 0
