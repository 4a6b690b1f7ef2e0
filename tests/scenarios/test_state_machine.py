"""docs/reliability.md scenario 13: a hypothesis state machine against a Decimal reference model.

Every example runs a real daemon in-process, on an event loop of its own in a
thread of its own (so that it keeps running, as a daemon does, while
hypothesis thinks), against its own redis-server (AOF, ``appendfsync
always``) and its own Orderly sim. The rules open, change and close ISOLATED
positions (margin explicit, leverage in the message or from a leverage
update) and CROSS legs, deposit and withdraw, set leverage, send invalid and
replayed input, move the marks, send invalid prices, jump spikes, old and
replayed frames, let a symbol go STALE and bring it back, crash (or stop
cleanly) and restart the daemon (under the same instance name or a new one,
input in flight or not), and SIGKILL and restart Redis with input in flight
or not (the daemon rides it out in-process, DEGRADED meanwhile).

A keepalive pushes the marks of the symbols meant to be LIVE every
KEEPALIVE seconds, at their current prices: only the symbol a rule silences
goes STALE, and every price change is one rule's doing. Each rule makes one
change, with one input message per account at most, so that the daemon has
no in-between state to decide on.

The reference (:class:`Reference`) is plain Decimal over ``state.margin``:
at the end of every step it decides, at the LIVE marks, every OPEN cross
account whose legs are all LIVE and every OPEN isolated position on a LIVE
symbol, and marks them LIQUIDATING until the input that resolves them (README,
"Input"). That is the daemon's documented semantics once it has settled:
decisions at ticks and right after input, isolated positions at the tick's
price, cross accounts at the latest LIVE mark of every leg, held while a leg
is STALE.

After every step the machine settles (input drained, a frame at the current
marks processed by the running daemon) and checks, on one MULTI snapshot of
Redis:

- every decision is in the events stream exactly once (ids unique), and the
  decisions are exactly the reference's: same kind, account, symbol, legs
  (a CROSS event every cross leg and no isolated one, an ISOLATED event one
  position), marks (so never an invalid or STALE one), equity, maintenance,
  seq and account version in the id;
- every position is OPEN, LIQUIDATING or gone, as the reference says; the
  account's balance, seq, version and status too; the LIQUIDATING set;
- the index: an OPEN isolated position is scored exactly at its liquidation
  prices, a LIQUIDATING or closed one is in no set; an OPEN cross account's
  bands are sound (health stays positive with every leg at its trigger), a
  LIQUIDATING one has no member; no member belongs to nothing;
- the dead letters, the LIVE marks and the STALE status in Redis.

CI runs a bounded number of examples from a fixed seed (printed; override it
with LIQWATCH_STATE_MACHINE_SEED) without shrinking; ``pytest -m slow`` runs
a longer one that shrinks. What the machine found is pinned at the end of
this file.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import orjson
import pytest
from hypothesis import HealthCheck, Phase, note, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from state import margin
from state.keys import DIRECTIONS
from state.models import MaintenanceModel, MarginMode, Position
from state.store.client import open_client
from tests.helpers.harness import DEFAULT_MARKETS, Harness
from watcher.daemon.app import Daemon
from watcher.daemon.config import Settings, parse_settings
from watcher.daemon.link import LinkState
from watcher.demo.redis_server import RedisServer

T = TypeVar("T")
D = Decimal
ETH = "PERP_ETH_USDC"
BTC = "PERP_BTC_USDC"
SOL = "PERP_SOL_USDC"
SYMBOLS = (BTC, ETH, SOL)
START = {ETH: D("3000"), BTC: D("60000"), SOL: D("150")}
ACCOUNTS = ("A0", "A1", "A2", "A3")
CROSS = MarginMode.CROSS.value
ISOLATED = MarginMode.ISOLATED.value

STALE_AFTER = 0.3
KEEPALIVE = 0.05
JUMP_BAND = 0.25
LEASE_TTL = 1.0
WAIT = 20.0
ZERO = D(0)
CENT = D("0.01")
LOT = D("0.001")

SEED = int(os.environ.get("LIQWATCH_STATE_MACHINE_SEED", "1313"))

# Prices the parser must refuse (scenario 3's list, less the 5,000 digits).
BAD_PRICES = (
    "NaN",
    "Infinity",
    "-Infinity",
    "0",
    "-1",
    '"1e400"',
    "1e400",
    '"1_000"',
    '"\\u0663\\u0660\\u0660\\u0660"',
    '" 3000"',
    '""',
    "null",
    "true",
    "[3000]",
)


def config_text(redis_url: str, feed_url: str, instance: str) -> str:
    """The harness's config with a short stale_after, the jump guard and fast Redis retries."""
    return f"""
[redis]
url = "{redis_url}"
prefix = "liq"
backoff_cap = 0.1
[[feeds]]
venue = "orderly"
url = "{feed_url}"
symbols = {orjson.dumps(list(SYMBOLS)).decode()}
stale_after = {STALE_AFTER}
jump_band = {JUMP_BAND}
[daemon]
instance = "{instance}"
heartbeat_interval = 0.2
lease_ttl = {LEASE_TTL}
backoff_base = 0.05
backoff_cap = 0.2
{DEFAULT_MARKETS}
"""


def maintenance_models() -> dict[str, MaintenanceModel]:
    settings_ = parse_settings(config_text("redis://127.0.0.1:9/0", "ws://127.0.0.1:9/x", "m"), {})
    return {s: m.maintenance for s, m in settings_.markets.items()}


def moved(price: Decimal, bp: int) -> Decimal:
    return (price * (10000 + bp) / 10000).quantize(CENT)


def qty_for(notional: int, price: Decimal, short: bool) -> Decimal:
    qty = max(LOT, (D(notional) / price).quantize(LOT))
    return -qty if short else qty


# --- the reference -------------------------------------------------------------------


@dataclass
class Isolated:
    qty: Decimal
    entry: Decimal
    margin: Decimal
    open: bool = True


