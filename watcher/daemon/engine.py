"""The engine: latest marks in, index queries, exact decisions, atomic claims out.

Per batch of ticks (every symbol that changed since the last batch, conflated
to its latest mark plus the lowest and highest seen since): one pipelined
round trip records the marks and queries both index sets of each symbol; one
reads every candidate account; one commits every decision. Nothing is decided
on a STALE symbol, and a cross account with a leg that has no LIVE mark is held.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

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
from state.store import Store, TickRow
from watcher.clock import wall_ms
from watcher.feeds.book import MarkBook, SymbolStatus, Tick
from watcher.feeds.spec import public_url

# A batch's decisions are re-planned after a version conflict (another
# instance or the input consumer changed the account meanwhile); past this
# many rounds the rest waits for the next tick, which finds it again.
MAX_ROUNDS = 20


@dataclass(slots=True)
class _Work:
    """What one account needs decided in this batch."""

    cross: str | None = None
    isolated: dict[str, tuple[list[Decimal], int]] = field(default_factory=dict)


class Engine:
    """Decide liquidations on every tick; see the module docstring for the shape."""

    def __init__(
        self,
        store: Store,
        rules: Rules,
        book: MarkBook,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = wall_ms,
        idle_check: float = 0.25,
    ) -> None:
        self.store = store
        self.rules = rules
        self.book = book
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

    async def run(self, stop: asyncio.Event) -> None:
        """Process ticks until ``stop`` is set; the batch in flight is always finished."""
        while not stop.is_set():
            await self.check_staleness()
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
            await self.store.set_mark_status(symbol, SymbolStatus.STALE.value)

    def _age(self, symbol: str) -> float | None:
        last = self.book.last_recv(symbol)
        return None if last is None else round(self.clock() - last, 3)

    async def process(self, live: dict[str, Tick]) -> None:
        """Decide everything the given ticks (fresh, from the book) and nudged accounts call for."""
        now = self.clock()
        for symbol, tick in live.items():
            self.marks[symbol] = tick.mark
            if tick.revived:
                self._log.info("feed.live", symbol=symbol)
        if live:
            self.generation += 1
        work = await self._candidates(live, now)
        nudged, self._nudged = self._nudged, set()
        if work or nudged:
            await self._decide(work, nudged)
        for symbol, tick in live.items():
            self.processed[symbol] = tick.mark.venue_ts

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
        hits = await self.store.record_and_query(rows)
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
            broken: dict[str, StoreError] = {}
            states = await self.store.load_many(pending, broken)
            for account, exc in broken.items():
                # Left in the index: it is looked at again once repaired.
                self.counters["accounts_unreadable"] += 1
                self._log.error("account.unreadable", account=account, error=str(exc))
                del pending[account]
            planned: list[tuple[str, tuple[str, str], ChangeSet, LiquidationEvent | None]] = []
            live = self.live_marks()
            for account, w in list(pending.items()):
                if account in nudged:
                    self._add_nudged(w, states[account], live)
                try:
                    planned += [(account, *p) for p in self._plan(states[account], w, live)]
                except (ArithmeticError, MarginError) as exc:
                    # Data the math cannot take (it passed input validation
                    # before the bounds were tightened, or was written by
                    # hand): set aside, loudly, so everyone else is decided.
                    self.counters["accounts_undecidable"] += 1
                    self._log.error("account.undecidable", account=account, error=repr(exc))
                    del pending[account]
            nudged = set()
            results = await self.store.commit_many([cs for _, _, cs, _ in planned])
            for (account, item, _, event), result in zip(planned, results, strict=True):
                if result.outcome == "CONFLICT":
                    continue
                _done(pending[account], item)
                if result.ok and event is not None:
                    self.counters[f"liquidations_{event.kind.value.lower()}"] += 1
                    self._log.warning(
                        "liquidation.emitted", entry_id=result.entry_id, **event.to_fields()
                    )
                elif result.outcome == "NX":
                    self.counters["claims_already_made"] += 1
            pending = {a: w for a, w in pending.items() if w.cross or w.isolated}
        if pending:
            self.counters["decisions_deferred"] += len(pending)
            self._log.warning("engine.deferred", accounts=len(pending))

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


def _done(w: _Work, item: tuple[str, str]) -> None:
    kind, symbol = item
    if kind == "C":
        w.cross = None
    else:
        w.isolated.pop(symbol, None)
