"""A demo executor: close what the daemon liquidated by writing input updates back.

It plays the executor that sits outside liqwatch (docs/design.md): one consumer
group on the events stream; for each event a ``position`` update with
``qty "0"`` for every liquidated position, and for a CROSS event the balance
left after the liquidation, numbered after the event's ``seq``. Optionally it
re-opens a fresh position at the current mark so that the demo keeps going.

The updates and the XACK of an event commit in one MULTI/EXEC, updates first:
a crash leaves the event either handled and acked or untouched and pending,
never acked without its updates. Pending entries are read again (id ``0``)
before new ones (``>``) when an executor with the same consumer name starts.
Seqs derive from the event, so handling an event twice writes the same seqs
and the daemon ignores the second copy as a duplicate.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from decimal import ROUND_DOWN, Decimal, InvalidOperation

import redis.asyncio as aioredis
import structlog
from redis.exceptions import ResponseError

from state.events import EventError, LiquidationEvent
from state.keys import Keys
from state.models import MarginMode
from state.store.streams import Entry, Fields, stream_entries

Message = dict[str, object]

log = structlog.get_logger(__name__)

_CENT = Decimal("0.01")
# Leverage of a re-opened position: its distance to liquidation is about 1/L - mmr.
_REOPEN_LEVERAGES = range(5, 51)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decimal(name: str, value: str) -> Decimal:
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise EventError(f"{name} is not a decimal: {value!r}") from None
    if not result.is_finite():
        raise EventError(f"{name} must be finite, got {value!r}")
    return result


def remaining_balance(event: LiquidationEvent, penalty: Decimal) -> Decimal:
    """Return a CROSS account's balance after liquidation: ``max(0, equity - mm * penalty)``."""
    left = event.equity - event.maintenance_margin * penalty
    return max(Decimal(0), left).quantize(_CENT, rounding=ROUND_DOWN)


def closing_updates(event: LiquidationEvent, penalty: Decimal, first_seq: int) -> list[Message]:
    """Return the input updates that close ``event``'s positions, numbered from ``first_seq``."""
    updates: list[Message] = []
    for leg in event.positions:
        update: Message = {
            "type": "position",
            "account": event.account,
            "symbol": leg.symbol,
            "margin_mode": leg.margin_mode.value,
            "qty": "0",
            "entry_price": format(leg.entry_price, "f"),
        }
        if leg.margin_mode is MarginMode.ISOLATED:
            # Self-contained: a closed isolated position needs no leverage to derive a margin.
            update["margin"] = "0"
        updates.append(update)
    if event.kind is MarginMode.CROSS:
        balance = remaining_balance(event, penalty)
        updates.append(
            {"type": "balance", "account": event.account, "balance": format(balance, "f")}
        )
    return [{**u, "seq": first_seq + i} for i, u in enumerate(updates)]


def reopen_updates(
    event: LiquidationEvent, mark: Decimal, rng: random.Random, penalty: Decimal, first_seq: int
) -> list[Message]:
    """Return updates opening a fresh position of the event's kind on its symbol at ``mark``.

    The size is the liquidated one on that symbol, the side and leverage are
    drawn from ``rng``; a CROSS account gets a deposit of the initial margin
    on top of what it had left.
    """
    sizes = [abs(leg.qty) for leg in event.positions if leg.symbol == event.symbol and leg.qty]
    if not sizes:
        return []
    qty = sizes[0] * rng.choice((1, -1))
    leverage = rng.choice(_REOPEN_LEVERAGES)
    initial = (abs(qty) * mark / leverage).quantize(_CENT)
    position: Message = {
        "type": "position",
        "account": event.account,
        "symbol": event.symbol,
        "margin_mode": event.kind.value,
        "qty": format(qty, "f"),
        "entry_price": format(mark, "f"),
    }
    updates: list[Message]
    if event.kind is MarginMode.CROSS:
        balance = remaining_balance(event, penalty) + initial
        deposit: Message = {
            "type": "balance",
            "account": event.account,
            "balance": format(balance, "f"),
        }
        updates = [deposit, position]
    else:
        updates = [{**position, "margin": format(initial, "f"), "leverage": str(leverage)}]
    return [{**u, "seq": first_seq + i} for i, u in enumerate(updates)]