@dataclass
class Leg:
    qty: Decimal
    entry: Decimal
    open: bool = True


@dataclass
class Account:
    balance: Decimal = ZERO
    seq: int | None = None
    version: int = 0
    cross: dict[str, Leg] = field(default_factory=dict)
    isolated: dict[str, Isolated] = field(default_factory=dict)
    leverage: dict[str, Decimal] = field(default_factory=dict)

    @property
    def liquidating(self) -> bool:
        return any(not leg.open for leg in self.cross.values())


@dataclass(frozen=True)
class Decision:
    """A liquidation the reference expects, with everything its event must say."""

    kind: str
    account: str
    symbol: str  # ISOLATED: its symbol; CROSS: ""
    versions: frozenset[int]  # the account version its id may name
    legs: tuple[tuple[str, Decimal, Decimal, Decimal | None], ...]  # symbol, qty, entry, margin
    marks: Mapping[str, Decimal]
    balance: Decimal | None  # CROSS: the account's balance
    equity: Decimal
    maintenance: Decimal
    seq: int | None
    step: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.account, self.symbol)


class Reference:
    """The book, the marks and the decisions, in Decimal, from what was sent and pushed."""

    def __init__(self, models: Mapping[str, MaintenanceModel]) -> None:
        self.models = models
        self.accounts: dict[str, Account] = {}
        self.prices: dict[str, Decimal] = dict(START)
        # Symbols pushed by the keepalive (LIVE once settled).
        self.live: set[str] = set(SYMBOLS)
        # Symbols with an accepted mark in the running daemon (LIVE or gone STALE).
        self.seen: set[str] = set(SYMBOLS)
        self.decisions: list[Decision] = []
        self.dead = 0
        self.sent_seq: dict[str, int] = {}

    def next_seq(self, account: str) -> int:
        self.sent_seq[account] = self.sent_seq.get(account, 0) + 1
        return self.sent_seq[account]

    def live_marks(self) -> dict[str, Decimal]:
        return {s: self.prices[s] for s in sorted(self.live)}

    def isolated_position(self, name: str, symbol: str) -> Position:
        iso = self.accounts[name].isolated[symbol]
        return Position(name, symbol, MarginMode.ISOLATED, iso.qty, iso.entry, iso.margin)

    def cross_legs(self, name: str) -> list[Position]:
        legs = self.accounts[name].cross
        return [
            Position(name, s, MarginMode.CROSS, legs[s].qty, legs[s].entry) for s in sorted(legs)
        ]

    def apply(self, msg: Mapping[str, Any], parses: bool) -> None:
        """Apply one input message as README "Input" says (parses: it passes parse_input)."""
        if not parses:
            self.dead += 1
            return
        a = self.accounts.setdefault(msg["account"], Account())
        seq = int(msg["seq"])
        if a.seq is not None and seq <= a.seq:
            return  # a duplicate: ignored
        if msg["type"] == "balance":
            a.balance = D(msg["balance"])
        elif msg["type"] == "leverage":
            a.leverage[msg["symbol"]] = D(msg["leverage"])
        else:
            symbol, qty = msg["symbol"], D(msg["qty"])
            if msg.get("margin_mode", CROSS) == ISOLATED:
                if qty == 0:
                    a.isolated.pop(symbol, None)
                else:
                    entry = D(msg["entry_price"])
                    lev = D(msg["leverage"]) if "leverage" in msg else a.leverage.get(symbol)
                    if "margin" in msg:
                        iso_margin = D(msg["margin"])
                    elif lev is None:
                        self.dead += 1  # neither margin nor a known leverage
                        return
                    else:
                        iso_margin = margin.isolated_margin_from_leverage(qty, entry, lev)
                    if "leverage" in msg:
                        a.leverage[symbol] = D(msg["leverage"])
                    a.isolated[symbol] = Isolated(qty, entry, iso_margin)
            elif qty == 0:
                a.cross.pop(symbol, None)
            else:
                a.cross[symbol] = Leg(qty, D(msg["entry_price"]))
        a.seq = seq
        a.version += 1

    def decide(self, step: int) -> None:
        """Decide everything OPEN and liquidatable at the LIVE marks; claims make it LIQUIDATING.

        An account's cross claim comes first (the daemon plans it first), its
        isolated claims then take the next versions, in an order not fixed.
        """
        marks = self.live_marks()
        for name in sorted(self.accounts):
            a = self.accounts[name]
            if a.cross and not a.liquidating and set(a.cross) <= set(marks):
                legs = self.cross_legs(name)
                used = {leg.symbol: marks[leg.symbol] for leg in legs}
                priced = margin.evaluate_cross(a.balance, legs, self.models, used)
                if margin.is_liquidatable(priced.health):
                    self.decisions.append(
                        Decision(
                            CROSS,
                            name,
                            "",
                            frozenset({a.version}),
                            tuple((p.symbol, p.qty, p.entry_price, None) for p in legs),
                            used,
                            a.balance,
                            priced.equity,
                            priced.maintenance,
                            a.seq,
                            step,
                        )
                    )
                    a.version += 1
                    for leg in a.cross.values():
                        leg.open = False
            due = [
                pos
                for pos in (
                    self.isolated_position(name, s)
                    for s, iso in sorted(a.isolated.items())
                    if iso.open and s in marks
                )
                if margin.is_liquidatable(
                    margin.isolated_health(pos, marks[pos.symbol], self.models[pos.symbol])
                )
            ]
            versions = frozenset(range(a.version, a.version + len(due)))
            for pos in due:
                mark, model = marks[pos.symbol], self.models[pos.symbol]
                self.decisions.append(
                    Decision(
                        ISOLATED,
                        name,
                        pos.symbol,
                        versions,
                        ((pos.symbol, pos.qty, pos.entry_price, pos.margin),),
                        {pos.symbol: mark},
                        None,
                        margin.isolated_equity(pos, mark),
                        margin.isolated_maintenance(pos, mark, model),
                        a.seq,
                        step,
                    )
                )
                a.isolated[pos.symbol].open = False
            a.version += len(due)


