"""Which sinks each entry in flight still owes; the XACK once it owes none.

At least once: an entry is acknowledged only when every sink has it
(delivered alone or in a summary) or has given up on it (a dead letter).
Until then it stays in the group's pending list, so a notifier killed at any
point finds it again on its next start.

A sink that has an entry other sinks still owe is written down in the
shard's ``notify:<group>:sent`` hash (:mod:`.keys`), so a redelivered entry
skips it. The last sink to finish writes nothing there: its XACK, with the
HDEL of the entry's fields, is one transaction, sent only once the entry's
earlier writes there are answered (each sink writes on its own connection,
and Redis runs two connections' commands in either order: an HSET landing
after the HDEL would leave its field behind for good). The one duplicate left is a
sink's message delivered just before the notifier died, before it could
write that down: delivery is at least once, never exactly once.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import structlog

from state.keys import Keys
from watcher.daemon.link import RedisLink
from watcher.notify import keys as notify_keys
from watcher.notify.messages import Entry
from watcher.notify.metrics import NotifyMetrics

# Entries per pipelined write: one summary may cover thousands.
CHUNK = 2000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Why a sink gave up on entries: its reason, the attempts made, whether in a summary."""

    sink: str
    reason: str
    tries: int
    summary: bool = False


@dataclass(eq=False, slots=True)
class Held:
    """One entry in flight and the sinks that do not have it yet."""

    entry: Entry
    owed: set[str] = field(default_factory=set)
    # The writes of sinks' parts to the sent hash not answered yet: the XACK
    # that clears the entry's fields there waits for them.
    writing: set[asyncio.Future[None]] = field(default_factory=set)


