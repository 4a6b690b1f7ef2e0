"""The input consumer: position, balance and leverage updates applied in stream order.

One instance at a time holds the shard's input lease (a key with a TTL,
renewed while alive) and applies input; the others wait and take over, with
the pending entries, when it lapses. Every apply is one commit that checks
the lease, that the entry is still pending, the seq and the account version,
writes, and acknowledges the entry, so an entry is applied once and
acknowledged only after it is.

No entry can stop the consumer: whatever fails while one entry is parsed or
planned sets that entry aside in the dead-letter stream with the reason, and
an entry delivered more than ``max_deliveries`` times (one that keeps taking
the process down before it is acknowledged) is set aside unread. Every round
trip goes through the :class:`RedisLink`, which rides out Redis outages; a
Redis restarted empty has lost the consumer group, which is made again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import ResponseError

from state.account import AccountState
from state.changes import ChangeSet
from state.errors import InputError, StoreError
from state.input_plan import InputPlan, plan_inputs
from state.inputs import InputMessage, parse_input
from state.keys import INPUT_GROUP
from state.rules import Rules
from state.shards import shard_of
from state.store import CommitResult, Store
from state.store.streams import stream_entries
from watcher.daemon.link import LinkClosed, RedisLink

GROUP = INPUT_GROUP


@dataclass(frozen=True, slots=True)
class _Entry:
    entry_id: str
    raw: bytes


@dataclass(slots=True)
class _Commit:
    """One change set of a batch and what it stands for."""

    change: ChangeSet
    entries: list[_Entry]
    plan: InputPlan | None = None  # None: a dead letter


class LeaseLost(Exception):
    """Another instance holds the input lease now."""


class InputConsumer:
    """Apply the input stream; see the module docstring."""

    def __init__(
        self,
        store: Store,
        rules: Rules,
        *,
        owner: str,
        live_marks: Callable[[], dict[str, Decimal]],
        generation: Callable[[], int],
        nudge: Callable[[list[str]], None],
        link: RedisLink | None = None,
        lease_ttl: float = 5.0,
        batch: int = 200,
        block: float = 0.25,
        max_deliveries: int = 10,
        shards: int = 1,
    ) -> None:
        self.store = store
        # The shard count, and which shard this consumer applies (its store's).
        self.shards = shards
        self.shard = store.keys.shard
        self.rules = rules
        self.owner = owner
        self.live_marks = live_marks
        self.generation = generation
        self.nudge = nudge
        self.link = link if link is not None else RedisLink()
        self.lease_ttl_ms = int(lease_ttl * 1000)
        self.batch = batch
        self.block_ms = int(block * 1000)
        self.max_deliveries = max_deliveries
        self.counters: Counter[str] = Counter()
        self.leader = False
        # The batch whose commit is in flight (its entries are still pending),
        # the accounts it touches, and the last entry id it holds.
        self._inflight: asyncio.Task[None] | None = None
        self._inflight_accounts: set[str] = set()
        self._after = "0"
        self._log = structlog.get_logger().bind(component="input", owner=owner)

    @property
    def redis(self) -> aioredis.Redis:
        """The store's client."""
        return self.store.redis

    async def ensure_group(self) -> None:
        """Create the consumer group (and the stream) if they don't exist."""
        try:
            await self.redis.xgroup_create(self.store.keys.input, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self, stop: asyncio.Event) -> None:
        """Apply input while holding the lease, until ``stop`` is set."""
        await self.link.call("input.group", self.ensure_group)
        try:
            while not stop.is_set():
                try:
                    await self._settle_done()
                except LeaseLost:
                    self._lost()
                lease = await self.link.call(
                    "input.lease", lambda: self.store.acquire_lease(self.owner, self.lease_ttl_ms)
                )
                if not lease:
                    if self.leader:
                        self._lost()
                    await asyncio.sleep(self.lease_ttl_ms / 3000)
                    continue
                if lease == "acquired" or not self.leader:
                    # Freshly ours (also when the shard coordinator took the
                    # lease for this worker and we only see it renewed), even
                    # if we held it before a stall: whoever
                    # held it in between may have left entries pending, and a
                    # commit of ours in flight when it lapsed was refused: every
                    # pending entry is read again, from the first.
                    with contextlib.suppress(LeaseLost):
                        await self.settle()
                    self._after = "0"
                    self.leader = True
                    self._log.info("input.lease_acquired")
                    await self.link.call("input.takeover", self._take_over_pending)
                try:
                    await self.step()
                except LeaseLost:
                    self._lost()
                except ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise
                    # Redis came back without our group (restarted empty).
                    self._log.error("input.group_lost", error=str(exc))
                    await self.link.call("input.group", self.ensure_group)
            # A batch refused for a lapsed lease stays pending for the next holder.
            with contextlib.suppress(LeaseLost):
                await self.settle()
        finally:
            if self._inflight is not None:
                self._inflight.cancel()
                with contextlib.suppress(asyncio.CancelledError, LeaseLost, LinkClosed):
                    await self._inflight
            if self.leader:
                await self.link.once("input.release", lambda: self.store.release_lease(self.owner))

    def _lost(self) -> None:
        self._after = "0"
        self.leader = False
        self.counters["lease_lost"] += 1
        self._log.warning("input.lease_lost")

    async def _take_over_pending(self) -> None:
        # Entries a previous holder read but did not acknowledge are ours now;
        # applying them first keeps stream order (each commit re-checks seq).
        start = "0-0"
        while True:
            reply = await self.redis.xautoclaim(
                self.store.keys.input,
                GROUP,
                self.owner,
                min_idle_time=0,
                start_id=start,
                count=1000,
            )
            start = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
            if start == "0-0":
                return

    async def step(self) -> int:
        """Take one batch: entries left pending first, else new ones; start applying it.

        Entries are applied in ID order as our pending list holds them: if
        the answer to a ``>`` read was lost (the link had to retry it), the
        entries it delivered are pending, unseen, and the pending list is
        read back before anything newer. Entries found pending before this
        step read anything new were delivered before (a crash, a lost
        answer, a takeover): those delivered too often are set aside unread.

        The batch's commit runs while the next batch is read and planned
        (Redis works on its own core meanwhile); a batch that touches an
        account of the one in flight waits for it first. Returns how many
        entries were taken.
        """
        entries = await self._read(self._after)
        if entries:
            entries = await self._drop_poison(entries)
        else:
            entries, retried = await self._read_new()
            if retried:
                entries = await self._read(self._after)
        if entries:
            await self.apply(entries, overlap=True)
        else:
            # Nothing new: the batch in flight is done or soon will be; its
            # errors (a lease lost) surface now, not at the next input.
            await self._settle_done()
            if self._inflight is None:
                self._after = "0"
        return len(entries)

    async def _settle_done(self) -> None:
        """Settle the batch in flight if its commit has finished (raising what it raised)."""
        if self._inflight is not None and self._inflight.done():
            await self.settle()

    async def settle(self) -> None:
        """Wait for the batch in flight, if any (its errors surface here)."""
        task, self._inflight = self._inflight, None
        self._inflight_accounts = set()
        if task is not None:
            await task

    async def _read_new(self) -> tuple[list[_Entry], bool]:
        attempts = 0

        async def read() -> Any:
            nonlocal attempts
            attempts += 1
            return await self._xreadgroup(">")

        reply = await self.link.call("input.read", read)
        return self._entries(reply), attempts > 1

    def _xreadgroup(self, start: str) -> Awaitable[Any]:
        return self.redis.xreadgroup(
            GROUP,
            self.owner,
            {self.store.keys.input: start},
            count=self.batch,
            block=self.block_ms if start == ">" else None,
        )

    async def _read(self, start: str) -> list[_Entry]:
        """Read our pending entries after ``start``."""
        return self._entries(await self.link.call("input.read", lambda: self._xreadgroup(start)))

    @staticmethod
    def _entries(reply: Any) -> list[_Entry]:
        out: list[_Entry] = []
        for entry_id, fields in stream_entries(reply):
            eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            raw = (fields or {}).get(b"msg", b"")
            out.append(_Entry(eid, raw.encode() if isinstance(raw, str) else raw))
        return out

    async def _drop_poison(self, entries: list[_Entry]) -> list[_Entry]:
        """Dead-letter the entries delivered more than ``max_deliveries`` times; keep the rest."""
        first, last = entries[0].entry_id, entries[-1].entry_id
        info: Any = await self.link.call(
            "input.pending",
            lambda: self.redis.xpending_range(
                self.store.keys.input, GROUP, min=first, max=last, count=len(entries)
            ),
        )
        delivered = {_text(row["message_id"]): int(row["times_delivered"]) for row in info}
        poison = [e for e in entries if delivered.get(e.entry_id, 0) > self.max_deliveries]
        if not poison:
            return entries
        commits = [
            self._dead_letter(
                e,
                InputError(
                    f"delivered {delivered[e.entry_id]} times without being applied"
                    f" (max_deliveries {self.max_deliveries}): set aside unread"
                ),
            )
            for e in poison
        ]
        await self._commit(commits)
        dropped = {e.entry_id for e in poison}
        return [e for e in entries if e.entry_id not in dropped]

    async def apply(self, entries: list[_Entry], *, overlap: bool = False) -> None:
        """Apply entries in stream order: one atomic commit per account, all in one call.

        An account's updates in the batch become one change set (its bands
        computed once, from the final state); other accounts' commits are
        independent, so their relative order does not matter. Conflicts
        (a claim changed the account meanwhile) are re-read and redone.
        With ``overlap``, the commit is left in flight (see :meth:`step`).
        """
        by_account: dict[str, list[tuple[_Entry, InputMessage]]] = {}
        commits: list[_Commit] = []
        for entry in entries:
            try:
                msg = parse_input(entry.raw, self.rules.markets)
            except InputError as bad:
                commits.append(self._dead_letter(entry, bad))
                continue
            except Exception as bug:
                # parse_input answers every input with an update or an
                # InputError; anything else is our bug, and must not stop input.
                commits.append(self._dead_letter(entry, self._internal("parsing", entry, bug)))
                continue
            if self.shards > 1 and shard_of(msg.account, self.shards) != self.shard:
                # Applied here it would live where nobody looks for it.
                wrong = InputError(
                    f"account {msg.account!r} belongs to shard"
                    f" {shard_of(msg.account, self.shards)} of {self.shards}, not"
                    f" {self.shard}: append it to that shard's input stream"
                )
                commits.append(self._dead_letter(entry, wrong))
                continue
            by_account.setdefault(msg.account, []).append((entry, msg))
        inflight = self._inflight is not None and self._inflight is not asyncio.current_task()
        if inflight and (not overlap or not self._inflight_accounts.isdisjoint(by_account)):
            await self.settle()
        broken: dict[str, StoreError] = {}
        states = (
            await self.link.call(
                "input.read_accounts", lambda: self.store.load_many(by_account, broken)
            )
            if by_account
            else {}
        )
        generation = self.generation()
        marks = self.live_marks()
        for account, items in by_account.items():
            if account in broken:
                reason = InputError(f"account state in Redis is unreadable: {broken[account]}")
                commits += [self._dead_letter(entry, reason) for entry, _ in items]
                continue
            commits += self._plan(states[account], items, marks)
        # Dead letters land in the order their entries came in.
        commits.sort(key=lambda c: _entry_order(c.entries[0].entry_id))
        if not overlap:
            await self._finish(commits, generation, marks)
            return
        await self.settle()
        self._inflight_accounts = set(by_account)
        self._after = entries[-1].entry_id
        self._inflight = asyncio.create_task(self._finish(commits, generation, marks))

    async def _finish(
        self, commits: list[_Commit], generation: int, marks: dict[str, Decimal]
    ) -> None:
        """Commit a planned batch; count, nudge, and redo what conflicted."""
        results = await self._commit(commits)
        to_nudge: list[str] = []
        redo: list[_Entry] = []
        lease_lost = False
        for commit, result in zip(commits, results, strict=True):
            if result.outcome == "LEASE":
                lease_lost = True
                continue
            if result.outcome == "CONFLICT":
                redo += commit.entries
                continue
            if result.outcome == "DONE":
                # Applied by the first run of a commit whose answer was lost.
                continue
            plan = commit.plan
            if result.outcome == "ERROR":
                self.counters["input_refused"] += 1
                self._log.error("input.commit_refused", error=result.entry_id)
                continue
            if plan is None:
                self.counters["input_dead_letters"] += 1
                continue
            self.counters["input_applied"] += len(plan.applied)
            self.counters["input_duplicates"] += len(plan.duplicates)
            if plan.change is not None and (self.generation() != generation or plan.needs_decision):
                to_nudge.append(plan.after.account)
        if to_nudge:
            self.nudge(to_nudge)
        if lease_lost:
            raise LeaseLost
        if redo:
            # A claim (or a lapsed-lease holder) changed these accounts meanwhile:
            # re-read and re-plan them, in stream order (still in flight: a
            # batch touching them waits for this).
            self.counters["conflicts"] += 1
            redo.sort(key=lambda e: _entry_order(e.entry_id))
            await self.apply(redo)

    def _plan(
        self,
        state: AccountState,
        items: list[tuple[_Entry, InputMessage]],
        marks: dict[str, Decimal],
    ) -> list[_Commit]:
        """Plan one account's entries as its commit plus its dead letters."""
        keys = self.store.keys
        try:
            planned = plan_inputs(self.rules, state, [m for _, m in items], marks)
        except Exception as bug:
            # plan_inputs sets invalid updates aside itself; anything escaping
            # it is our bug, and must not stop input: the account's entries
            # go to the dead letters, loudly.
            return [
                self._dead_letter(entry, self._internal("planning", entry, bug))
                for entry, _ in items
            ]
        commits: list[_Commit] = []
        taken = [items[i][0] for i in (*planned.applied, *planned.duplicates)]
        if planned.change is not None:
            commits.append(_Commit(self._guard(planned.change, taken), taken, planned))
        elif taken:
            ack_only = self._guard(ChangeSet(keys, state.account), taken)
            commits.append(_Commit(ack_only, taken, planned))
        commits += [self._dead_letter(items[i][0], exc) for i, exc in planned.rejected]
        return commits

    async def _commit(self, commits: Sequence[_Commit]) -> list[CommitResult]:
        # Never a call without a round trip: the link takes any answer as Redis being back.
        if not commits:
            return []
        return await self.link.call(
            "input.commit", lambda: self.store.commit_many([c.change for c in commits])
        )

    def _internal(self, stage: str, entry: _Entry, bug: Exception) -> InputError:
        self.counters["input_internal_errors"] += 1
        self._log.error(
            "input.internal_error", stage=stage, entry_id=entry.entry_id, error=repr(bug)
        )
        return InputError(f"internal error while {stage} it: {bug!r}"[:500])

    def _dead_letter(self, entry: _Entry, exc: InputError) -> _Commit:
        self._log.warning("input.dead_letter", entry_id=entry.entry_id, reason=exc.reason)
        keys = self.store.keys
        cs = ChangeSet(keys, "-").xadd(
            keys.dead,
            {
                "msg": entry.raw.decode(errors="replace"),
                "reason": exc.reason,
                "entry_id": entry.entry_id,
            },
        )
        return _Commit(self._guard(cs, [entry]), [entry])

    def _guard(self, cs: ChangeSet, entries: list[_Entry]) -> ChangeSet:
        keys = self.store.keys
        ids = [e.entry_id for e in entries]
        return (
            cs.lease(keys.input_lease, self.owner)
            .still_pending(keys.input, GROUP, ids[0])
            .ack(keys.input, GROUP, *ids)
        )


def _entry_order(entry_id: str) -> tuple[int, int]:
    ms, _, n = entry_id.partition("-")
    return int(ms), int(n or 0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