# --- the daemon under test, on its own loop ---------------------------------------------


class LoopThread:
    """An event loop running forever in a thread: the daemon lives there between steps."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="state-machine-loop", daemon=True
        )
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            if future.done():
                raise  # raised by the step itself
            future.cancel()
            raise AssertionError(f"a step took more than {timeout} s") from None

    def close(self) -> None:
        async def cancel_the_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.get_running_loop().shutdown_asyncgens()
            await asyncio.get_running_loop().shutdown_default_executor()

        try:
            self.run(cancel_the_rest(), timeout=20)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(20)
            if not self.thread.is_alive():
                self.loop.close()


@dataclass
class Snapshot:
    """What Redis and the running daemon hold once settled."""

    accounts: dict[str, dict[str, str]]
    positions: dict[str, dict[str, dict[str, str]]]
    index: dict[tuple[str, str], dict[str, float]]
    marks: dict[str, dict[str, str]]
    liquidating: set[str]
    events: list[dict[str, str]]
    dead: int
    daemon_state: str
    held: bool


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def refused(daemon: Daemon, reason: str | None) -> int:
    """Marks the daemon refused for ``reason``; None: every refused mark and unusable frame."""
    if reason is not None:
        return daemon.book.rejected[reason]
    frames = sum(sum(s.frame_errors.values()) for s in daemon.feed_stats)
    return sum(daemon.book.rejected.values()) + frames


class Rig(Harness):
    """The harness with this machine's config, a keepalive, and every frame sent under one lock."""

    def __init__(self, redis_url: str) -> None:
        super().__init__(
            redis_url,
            {s: str(p) for s, p in START.items()},
            stale_after=STALE_AFTER,
            jump_band=JUMP_BAND,
        )
        # What the keepalive pushes: the symbols meant to be LIVE, at their marks.
        self.live: dict[str, Decimal] = dict(START)
        self.pushed: dict[str, Decimal] = {}
        self._frames = asyncio.Lock()
        # Venue timestamps of old frames: each older than any before it, so
        # that a run of them never looks like a clock gone back (no resync).
        self._old_ts = itertools.count(1_600_000_000_000, -1000)
        self._keepalive: asyncio.Task[None] | None = None

    def settings(self, instance: str) -> Settings:
        return parse_settings(config_text(self.redis_url, self.server.url, instance), {})

    @property
    def current(self) -> Daemon:
        return self.daemons[-1][0]

    async def open(self, instance: str) -> None:
        await self.__aenter__()
        await self.start(instance)
        self._keepalive = asyncio.create_task(self._keep_alive())
        await self.settle()

    async def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            await asyncio.gather(self._keepalive, return_exceptions=True)
        await self.__aexit__(None, None, None)

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE)
            await self.push()

    async def push(self) -> tuple[int, dict[str, Decimal]]:
        """Push one frame of the LIVE symbols at their marks; return its ts and prices."""
        async with self._frames:
            prices = dict(self.live)
            for symbol, price in prices.items():
                self.server.set_price(symbol, price)
            self.server.silent = set(self.symbols) - set(prices)
            self.last_ts = next(self._ts)
            await self.server.push()
            self.pushed = prices
            return self.last_ts, prices

    async def drained(self, timeout: float = WAIT) -> None:
        """The harness's wait, also before the daemon has made the input stream."""
        keys = self.current.store.keys

        async def stream_made() -> bool:
            return bool(await self.redis.exists(keys.input))

        await self.until("the input stream made", stream_made, timeout)
        await super().drained(timeout)

    async def set_live(self, live: Mapping[str, Decimal]) -> None:
        self.live = dict(live)
        await self.push()

    async def settle(self) -> None:
        """Wait until input is applied and the running daemon has decided on the current marks."""
        daemon, _, task = self.daemons[-1]
        try:
            await self.drained(WAIT)
        except (TimeoutError, AssertionError):
            keys = daemon.store.keys
            groups = await self.redis.xinfo_groups(keys.input)
            raise AssertionError(
                f"input not drained in {WAIT} s: groups {groups},"
                f" lease {await self.redis.get(keys.input_lease)}, daemon"
                f" {daemon.settings.instance} {'stopped' if task.done() else 'running'},"
                f" state {daemon.state}, leader {daemon.consumer.leader},"
                f" counters {dict(daemon.consumer.counters)}, last error {daemon.link.last_error}"
            ) from None
        ts, prices = await self.push()
        deadline = time.monotonic() + WAIT
        while any(daemon.engine.processed.get(s, 0) < ts for s in prices):
            if task.done():
                task.result()
                raise AssertionError(f"daemon {daemon.settings.instance} stopped")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"daemon did not process ts {ts} of {sorted(prices)} in {WAIT} s:"
                    f" processed {daemon.engine.processed}, state {daemon.state}"
                )
            await asyncio.sleep(0.005)

    async def until(
        self, what: str, check: Callable[[], Awaitable[bool]], timeout: float = WAIT
    ) -> None:
        deadline = time.monotonic() + timeout
        while not await check():
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout} s: {what}")
            await asyncio.sleep(0.005)

    async def send_frame(
        self, frame: Callable[[int], str | bytes], reason: str | None, count: int = 1
    ) -> None:
        """Send ``frame(next ts)`` raw; wait until the daemon refused ``count`` more marks.

        ``frame`` is called under the frames lock: no keepalive slips in between.
        """
        daemon = self.current
        before = refused(daemon, reason)
        async with self._frames:
            await self.server.send_raw(frame(next(self._ts)))

        async def counted() -> bool:
            return refused(daemon, reason) >= before + count

        await self.until(f"refused for {reason or 'anything'}", counted)

    async def bad_price(self, symbol: str, raw: str) -> None:
        await self.send_frame(
            lambda ts: (
                f'{{"topic":"markprices","ts":{ts},"data":[{{"symbol":"{symbol}","price":{raw}}}]}}'
            ),
            None,
        )

    async def spike(self, symbol: str, price: Decimal) -> None:
        data = [{"symbol": symbol, "price": float(price)}]
        await self.send_frame(
            lambda ts: orjson.dumps({"topic": "markprices", "ts": ts, "data": data}), "jump_held"
        )

    async def old_frame(self, symbol: str, price: Decimal) -> None:
        ts = next(self._old_ts)
        data = [{"symbol": symbol, "price": float(price)}]
        await self.send_frame(
            lambda _: orjson.dumps({"topic": "markprices", "ts": ts, "data": data}), "stale_ts"
        )

    async def replay_last_frame(self) -> None:
        """Send the last pushed frame again, same ts, same prices: every mark a duplicate."""

        def last_frame(_: int) -> bytes:
            data = [{"symbol": s, "price": float(p)} for s, p in self.pushed.items()]
            return orjson.dumps({"topic": "markprices", "ts": self.last_ts, "data": data})

        await self.send_frame(last_frame, "duplicate_ts", len(self.pushed))

    async def silence(self, symbol: str) -> None:
        """Stop pushing ``symbol`` and wait until the daemon holds it STALE."""
        self.live.pop(symbol, None)
        daemon = self.current
        key = daemon.store.keys.mark(symbol)

        async def stale() -> bool:
            if symbol in daemon.engine.live_marks():
                return False
            return await self.redis.hget(key, "status") == b"STALE"

        await self.until(f"{symbol} STALE", stale, STALE_AFTER + WAIT)

    async def restart(
        self, instance: str, inflight: Mapping[str, Any] | None, *, crash: bool
    ) -> None:
        """Crash (or stop cleanly) the running daemon, input maybe in flight; start another."""
        if inflight is not None:
            await self.send(inflight)
        if crash:
            await self.kill(len(self.daemons) - 1)
        else:
            await self.stop(len(self.daemons) - 1)  # raises if it did not stop cleanly
        await self.start(instance)
        await self.settle()

    async def degraded(self) -> None:
        daemon = self.current

        async def is_degraded() -> bool:
            return daemon.state == LinkState.DEGRADED.value

        await self.until("the daemon DEGRADED", is_degraded)

    async def recovered(self) -> None:
        # The test's own connections died with the server.
        old, self.redis = self.redis, open_client(self.redis_url)
        await old.aclose()
        daemon = self.current

        async def ok() -> bool:
            return daemon.link.state is LinkState.OK

        await self.until("the daemon back from DEGRADED", ok)
        await self.settle()

    async def snapshot(self, accounts: list[str]) -> Snapshot:
        """Settle, then read everything the invariant looks at in one MULTI."""
        await self.settle()
        daemon = self.current
        keys = daemon.store.keys
        pipe = self.redis.pipeline(transaction=True)
        for name in accounts:
            pipe.hgetall(keys.account(name))
            pipe.hgetall(keys.positions(name))
        for symbol in SYMBOLS:
            for direction in DIRECTIONS:
                pipe.zrange(keys.index(symbol, direction), 0, -1, withscores=True)
            pipe.hgetall(keys.mark(symbol))
        pipe.zrange(keys.liquidating, 0, -1)
        pipe.xrange(keys.events)
        pipe.xlen(keys.dead)
        replies = iter(await pipe.execute())
        snap = Snapshot({}, {}, {}, {}, set(), [], 0, daemon.state, daemon.engine.held)
        for name in accounts:
            acct, pos = next(replies), next(replies)
            snap.accounts[name] = {_text(k): _text(v) for k, v in acct.items()}
            snap.positions[name] = {_text(k): orjson.loads(v) for k, v in pos.items()}
        for symbol in SYMBOLS:
            for direction in DIRECTIONS:
                members = next(replies)
                snap.index[symbol, direction] = {_text(m): float(s) for m, s in members}
            snap.marks[symbol] = {_text(k): _text(v) for k, v in next(replies).items()}
        snap.liquidating = {_text(m) for m in next(replies)}
        snap.events = [
            {_text(k): _text(v) for k, v in fields.items()} for _, fields in next(replies)
        ]
        snap.dead = next(replies)
        return snap


