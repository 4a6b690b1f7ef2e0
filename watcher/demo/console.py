"""A live console view for the demo: one line per liquidation, a marks line every few seconds.

Plain lines only, so it reads the same on a terminal, in a pipe or in a log.
It follows the events stream with XREAD (no consumer group: it takes nothing
away from the executor) and reads each symbol's mark hash for the marks line.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TextIO

import redis.asyncio as aioredis

from state.events import EventError, LiquidationEvent
from state.keys import Keys
from state.models import MarginMode
from state.store.streams import stream_entries

MarkFields = tuple[bytes | str | None, bytes | str | None]

_MISSING = "?"


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _decimal(value: str | None) -> Decimal | None:
    if not value:
        return None
    try:
        result = Decimal(value)
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def _price(value: str | None, digits: int = 6) -> str:
    """Show a price with about ``digits`` significant digits (at least two decimals)."""
    d = _decimal(value)
    if d is None:
        return value or _MISSING
    if d == 0:
        return "0"
    step = Decimal(1).scaleb(min(d.adjusted() - digits + 1, -2))
    return format(d.quantize(step), "f")


def _money(value: str | None) -> str:
    """Show an amount of money to the cent."""
    d = _decimal(value)
    return format(d.quantize(Decimal("0.01")), "f") if d is not None else value or _MISSING


def _clock(ms: str | None) -> str:
    """Show a millisecond Unix timestamp as UTC ``HH:MM:SS.mmm``."""
    if ms is None or not ms.lstrip("-").isdigit():
        return ms or _MISSING
    seconds, millis = divmod(int(ms), 1000)
    return f"{datetime.fromtimestamp(seconds, tz=UTC):%H:%M:%S}.{millis:03d}"


def short_symbol(symbol: str) -> str:
    """Drop Orderly's ``PERP_`` and ``_USDC`` around the base asset."""
    return symbol.removeprefix("PERP_").removesuffix("_USDC")


def format_event(event: LiquidationEvent) -> str:
    """Return one line describing a liquidation event."""
    seq = _MISSING if event.seq is None else str(event.seq)
    liq = _MISSING if event.liq_price is None else _price(str(event.liq_price))
    return "  ".join(
        (
            _clock(str(event.detected_ts)),
            f"{event.kind.value:<8}",
            event.account,
            event.symbol,
            f"mark {_price(str(event.mark_price))}",
            f"liq {liq}",
            f"equity/mm {_money(str(event.equity))}/{_money(str(event.maintenance_margin))}",
            f"legs {len(event.positions)}",
            f"lag {event.detected_ts - event.mark_ts}ms",
            f"seq {seq}",
            f"id {event.id}",
        )
    )


def format_unreadable(entry_id: str, error: EventError) -> str:
    """Return one line for an events-stream entry that is not a liquidation event."""
    return f"unreadable event {entry_id}: {error}"


def format_marks(
    marks: Mapping[str, MarkFields],
    totals: Mapping[str, int],
    warnings: tuple[int, int] | None = None,
) -> str:
    """Return one line: each symbol's (price, status), the events so far by kind, warnings.

    ``warnings``: (warnings emitted, parts in warning now), when they are on.
    """
    shown = " | ".join(
        f"{short_symbol(symbol)} {_price(_text(price))} {_text(status) or _MISSING}"
        for symbol, (price, status) in marks.items()
    )
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(totals.items()))
    total = sum(totals.values())
    line = f"marks  {shown}  ||  events {total}" + (f" ({kinds})" if kinds else "")
    if warnings is not None:
        line += f"  ||  warnings {warnings[0]} (in warning now {warnings[1]})"
    return line


class ConsoleView:
    """Print liquidation events as they arrive and the marks every ``marks_every`` seconds."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        symbols: Sequence[str],
        *,
        out: TextIO = sys.stdout,
        marks_every: float = 5.0,
        block_ms: int = 500,
        from_id: str = "0",
        warnings: bool = False,
    ) -> None:
        self._redis = redis
        self._warnings = warnings
        self._keys = keys
        self._symbols = tuple(symbols)
        self._out = out
        self._marks_every = marks_every
        self._block_ms = block_ms
        self._last_id: bytes | str = from_id
        self.totals: Counter[str] = Counter()

    async def run(self, stop: asyncio.Event) -> None:
        """Print until ``stop`` is set, then print a last marks and totals line."""
        loop = asyncio.get_running_loop()
        next_marks = loop.time()
        while not stop.is_set():
            now = loop.time()
            if now >= next_marks:
                await self.print_marks()
                next_marks = now + self._marks_every
            wait_ms = int((next_marks - now) * 1000)
            await self.poll(max(1, min(self._block_ms, wait_ms)))
        await self.print_marks()

    async def poll(self, block_ms: int = 0) -> int:
        """Print the events that arrived since the last poll; return how many."""
        response = await self._redis.xread(
            {self._keys.events: self._last_id},
            count=500,
            block=block_ms if block_ms > 0 else None,
        )
        printed = 0
        for entry_id, fields in stream_entries(response):
            self._last_id = entry_id
            if not fields:
                continue
            try:
                event = LiquidationEvent.from_fields(fields)
            except EventError as exc:
                self.totals[_MISSING] += 1
                self._write(format_unreadable(str(_text(entry_id)), exc))
            else:
                self.totals[event.kind.value] += 1
                self._write(format_event(event))
            printed += 1
        return printed

    async def print_marks(self) -> None:
        """Print the marks line."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for symbol in self._symbols:
                pipe.hmget(self._keys.mark(symbol), ["price", "status"])
            if self._warnings:
                pipe.xlen(self._keys.warnings)
                pipe.zcard(self._keys.warned(MarginMode.CROSS))
                pipe.zcard(self._keys.warned(MarginMode.ISOLATED))
            rows = await pipe.execute()
        n = len(self._symbols)
        marks = {s: (row[0], row[1]) for s, row in zip(self._symbols, rows[:n], strict=True)}
        warned = (rows[n], rows[n + 1] + rows[n + 2]) if self._warnings else None
        self._write(format_marks(marks, self.totals, warned))

    def _write(self, line: str) -> None:
        self._out.write(line + "\n")
        self._out.flush()
