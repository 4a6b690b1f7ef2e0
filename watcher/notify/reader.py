"""The events streams, read through the notify group: new entries, our pending ones, claims.

On start the reader makes the group if it is missing (at ``$``, or at ``0``
with ``start = "all"``), then takes back what a previous run left: first
this consumer's own pending list (what it read and did not acknowledge
before a crash or a stop), then, with XAUTOCLAIM, entries another consumer
of the group has held for longer than ``claim_idle`` (a notifier that died
under another name). Then it reads new entries, at most ``batch`` at a time
and never more than ``max_in_flight`` held at once. The claim is repeated
every ``claim_idle / 2`` seconds; a read whose answer was lost (the link
retried it) is followed by a re-read of our pending list, where its entries
now are.

An entry that is not a liquidation event is dead-lettered with sink ``*``;
one deleted from the stream while pending is acknowledged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import ResponseError

from state.events import EventError, LiquidationEvent
from state.keys import Keys
from watcher.daemon.link import RedisLink
from watcher.notify.config import NotifySettings
from watcher.notify.messages import Entry
from watcher.notify.progress import Held, Progress


class Reader:
    """Read the events streams of ``shards``; hand each entry some sink owes to ``dispatch``."""

    def __init__(
        self,
        redis: aioredis.Redis,
        link: RedisLink,
        shards: Sequence[Keys],
        notify: NotifySettings,
        progress: Progress,
        dispatch: Callable[[list[Held]], None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.link = link
        self.shards = {keys.events: keys for keys in shards}
        self.notify = notify
        self.progress = progress
        self.dispatch = dispatch
        self.clock = clock
        # A blocking read must end well inside the link's timeout.
        self.block_ms = max(10, min(1000, int(link.timeout * 500)))
        self._log = structlog.get_logger().bind(component="notify")

    async def run(self) -> None:
        """Make the group, take back what was left pending, then read forever."""
        await self.link.call("notify.group", self.ensure_group)
        recovered = await self.read_own_pending()
        claimed = await self.claim()
        self._log.info("notify.recovered", own_pending=recovered, claimed=claimed)
        next_claim = self.clock() + self.notify.claim_idle / 2
        while True:
            try:
                room = await self.progress.room()
                if await self.read_new(min(self.notify.batch, room)):
                    await self.read_own_pending()
                if self.clock() >= next_claim:
                    await self.claim()
                    next_claim = self.clock() + self.notify.claim_idle / 2
            except ResponseError as exc:
                if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):
                    raise
                # Redis came back without our group (restarted empty, flushed; a
                # blocked read says UNBLOCKED when its stream goes): make it again.
                self._log.error("notify.group_lost", error=str(exc))
                await self.link.call("notify.group", self.ensure_group)

    async def ensure_group(self) -> None:
        """Create the group on every stream that lacks it."""
        start = "$" if self.notify.start == "new" else "0"
        for stream in self.shards:
            try:
                await self.redis.xgroup_create(stream, self.notify.group, id=start, mkstream=True)
                self._log.info("notify.group_created", stream=stream, start=start)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def read_new(self, count: int) -> bool:
        """Read up to ``count`` new entries; say whether the read had to be retried."""
        attempts = 0

        def read() -> Any:
            nonlocal attempts
            attempts += 1
            return self.redis.xreadgroup(
                self.notify.group,
                self.notify.consumer,
                dict.fromkeys(self.shards, ">"),
                count=count,
                block=self.block_ms,
            )

        reply = await self.link.call("notify.read", read)
        for stream, entries in reply or ():
            await self._take(self.shards[_text(stream)], entries, seen_before=False)
        return attempts > 1

    async def read_own_pending(self) -> int:
        """Take the entries this consumer read before and did not acknowledge; return how many."""
        taken = 0
        for stream, keys in self.shards.items():
            start = "0-0"
            while True:
                count = min(self.notify.batch, await self.progress.room())

                def read(start: str = start, stream: str = stream, count: int = count) -> Any:
                    return self.redis.xreadgroup(
                        self.notify.group, self.notify.consumer, {stream: start}, count=count
                    )

                reply = await self.link.call("notify.read_pending", read)
                entries = reply[0][1] if reply else []
                if not entries:
                    break
                start = _text(entries[-1][0])
                taken += await self._take(keys, entries, seen_before=True)
        return taken

    async def claim(self) -> int:
        """Take entries other consumers have held longer than ``claim_idle``; return how many."""
        taken = 0
        idle_ms = int(self.notify.claim_idle * 1000)
        for stream, keys in self.shards.items():
            start = "0-0"
            while True:
                count = min(self.notify.batch, await self.progress.room())

                def claim(start: str = start, stream: str = stream, count: int = count) -> Any:
                    return self.redis.xautoclaim(
                        stream,
                        self.notify.group,
                        self.notify.consumer,
                        min_idle_time=idle_ms,
                        start_id=start,
                        count=count,
                    )

                reply = await self.link.call("notify.claim", claim)
                taken += await self._take(keys, reply[1], seen_before=True)
                start = _text(reply[0])
                if start == "0-0":
                    break
        return taken

    async def _take(self, keys: Keys, raw: Any, *, seen_before: bool) -> int:
        entries = []
        for entry_id, fields in raw:
            eid = _text(entry_id)
            if self.progress.holds(keys, eid):
                continue
            if not fields:
                # Deleted from the stream while pending: nothing left to deliver.
                await self.progress.reject(keys, eid, "")
                continue
            text = {_text(k): _text(v) for k, v in fields.items()}
            try:
                event = LiquidationEvent.from_fields(text)
            except EventError as exc:
                self._log.error(
                    "notify.bad_entry", stream=keys.events, entry_id=eid, error=str(exc)
                )
                await self.progress.reject(keys, eid, f"not a liquidation event: {exc}")
                continue
            entries.append(Entry(keys, eid, text, event))
        held = await self.progress.admit(entries, seen_before=seen_before)
        if held:
            self.dispatch(held)
        return len(entries)


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
