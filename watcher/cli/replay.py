"""``liqwatch replay``: the daemon's engine over recorded marks and input, on a throwaway Redis.

A redis-server of its own on a free loopback port; the book file goes in
through the input stream and the daemon's own :class:`InputConsumer`; the
recorded marks go, in order, through a :class:`MarkBook` into the daemon's
own :class:`Engine` (as ``bench/rig.py`` drives it), on a clock that reads
the recorded receive times. The decisions are the events the engine wrote.

Order: the marks of one frame (one ``recv_ms``) are one batch, as the
daemon takes a frame. Plain book lines (``liqwatch load``'s format) are
applied before the first mark; recorded input entries (``{"entry_id",
"msg"}``, from ``liqwatch record --input`` or ``demo --record``) are applied
before the first batch received after their entry id's time, and every
decision they call for is taken before that batch (as a running daemon does
when its input settles between frames). The marks were accepted by the
daemon's rules when recorded, so no jump guard applies again.

Exact with respect to a recorded run when the run took each frame as one
batch and its input settled between frames: what ``liqwatch demo --record``
arranges. ``detected_ts`` is then the recorded receive time of the batch.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson

from state.events import LiquidationEvent
from state.inputs import LoadError, validate_lines
from state.keys import Keys
from state.models import Market, MarkPrice
from state.rules import Rules
from state.store import Store
from state.store.client import open_client
from watcher.cli.context import Failed, settings_from
from watcher.cli.load import load_error_text
from watcher.daemon.config import DEFAULT_LIQ_ID_TTL
from watcher.daemon.consumer import InputConsumer
from watcher.daemon.engine import Engine
from watcher.daemon.logs import configure_logging
from watcher.demo.book import demo_markets
from watcher.demo.redis_server import RedisServer, RedisServerError
from watcher.feeds.book import MarkBook

OWNER = "replay"
# The demo's stale_after (watcher/demo/runner.py), used without --config.
DEMO_STALE_AFTER = 5.0


@dataclass(frozen=True, slots=True)
class RecordedMark:
    """One line of a marks file."""

    symbol: str
    price: Decimal
    venue_ts: int
    recv_ms: int
    source: str


@dataclass(frozen=True, slots=True)
class InputEntry:
    """One input message to apply, and when: None for before the first mark."""

    at_ms: int | None
    raw: bytes


@dataclass(frozen=True, slots=True)
class Setup:
    """What the replay decides under: markets, the equality rule, freshness per symbol."""

    markets: Mapping[str, Market]
    at_equality: bool = False
    liq_id_ttl: int = DEFAULT_LIQ_ID_TTL
    stale_after: Mapping[str, float] | None = None

    def stale(self) -> dict[str, float]:
        """stale_after per symbol (the demo's for every market unless given)."""
        if self.stale_after is not None:
            return dict(self.stale_after)
        return dict.fromkeys(self.markets, DEMO_STALE_AFTER)


def read_marks_file(path: Path) -> list[RecordedMark]:
    """The marks of a file ``liqwatch record`` wrote; Failed names the first bad line."""
    out: list[RecordedMark] = []
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            d = orjson.loads(line)
            mark = RecordedMark(
                str(d["symbol"]),
                Decimal(str(d["price"])),
                int(d["venue_ts"]),
                int(d["recv_ms"]),
                str(d.get("source", "")),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, InvalidOperation) as exc:
            raise Failed(f"{path}:{number}: not a recorded mark: {exc!r}") from None
        if not (mark.price.is_finite() and mark.price > 0):
            raise Failed(f"{path}:{number}: price must be > 0, got {mark.price}")
        out.append(mark)
    return out


def read_book_file(path: Path, markets: Mapping[str, Market]) -> list[InputEntry]:
    """The input of a book file: plain messages (validated) and recorded entries (timed)."""
    plain: list[bytes] = []
    entries: list[InputEntry] = []
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            plain.append(b"")
            continue
        recorded = _recorded(line)
        if recorded is None:
            plain.append(line)
            continue
        entry_id, msg = recorded
        try:
            at = int(entry_id.partition("-")[0])
        except ValueError:
            raise Failed(
                f"{path}:{number}: entry_id must be a stream id, got {entry_id!r}"
            ) from None
        entries.append(InputEntry(at, msg.encode()))
        plain.append(b"")
    try:
        messages = validate_lines(plain, markets, source=str(path))
    except LoadError as exc:
        raise Failed(load_error_text(exc)) from None
    return [InputEntry(None, m) for m in messages] + entries


def _recorded(line: bytes) -> tuple[str, str] | None:
    try:
        d = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if (
        isinstance(d, dict)
        and set(d) == {"entry_id", "msg"}
        and isinstance(d["entry_id"], str)
        and isinstance(d["msg"], str)
    ):
        return d["entry_id"], d["msg"]
    return None


def _lines(path: Path) -> list[bytes]:
    try:
        return path.read_bytes().split(b"\n")
    except OSError as exc:
        raise Failed(f"{path}: cannot read: {exc.strerror or exc}") from None


def batches(marks: Sequence[RecordedMark]) -> list[list[RecordedMark]]:
    """The marks cut into frames: consecutive marks with one receive time."""
    out: list[list[RecordedMark]] = []
    for mark in marks:
        if out and out[-1][0].recv_ms == mark.recv_ms:
            out[-1].append(mark)
        else:
            out.append([mark])
    return out


async def run_replay(
    setup: Setup, marks: Sequence[RecordedMark], inputs: Sequence[InputEntry], redis_url: str
) -> list[dict[str, str]]:
    """Replay on the (empty) Redis at ``redis_url``; return the events' fields, in order."""
    redis = open_client(redis_url)
    try:
        keys = Keys("liq")
        store = Store(redis, keys)
        rules = Rules(keys, setup.markets, setup.at_equality, setup.liq_id_ttl)
        book = MarkBook(setup.stale())
        now = [0.0]
        engine = Engine(
            store, rules, book, clock=lambda: now[0], wall_ms=lambda: round(now[0] * 1000)
        )
        consumer = InputConsumer(
            store,
            rules,
            owner=OWNER,
            live_marks=engine.live_marks,
            generation=lambda: engine.generation,
            nudge=engine.nudge,
            block=0.001,
        )
        await consumer.ensure_group()
        if not await store.acquire_lease(OWNER, 24 * 3600 * 1000):
            raise Failed("replay: could not take the input lease of its own Redis")
        pending = sorted(inputs, key=lambda e: (e.at_ms is not None, e.at_ms or 0))
        cursor = 0

        async def apply_before(t_ms: int | None) -> None:
            nonlocal cursor
            chunk: list[bytes] = []
            while cursor < len(pending):
                at = pending[cursor].at_ms
                if t_ms is not None and at is not None and at >= t_ms:
                    break
                if at is not None:
                    now[0] = max(now[0], at / 1000)
                chunk.append(pending[cursor].raw)
                cursor += 1
            if not chunk:
                return
            await store.append_input(chunk)
            while True:
                taken = await consumer.step()
                await consumer.settle()
                if not taken:
                    break
            await engine.process({})

        for frame in batches(marks):
            t = frame[0].recv_ms
            await apply_before(t)
            now[0] = t / 1000
            for m in frame:
                book.offer(
                    MarkPrice(m.symbol, m.price, m.venue_ts, now[0], m.source), equal_ts_ok=True
                )
            await engine.process(book.take(now[0]))
        await apply_before(None)
        raw: Any = await redis.xrange(keys.events)
        return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in raw]
    finally:
        await redis.aclose()


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``liqwatch replay``."""
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="markets, equality rule and stale_after (default: the demo's)",
    )
    parser.add_argument("--marks", required=True, type=Path, metavar="FILE", help="recorded marks")
    parser.add_argument(
        "--book", required=True, type=Path, metavar="FILE", help="input: a book or recorded input"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per decision")


def replay_command(args: argparse.Namespace) -> int:
    """Replay and print the decisions, oldest first."""
    if args.config is not None:
        settings = settings_from(args.config)
        stale: dict[str, float] = {}
        for feed in settings.feeds:
            for symbol in feed.position_symbols:
                stale[symbol] = min(stale.get(symbol, feed.stale_after), feed.stale_after)
        setup = Setup(settings.markets, settings.at_equality, settings.liq_id_ttl, stale)
    else:
        setup = Setup(demo_markets())
    marks = read_marks_file(args.marks)
    inputs = read_book_file(args.book, setup.markets)
    configure_logging("console", logging.ERROR)
    try:
        with RedisServer() as server:
            events = asyncio.run(run_replay(setup, marks, inputs, server.url))
    except RedisServerError as exc:
        raise Failed(f"replay needs a redis-server of its own: {exc}") from None
    for fields in events:
        print(orjson.dumps(fields).decode() if args.json else decision_line(fields))
    timed = sum(1 for e in inputs if e.at_ms is not None)
    print(
        f"replayed {len(marks)} marks in {len(batches(marks))} frames, {len(inputs) - timed}"
        f" book lines and {timed} recorded input entries: {len(events)} decisions",
        file=sys.stderr,
    )
    return 0


def decision_line(fields: Mapping[str, str]) -> str:
    """One decision as a line: id, what, the mark, equity against maintenance, the transfer."""
    event = LiquidationEvent.from_fields(fields)
    legs = len(event.positions)
    what = event.symbol if event.kind.value == "ISOLATED" else f"{event.symbol} ({legs} legs)"
    line = (
        f"{event.id}  {event.kind.value:<8} {event.account}  {what}  mark {event.mark_price}"
        f"  equity {_short(event.equity)} < maintenance {_short(event.maintenance_margin)}"
    )
    if event.transfer:
        parts = [f"{s} {t.qty} ({t.tier})" for s, t in event.transfer.items()]
        line += "  transfer " + ", ".join(parts)
    return line


def _short(value: Decimal) -> str:
    return f"{value:,.2f}"