# --- the checks ----------------------------------------------------------------------------


def check_events(model: Reference, events: list[dict[str, str]], problems: list[str]) -> None:
    ids = [e["id"] for e in events]
    twice = sorted(i for i in set(ids) if ids.count(i) > 1)
    if twice:
        problems.append(f"decisions emitted more than once: {twice}")
    got: dict[tuple[str, str, str], list[dict[str, str]]] = defaultdict(list)
    for e in events:
        got[e["kind"], e["account"], e["symbol"] if e["kind"] == ISOLATED else ""].append(e)
    want: dict[tuple[str, str, str], list[Decision]] = defaultdict(list)
    for d in model.decisions:
        want[d.key].append(d)
    for key in sorted(set(got) | set(want)):
        if len(got[key]) != len(want[key]):
            problems.append(
                f"{key}: {len(got[key])} events, the reference decided {len(want[key])} times"
                f" (at steps {[d.step for d in want[key]]}); events: {got[key]}"
            )
            continue
        for event, decision in zip(got[key], want[key], strict=True):
            check_event(model, event, decision, problems)


def check_event(model: Reference, e: dict[str, str], d: Decision, problems: list[str]) -> None:
    where = f"event {e['id']} (reference: step {d.step})"
    head, _, version = e["id"].rpartition(":")
    expected_head = f"{d.account}:{d.kind}" + (f":{d.symbol}" if d.kind == ISOLATED else "")
    if head != expected_head or not version.isdigit() or int(version) not in d.versions:
        problems.append(f"{where}: id should be {expected_head}:<one of {sorted(d.versions)}>")
    marks = {s: D(p) for s, p in orjson.loads(e["marks"]).items()}
    if marks != d.marks:
        problems.append(
            f"{where}: decided on marks {marks}, the LIVE valid marks were {dict(d.marks)}"
        )
    legs = [
        (
            leg["symbol"],
            leg["margin_mode"],
            D(leg["qty"]),
            D(leg["entry_price"]),
            D(leg["margin"]) if "margin" in leg else None,
            D(leg["mark_price"]),
        )
        for leg in orjson.loads(e["positions"])
    ]
    want_legs = [(s, d.kind, q, en, mg, d.marks[s]) for s, q, en, mg in d.legs]
    if sorted(legs) != sorted(want_legs):
        problems.append(f"{where}: positions {legs}, the reference's {want_legs}")
    symbol = e["symbol"]
    if symbol not in d.marks or D(e["mark_price"]) != d.marks[symbol]:
        problems.append(f"{where}: symbol {symbol} / mark_price {e['mark_price']} not its marks'")
    if (D(e["equity"]), D(e["maintenance_margin"])) != (d.equity, d.maintenance):
        problems.append(
            f"{where}: equity {e['equity']}, maintenance {e['maintenance_margin']};"
            f" the reference's {d.equity}, {d.maintenance}"
        )
    if e["seq"] != ("" if d.seq is None else str(d.seq)):
        problems.append(f"{where}: seq {e['seq']!r}, the account's last applied is {d.seq}")
    if d.kind == ISOLATED:
        ((s, q, en, mg),) = d.legs
        pos = Position(d.account, s, MarginMode.ISOLATED, q, en, mg)
        liq = margin.isolated_liq_price(pos, model.models[s])
    elif symbol in d.marks and d.balance is not None:
        legs_ = [Position(d.account, s, MarginMode.CROSS, q, en) for s, q, en, _ in d.legs]
        liq = margin.cross_leg_liq_price(d.balance, legs_, model.models, d.marks, symbol)
    else:
        return
    if (D(e["liq_price"]) if e["liq_price"] else None) != liq:
        problems.append(f"{where}: liq_price {e['liq_price']!r}, the reference's {liq}")


