"""Trimming what every consumer group acknowledged, against a real redis-server."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from state.keys import Keys
from state.store.retention import GroupBound, count_entries, trim_acked
from state.store.streams import stream_entries

STREAM = Keys("t").events


def ids(*numbers: int) -> list[str]:
    return [f"{n}-0" for n in numbers]


async def add(r: aioredis.Redis, *entry_ids: str) -> None:
    for entry_id in entry_ids:
        await r.xadd(STREAM, {"n": entry_id}, id=entry_id)


async def read(r: aioredis.Redis, group: str, consumer: str, count: int) -> list[str]:
    reply = await r.xreadgroup(group, consumer, {STREAM: ">"}, count=count)
    return [e.decode() for e, _ in stream_entries(reply)]


async def stream_ids(r: aioredis.Redis) -> list[str]:
    return [e.decode() for e, _ in await r.xrange(STREAM)]


async def pending_ids(r: aioredis.Redis, group: str) -> list[str]:
    rows = await r.xpending_range(STREAM, group, min="-", max="+", count=1000)
    return [row["message_id"].decode() for row in rows]


async def two_groups(r: aioredis.Redis) -> None:
    """Ten entries; ``exec``: A read 5, acked 2, died; ``alerts`` read and acked all."""
    await add(r, *ids(*range(1, 11)))
    await r.xgroup_create(STREAM, "exec", id="0")
    await r.xgroup_create(STREAM, "alerts", id="0")
    assert await read(r, "exec", "A", 5) == ids(1, 2, 3, 4, 5)
    await r.xack(STREAM, "exec", *ids(1, 2))
    await r.xack(STREAM, "alerts", *await read(r, "alerts", "X", 100))


async def test_trim_removes_exactly_what_both_groups_acknowledged(redis_client) -> None:
    await two_groups(redis_client)

    result = await trim_acked(redis_client, STREAM)

    assert (result.outcome, result.removed, result.minid) == ("trimmed", 2, "3-0")
    assert (result.length_before, result.length_after) == (10, 8)
    assert await stream_ids(redis_client) == ids(*range(3, 11))
    # In Redis's order of groups: by name.
    assert result.groups == (
        GroupBound("alerts", 0, None, "10-0", "10-1", "delivered"),
        GroupBound("exec", 3, "3-0", "5-0", "3-0", "pending"),
    )
    assert result.bounded_by == ["exec"]
    # Every pending entry is still there to be claimed, fields and all.
    assert await pending_ids(redis_client, "exec") == ids(3, 4, 5)
    claimed = await redis_client.xclaim(STREAM, "exec", "B", 0, ids(3, 4, 5))
    assert [(e.decode(), f) for e, f in claimed] == [(i, {b"n": i.encode()}) for i in ids(3, 4, 5)]


async def test_a_claimed_and_acknowledged_entry_lets_trim_advance(redis_client) -> None:
    await two_groups(redis_client)
    assert (await trim_acked(redis_client, STREAM)).removed == 2
    _, claimed, _ = await redis_client.xautoclaim(STREAM, "exec", "B", 0, "0-0")
    assert [e.decode() for e, _ in claimed] == ids(3, 4, 5)
    assert (await trim_acked(redis_client, STREAM)).removed == 0  # claimed is still pending

    await redis_client.xack(STREAM, "exec", *ids(3, 4, 5))
    result = await trim_acked(redis_client, STREAM)

    assert (result.removed, result.minid, result.bounded_by) == (3, "5-1", ["exec"])
    assert await stream_ids(redis_client) == ids(6, 7, 8, 9, 10)


async def test_a_group_that_has_not_read_keeps_everything(redis_client) -> None:
    await two_groups(redis_client)
    await redis_client.xgroup_create(STREAM, "late", id="0")

    result = await trim_acked(redis_client, STREAM)

    assert (result.removed, result.minid, result.bounded_by) == (0, "0-1", ["late"])
    assert await stream_ids(redis_client) == ids(*range(1, 11))


async def test_undelivered_entries_of_a_group_without_pending_ones_stay(redis_client) -> None:
    await add(redis_client, *ids(*range(1, 6)))
    await redis_client.xgroup_create(STREAM, "g", id="0")
    await redis_client.xack(STREAM, "g", *await read(redis_client, "g", "A", 2))

    result = await trim_acked(redis_client, STREAM)

    assert (result.removed, result.minid) == (2, "2-1")
    assert await stream_ids(redis_client) == ids(3, 4, 5)
    assert await read(redis_client, "g", "A", 10) == ids(3, 4, 5)


async def test_keep_leaves_the_newest_entries(redis_client) -> None:
    await add(redis_client, *ids(*range(1, 11)))
    await redis_client.xgroup_create(STREAM, "g", id="0")
    await redis_client.xack(STREAM, "g", *await read(redis_client, "g", "A", 100))

    kept_all = await trim_acked(redis_client, STREAM, keep=20)
    assert (kept_all.removed, kept_all.keep_bound, kept_all.minid) == (0, "1-0", "1-0")
    result = await trim_acked(redis_client, STREAM, keep=3)

    assert (result.removed, result.keep_bound, result.minid) == (7, "8-0", "8-0")
    assert result.bounded_by == ["keep"]
    assert await stream_ids(redis_client) == ids(8, 9, 10)
    # The groups' bound wins when it is the lower one.
    await add(redis_client, *ids(11, 12))
    result = await trim_acked(redis_client, STREAM, keep=1)
    assert (result.removed, result.minid, result.bounded_by) == (3, "10-1", ["g"])


async def test_keep_walks_back_past_one_chunk(redis_client) -> None:
    pipe = redis_client.pipeline(transaction=False)
    for n in range(1, 2502):
        pipe.xadd(STREAM, {"n": n}, id=f"{n}-0")
    await pipe.execute()
    await redis_client.xgroup_create(STREAM, "g", id="$")

    result = await trim_acked(redis_client, STREAM, keep=2100)

    assert (result.removed, result.keep_bound) == (401, "402-0")
    assert await redis_client.xlen(STREAM) == 2100


async def test_dry_run_changes_nothing_and_counts_what_would_go(redis_client) -> None:
    await two_groups(redis_client)
    before = (await stream_ids(redis_client), await redis_client.xinfo_groups(STREAM))

    dry = await trim_acked(redis_client, STREAM, dry_run=True)

    assert (dry.outcome, dry.dry_run, dry.removed, dry.minid) == ("trimmed", True, 2, "3-0")
    assert (dry.length_before, dry.length_after) == (10, 8)
    assert (await stream_ids(redis_client), await redis_client.xinfo_groups(STREAM)) == before
    real = await trim_acked(redis_client, STREAM)
    assert (real.removed, real.minid, real.groups) == (dry.removed, dry.minid, dry.groups)


async def test_no_group_or_no_stream_removes_nothing(redis_client) -> None:
    assert (await trim_acked(redis_client, STREAM)).outcome == "no-stream"
    await add(redis_client, *ids(1, 2, 3))

    result = await trim_acked(redis_client, STREAM)

    assert (result.outcome, result.removed, result.minid) == ("no-groups", 0, None)
    assert result.length_before == result.length_after == 3
    assert await redis_client.xlen(STREAM) == 3


async def test_ids_compare_as_64_bit_numbers(redis_client) -> None:
    # "9-1" < "10-0" numerically though not as text; 9-5 is undelivered to g2.
    await add(redis_client, "9-0", "9-5", "10-0")
    await redis_client.xgroup_create(STREAM, "g1", id="0")
    await redis_client.xgroup_create(STREAM, "g2", id="0")
    assert await read(redis_client, "g1", "A", 3) == ["9-0", "9-5", "10-0"]
    await redis_client.xack(STREAM, "g1", "9-0", "9-5")
    await redis_client.xack(STREAM, "g2", *await read(redis_client, "g2", "A", 1))

    result = await trim_acked(redis_client, STREAM)

    assert (result.removed, result.minid) == (1, "9-1")
    assert await stream_ids(redis_client) == ["9-5", "10-0"]


@pytest.mark.parametrize(
    ("acked", "rest", "minid"),
    [
        ("5-9", "5-10", "5-10"),  # a carry across digits
        ("5-18446744073709551615", "6-0", "6-0"),  # the largest sequence: the next ms
    ],
)
async def test_the_id_after_the_last_delivered(redis_client, acked, rest, minid) -> None:
    await add(redis_client, acked, rest)
    await redis_client.xgroup_create(STREAM, "g", id="0")
    await redis_client.xack(STREAM, "g", *await read(redis_client, "g", "A", 1))

    result = await trim_acked(redis_client, STREAM)

    assert (result.removed, result.minid) == (1, minid)
    assert await stream_ids(redis_client) == [rest]


async def test_trim_never_drops_what_a_concurrent_consumer_has_not_acked(
    redis_client, redis_server
) -> None:
    """A consumer reads and acks on its own connection while trims run on another."""
    total = 600
    await add(redis_client, *ids(*range(1, total + 1)))
    await redis_client.xgroup_create(STREAM, "g", id="0")
    consumer = aioredis.Redis.from_url(redis_server.url)
    seen: list[str] = []
    removed: list[int] = []
    done = asyncio.Event()

    async def consume() -> None:
        while len(seen) < total:
            got = stream_entries(await consumer.xreadgroup("g", "A", {STREAM: ">"}, count=7))
            # An undelivered entry trimmed away would show as a gap; a pending
            # one as fields of None when read back from the pending list.
            seen.extend(e.decode() for e, _ in got)
            mine = stream_entries(await consumer.xreadgroup("g", "A", {STREAM: "0"}, count=100))
            assert all(fields for _, fields in mine)
            if got:
                await consumer.xack(STREAM, "g", *(e for e, _ in got[: len(got) // 2 + 1]))
        done.set()

    async def trim() -> None:
        while not done.is_set():
            removed.append((await trim_acked(redis_client, STREAM)).removed)
            await asyncio.sleep(0)

    try:
        await asyncio.gather(consume(), trim())
    finally:
        await consumer.aclose()
    assert seen == ids(*range(1, total + 1))
    # The two did interleave.
    assert sum(removed) > 0
    assert len(removed) > 10
    left = await stream_ids(redis_client)
    assert set(await pending_ids(redis_client, "g")) <= set(left)


async def test_count_entries_pages_through(redis_client) -> None:
    pipe = redis_client.pipeline(transaction=False)
    for n in range(1, 2502):
        pipe.xadd(STREAM, {"n": n}, id=f"{n}-0")
    await pipe.execute()

    assert await count_entries(redis_client, STREAM, "-", "+") == 2501
    assert await count_entries(redis_client, STREAM, "(1000-0", "+") == 1501
    assert await count_entries(redis_client, STREAM, "-", "(2001-0") == 2000
    assert await count_entries(redis_client, Keys("t").input, "-", "+") == 0