class DemoExecutor:
    """Consume liquidation events and write the closing updates back to the input stream."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        group: str = "demo-executor",
        consumer: str = "demo-1",
        reopen_probability: float = 0.0,
        penalty: Decimal = Decimal("0.5"),
        batch: int = 100,
    ) -> None:
        if not 0.0 <= reopen_probability <= 1.0:
            raise ValueError(f"reopen_probability must be in [0, 1], got {reopen_probability}")
        self._redis = redis
        self._keys = keys
        self._group = group
        self._consumer = consumer
        self._reopen_probability = reopen_probability
        self._penalty = penalty
        self._batch = batch
        self._group_ready = False
        # Pending entries of this consumer (a previous run's) come before new ones.
        self._draining = True
        # Last seq written per account, so that two events of one account carrying
        # the same seq (a cross and an isolated decision on one tick) get distinct seqs.
        self._last_seq: dict[str, int] = {}
        self._log = log.bind(group=group, consumer=consumer)

    async def ensure_group(self) -> None:
        """Create the consumer group at the start of the events stream unless it exists."""
        if self._group_ready:
            return
        try:
            await self._redis.xgroup_create(self._keys.events, self._group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def step(self, block_ms: int = 0) -> int:
        """Handle the events available now (waiting up to ``block_ms`` for new ones).

        Return how many entries were handled (acked).
        """
        await self.ensure_group()
        if self._draining:
            entries = await self._read("0", block_ms=0)
            if entries:
                return await self._handle_all(entries)
            self._draining = False
        return await self._handle_all(await self._read(">", block_ms=block_ms))

    async def run(self, stop: asyncio.Event, *, block_ms: int = 200) -> None:
        """Handle events until ``stop`` is set."""
        self._log.info("demo.executor.started")
        while not stop.is_set():
            await self.step(block_ms)
        self._log.info("demo.executor.stopped")

    async def _read(self, start: str, *, block_ms: int) -> list[Entry]:
        response = await self._redis.xreadgroup(
            self._group,
            self._consumer,
            {self._keys.events: start},
            count=self._batch,
            block=block_ms if block_ms > 0 else None,
        )
        return stream_entries(response)

    async def _handle_all(self, entries: Sequence[Entry]) -> int:
        for entry_id, fields in entries:
            await self._handle(entry_id, fields)
        return len(entries)

    async def _handle(self, entry_id: bytes | str, fields: Fields | None) -> None:
        updates: list[Message] = []
        if fields:
            try:
                event = LiquidationEvent.from_fields(fields)
            except EventError as exc:
                self._log.warning(
                    "demo.executor.bad_event", entry_id=_text(entry_id), reason=str(exc)
                )
            else:
                updates = await self._updates(event)
        async with self._redis.pipeline(transaction=True) as pipe:
            for update in updates:
                pipe.xadd(self._keys.input, {"msg": json.dumps(update, separators=(",", ":"))})
            pipe.xack(self._keys.events, self._group, entry_id)
            await pipe.execute()

    async def _updates(self, event: LiquidationEvent) -> list[Message]:
        seq = 0 if event.seq is None else int(str(event.seq))
        first = max(seq, self._last_seq.get(event.account, 0)) + 1
        updates = closing_updates(event, self._penalty, first)
        # Seeded by the event id: handling the same event again re-opens the same way.
        rng = random.Random(event.id)
        if rng.random() < self._reopen_probability:
            price = await self._redis.hget(self._keys.mark(event.symbol), "price")
            if price is not None:
                mark = _decimal("mark", _text(price))
                updates += reopen_updates(event, mark, rng, self._penalty, first + len(updates))
        if updates:
            last = updates[-1]["seq"]
            assert isinstance(last, int)
            self._last_seq[event.account] = last
        self._log.info(
            "demo.executor.closed",
            liq_id=event.id,
            kind=event.kind.value,
            account=event.account,
            updates=len(updates),
        )
        return updates