def check_accounts(model: Reference, snap: Snapshot, problems: list[str]) -> None:
    expected_liquidating: set[str] = set()
    for name, a in model.accounts.items():
        fields = snap.accounts[name]
        status = "LIQUIDATING" if a.liquidating else "OPEN"
        got = (
            D(fields.get("balance", "0")),
            fields.get("seq"),
            int(fields.get("version", "0")),
            fields.get("status", "OPEN"),
        )
        want = (a.balance, None if a.seq is None else str(a.seq), a.version, status)
        if got != want:
            problems.append(f"account {name}: (balance, seq, version, status) {got}, want {want}")
        if a.liquidating:
            expected_liquidating.add(f"C|{name}")
        stored = snap.positions[name]
        expected: dict[str, tuple[Decimal, Decimal, Decimal | None, str]] = {}
        for s, leg in a.cross.items():
            expected[f"{CROSS}|{s}"] = (leg.qty, leg.entry, None, _status(leg.open))
        for s, iso in a.isolated.items():
            expected[f"{ISOLATED}|{s}"] = (iso.qty, iso.entry, iso.margin, _status(iso.open))
            if not iso.open:
                expected_liquidating.add(f"I|{name}|{s}")
        have = {
            f: (
                D(p["qty"]),
                D(p["entry_price"]),
                D(p["margin"]) if "margin" in p else None,
                p.get("status", "OPEN"),
            )
            for f, p in stored.items()
        }
        if have != expected:
            problems.append(f"positions of {name}: {have}, want {expected}")
    if snap.liquidating != expected_liquidating:
        problems.append(
            f"LIQUIDATING set {sorted(snap.liquidating)}, want {sorted(expected_liquidating)}"
        )


def _status(is_open: bool) -> str:
    return "OPEN" if is_open else "LIQUIDATING"


def check_index(model: Reference, snap: Snapshot, problems: list[str]) -> None:
    # Every member stands for an OPEN position of its symbol.
    for (symbol, direction), members in snap.index.items():
        for member in members:
            kind, name = member[:2], member[2:]
            a = model.accounts.get(name)
            if kind == "I|":
                iso = a.isolated.get(symbol) if a else None
                if iso is None or not iso.open:
                    problems.append(f"{member} in {symbol}:{direction}, no OPEN isolated there")
            elif a is None or symbol not in a.cross or a.liquidating:
                problems.append(f"{member} in {symbol}:{direction}, no OPEN cross leg there")
    for name, a in model.accounts.items():
        for symbol, iso in a.isolated.items():
            if not iso.open:
                continue
            pos = model.isolated_position(name, symbol)
            triggers = margin.isolated_triggers(pos, model.models[symbol])
            for direction, price in zip(DIRECTIONS, (triggers.down, triggers.up), strict=True):
                want = None
                if price is not None:
                    want = margin.index_score(price, down=direction == "down")
                have = snap.index[symbol, direction].get(f"I|{name}")
                if have != want:
                    problems.append(
                        f"I|{name} in {symbol}:{direction} scored {have}, its trigger is {want}"
                    )
        if a.cross and not a.liquidating:
            unsound = cross_bands_unsound(model, name, snap)
            if unsound:
                problems.append(f"C|{name}: {unsound}")