class Progress:
    """Track the entries in flight; record each sink's part; acknowledge the finished ones."""

    def __init__(
        self,
        redis: aioredis.Redis,
        link: RedisLink,
        *,
        group: str,
        sinks: Sequence[str],
        metrics: NotifyMetrics,
        max_in_flight: int,
        transaction: bool = True,
    ) -> None:
        self.redis = redis
        self.link = link
        self.group = group
        self.sinks = tuple(sinks)
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.transaction = transaction
        self._held: dict[tuple[str, str], Held] = {}
        self._room = asyncio.Event()
        self._room.set()
        self._log = structlog.get_logger().bind(component="notify")

    def holds(self, keys: Keys, entry_id: str) -> bool:
        """Whether the entry is in flight here already."""
        return (keys.events, entry_id) in self._held

    @property
    def in_flight(self) -> int:
        return len(self._held)

    async def room(self) -> int:
        """How many more entries may be taken; waits while none may."""
        while len(self._held) >= self.max_in_flight:
            self._room.clear()
            await self._room.wait()
        return self.max_in_flight - len(self._held)

    async def admit(self, entries: Iterable[Entry], *, seen_before: bool) -> list[Held]:
        """Take entries in; return those some sink still owes (the others are acknowledged).

        ``seen_before``: the entries may have been delivered to this group
        before (our pending list, claimed from another consumer): the sinks
        that already have them are looked up.
        """
        fresh = [e for e in entries if not self.holds(e.keys, e.entry_id)]
        done: dict[str, set[str]] = defaultdict(set)
        if seen_before and len(self.sinks) > 1 and fresh:
            done = await self._sent_already(fresh)
        out: list[Held] = []
        finished: list[Entry] = []
        for entry in fresh:
            held = Held(entry, set(self.sinks) - done[entry.entry_id])
            self._held[(entry.keys.events, entry.entry_id)] = held
            if held.owed:
                out.append(held)
            else:
                finished.append(entry)
        self.metrics.in_flight.set(len(self._held))
        if finished:
            self._log.info("notify.already_delivered", entries=len(finished))
            await self._write(finished, "", None)
        return out

    async def finish(
        self, entries: Sequence[Entry], sink: str, dead: DeadLetter | None = None
    ) -> None:
        """``sink`` has these entries (or gave up on them: ``dead``); ack what is done."""
        await self._write(entries, sink, dead)

    async def reject(self, keys: Keys, entry_id: str, reason: str) -> None:
        """Dead-letter an entry no sink can take (not an event) and acknowledge it.

        An empty ``reason``: an entry deleted from the stream, only acknowledged.
        """
        fields = {
            "entry_id": entry_id,
            "id": "",
            "symbol": "",
            "sink": "*",
            "group": self.group,
            "reason": reason[:500],
            "tries": "0",
            "summary": "0",
        }

        def write() -> Any:
            pipe = self.redis.pipeline(transaction=self.transaction)
            if reason:
                pipe.xadd(notify_keys.dead_letters(keys), fields)  # type: ignore[arg-type]
            pipe.xack(keys.events, self.group, entry_id)
            if len(self.sinks) > 1:
                names = [notify_keys.sent_field(entry_id, s) for s in self.sinks]
                pipe.hdel(notify_keys.sent(keys, self.group), *names)
            return pipe.execute()

        await self.link.call("notify.reject", write)

    async def _sent_already(self, entries: list[Entry]) -> dict[str, set[str]]:
        by_shard: dict[str, list[Entry]] = defaultdict(list)
        for entry in entries:
            by_shard[entry.keys.events].append(entry)
        done: dict[str, set[str]] = defaultdict(set)
        for group in by_shard.values():
            keys = group[0].keys
            names = [notify_keys.sent_field(e.entry_id, sink) for e in group for sink in self.sinks]

            def read(names: list[str] = names, keys: Keys = keys) -> Any:
                return self.redis.hmget(notify_keys.sent(keys, self.group), names)

            values = await self.link.call("notify.sent_read", read)
            for name, value in zip(names, values, strict=True):
                if value is not None:
                    entry_id, _, sink = name.partition("|")
                    done[entry_id].add(sink)
        return done

    async def _write(self, entries: Sequence[Entry], sink: str, dead: DeadLetter | None) -> None:
        by_shard: dict[str, list[Entry]] = defaultdict(list)
        for entry in entries:
            by_shard[entry.keys.events].append(entry)
        for group in by_shard.values():
            for start in range(0, len(group), CHUNK):
                await self._write_chunk(group[start : start + CHUNK], sink, dead)
        self.metrics.in_flight.set(len(self._held))
        if len(self._held) < self.max_in_flight:
            self._room.set()

    async def _write_chunk(self, chunk: list[Entry], sink: str, dead: DeadLetter | None) -> None:
        keys = chunk[0].keys
        complete: list[Entry] = []
        partial: list[Held] = []
        # Writes of the complete entries' parts still on their way: this write's
        # HDEL must come after them. Each was begun before this one, so none of
        # them waits on this one.
        earlier: set[asyncio.Future[None]] = set()
        written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for entry in chunk:
            held = self._held.get((keys.events, entry.entry_id))
            if held is None:
                continue
            held.owed.discard(sink)
            if held.owed:
                held.writing.add(written)
                partial.append(held)
            else:
                earlier |= held.writing
                complete.append(entry)
        try:
            if earlier:
                await asyncio.wait(earlier)
            await self._send_chunk(keys, chunk, sink, dead, [h.entry for h in partial], complete)
        finally:
            # Answered, failed or given up (a stop): nothing of it left to wait for.
            written.set_result(None)
            for held in partial:
                held.writing.discard(written)
        for entry in complete:
            self._held.pop((keys.events, entry.entry_id), None)

    async def _send_chunk(
        self,
        keys: Keys,
        chunk: list[Entry],
        sink: str,
        dead: DeadLetter | None,
        partial: list[Entry],
        complete: list[Entry],
    ) -> None:
        sent_key = notify_keys.sent(keys, self.group)

        def write() -> Any:
            pipe = self.redis.pipeline(transaction=self.transaction)
            if dead is not None:
                for entry in chunk:
                    pipe.xadd(
                        notify_keys.dead_letters(keys),
                        {
                            "entry_id": entry.entry_id,
                            "id": entry.event.id,
                            "symbol": entry.event.symbol,
                            "sink": dead.sink,
                            "group": self.group,
                            "reason": dead.reason[:500],
                            "tries": str(dead.tries),
                            "summary": "1" if dead.summary else "0",
                        },
                    )
            if partial:
                pipe.hset(
                    sent_key,
                    mapping={notify_keys.sent_field(e.entry_id, sink): "1" for e in partial},
                )
            if complete:
                pipe.xack(keys.events, self.group, *(e.entry_id for e in complete))
                if len(self.sinks) > 1:
                    pipe.hdel(
                        sent_key,
                        *(
                            notify_keys.sent_field(e.entry_id, s)
                            for e in complete
                            for s in self.sinks
                        ),
                    )
            return pipe.execute()

        if dead is not None or partial or complete:
            await self.link.call("notify.progress", write)
