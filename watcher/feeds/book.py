"""The mark book: where feeds hand over marks and the engine takes the latest ones.

Feeds call :meth:`MarkBook.offer` for every parsed mark; the engine waits for
something new and takes, per changed symbol, the latest mark together with
the lowest and highest accepted since it last looked. So a slow engine acts
on the latest price, never a queue of old ones, yet still sees a crossing
that a burst of ticks went through and back (docs/design.md, "Prices are untrusted").
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from state.models import MarkPrice
from watcher.feeds.errors import PriceRejected, RejectReason
from watcher.feeds.spec import FeedSpec

# Accepted marks kept per symbol, for a shard taken over to look back at
# what crossed while nobody held it (minutes of marks at a venue's pace).
HISTORY = 4096


class SymbolStatus(StrEnum):
    """Whether a symbol's mark may be acted on."""

    LIVE = "LIVE"
    STALE = "STALE"


@dataclass(frozen=True, slots=True)
class Tick:
    """The latest mark of a symbol and the extremes accepted since the engine last took it.

    ``revived``: the symbol was last reported STALE, and this mark brings it back.
    """

    mark: MarkPrice
    low: Decimal
    high: Decimal
    revived: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class Offer:
    """What :meth:`MarkBook.offer` did with a mark: accepted, held, or refused and why.

    ``resynced_from``: the mark ended a run of marks refused as older than
    its source's reference (the venue's clock went back, or a glitched mark
    had set the reference ahead), so the book forgot that reference to take
    it; this is the forgotten reference's venue timestamp. The mark then met
    the jump guard as usual: it may be accepted or held.
    """

    accepted: bool
    held: bool = False
    reason: RejectReason | None = None
    resynced_from: int | None = None

    @property
    def resynced(self) -> bool:
        """Tell whether the book reset the source's clock reference to take this mark."""
        return self.resynced_from is not None


ACCEPTED = Offer(accepted=True)
HELD = Offer(accepted=False, held=True)


class _Streak:
    """A run of marks from one source refused as older than that source's reference.

    ``start`` is the receive time of its first mark, ``last`` its latest one;
    ``advanced`` tells whether the source's clock moved forward within the
    run (a replay of one old tick never does).
    """

    __slots__ = ("advanced", "last", "start")

    def __init__(self, mark: MarkPrice) -> None:
        self.start = mark.recv_ts
        self.last = mark
        self.advanced = False


class _Slot:
    __slots__ = (
        "held",
        "history",
        "jump_band",
        "last_ts",
        "mark",
        "stale_after",
        "streaks",
    )

    def __init__(self, stale_after: float, jump_band: Decimal | None = None) -> None:
        self.stale_after = stale_after
        self.jump_band = jump_band
        # A mark that jumped beyond the band, waiting for the next to confirm it.
        self.held: MarkPrice | None = None
        # The last accepted venue timestamp per source: each feed's clock
        # orders its own marks only.
        self.last_ts: dict[str, int] = {}
        # Per source: the marks refused as older than its last_ts, in a row.
        self.streaks: dict[str, _Streak] = {}
        self.mark: MarkPrice | None = None
        # The latest accepted marks as (venue_ts, price), newest last.
        self.history: deque[tuple[int, Decimal]] = deque(maxlen=HISTORY)

    def fresh(self, mark: MarkPrice, now: float) -> bool:
        return now - mark.recv_ts <= self.stale_after