def cross_bands_unsound(model: Reference, name: str, snap: Snapshot) -> str | None:
    """Whether an OPEN cross account's index entries could let it become liquidatable unseen.

    Either every leg is looked at on every tick (``inf`` in ``down``), or with
    every leg's mark at its own trigger at once (the worst the marks can do
    before one fires; no trigger: a long can lose it all), health is > 0.
    """
    a = model.accounts[name]
    member = f"C|{name}"
    have = {(s, d): snap.index[s, d].get(member) for s in a.cross for d in DIRECTIONS}
    always = [s for s in a.cross if have[s, "down"] == math.inf]
    if always:
        partly = len(always) != len(a.cross) or any(have[s, "up"] is not None for s in a.cross)
        return f"looked at on every tick only partly: {have}" if partly else None
    balance = a.balance
    legs: list[Position] = []
    corner: dict[str, Decimal] = {}
    for leg in model.cross_legs(name):
        down, up = have[leg.symbol, "down"], have[leg.symbol, "up"]
        if leg.qty < 0:
            if up is None:
                return f"a short leg on {leg.symbol} without an up trigger: {have}"
            worst = D(up)
        else:
            worst = D(down) if down is not None else D(0)
        if worst <= 0:
            balance -= leg.qty * leg.entry_price
            continue
        legs.append(leg)
        corner[leg.symbol] = worst
    health = margin.evaluate_cross(balance, legs, model.models, corner).health
    return None if health > 0 else f"bands unsound: health {health} at triggers {have}"


def check_marks(model: Reference, snap: Snapshot, problems: list[str]) -> None:
    for symbol in SYMBOLS:
        stored = snap.marks[symbol]
        if symbol in model.live:
            if D(stored.get("price", "0")) != model.prices[symbol]:
                problems.append(f"mark of {symbol} {stored}, want {model.prices[symbol]}")
        elif stored and stored.get("status") != "STALE":
            problems.append(f"{symbol} is silent yet {stored.get('status')} in Redis")


# --- the machine -------------------------------------------------------------------------

accounts = st.sampled_from(ACCOUNTS)
symbols = st.sampled_from(SYMBOLS)
shorts = st.booleans()
notionals = st.integers(1000, 40000)
offsets = st.integers(-300, 300)  # entry vs the mark, basis points
# Mostly high: an isolated position then lives within a few percent of its mark.
leverages = st.sampled_from([2, 10, 20, 25, 40, 50, 80, 100])
picks = st.integers(0, 15)
moves = st.fixed_dictionaries({s: st.integers(-400, 400) for s in SYMBOLS})
# Well within the jump band (25%): accepted at once.
jumps = st.sampled_from([-1800, -1200, -800, -500, -300, 300, 500, 800, 1200, 1800])
withdrawals = st.none() | st.tuples(accounts, st.integers(-4000, 1000))


