"""The engine: latest marks in, index queries, exact decisions, atomic claims out.

Per batch of ticks (every symbol that changed since the last batch, conflated
to its latest mark plus the lowest and highest seen since): one round trip
records the marks and queries both index sets of each symbol; then, chunk by
chunk of candidate accounts, one reads them and one commits their decisions,
and each chunk's liquidations are logged as soon as its commit answers.
Nothing is decided on a STALE symbol; a cross account with a leg that has no
LIVE mark is held; nothing at all is decided while the engine is held (Redis
lost its data and no operator has acknowledged it yet). Every round trip goes
through the :class:`RedisLink`; after an outage the engine reconciles like a
start: every symbol with a fresh mark is queried again in full.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial

import structlog

from state import margin
from state.account import AccountState, Status
from state.changes import ChangeSet
from state.decisions import decide_cross, decide_isolated
from state.errors import MarginError, StoreError
from state.events import LiquidationEvent
from state.keys import split_index_member
from state.models import MarginMode, MarkPrice
from state.rules import Rules
from state.store import CommitResult, Store, TickRow
from watcher.clock import wall_ms
from watcher.daemon.link import RedisLink
from watcher.feeds.book import MarkBook, SymbolStatus, Tick
from watcher.feeds.spec import public_url

# A batch's decisions are re-planned after a version conflict (another
# instance or the input consumer changed the account meanwhile); past this
# many rounds the rest waits for the next tick, which finds it again.
MAX_ROUNDS = 20
# Accounts read and decided per round trip: a cascade is committed, and
# logged, chunk by chunk, so its first decisions never wait for its last.
CHUNK = 500


@dataclass(slots=True)
class _Work:
    """What one account needs decided in this batch."""

    cross: str | None = None
    isolated: dict[str, tuple[list[Decimal], int]] = field(default_factory=dict)

    def done(self, item: tuple[str, str]) -> None:
        """Forget one decided item: ("C", symbol) or ("I", symbol)."""
        kind, symbol = item
        if kind == "C":
            self.cross = None
        else:
            self.isolated.pop(symbol, None)

    def clear(self) -> None:
        """Forget everything: the account is set aside."""
        self.cross = None
        self.isolated.clear()


# One planned decision: the account's work item, which item, the change set, the event.
_Planned = tuple["_Work", tuple[str, str], ChangeSet, LiquidationEvent | None]


class Engine:
    """Decide liquidations on every tick; see the module docstring for the shape."""

    def __init__(
        self,
        store: Store,
        rules: Rules,
        book: MarkBook,
        *,
        link: RedisLink | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = wall_ms,
        idle_check: float = 0.25,
        chunk: int = CHUNK,
    ) -> None:
        self.store = store
        self.rules = rules
        self.book = book
        self.link = link if link is not None else RedisLink()
        self.chunk = chunk
        # Set while Redis has lost its data and nobody acknowledged it: decide nothing.
        self.held = False
        self._outages_seen = self.link.outages
        self._reconcile = False
        self.clock = clock
        self.wall_ms = wall_ms
        self.idle_check = idle_check
        # The latest mark of each symbol that has been through the index.
        self.marks: dict[str, MarkPrice] = {}
        self.generation = 0
        # venue_ts of the last mark per symbol whose decisions are all committed.
        self.processed: dict[str, int] = {}
        self.counters: Counter[str] = Counter()
        self._nudged: set[str] = set()
        self._log = structlog.get_logger().bind(component="engine")

    def live_marks(self) -> dict[str, Decimal]:
        """The latest processed price of every symbol whose processed mark is still fresh."""
        now = self.clock()
        return {s: m.price for s, m in self.marks.items() if self.book.is_fresh(m, now)}

    def nudge(self, accounts: Iterable[str]) -> None:
        """Ask for these accounts to be decided at the current marks on the next pass."""
        self._nudged.update(accounts)
        self.book.poke()

    def reconcile(self) -> None:
        """Query every symbol with a fresh mark in full on the next pass, as at a start."""
        self._reconcile = True
        self.book.poke()

    async def run(self, stop: asyncio.Event) -> None:
        """Process ticks until ``stop`` is set; the batch in flight is always finished."""
        while not stop.is_set():
            await self.check_staleness()
            if self.link.outages != self._outages_seen:
                # Marks moved while Redis was away: look at everything again.
                self._outages_seen = self.link.outages
                self._reconcile = True
            if not self._reconcile:
                try:
                    async with asyncio.timeout(self._next_wait()):
                        await self.book.wait()
                except TimeoutError:
                    continue
            await self.process(self.book.take(self.clock()))

    def _next_wait(self) -> float:
        wait = self.idle_check
        now = self.clock()
        deadline = self.book.next_stale_at(now)
        if deadline is not None:
            # Just past it, so the symbol is STALE when we look.
            wait = min(wait, max(0.0, deadline - now) + 0.001)
        return wait

    async def check_staleness(self) -> None:
        """Record and announce, once each time, every symbol that went STALE or came back.

        The book reports each change once; a symbol taken LIVE and gone stale
        within one long batch is reported STALE on the next check.
        """
        for symbol, status in self.book.check_staleness(self.clock()):
            if status is SymbolStatus.LIVE:
                self._log.info("feed.live", symbol=symbol)
                continue
            self._log.warning("feed.stale", symbol=symbol, last_tick_age_s=self._age(symbol))
            self.counters["stale_transitions"] += 1
            stale = SymbolStatus.STALE.value
            await self.link.call("mark", partial(self.store.set_mark_status, symbol, stale))

    def _age(self, symbol: str) -> float | None:
        last = self.book.last_recv(symbol)
        return None if last is None else round(self.clock() - last, 3)

    async def process(self, live: dict[str, Tick]) -> None:
        """Decide everything the given ticks (fresh, from the book) and nudged accounts call for."""
        now = self.clock()
        if self._reconcile:
            self._reconcile = False
            live = {**self._fresh_ticks(now), **live}
            self.counters["reconciles"] += 1
        for symbol, tick in live.items():
            self.marks[symbol] = tick.mark
            if tick.revived:
                self._log.info("feed.live", symbol=symbol)
        if live:
            self.generation += 1
        work = await self._candidates(live, now)
        nudged, self._nudged = self._nudged, set()
        if self.held:
            # Redis lost its data: whatever the index says now is not the book.
            if work or nudged:
                self.counters["decisions_held"] += len(work) + len(nudged)
        elif work or nudged:
            await self._decide(work, nudged)
        for symbol, tick in live.items():
            self.processed[symbol] = tick.mark.venue_ts

    def _fresh_ticks(self, now: float) -> dict[str, Tick]:
        """A tick at its latest mark for every symbol whose latest mark is fresh."""
        ticks = {}
        for symbol in self.book.symbols:
            mark = self.book.latest(symbol)
            if mark is not None and self.book.is_fresh(mark, now):
                ticks[symbol] = Tick(mark, mark.price, mark.price)
        return ticks

    async def _candidates(self, live: dict[str, Tick], now: float) -> dict[str, _Work]:
        if not live:
            return {}
        wall = self.wall_ms()
        rows = [
            TickRow(
                s,
                t.mark.price,
                t.mark.venue_ts,
                wall - int((now - t.mark.recv_ts) * 1000),
                public_url(t.mark.source),
                margin.mark_bound(t.low, down=True),
                margin.mark_bound(t.high, down=False),
            )
            for s, t in live.items()
        ]
        hits = await self.link.call("tick", lambda: self.store.record_and_query(rows))
        self.counters["ticks"] += len(live)
        work: dict[str, _Work] = {}
        for row, (down, up) in zip(rows, hits, strict=True):
            symbol = row.symbol
            tick = live[symbol]
            for members, extreme in ((down, tick.low), (up, tick.high)):
                for raw in members:
                    mode, account = split_index_member(raw.decode())
                    w = work.setdefault(account, _Work())
                    if mode is MarginMode.CROSS:
                        w.cross = w.cross or symbol
                    else:
                        prices, _ = w.isolated.get(symbol, ([], 0))
                        for p in (tick.mark.price, extreme):
                            if p not in prices:
                                prices.append(p)
                        w.isolated[symbol] = (prices, tick.mark.venue_ts)
        return work

    async def _decide(self, work: dict[str, _Work], nudged: set[str]) -> None:
        pending = dict(work)
        for account in nudged:
            pending.setdefault(account, _Work())
        for _ in range(MAX_ROUNDS):
            if not pending:
                return
            await self._decide_round(pending, nudged)
            nudged = set()
            pending = {a: w for a, w in pending.items() if w.cross or w.isolated}
        if pending:
            self.counters["decisions_deferred"] += len(pending)
            self._log.warning("engine.deferred", accounts=len(pending))

    async def _decide_round(self, pending: dict[str, _Work], nudged: set[str]) -> None:
        """Decide every pending account once, chunk by chunk, as a pipeline.

        Reading chunk k+1 and committing chunk k-1 overlap planning chunk k
        (Redis works on its own core meanwhile); chunks hold distinct
        accounts, so their commits are independent. Work left in an item
        (a conflict) is redone in the next round.
        """
        names = list(pending)
        chunks = [
            {a: pending[a] for a in names[i : i + self.chunk]}
            for i in range(0, len(names), self.chunk)
        ]
        async with asyncio.TaskGroup() as tg:
            reading = tg.create_task(self._read(chunks[0]))
            committing: asyncio.Task[None] | None = None
            for i, chunk in enumerate(chunks):
                states, broken = await reading
                if i + 1 < len(chunks):
                    reading = tg.create_task(self._read(chunks[i + 1]))
                planned = self._plan_chunk(chunk, states, broken, nudged)
                if committing is not None:
                    await committing
                committing = tg.create_task(self._commit(planned)) if planned else None

    async def _read(
        self, chunk: dict[str, _Work]
    ) -> tuple[dict[str, AccountState], dict[str, StoreError]]:
        broken: dict[str, StoreError] = {}
        states = await self.link.call("read", lambda: self.store.load_many(chunk, broken))
        return states, broken

    def _plan_chunk(
        self,
        chunk: dict[str, _Work],
        states: dict[str, AccountState],
        broken: dict[str, StoreError],
        nudged: set[str],
    ) -> list[_Planned]:
        """Plan the decisions of one chunk of accounts (CPU only)."""
        for account, exc in broken.items():
            # Left in the index: it is looked at again once repaired.
            self.counters["accounts_unreadable"] += 1
            self._log.error("account.unreadable", account=account, error=str(exc))
            chunk[account].clear()
        planned: list[_Planned] = []
        live = self.live_marks()
        for account, w in chunk.items():
            if account in broken:
                continue
            if account in nudged:
                self._add_nudged(w, states[account], live)
            try:
                planned += [(w, *p) for p in self._plan(states[account], w, live)]
            except (ArithmeticError, MarginError) as exc:
                # Data the math cannot take (it passed input validation
                # before the bounds were tightened, or was written by
                # hand): set aside, loudly, so everyone else is decided.
                self.counters["accounts_undecidable"] += 1
                self._log.error("account.undecidable", account=account, error=repr(exc))
                w.clear()
        return planned

    async def _commit(self, planned: list[_Planned]) -> None:
        """Commit one chunk's decisions and log its liquidations as soon as Redis answers."""
        attempts = 0

        async def commit() -> list[CommitResult]:
            nonlocal attempts
            attempts += 1
            return await self.store.commit_many([cs for _, _, cs, _ in planned])

        results = await self.link.call("commit", commit)
        for (w, item, _, event), result in zip(planned, results, strict=True):
            if result.outcome == "CONFLICT":
                continue
            w.done(item)
            if event is None:
                continue
            if result.ok:
                self.counters[f"liquidations_{event.kind.value.lower()}"] += 1
                self._log.warning(
                    "liquidation.emitted", entry_id=result.entry_id, **event.to_fields()
                )
            elif result.outcome == "NX" and attempts > 1:
                # Our first try committed it and its answer was lost with the
                # connection (another instance making the same decision in
                # that window would log it too: the events stream is the record).
                self.counters[f"liquidations_{event.kind.value.lower()}"] += 1
                self._log.warning(
                    "liquidation.emitted",
                    entry_id=result.entry_id,
                    after_retry=True,
                    **event.to_fields(),
                )
            elif result.outcome == "NX":
                self.counters["claims_already_made"] += 1
            elif result.outcome == "ERROR":
                self.counters["commits_refused"] += 1
                self._log.error(
                    "account.commit_refused", account=event.account, error=result.entry_id
                )

    def _add_nudged(self, w: _Work, state: AccountState, live: dict[str, Decimal]) -> None:
        legs = state.cross_legs
        if legs and state.status is Status.OPEN and w.cross is None:
            w.cross = legs[0].symbol
        for (mode, symbol), stored in state.positions.items():
            if (
                mode is MarginMode.ISOLATED
                and stored.status is Status.OPEN
                and symbol in live
                and symbol not in w.isolated
            ):
                w.isolated[symbol] = ([live[symbol]], self.marks[symbol].venue_ts)

    def _plan(
        self, state: AccountState, w: _Work, live: dict[str, Decimal]
    ) -> list[tuple[tuple[str, str], ChangeSet, LiquidationEvent | None]]:
        """Plan one account's decisions; at most one of them may bump its version.

        Items left unplanned (or whose commit conflicts) stay in ``w`` for the
        next round, which re-reads the account first.
        """
        out: list[tuple[tuple[str, str], ChangeSet, LiquidationEvent | None]] = []
        now_ms = self.wall_ms()
        if w.cross is not None:
            marks = live
            ts = self.marks[w.cross].venue_ts if w.cross in self.marks else 0
            cs, event = decide_cross(self.rules, state, w.cross, marks, ts, now_ms)
            if cs is None:
                w.cross = None  # held, or nothing to do: the index keeps it
            else:
                out.append((("C", w.cross), cs, event))
                if event is not None:
                    return out
        for symbol, (prices, ts) in list(w.isolated.items()):
            cs, event = decide_isolated(self.rules, state, symbol, prices, ts, now_ms)
            if cs is None:
                del w.isolated[symbol]
                continue
            out.append((("I", symbol), cs, event))
            if event is not None:
                break
        return out