class Cursor:
    """One taker's view of the book: what changed since it last took, and what it was told.

    The book has one cursor of its own (its :meth:`MarkBook.take` and
    friends); every other taker (one engine per shard) opens its own with
    :meth:`MarkBook.cursor`, so that each takes every change once, at its
    own pace, with the extremes seen since its own last take.
    """

    def __init__(self, book: MarkBook, now: float | None = None) -> None:
        self._book = book
        # Insertion-ordered (a dict as an ordered set): a batch lists its symbols in the
        # order their marks came, so that what the engine decides first does not hang
        # on string hashing (replay reproduces a run).
        self._dirty: dict[str, None] = {}
        self._low: dict[str, Decimal] = {}
        self._high: dict[str, Decimal] = {}
        self._changed = asyncio.Event()
        # The status last reported (by check_staleness or take); without
        # ``now`` every symbol starts STALE (nothing known), so its first mark
        # is a transition to LIVE; with it, as the book stands at ``now``.
        self._reported = {
            symbol: SymbolStatus.STALE if now is None else book.status(symbol, now)
            for symbol in book.symbols
        }

    def seed(self, symbol: str, low: Decimal, high: Decimal) -> None:
        """Take ``low`` and ``high`` as seen since the last take (a shard taken over)."""
        self.note(symbol, low)
        self.note(symbol, high)

    def note(self, symbol: str, price: Decimal) -> None:
        """An accepted mark of ``symbol`` at ``price`` (called by the book)."""
        if symbol in self._dirty:
            if price < self._low[symbol]:
                self._low[symbol] = price
            elif price > self._high[symbol]:
                self._high[symbol] = price
        else:
            self._low[symbol] = self._high[symbol] = price
            self._dirty[symbol] = None
            self._changed.set()

    async def wait(self) -> None:
        """Wait until some symbol has an untaken mark (bound it with ``asyncio.timeout``)."""
        if not self._dirty:
            await self._changed.wait()

    def poke(self) -> None:
        """Wake a waiter without a new mark (the engine has other work, such as nudged accounts)."""
        self._changed.set()

    def take(self, now: float) -> dict[str, Tick]:
        """Return a Tick for every symbol with a fresh mark since the last take; forget them all.

        A taken symbol is reported LIVE (its tick says if that is news): the
        taker records it as LIVE, so that its going STALE later is reported
        even if no :meth:`check_staleness` ran in between.
        """
        ticks: dict[str, Tick] = {}
        for symbol in self._dirty:
            mark = self._book.latest(symbol)
            assert mark is not None  # a dirty symbol always holds the mark that dirtied it
            if not self._book.is_fresh(mark, now):
                continue
            revived = self._reported[symbol] is SymbolStatus.STALE
            self._reported[symbol] = SymbolStatus.LIVE
            ticks[symbol] = Tick(mark, self._low[symbol], self._high[symbol], revived)
        self._dirty.clear()
        self._changed.clear()
        return ticks

    def check_staleness(self, now: float) -> list[tuple[str, SymbolStatus]]:
        """Return the symbols whose status changed since the last call, with the new status."""
        changes: list[tuple[str, SymbolStatus]] = []
        for symbol, reported in self._reported.items():
            current = self._book.status(symbol, now)
            if current is not reported:
                self._reported[symbol] = current
                changes.append((symbol, current))
        return changes

    def next_stale_at(self, now: float | None = None) -> float | None:
        """Return when the first LIVE symbol will turn STALE if nothing arrives.

        With ``now``: of the symbols LIVE at ``now``; without: of those
        :meth:`check_staleness` last reported LIVE.
        """
        return self._book.first_stale_at(
            now, [s for s, r in self._reported.items() if r is SymbolStatus.LIVE]
        )