class LiqwatchMachine(RuleBasedStateMachine):
    """Scenario 13; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        note(f"state machine seed {SEED} (LIQWATCH_STATE_MACHINE_SEED={SEED} reproduces it)")
        self.steps = 0
        self.instance = 1
        self.sent: list[tuple[dict[str, Any], bool]] = []
        self.model = Reference(maintenance_models())
        self.server = RedisServer(appendonly=True)
        self.loop: LoopThread | None = None
        self._rig: Rig | None = None
        try:
            self.server.start()
            self.loop = LoopThread()
            self._rig = self.loop.run(self._open(self.server.url))
        except BaseException:
            self.teardown()
            raise

    @staticmethod
    async def _open(url: str) -> Rig:
        rig = Rig(url)
        try:
            await rig.open("sm-1")
        except BaseException:
            await rig.close()
            raise
        return rig

    def teardown(self) -> None:
        try:
            if self.loop is not None and self._rig is not None:
                try:
                    self.loop.run(self._rig.close(), timeout=30)
                except Exception:
                    # Reported, not raised: it would hide the failure that got us here.
                    traceback.print_exc()
        finally:
            if self.loop is not None:
                try:
                    self.loop.close()
                except Exception:
                    traceback.print_exc()
            self.server.close()

    # -- helpers

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self.loop is not None
        return self.loop.run(coro)

    @property
    def rig(self) -> Rig:
        assert self._rig is not None
        return self._rig

    def prepare(self, msg: dict[str, Any], parses: bool = True) -> dict[str, Any]:
        """Give ``msg`` the account's next seq and apply it to the reference."""
        msg = {**msg, "seq": self.model.next_seq(msg["account"])}
        self.sent.append((msg, parses))
        self.model.apply(msg, parses)
        return msg

    def send(self, msg: dict[str, Any], parses: bool = True) -> None:
        self.run(self.rig.send(self.prepare(msg, parses)))

    def withdrawal(self, inflight: tuple[str, int] | None) -> dict[str, Any] | None:
        if inflight is None:
            return None
        name, delta = inflight
        a = self.model.accounts.get(name, Account())
        balance = max(ZERO, a.balance + delta)
        return self.prepare({"type": "balance", "account": name, "balance": str(balance)})

    def publish(self) -> None:
        """Make the rig push the reference's LIVE symbols at their marks."""
        self.run(self.rig.set_live(self.model.live_marks()))

    def pick(self, options: list[T], i: int) -> T:
        return options[i % len(options)]

    # -- set-up: always run, one message per account per step

    @initialize(deposits=st.lists(st.integers(0, 2500), min_size=4, max_size=4))
    def deposit_everywhere(self, deposits: list[int]) -> None:
        msgs = [
            self.prepare({"type": "balance", "account": name, "balance": str(amount)})
            for name, amount in zip(ACCOUNTS, deposits, strict=True)
        ]
        self.run(self.rig.send(*msgs))

    @initialize(
        legs=st.lists(st.tuples(symbols, shorts, notionals, offsets), min_size=4, max_size=4)
    )
    def a_cross_leg_everywhere(self, legs: list[tuple[str, bool, int, int]]) -> None:
        msgs = [
            self.prepare(self.position(name, symbol, CROSS, short, notional, offset))
            for name, (symbol, short, notional, offset) in zip(ACCOUNTS, legs, strict=True)
        ]
        self.run(self.rig.send(*msgs))

    @initialize(
        positions=st.lists(
            st.tuples(symbols, shorts, notionals, offsets, leverages), min_size=4, max_size=4
        )
    )
    def an_isolated_position_everywhere(
        self, positions: list[tuple[str, bool, int, int, int]]
    ) -> None:
        msgs = []
        for name, (symbol, short, notional, offset, lev) in zip(ACCOUNTS, positions, strict=True):
            msg = self.position(name, symbol, ISOLATED, short, notional, offset)
            msgs.append(self.prepare({**msg, "leverage": str(lev)}))
        self.run(self.rig.send(*msgs))

    def position(
        self, name: str, symbol: str, mode: str, short: bool, notional: int, offset: int
    ) -> dict[str, Any]:
        """A position message at about ``notional``, its entry ``offset`` bp from the mark."""
        price = self.model.prices[symbol]
        return {
            "type": "position",
            "account": name,
            "symbol": symbol,
            "margin_mode": mode,
            "qty": str(qty_for(notional, price, short)),
            "entry_price": str(moved(price, offset)),
        }

    # -- input: one message per step

    @rule(
        name=accounts,
        symbol=symbols,
        action=st.sampled_from(["open", "open", "close", "leverage"]),
        short=shorts,
        notional=notionals,
        offset=offsets,
        lev=leverages,
        how=st.sampled_from(["margin", "leverage", "setting"]),
    )
    def isolated(
        self,
        name: str,
        symbol: str,
        action: str,
        short: bool,
        notional: int,
        offset: int,
        lev: int,
        how: str,
    ) -> None:
        """Open or change (margin explicit, leverage given or set before), close, set leverage."""
        msg: dict[str, Any] = {
            "type": "position",
            "account": name,
            "symbol": symbol,
            "margin_mode": ISOLATED,
        }
        held = self._positions("isolated")
        if action == "close" and held:
            name, symbol = self.pick(held, notional)  # mostly one that exists
            msg.update(account=name, symbol=symbol, qty="0")
        elif action == "leverage":
            msg.update(type="leverage", leverage=str(lev))
        else:
            msg = self.position(name, symbol, ISOLATED, short, notional, offset)
            if how == "margin":
                msg["margin"] = str((D(notional) / lev).quantize(CENT))
            elif how == "leverage":
                msg["leverage"] = str(lev)
        self.send(msg)

    @rule(
        name=accounts,
        symbol=symbols,
        action=st.sampled_from(["open", "open", "close"]),
        short=shorts,
        notional=notionals,
        offset=offsets,
        mode_given=st.booleans(),
    )
    def cross(
        self,
        name: str,
        symbol: str,
        action: str,
        short: bool,
        notional: int,
        offset: int,
        mode_given: bool,
    ) -> None:
        """Open or change a cross leg (margin_mode given, or the market's default), or close one."""
        msg = self.position(name, symbol, CROSS, short, notional, offset)
        held = self._positions("cross")
        if action == "close" and held:
            name, symbol = self.pick(held, notional)
            msg = {"type": "position", "account": name, "symbol": symbol, "qty": "0"}
        if mode_given:
            msg["margin_mode"] = CROSS
        else:  # the market's default_margin_mode: CROSS
            msg.pop("margin_mode", None)
        self.send(msg)

    def _positions(self, mode: str) -> list[tuple[str, str]]:
        return sorted((n, s) for n, a in self.model.accounts.items() for s in getattr(a, mode))

    @rule(name=accounts, delta=st.integers(-3000, 3000))
    def deposit_or_withdraw(self, name: str, delta: int) -> None:
        a = self.model.accounts.get(name, Account())
        balance = max(ZERO, a.balance + delta)
        self.send({"type": "balance", "account": name, "balance": str(balance)})

    @rule(
        name=accounts,
        symbol=symbols,
        kind=st.sampled_from(
            [
                "replay",
                "replay",
                "margin_on_cross",
                "unknown_symbol",
                "leverage_0",
                "no_entry",
                "negative_margin",
            ]
        ),
        i=st.integers(0, 1000),
    )
    def bad_input(self, name: str, symbol: str, kind: str, i: int) -> None:
        """A message sent before, again (same seq), or one parse_input refuses (dead letter)."""
        if kind == "replay":
            if self.sent:
                msg, parses = self.pick(self.sent, i)
                self.sent.append((msg, parses))
                self.model.apply(msg, parses)
                self.run(self.rig.send(msg))
            return
        base = {"type": "position", "account": name, "symbol": symbol, "qty": "1"}
        msg: dict[str, Any] = {
            "margin_on_cross": {**base, "entry_price": "100", "margin": "10"},
            "unknown_symbol": {**base, "symbol": "PERP_DOGE_USDC", "entry_price": "1"},
            "leverage_0": {"type": "leverage", "account": name, "symbol": symbol, "leverage": "0"},
            "no_entry": {**base, "margin_mode": ISOLATED, "margin": "10"},
            "negative_margin": {
                **base,
                "margin_mode": ISOLATED,
                "entry_price": "100",
                "margin": "-1",
            },
        }[kind]
        self.send(msg, parses=False)

    # -- marks

    @rule(big=st.sampled_from([False, False, True]), bp=moves, i=picks, jump=jumps)
    def tick(self, big: bool, bp: dict[str, int], i: int, jump: int) -> None:
        """A valid frame: every LIVE symbol moves a little (or not), or one moves 3-18% (within
        the jump band: taken at once)."""
        if big:
            symbol = self.pick(sorted(self.model.live), i)
            self.model.prices[symbol] = moved(self.model.prices[symbol], jump)
        else:
            for symbol in self.model.live:
                self.model.prices[symbol] = moved(self.model.prices[symbol], bp[symbol])
        self.publish()

    @rule(
        symbol=symbols,
        kind=st.sampled_from(["price", "spike", "old", "replay"]),
        raw=st.sampled_from(BAD_PRICES),
        factor=st.sampled_from(["0.3", "0.6", "0.7", "1.4", "3"]),
    )
    def bad_tick(self, symbol: str, kind: str, raw: str, factor: str) -> None:
        """A frame that must change nothing: an invalid price, a jump beyond the band (held,
        then dropped by the next frame), a venue ts older than the last, the last frame again.
        """
        rig = self.rig
        if kind == "price":
            self.run(rig.bad_price(symbol, raw))
        elif kind == "replay":
            self.run(rig.replay_last_frame())
        elif kind == "spike":
            # A LIVE symbol only: the keepalive's next frame, within the band of
            # the last accepted mark, drops it. Two spikes in a row on a silent
            # symbol would confirm each other: a real move, by design.
            symbol = self.pick(sorted(self.model.live), SYMBOLS.index(symbol))
            price = (self.model.prices[symbol] * D(factor)).quantize(CENT)
            self.run(rig.spike(symbol, price))
        else:
            # A symbol the running daemon has a mark of: a first mark is never old.
            symbol = self.pick(sorted(self.model.seen), SYMBOLS.index(symbol))
            price = (self.model.prices[symbol] * D(factor)).quantize(CENT)
            self.run(rig.old_frame(symbol, price))

    @rule(i=picks, bp=st.integers(-600, 600))
    def stale_or_live_again(self, i: int, bp: int) -> None:
        """A LIVE symbol falls silent until the daemon holds it STALE (one always stays LIVE),
        or a STALE one ticks again, a little away from its last mark."""
        symbol = SYMBOLS[i % len(SYMBOLS)]
        if symbol in self.model.live and len(self.model.live) > 1:
            self.model.live.discard(symbol)
            self.run(self.rig.silence(symbol))
            return
        if symbol in self.model.live:
            symbol = self.pick(sorted(set(SYMBOLS) - self.model.live), i)
        self.model.prices[symbol] = moved(self.model.prices[symbol], bp)
        self.model.live.add(symbol)
        self.model.seen.add(symbol)
        self.publish()

    # -- faults

    @rule(crash=st.booleans(), same_name=st.booleans(), inflight=withdrawals)
    def restart_daemon(
        self, crash: bool, same_name: bool, inflight: tuple[str, int] | None
    ) -> None:
        """Kill the daemon (a crash: no clean shutdown) or stop it cleanly, maybe with input in
        flight, and start a new one under the same instance name or another (which waits for
        a crashed holder's input lease to lapse). The new one knows no mark until it ticks."""
        msg = self.withdrawal(inflight)
        if not same_name:
            self.instance += 1
        self.run(self.rig.restart(f"sm-{self.instance}", msg, crash=crash))
        self.model.seen = set(self.model.live)

    @rule(inflight=withdrawals, down=st.sampled_from([0.0, 0.3]))
    def restart_redis(self, inflight: tuple[str, int] | None, down: float) -> None:
        msg = self.withdrawal(inflight)
        if msg is not None:
            self.run(self.rig.send(msg))
        self.server.kill()
        self.run(self.rig.degraded())
        time.sleep(down)
        self.server.start()
        self.run(self.rig.recovered())

    # -- the invariant

    @invariant(check_during_init=True)
    def matches_the_reference(self) -> None:
        self.steps += 1
        self.model.decide(self.steps)
        snap = self.run(self.rig.snapshot(sorted(self.model.accounts)))
        problems: list[str] = []
        if snap.daemon_state != "OK" or snap.held:
            problems.append(f"daemon {snap.daemon_state}, held {snap.held}")
        check_events(self.model, snap.events, problems)
        check_accounts(self.model, snap, problems)
        check_index(self.model, snap, problems)
        check_marks(self.model, snap, problems)
        if snap.dead != self.model.dead:
            problems.append(f"{snap.dead} dead letters, the reference has {self.model.dead}")
        assert not problems, f"after step {self.steps}:\n" + "\n".join(problems)


SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


def run_machine(examples: int, steps: int, *, shrink: bool) -> None:
    print(f"state machine seed {SEED}: LIQWATCH_STATE_MACHINE_SEED={SEED} reproduces this run")
    phases = [Phase.explicit, Phase.reuse, Phase.generate]
    if shrink:
        phases.append(Phase.shrink)

    def machine() -> LiqwatchMachine:
        return LiqwatchMachine()

    run_state_machine_as_test(
        seed(SEED)(machine),
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            derandomize=False,
            database=None,
            print_blob=True,
            phases=phases,
            suppress_health_check=SUPPRESSED,
        ),
    )


@pytest.mark.timeout(300)
def test_scenario_13_state_machine() -> None:
    # No shrinking in CI: a failure prints its whole program (and its seed)
    # at once; `pytest -m slow` shrinks.
    run_machine(examples=20, steps=50, shrink=False)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_scenario_13_state_machine_long() -> None:
    run_machine(examples=150, steps=60, shrink=True)


# --- found by the machine ----------------------------------------------------------------


async def test_an_entry_whose_commit_lost_the_lease_is_applied_once_the_lease_is_back(
    redis_server: RedisServer, redis_client: Any
) -> None:
    """Found by the machine: ``restart_redis`` with input in flight, the lease lapsing while
    Redis was away. Here the lease lapses (DEL) just as the entry arrives, deterministically.
    """
    async with Harness(redis_server.url, {ETH: "3000"}) as h:
        await h.start()
        await h.tick({ETH: "3000"})
        await h.send({"type": "balance", "account": "L", "balance": "1", "seq": 1})
        await h.drained()
        keys = h.daemon.store.keys
        await asyncio.sleep(0.3)  # the consumer is in its blocking read for new entries
        pipe = h.redis.pipeline(transaction=True)
        msg = {"type": "balance", "account": "L", "balance": "2", "seq": 2}
        pipe.xadd(keys.input, {"msg": orjson.dumps(msg)})
        pipe.delete(keys.input_lease)
        await pipe.execute()
        # The commit is refused (LEASE); the consumer takes the lease back at once and must
        # then apply the entry it still has pending.
        await h.drained(timeout=3)
        assert await h.redis.hget(keys.account("L"), "balance") == b"2"
        await h.stop()  # and stop cleanly
