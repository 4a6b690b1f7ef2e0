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
from state.decisions import Survivor, claim_cross, decide_isolated
from state.errors import MarginError, StoreError
from state.events import LiquidationEvent
from state.keys import split_index_member
from state.models import MarginMode, MarkPrice
from state.rules import Rules
from state.store import CommitResult, Store, TickRow
from state.store.store import RawAccount
from watcher.clock import wall_ms
from watcher.daemon.link import RedisLink
from watcher.feeds.book import Cursor, MarkBook, SymbolStatus, Tick
from watcher.feeds.spec import public_url

# A batch's decisions are re-planned after a version conflict (another
# instance or the input consumer changed the account meanwhile); past this
# many rounds the rest waits for the next tick, which finds it again.
MAX_ROUNDS = 20
# Accounts read and decided per round trip: a cascade is committed, and
# logged, chunk by chunk, so its first decisions never wait for its last.
CHUNK = 500
# The first chunk of a batch: its decisions are committed while the rest is planned.
FIRST_CHUNK = 8
# Planning yields to the event loop at least this often (seconds of CPU).
PLAN_SLICE = 0.0002


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
# Accounts read with the index query, as read.
_Read = dict[str, RawAccount]


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
        source: Cursor | MarkBook | None = None,
    ) -> None:
        self.store = store
        self.rules = rules
        self.book = book
        # Where this engine takes its ticks: the book itself, or its own
        # cursor when engines of several shards share the book.
        self.source = source if source is not None else book
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
        # For the metrics: index candidates by mode, liquidations by (kind, symbol),
        # and a callback given each committed event's seconds since its mark arrived.
        self.candidates: Counter[str] = Counter()
        self.liquidated: Counter[tuple[str, str]] = Counter()
        self.observe_latency: Callable[[float], None] | None = None
        self._nudged: set[str] = set()
        self._log = structlog.get_logger().bind(component="engine")

    def live_marks(self) -> dict[str, Decimal]:
        """The latest processed price of every symbol whose processed mark is still fresh."""
        now = self.clock()
        return {s: m.price for s, m in self.marks.items() if self.book.is_fresh(m, now)}

    def nudge(self, accounts: Iterable[str]) -> None:
        """Ask for these accounts to be decided at the current marks on the next pass."""
        self._nudged.update(accounts)
        self.source.poke()

    def reconcile(self) -> None:
        """Query every symbol with a fresh mark in full on the next pass, as at a start."""
        self._reconcile = True
        self.source.poke()

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
                        await self.source.wait()
                except TimeoutError:
                    continue
            await self.process(self.source.take(self.clock()))

    def _next_wait(self) -> float:
        wait = self.idle_check
        now = self.clock()
        deadline = self.source.next_stale_at(now)
        if deadline is not None:
            # Just past it, so the symbol is STALE when we look.
            wait = min(wait, max(0.0, deadline - now) + 0.001)
        return wait

    async def check_staleness(self) -> None:
        """Record and announce, once each time, every symbol that went STALE or came back.

        The book reports each change once; a symbol taken LIVE and gone stale
        within one long batch is reported STALE on the next check.
        """
        for symbol, status in self.source.check_staleness(self.clock()):
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
        work, read = await self._candidates(live, now)
        nudged, self._nudged = self._nudged, set()
        if self.held:
            # Redis lost its data: whatever the index says now is not the book.
            if work or nudged:
                self.counters["decisions_held"] += len(work) + len(nudged)
        elif work or nudged:
            await self._decide(work, nudged, read)
        for symbol, tick in live.items():
            self.processed[symbol] = tick.mark.venue_ts

    def _fresh_ticks(self, now: float) -> dict[str, Tick]:
        """A tick at its latest mark for every symbol whose latest mark is fresh."""
        return {s: Tick(m, m.price, m.price) for s, m in self.book.fresh_marks(now).items()}

    async def _candidates(
        self, live: dict[str, Tick], now: float
    ) -> tuple[dict[str, _Work], _Read]:
        """Query the index at the ticks; return the work and the first candidates' state."""
        if not live:
            return {}, {}
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
                self.processed.get(s, 0),
            )
            for s, t in live.items()
        ]
        hits, read = await self.link.call(
            "tick", lambda: self.store.record_and_query(rows, self.chunk)
        )
        self.counters["ticks"] += len(live)
        work: dict[str, _Work] = {}
        for row, (down, up) in zip(rows, hits, strict=True):
            symbol = row.symbol
            tick = live[symbol]
            for members, extreme in ((down, tick.low), (up, tick.high)):
                for raw in members:
                    mode, account = split_index_member(raw.decode())
                    self.candidates[mode.value] += 1
                    w = work.setdefault(account, _Work())
                    if mode is MarginMode.CROSS:
                        w.cross = w.cross or symbol
                    else:
                        prices, _ = w.isolated.get(symbol, ([], 0))
                        for p in (tick.mark.price, extreme):
                            if p not in prices:
                                prices.append(p)
                        w.isolated[symbol] = (prices, tick.mark.venue_ts)
        return work, read

    async def _decide(self, work: dict[str, _Work], nudged: set[str], read: _Read) -> None:
        """Decide ``work`` and the nudged accounts; ``read``: state already read, for round 1."""
        # The accounts read with the query go first: their chunk needs no read.
        pending = {a: work[a] for a in work if a in read}
        pending.update(work)
        for account in nudged:
            pending.setdefault(account, _Work())
        for _ in range(MAX_ROUNDS):
            if not pending:
                return
            await self._decide_round(pending, nudged, read)
            nudged, read = set(), {}
            pending = {a: w for a, w in pending.items() if w.cross or w.isolated}
        if pending:
            self.counters["decisions_deferred"] += len(pending)
            self._log.warning("engine.deferred", accounts=len(pending))

    async def _decide_round(self, pending: dict[str, _Work], nudged: set[str], read: _Read) -> None:
        """Decide every pending account once, chunk by chunk, as a pipeline.

        Reading chunk k+1 and committing chunk k-1 overlap planning chunk k
        (Redis works on its own core meanwhile); chunks hold distinct
        accounts, so their commits are independent. Work left in an item
        (a conflict) is redone in the next round.
        """
        # Earliest first: isolated positions (cheap, exact, most often a
        # liquidation) before cross accounts (often only re-banded), each
        # group starting with a small chunk, so that the first events never
        # wait for the rest of a batch; chunks then grow to ``chunk``.
        chunks: list[dict[str, _Work]] = []
        for group in (
            [a for a, w in pending.items() if w.cross is None],
            [a for a, w in pending.items() if w.cross is not None],
        ):
            start, size = 0, FIRST_CHUNK
            while start < len(group):
                chunks.append({a: pending[a] for a in group[start : start + size]})
                start, size = start + size, min(self.chunk, size * 4)
        # The first chunk on the direct path: read, plan, commit and log
        # before anything else takes the event loop, so that a tick's first
        # decisions are in the events stream one round trip after it. (Each
        # hop of the client's call waits for whatever holds the loop.)
        survivors: list[tuple[_Work, str, Survivor]] = []
        states, broken = await self._read(chunks[0], read)
        planned = await self._plan_chunk(chunks[0], states, broken, nudged, survivors)
        rest = chunks[1:]
        async with asyncio.TaskGroup() as tg:
            committing = tg.create_task(self._commit(planned)) if planned else None
            if rest:
                reading = tg.create_task(self._read(rest[0], read))
                if committing is not None:
                    await committing
            for i, chunk in enumerate(rest):
                states, broken = await reading
                if i + 1 < len(rest):
                    reading = tg.create_task(self._read(rest[i + 1], read))
                planned = await self._plan_chunk(chunk, states, broken, nudged, survivors)
                if committing is not None:
                    await committing
                committing = tg.create_task(self._commit(planned)) if planned else None
            # Every claim is on its way: now the bands of the accounts that survived.
            for start in range(0, len(survivors), self.chunk):
                planned = await self._rebands(survivors[start : start + self.chunk])
                if committing is not None:
                    await committing
                committing = tg.create_task(self._commit(planned))

    async def _rebands(self, survivors: list[tuple[_Work, str, Survivor]]) -> list[_Planned]:
        """Plan the fresh bands of cross accounts that survived (CPU, yielding as it goes)."""
        planned: list[_Planned] = []
        slice_end = time.perf_counter() + PLAN_SLICE
        for w, symbol, survivor in survivors:
            if time.perf_counter() > slice_end:
                await asyncio.sleep(0)
                slice_end = time.perf_counter() + PLAN_SLICE
            try:
                planned.append((w, ("C", symbol), survivor.rebands(self.rules), None))
            except (ArithmeticError, MarginError) as exc:
                self.counters["accounts_undecidable"] += 1
                self._log.error(
                    "account.undecidable", account=survivor.state.account, error=repr(exc)
                )
                w.clear()
        return planned

    async def _read(
        self, chunk: dict[str, _Work], read: _Read
    ) -> tuple[dict[str, AccountState], dict[str, StoreError]]:
        """The state of ``chunk``'s accounts: made of what ``read`` holds, the rest from Redis."""
        broken: dict[str, StoreError] = {}
        states = self.store.parse(((a, read[a]) for a in chunk if a in read), broken)
        missing = [a for a in chunk if a not in read]
        if missing:
            states.update(
                await self.link.call("read", lambda: self.store.load_many(missing, broken))
            )
        return states, broken

    async def _plan_chunk(
        self,
        chunk: dict[str, _Work],
        states: dict[str, AccountState],
        broken: dict[str, StoreError],
        nudged: set[str],
        survivors: list[tuple[_Work, str, Survivor]],
    ) -> list[_Planned]:
        """Plan the decisions of one chunk of accounts.

        CPU only, but it yields every 0.2 ms: the answer to the last chunk's
        commit is taken (its events logged, its latency ended) as soon as it
        is in, not after this whole chunk.
        """
        for account, exc in broken.items():
            # Left in the index: it is looked at again once repaired.
            self.counters["accounts_unreadable"] += 1
            self._log.error("account.unreadable", account=account, error=str(exc))
            chunk[account].clear()
        planned: list[_Planned] = []
        live = self.live_marks()
        slice_end = time.perf_counter() + PLAN_SLICE
        for account, w in chunk.items():
            if time.perf_counter() > slice_end:
                await asyncio.sleep(0)
                slice_end = time.perf_counter() + PLAN_SLICE
            if account in broken:
                continue
            if account in nudged:
                self._add_nudged(w, states[account], live)
            try:
                planned += [(w, *p) for p in self._plan(states[account], w, live, survivors)]
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
            # NX on a retry: our first try committed it and its answer was lost
            # with the connection (another instance making the same decision in
            # that window would log it too: the events stream is the record).
            retried = result.outcome == "NX" and attempts > 1
            if result.ok or retried:
                self.counters[f"liquidations_{event.kind.value.lower()}"] += 1
                self._emitted(event)
                extra = {"after_retry": True} if retried else {}
                self._log.warning(
                    "liquidation.emitted", entry_id=result.entry_id, **extra, **event.to_fields()
                )
            elif result.outcome == "NX":
                self.counters["claims_already_made"] += 1
            elif result.outcome == "ERROR":
                self.counters["commits_refused"] += 1
                self._log.error(
                    "account.commit_refused", account=event.account, error=result.entry_id
                )

    def _emitted(self, event: LiquidationEvent) -> None:
        """Count a committed event for the metrics; time it from its mark's receipt."""
        self.liquidated[(event.kind.value, event.symbol)] += 1
        mark = self.marks.get(event.symbol)
        if self.observe_latency is not None and mark is not None:
            self.observe_latency(self.clock() - mark.recv_ts)

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
        self,
        state: AccountState,
        w: _Work,
        live: dict[str, Decimal],
        survivors: list[tuple[_Work, str, Survivor]],
    ) -> list[tuple[tuple[str, str], ChangeSet, LiquidationEvent | None]]:
        """Plan one account's decisions; at most one of them may bump its version.

        A cross account that survives goes to ``survivors``, its bands written
        after every claim of the batch. Items left unplanned (or whose commit
        conflicts) stay in ``w`` for the next round, which re-reads the account.
        """
        out: list[tuple[tuple[str, str], ChangeSet, LiquidationEvent | None]] = []
        now_ms = self.wall_ms()
        if w.cross is not None:
            ts = self.marks[w.cross].venue_ts if w.cross in self.marks else 0
            cs, event, survivor = claim_cross(self.rules, state, w.cross, live, ts, now_ms)
            if survivor is not None:
                survivors.append((w, w.cross, survivor))
            elif cs is None:
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
