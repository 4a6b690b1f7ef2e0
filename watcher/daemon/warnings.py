"""Near-liquidation warnings of one shard: index triggers in, one warning per crossing out.

Every ``interval`` seconds a round takes the symbols whose marks moved
since the last round (from its own cursor on the mark book, with the lowest
and highest mark seen since), queries the warning and re-arm triggers at
them and names a few accounts from the dirty set (changed by input or a
claim), all in one script call; then reads those accounts chunk by chunk,
plans each part (:func:`state.warnings.plan_account`) at the LIVE marks and
commits the plans. A commit that meets a changed account (CONFLICT, FIELD)
is looked at again next round. A dirty account leaves the set in the same
commit that looked at it, so a crash in between loses nothing.

It never holds up liquidations: it runs beside the engine on the same loop,
yields every 0.2 ms of planning, and a round reads at most ``most`` members
per set and symbol (the rest fire again on a later tick). Nothing is decided
while the engine is held (Redis lost its data).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from functools import partial

import structlog

from state import margin
from state.account import AccountState
from state.changes import ChangeSet
from state.errors import MarginError, StoreError
from state.rules import Rules
from state.store import CommitResult, Store
from state.warnings import WarningPlan, plan_account
from watcher.clock import wall_ms
from watcher.daemon.link import RedisLink
from watcher.feeds.book import Cursor, MarkBook

# Accounts read and planned per round trip.
CHUNK = 500
# Dirty accounts named per round.
DIRTY_PER_ROUND = 2_000
# Members returned per index set and symbol per round.
MOST = 5_000
PLAN_SLICE = 0.0002


class WarningWatcher:
    """Warn once per crossing of the level; re-arm past the re-arm level. See the module."""

    def __init__(
        self,
        store: Store,
        rules: Rules,
        book: MarkBook,
        *,
        link: RedisLink,
        live_marks: Callable[[], dict[str, Decimal]],
        held: Callable[[], bool],
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = wall_ms,
    ) -> None:
        self.store = store
        self.rules = rules
        self.book = book
        self.link = link
        self.live_marks = live_marks
        self.held = held
        self.interval = interval
        self.clock = clock
        self.wall_ms = wall_ms
        self.cursor: Cursor | None = None
        self.counters: Counter[str] = Counter()
        # Warnings emitted, by kind.
        self.warned: Counter[str] = Counter()
        # Accounts to look at again (their commit met a change).
        self._again: set[str] = set()
        # Symbols queried in full since the start or the last Redis outage:
        # any other is queried at its mark as soon as it has one.
        self._queried: set[str] = set()
        self._outages_seen = link.outages
        self._log = structlog.get_logger().bind(component="warnings")

    async def run(self, stop: asyncio.Event) -> None:
        """Run rounds until ``stop``."""
        self.cursor = self.book.cursor(self.clock())
        try:
            while not stop.is_set():
                try:
                    async with asyncio.timeout(self.interval):
                        await stop.wait()
                except TimeoutError:
                    pass
                if stop.is_set():
                    return
                await self.round()
        finally:
            self.book.close(self.cursor)
            self.cursor = None

    async def round(self) -> None:
        """One round: query, read, plan, commit."""
        assert self.cursor is not None
        now = self.clock()
        ticks = self.cursor.take(now)
        if self.held():
            return
        if self.link.outages != self._outages_seen:
            # Marks moved while Redis was away: look at every symbol again.
            self._outages_seen = self.link.outages
            self._queried.clear()
        live = self.live_marks()
        live.update((symbol, tick.mark.price) for symbol, tick in ticks.items())
        bounds = []
        for symbol in sorted(set(ticks) | (set(live) - self._queried)):
            tick = ticks.get(symbol)
            low = tick.low if tick is not None else live[symbol]
            high = tick.high if tick is not None else live[symbol]
            bounds.append(
                (symbol, margin.mark_bound(low, down=True), margin.mark_bound(high, down=False))
            )
        named, fired = await self.link.call(
            "warnings.query", partial(self.store.warn_query, bounds, DIRTY_PER_ROUND, MOST)
        )
        self._queried.update(symbol for symbol, _, _ in bounds)
        self.counters["warning_rounds"] += 1
        work: dict[str, set[tuple[str, str]]] = {a: set() for a in self._again}
        self._again = set()
        dirty = set(named)
        for account in named:
            work.setdefault(account, set())
        for kind, symbol, account in fired:
            work.setdefault(account, set()).add((kind, symbol))
        self.counters["warning_candidates"] += len(work)
        names = list(work)
        for start in range(0, len(names), CHUNK):
            chunk = names[start : start + CHUNK]
            await self._chunk(chunk, work, dirty, live)

    async def _chunk(
        self,
        chunk: list[str],
        work: dict[str, set[tuple[str, str]]],
        dirty: set[str],
        live: dict[str, Decimal],
    ) -> None:
        broken: dict[str, StoreError] = {}
        states: dict[str, AccountState] = await self.link.call(
            "warnings.read", lambda: self.store.load_many(chunk, broken)
        )
        for account, exc in broken.items():
            self.counters["warning_accounts_unreadable"] += 1
            self._log.error("account.unreadable", account=account, error=str(exc))
        plans: list[tuple[str, WarningPlan | None, ChangeSet]] = []
        now_ms = self.wall_ms()
        slice_end = time.perf_counter() + PLAN_SLICE
        for account in chunk:
            if time.perf_counter() > slice_end:
                await asyncio.sleep(0)
                slice_end = time.perf_counter() + PLAN_SLICE
            state = states.get(account)
            if state is None:
                continue
            try:
                planned = plan_account(self.rules, state, live, now_ms, work[account])
            except (ArithmeticError, MarginError) as exc:
                self.counters["warning_accounts_undecidable"] += 1
                self._log.error("account.undecidable", account=account, error=repr(exc))
                continue
            if account in dirty:
                # Out of the dirty set with the first of its changes (or alone).
                if planned:
                    planned[0].change.srem(self.rules.keys.warn_dirty, account)
                else:
                    cs = ChangeSet(self.rules.keys, account).expect_version(state.version)
                    plans.append((account, None, cs.srem(self.rules.keys.warn_dirty, account)))
            plans += [(account, p, p.change) for p in planned]
        if plans:
            await self._commit(plans)

    async def _commit(self, plans: list[tuple[str, WarningPlan | None, ChangeSet]]) -> None:
        attempts = 0

        async def commit() -> list[CommitResult]:
            nonlocal attempts
            attempts += 1
            return await self.store.commit_many([cs for _, _, cs in plans])

        results = await self.link.call("warnings.commit", commit)
        for (account, plan, _), result in zip(plans, results, strict=True):
            if result.outcome in ("CONFLICT", "FIELD"):
                self._again.add(account)
                self.counters["warning_conflicts"] += 1
                continue
            if plan is None:
                continue
            if result.outcome == "ERROR":
                self.counters["warning_commits_refused"] += 1
                self._log.error("account.commit_refused", account=account, error=result.entry_id)
                continue
            event = plan.event
            retried = result.outcome == "NX" and event is not None and attempts > 1
            if result.ok or retried:
                self.counters[f"warning_{plan.action}s"] += 1
                if event is not None:
                    self.warned[event.kind.value] += 1
                    extra = {"after_retry": True} if retried else {}
                    self._log.warning(
                        "warning.emitted", entry_id=result.entry_id, **extra, **event.to_fields()
                    )
                elif plan.action == "rearm":
                    self._log.info("warning.rearmed", account=account, part=plan.part)
