"""The progress of entries in flight, on a real redis-server: records, acknowledgements, order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tests.helpers.notify import KEYS, append, event, group_pending
from watcher.daemon.link import RedisLink
from watcher.notify import keys as notify_keys
from watcher.notify.messages import Entry
from watcher.notify.metrics import NotifyMetrics
from watcher.notify.progress import Progress

T = TypeVar("T")
SENT = notify_keys.sent(KEYS, "notify")


class HeldBackLink(RedisLink):
    """A link that holds the first progress write back until ``release`` is set.

    It plays a write whose connection is slower than the next one's: Redis
    then gets the second write first.
    """

    def __init__(self) -> None:
        super().__init__(timeout=2.0)
        self.holding = asyncio.Event()
        self.release = asyncio.Event()
        self._first = True

    async def call(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        if what == "notify.progress" and self._first:
            self._first = False
            self.holding.set()
            await self.release.wait()
        return await super().call(what, op)


async def pending_entry(redis) -> Entry:
    """One event appended and read through the group: pending, as the reader would hold it."""
    await redis.xgroup_create(KEYS.events, "notify", id="0", mkstream=True)
    liquidation = event(1)
    [entry_id] = await append(redis, [liquidation])
    await redis.xreadgroup("notify", "test-notifier", {KEYS.events: ">"})
    return Entry(KEYS, entry_id, liquidation.to_fields(), liquidation)


async def test_the_last_sinks_ack_waits_for_the_record_of_an_earlier_one(redis_client):
    entry = await pending_entry(redis_client)
    link = HeldBackLink()
    progress = Progress(
        redis_client,
        link,
        group="notify",
        sinks=["first", "last"],
        metrics=NotifyMetrics(["first", "last"]),
        max_in_flight=10,
    )
    [held] = await progress.admit([entry], seen_before=False)
    assert held.owed == {"first", "last"}
    # "first" has it: its record in the sent hash is on its way, held back.
    first = asyncio.create_task(progress.finish([entry], "first"))
    await link.holding.wait()
    # "last" has it too: its XACK, and the HDEL of the entry's records, must
    # not reach Redis before the record of "first" does.
    last = asyncio.create_task(progress.finish([entry], "last"))
    done, _ = await asyncio.wait({last}, timeout=0.5)
    assert not done, "acknowledged while an earlier record was still on its way"
    assert await group_pending(redis_client) == 1
    link.release.set()
    await asyncio.gather(first, last)
    assert progress.in_flight == 0
    assert await group_pending(redis_client) == 0
    # Nothing left in the progress hash once the entry is acknowledged.
    assert await redis_client.exists(SENT) == 0
