"""What a sink is sent: one liquidation event, or one symbol's summary of many.

An :class:`Entry` is one events-stream entry in flight: the shard it came
from, its id, its fields as written and the event they parse to. A message
covers one entry (:class:`EventMessage`) or, past a sink's budget, every
entry of one symbol in one window (:class:`Summary`); either way the
entries it covers are done for that sink once it is delivered.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from state.events import LiquidationEvent
from state.keys import Keys


@dataclass(frozen=True, slots=True, eq=False)
class Entry:
    """One events-stream entry read by the notifier."""

    keys: Keys
    entry_id: str
    fields: dict[str, str] = field(repr=False)
    event: LiquidationEvent = field(repr=False)

    @property
    def notional(self) -> Decimal:
        """What was liquidated: the sum of |qty| x mark over the event's positions."""
        return sum((abs(leg.qty) * leg.mark_price for leg in self.event.positions), Decimal(0))


@dataclass(frozen=True, slots=True)
class EventMessage:
    """One event, sent on its own."""

    entry: Entry

    @property
    def entries(self) -> tuple[Entry, ...]:
        """The entries this message delivers."""
        return (self.entry,)

    @property
    def key(self) -> str:
        """What identifies the message to a receiver: the event's deterministic id."""
        return self.entry.event.id

    @property
    def kind(self) -> str:
        return "event"


@dataclass(slots=True)
class Summary:
    """Every event of one symbol folded in one window of one sink."""

    symbol: str
    window_start_ms: int
    window_end_ms: int = 0
    entries: list[Entry] = field(default_factory=list, repr=False)
    total_notional: Decimal = Decimal(0)
    worst_equity: Decimal | None = None
    kinds: Counter[str] = field(default_factory=Counter)

    def add(self, entry: Entry) -> None:
        """Fold one more event in."""
        self.entries.append(entry)
        self.total_notional += entry.notional
        equity = entry.event.equity
        if self.worst_equity is None or equity < self.worst_equity:
            self.worst_equity = equity
        self.kinds[entry.event.kind.value] += 1

    @property
    def count(self) -> int:
        return len(self.entries)

    @property
    def first(self) -> Entry:
        return self.entries[0]

    @property
    def last(self) -> Entry:
        return self.entries[-1]

    @property
    def key(self) -> str:
        """What identifies the summary to a receiver: its symbol and first and last entries."""
        return f"summary:{self.symbol}:{self.first.entry_id}:{self.last.entry_id}"

    @property
    def kind(self) -> str:
        return "summary"


Message = EventMessage | Summary
