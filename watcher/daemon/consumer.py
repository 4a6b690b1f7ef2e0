"""The input consumer: position, balance and leverage updates applied in stream order.

One instance at a time holds the shard's input lease (a key with a TTL,
renewed while alive) and applies input; the others wait and take over, with
the pending entries, when it lapses. Every apply is one commit that checks
the lease, the seq and the account version, writes, and acknowledges the
entry, so an entry is applied once and acknowledged only after it is.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import redis.asyncio as aioredis
import structlog
from redis.exceptions import ResponseError

from state.changes import ChangeSet
from state.decisions import liquidatable_state
from state.errors import InputError, StoreError
from state.input_plan import InputPlan, plan_inputs
from state.inputs import InputMessage, parse_input
from state.keys import INPUT_GROUP
from state.rules import Rules
from state.store import Store
from state.store.streams import stream_entries

GROUP = INPUT_GROUP


@dataclass(frozen=True, slots=True)
class _Entry:
    entry_id: str
    raw: bytes


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
        lease_ttl: float = 5.0,
        batch: int = 200,
        block: float = 0.25,
    ) -> None:
        self.store = store
        self.rules = rules
        self.owner = owner
        self.live_marks = live_marks
        self.generation = generation
        self.nudge = nudge
        self.lease_ttl_ms = int(lease_ttl * 1000)
        self.batch = batch
        self.block_ms = int(block * 1000)
        self.counters: Counter[str] = Counter()
        self.leader = False
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
        await self.ensure_group()
        try:
            while not stop.is_set():
                lease = await self.store.acquire_lease(self.owner, self.lease_ttl_ms)
                if not lease:
                    if self.leader:
                        self._lost()
                    await asyncio.sleep(self.lease_ttl_ms / 3000)
                    continue
                if lease == "acquired":
                    # Freshly ours, even if we held it before a stall: whoever
                    # held it in between may have left entries pending.
                    self.leader = True
                    self._log.info("input.lease_acquired")
                    await self._take_over_pending()
                try:
                    await self.step()
                except LeaseLost:
                    self._lost()
        finally:
            if self.leader:
                await self.store.release_lease(self.owner)

    def _lost(self) -> None:
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
        """Apply one batch from our pending list, filling it from the stream first if empty.

        Entries are only ever applied as read back from the pending list, in
        ID order: if the reply to the ``>`` read is lost and the client's
        retry delivers the next entries, the first ones are still applied
        first.
        """
        entries = await self._read("0")
        if not entries:
            await self._read(">")
            entries = await self._read("0")
        if entries:
            await self.apply(entries)
        return len(entries)

    async def _read(self, start: str) -> list[_Entry]:
        reply = await self.redis.xreadgroup(
            GROUP,
            self.owner,
            {self.store.keys.input: start},
            count=self.batch,
            block=self.block_ms if start == ">" else None,
        )
        out: list[_Entry] = []
        for entry_id, fields in stream_entries(reply):
            eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            raw = (fields or {}).get(b"msg", b"")
            out.append(_Entry(eid, raw.encode() if isinstance(raw, str) else raw))
        return out

    async def apply(self, entries: list[_Entry]) -> None:
        """Apply entries in stream order: one atomic commit per account, all in one pipeline.

        An account's updates in the batch become one change set (its bands
        computed once, from the final state); other accounts' commits are
        independent, so their relative order does not matter. Conflicts
        (a claim changed the account meanwhile) are re-read and redone.
        """
        keys = self.store.keys
        by_account: dict[str, list[tuple[_Entry, InputMessage]]] = {}
        commits: list[tuple[ChangeSet, str | None, list[_Entry], InputPlan | None]] = []
        for entry in entries:
            try:
                msg = parse_input(entry.raw, self.rules.markets)
            except InputError as bad:
                commits.append((self._dead_letter(entry, bad), None, [entry], None))
                continue
            by_account.setdefault(msg.account, []).append((entry, msg))
        broken: dict[str, StoreError] = {}
        states = await self.store.load_many(by_account, broken)
        generation = self.generation()
        marks = self.live_marks()
        for account, items in by_account.items():
            if account in broken:
                reason = InputError(f"account state in Redis is unreadable: {broken[account]}")
                for entry, _ in items:
                    commits.append((self._dead_letter(entry, reason), None, [entry], None))
                continue
            planned = plan_inputs(self.rules, states[account], [m for _, m in items], marks)
            taken = [items[i][0] for i in (*planned.applied, *planned.duplicates)]
            if planned.change is not None:
                commits.append((self._guard(planned.change, taken), account, taken, planned))
            elif taken:
                ack_only = self._guard(ChangeSet(keys, account), taken)
                commits.append((ack_only, account, taken, planned))
            for i, exc in planned.rejected:
                commits.append((self._dead_letter(items[i][0], exc), None, [items[i][0]], None))
        # Dead letters land in the order their entries came in.
        commits.sort(key=lambda c: _entry_order(c[2][0].entry_id))
        results = await self.store.commit_many([cs for cs, _, _, _ in commits])
        to_nudge: list[str] = []
        redo: list[_Entry] = []
        lease_lost = False
        for (_, _account, taken, plan), result in zip(commits, results, strict=True):
            if result.outcome == "LEASE":
                lease_lost = True
                continue
            if result.outcome == "CONFLICT":
                redo += taken
                continue
            if plan is None:
                self.counters["input_dead_letters"] += 1
                continue
            self.counters["input_applied"] += len(plan.applied)
            self.counters["input_duplicates"] += len(plan.duplicates)
            if plan.change is not None and (
                self.generation() != generation or liquidatable_state(self.rules, plan.after, marks)
            ):
                to_nudge.append(plan.after.account)
        if to_nudge:
            self.nudge(to_nudge)
        if lease_lost:
            raise LeaseLost
        if redo:
            # A claim (or a lapsed-lease holder) changed these accounts meanwhile:
            # re-read and re-plan them, in stream order.
            self.counters["conflicts"] += 1
            redo.sort(key=lambda e: _entry_order(e.entry_id))
            await self.apply(redo)

    def _dead_letter(self, entry: _Entry, exc: InputError) -> ChangeSet:
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
        return self._guard(cs, [entry])

    def _guard(self, cs: ChangeSet, entries: list[_Entry]) -> ChangeSet:
        keys = self.store.keys
        return cs.lease(keys.input_lease, self.owner).ack(
            keys.input, GROUP, *(e.entry_id for e in entries)
        )


def _entry_order(entry_id: str) -> tuple[int, int]:
    ms, _, n = entry_id.partition("-")
    return int(ms), int(n or 0)
