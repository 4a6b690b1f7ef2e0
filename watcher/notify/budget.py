"""A sink's message budget: a burst of events becomes a bounded number of messages.

Time is cut into windows of ``window`` seconds, each opened by the first
event that arrives when none is open. In a window the first ``limit``
events go out on their own; every later one is folded into its symbol's
:class:`~watcher.notify.messages.Summary`, and the summaries go out when the
window ends. So one window costs a sink at most ``limit`` + (the number of
symbols that overflowed) messages, whether it saw ten events or ten
thousand. Pure: the caller passes the clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from watcher.clock import wall_ms
from watcher.notify.messages import Entry, EventMessage, Summary


class Budget:
    """Admit events one by one: send now (within the budget), or fold into a summary."""

    def __init__(
        self,
        window: float,
        limit: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], int] = wall_ms,
    ) -> None:
        if window <= 0 or limit < 1:
            raise ValueError(f"need window > 0 and limit >= 1, got {window}, {limit}")
        self.window = window
        self.limit = limit
        self._clock = clock
        self._wall = wall
        self._ends: float | None = None
        self._opened_ms = 0
        self._sent = 0
        self._folded: dict[str, Summary] = {}

    def deadline(self) -> float | None:
        """When the open window's summaries are due (clock time); None if nothing is folded."""
        return self._ends if self._folded else None

    def expired(self) -> list[Summary]:
        """Close the window if its time is up; return its summaries (in symbol order of arrival)."""
        if self._ends is None or self._clock() < self._ends:
            return []
        summaries = list(self._folded.values())
        end = self._wall()
        for summary in summaries:
            summary.window_end_ms = end
        self._ends = None
        self._sent = 0
        self._folded = {}
        return summaries

    def admit(self, entry: Entry) -> EventMessage | None:
        """Return the message to send now, or None: the event was folded into a summary.

        Call :meth:`expired` first: a window whose time is up is closed there.
        """
        if self._ends is None:
            self._ends = self._clock() + self.window
            self._opened_ms = self._wall()
        if self._sent < self.limit:
            self._sent += 1
            return EventMessage(entry)
        symbol = entry.event.symbol
        summary = self._folded.get(symbol)
        if summary is None:
            summary = self._folded[symbol] = Summary(symbol, self._opened_ms)
        summary.add(entry)
        return None

    @property
    def folded(self) -> int:
        """How many events wait in the open window's summaries."""
        return sum(s.count for s in self._folded.values())