class MarkBook:
    """Hold, per configured symbol, the latest accepted mark and its freshness.

    Rules for a mark to be accepted: its symbol is configured
    (else ``unknown_symbol``); its venue timestamp is not later than the
    caller's ``not_after`` (else ``future_ts``: the book reads no clock, the
    feed says how far ahead of its wall clock a venue may stamp); it is not
    older than the last accepted one's from the same source (else
    ``stale_ts``); an equal timestamp is a duplicate (``duplicate_ts``) unless
    the feed's venue stamps coarsely (``equal_ts_ok``) and the price differs.
    Refusals are counted by reason in :attr:`rejected` and change nothing else
    (a ``stale_ts`` one is also noted towards a resync).

    Clock resync: while one source keeps delivering marks that are refused as
    ``stale_ts`` for more than half the symbol's ``stale_after`` (receive
    time), its own clock running forward among them, the venue's clock has
    gone back (or a glitched mark set the reference ahead): the book forgets
    that source's reference and takes the mark (:attr:`Offer.resynced_from`).
    A few replayed ticks, or one old tick sent again and again, never do this.

    The book is the one owner of freshness: a mark is fresh while it is at
    most its symbol's ``stale_after`` old (monotonic receive time); a symbol
    is LIVE while its latest accepted mark is fresh, and each change of that
    status is reported once (by :meth:`check_staleness` or :meth:`take`).
    """

    def __init__(
        self, stale_after: Mapping[str, float], jump_band: Mapping[str, float] | None = None
    ) -> None:
        for symbol, seconds in stale_after.items():
            if not seconds > 0:
                raise ValueError(f"stale_after of {symbol} must be > 0, got {seconds}")
        bands = jump_band or {}
        self._slots = {
            symbol: _Slot(seconds, Decimal(str(bands[symbol])) if bands.get(symbol) else None)
            for symbol, seconds in stale_after.items()
        }
        self._main = Cursor(self)
        self._cursors = [self._main]
        self.rejected: Counter[str] = Counter()
        self.accepted = 0
        self.jumps_confirmed = 0
        # Sources whose clock reference was reset after a run of old marks.
        self.resyncs = 0

    @classmethod
    def from_feeds(cls, feeds: Iterable[FeedSpec]) -> MarkBook:
        """Build a book for every symbol the feeds deliver; the strictest stale_after wins."""
        stale_after: dict[str, float] = {}
        jump_band: dict[str, float] = {}
        for feed in feeds:
            for symbol in feed.position_symbols:
                stale_after[symbol] = min(
                    stale_after.get(symbol, feed.stale_after), feed.stale_after
                )
                if feed.jump_band:
                    jump_band[symbol] = min(jump_band.get(symbol, feed.jump_band), feed.jump_band)
        return cls(stale_after, jump_band)

    @property
    def symbols(self) -> frozenset[str]:
        """Return the configured symbols."""
        return frozenset(self._slots)

    def offer(
        self, mark: MarkPrice, *, equal_ts_ok: bool = False, not_after: int | None = None
    ) -> Offer:
        """Take ``mark`` into the book, hold it (jump guard) or refuse it; say which and why.

        ``not_after``: the latest venue timestamp the feed accepts (its wall
        clock plus its ``max_ahead``); a later one is refused as ``future_ts``
        and never becomes the source's reference. Refusals are counted by
        reason in :attr:`rejected`.
        """
        slot = self._slots.get(mark.symbol)
        if slot is None:
            return self._refuse("unknown_symbol")
        if not_after is not None and mark.venue_ts > not_after:
            return self._refuse("future_ts")
        resynced_from: int | None = None
        last_ts = slot.last_ts.get(mark.source)
        if last_ts is not None:
            if mark.venue_ts < last_ts:
                if not self._clock_went_back(slot, mark, equal_ts_ok):
                    return self._refuse("stale_ts")
                resynced_from = slot.last_ts.pop(mark.source)
                self.resyncs += 1
            elif mark.venue_ts == last_ts:
                last = slot.mark
                same_price = last is not None and last.price == mark.price
                if not equal_ts_ok or same_price:
                    return self._refuse("duplicate_ts")
        # In order with its source's clock: any run of old marks is over.
        slot.streaks.pop(mark.source, None)
        band, last = slot.jump_band, slot.mark
        if band is not None and last is not None and not self._confirmed(slot, last, band, mark):
            return (
                HELD
                if resynced_from is None
                else Offer(False, held=True, resynced_from=resynced_from)
            )
        slot.mark = mark
        slot.last_ts[mark.source] = mark.venue_ts
        slot.history.append((mark.venue_ts, mark.price))
        for cursor in self._cursors:
            cursor.note(mark.symbol, mark.price)
        self.accepted += 1
        return ACCEPTED if resynced_from is None else Offer(True, resynced_from=resynced_from)

    def _refuse(self, reason: RejectReason) -> Offer:
        self.rejected[reason] += 1
        return Offer(accepted=False, reason=reason)

    def _clock_went_back(self, slot: _Slot, mark: MarkPrice, equal_ts_ok: bool) -> bool:
        """Note ``mark``, older than its source's reference; tell whether to resync now.

        The run of such marks restarts when the source fell quiet for
        ``stale_after`` (it was not delivering) or went back again (a replay).
        A resync needs the run to last more than half of ``stale_after``, with
        the source's clock moving forward within it: a live stream, behind.
        """
        streak = slot.streaks.get(mark.source)
        if (
            streak is None
            or mark.recv_ts - streak.last.recv_ts > slot.stale_after
            or mark.venue_ts < streak.last.venue_ts
        ):
            slot.streaks[mark.source] = _Streak(mark)
            return False
        previous, streak.last = streak.last, mark
        if mark.venue_ts > previous.venue_ts or (equal_ts_ok and mark.price != previous.price):
            streak.advanced = True
        if streak.advanced and mark.recv_ts - streak.start > slot.stale_after / 2:
            del slot.streaks[mark.source]
            return True
        return False

    def _confirmed(self, slot: _Slot, last: MarkPrice, band: Decimal, mark: MarkPrice) -> bool:
        """Apply the jump guard: hold a mark that jumped beyond the band until one confirms it.

        A mark within the band of the last accepted one passes (and drops a
        held spike, which nothing confirmed). One beyond it is held; the next
        mark, from this feed or another one of the symbol, confirms it by
        landing within the band of the held price.
        """
        if _within(mark.price, last.price, band):
            if slot.held is not None:
                self.rejected["jump_unconfirmed"] += 1
                slot.held = None
            return True
        held, slot.held = slot.held, None
        if held is not None and _within(mark.price, held.price, band):
            self.jumps_confirmed += 1
            return True
        slot.held = mark
        self.rejected["jump_held"] += 1
        return False

    def held(self, symbol: str) -> MarkPrice | None:
        """Return the mark of ``symbol`` held by the jump guard, if any."""
        slot = self._slots.get(symbol)
        return slot.held if slot is not None else None

    def note_rejects(self, rejects: Iterable[PriceRejected]) -> None:
        """Count marks a parser refused, so every refusal shows in :attr:`rejected`."""
        for exc in rejects:
            self.rejected[exc.reason] += 1

    def extremes_since(self, symbol: str, venue_ts: int | None) -> tuple[Decimal, Decimal, bool]:
        """The lowest and highest accepted mark of ``symbol`` stamped after ``venue_ts``.

        With the latest mark always included; None for ``venue_ts``: every
        mark held. The flag says whether the history reaches back that far
        (it holds the last :data:`HISTORY` marks of each symbol).
        """
        slot = self._slots[symbol]
        if slot.mark is None:
            raise ValueError(f"no mark of {symbol} yet")
        low = high = slot.mark.price
        complete = len(slot.history) < HISTORY
        for ts, price in reversed(slot.history):
            if venue_ts is not None and ts <= venue_ts:
                complete = True
                break
            low, high = min(low, price), max(high, price)
        return low, high, complete

    def cursor(self, now: float | None = None) -> Cursor:
        """Open another taker's view; it sees every mark accepted from now on."""
        cursor = Cursor(self, now)
        self._cursors.append(cursor)
        return cursor

    def close(self, cursor: Cursor) -> None:
        """Stop feeding ``cursor`` (its taker is gone)."""
        if cursor is not self._main and cursor in self._cursors:
            self._cursors.remove(cursor)

    # The book's own cursor, for a single taker.
    async def wait(self) -> None:
        """Wait until some symbol has an untaken mark (bound it with ``asyncio.timeout``)."""
        await self._main.wait()

    def poke(self) -> None:
        """Wake a waiter without a new mark (the engine has other work, such as nudged accounts)."""
        self._main.poke()

    def take(self, now: float) -> dict[str, Tick]:
        """Take from the book's own cursor: see :meth:`Cursor.take`."""
        return self._main.take(now)

    def is_fresh(self, mark: MarkPrice, now: float) -> bool:
        """Whether ``mark`` (of a configured symbol) is still fresh at ``now``."""
        slot = self._slots.get(mark.symbol)
        return slot is not None and slot.fresh(mark, now)

    def fresh_marks(self, now: float) -> dict[str, MarkPrice]:
        """The latest mark of every symbol whose latest mark is fresh at ``now``."""
        return {
            symbol: slot.mark
            for symbol, slot in self._slots.items()
            if slot.mark is not None and slot.fresh(slot.mark, now)
        }

    def latest(self, symbol: str) -> MarkPrice | None:
        """Return the latest accepted mark of ``symbol``, taken or not."""
        slot = self._slots.get(symbol)
        return slot.mark if slot is not None else None

    def last_recv(self, symbol: str) -> float | None:
        """Return the monotonic receive time of the latest accepted mark of ``symbol``."""
        mark = self.latest(symbol)
        return mark.recv_ts if mark is not None else None

    def status(self, symbol: str, now: float) -> SymbolStatus:
        """Return LIVE if ``symbol`` had an accepted mark within its stale_after of ``now``."""
        slot = self._slots.get(symbol)
        if slot is None or slot.mark is None or not slot.fresh(slot.mark, now):
            return SymbolStatus.STALE
        return SymbolStatus.LIVE

    def check_staleness(self, now: float) -> list[tuple[str, SymbolStatus]]:
        """The book's own cursor: see :meth:`Cursor.check_staleness`."""
        return self._main.check_staleness(now)

    def next_stale_at(self, now: float | None = None) -> float | None:
        """The book's own cursor: see :meth:`Cursor.next_stale_at`."""
        return self._main.next_stale_at(now)

    def first_stale_at(self, now: float | None, reported_live: Iterable[str]) -> float | None:
        """When the first symbol LIVE at ``now`` (without: of ``reported_live``) goes STALE."""
        names = self._slots.keys() if now is not None else reported_live
        deadlines = []
        for symbol in names:
            slot = self._slots[symbol]
            if slot.mark is None:
                continue
            deadline = slot.mark.recv_ts + slot.stale_after
            if now is None or deadline >= now:
                deadlines.append(deadline)
        return min(deadlines, default=None)


def _within(price: Decimal, reference: Decimal, band: Decimal) -> bool:
    return abs(price - reference) <= reference * band
