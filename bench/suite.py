"""The measurements of ``python -m bench``, each a function over a loaded :class:`Shard`.

Every function returns a JSON-able dict. Timings are ``time.perf_counter``
wall-clock seconds in this one process (the engine, the "feed" and the input
consumer all run here, as in the daemon; Redis is its own process).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import redis.asyncio as aioredis

from bench import book as bookgen
from bench.rig import Shard, percentile, spread
from state import margin
from state.decisions import liquidatable
from state.models import MaintenanceModel
from state.store.risk import build_map
from watcher.demo.sim.walk import PriceWalk

# --- the baseline: a full recompute ----------------------------------------------


def full_recompute(
    accounts: Iterable[bookgen.Account],
    models: Mapping[str, MaintenanceModel],
    marks: Mapping[str, Decimal],
    *,
    at_equality: bool = False,
) -> set[tuple[str, str]]:
    """Judge every account and every isolated position at ``marks``, as the daemon decides.

    The daemon's own verdict, ``state.decisions.liquidatable``, over the book
    held in memory. Returns the liquidatable ones: ``(account, "CROSS")`` and
    ``(account, symbol)``.
    """
    out: set[tuple[str, str]] = set()
    for a in accounts:
        found = liquidatable(a.balance, a.cross, a.isolated, models, marks, at_equality=at_equality)
        out.update((a.name, what) for what in found)
    return out


def time_recompute(
    accounts: Sequence[bookgen.Account], marks: Mapping[str, Decimal], runs: int
) -> list[float]:
    """Seconds of ``runs`` full recomputes at ``marks`` (nothing liquidatable there)."""
    models = bookgen.models()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        found = full_recompute(accounts, models, marks)
        times.append(time.perf_counter() - t0)
        if found:
            raise AssertionError(f"{len(found)} liquidatable at the starting marks")
    return times


# --- prices ----------------------------------------------------------------------


def _tick_size(price: Decimal) -> Decimal:
    return Decimal(1).scaleb(price.adjusted() - 5)


def wiggle(prices: Mapping[str, Decimal], up: bool) -> dict[str, Decimal]:
    """Every price one price tick (about 1e-5) up, or back where it was: crosses nothing."""
    if up:
        return {s: p + _tick_size(p) for s, p in prices.items()}
    return dict(prices)


def walk(seed: int, sigma: float) -> PriceWalk:
    """A lognormal walk without jumps, at eight significant digits."""
    return PriceWalk(seed=seed, volatility=sigma, jump_probability=0.0, digits=8)


# --- loading through the input stream ----------------------------------------------


async def load(shard: Shard, book: bookgen.Book, *, windows: int = 10) -> dict[str, Any]:
    """Append the book to the input stream, then apply it with the real InputConsumer.

    The rate is entries applied per second while the consumer runs on a full
    stream; the spread is over ``windows`` equal slices of the run.
    """
    if not shard.engine.live_marks():
        await shard.tick(bookgen.start_marks())
    t0 = time.perf_counter()
    total = await shard.append_input(book.messages)
    append_s = time.perf_counter() - t0
    mem0 = await shard.used_memory()
    stamps: list[tuple[float, int]] = []
    start = shard.consumed()

    async def sample() -> None:
        while True:
            stamps.append((time.perf_counter(), shard.consumed() - start))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    try:
        seconds = await shard.consume(total)
    finally:
        sampler.cancel()
    stamps.append((time.perf_counter(), shard.consumed() - start))
    rates = _window_rates(stamps, total, windows)
    return {
        "messages": total,
        "positions": book.positions,
        "accounts": len(book.accounts),
        "append_s": append_s,
        "apply_s": seconds,
        "messages_per_s": total / seconds,
        "positions_per_s": book.positions / seconds,
        "window_rates": spread(rates) if rates else None,
        "input_batch": shard.consumer.batch,
        "nudged": len(shard.nudged),
        "used_memory_with_stream_appended": mem0,
    }


def _window_rates(stamps: list[tuple[float, int]], total: int, windows: int) -> list[float]:
    """Entries per second over each of ``windows`` equal slices of the entries applied."""
    rates = []
    bounds = [total * i // windows for i in range(windows + 1)]
    for lo, hi in itertools.pairwise(bounds):
        t_lo = next((t for t, n in stamps if n >= lo), None)
        t_hi = next((t for t, n in stamps if n >= hi), None)
        if t_lo is not None and t_hi is not None and t_hi > t_lo:
            rates.append((hi - lo) / (t_hi - t_lo))
    return rates


async def memory_per_position(shard: Shard, before: int, positions: int) -> dict[str, Any]:
    """used_memory delta over positions, the input stream deleted first (it is not state)."""
    await shard.redis.delete(shard.keys.input)
    after = await shard.used_memory()
    keys = await shard.redis.dbsize()
    return {
        "used_memory_before": before,
        "used_memory_after": after,
        "bytes_per_position": (after - before) / positions,
        "keys_in_redis": keys,
    }


# --- per-tick cost -------------------------------------------------------------------


async def per_tick(shard: Shard, *, runs: int, ticks: int) -> dict[str, Any]:
    """Engine.process for one symbol's tick that crosses nothing, ``runs`` x ``ticks`` times."""
    prices = shard.engine.live_marks()
    symbols = sorted(prices)
    samples: list[float] = []
    run_medians: list[float] = []
    before = shard.engine.candidates.copy()
    for _ in range(runs):
        run: list[float] = []
        for i in range(ticks):
            symbol = symbols[i % len(symbols)]
            shard.offer(wiggle({symbol: prices[symbol]}, up=(i // len(symbols)) % 2 == 0))
            batch = shard.marks.take(time.monotonic())
            t0 = time.perf_counter()
            await shard.engine.process(batch)
            run.append(time.perf_counter() - t0)
        samples += run
        run_medians.append(percentile(run, 0.5))
    crossed = shard.engine.candidates - before
    return {
        "ticks": len(samples),
        "median_s": percentile(samples, 0.5),
        "p10_s": percentile(samples, 0.1),
        "p90_s": percentile(samples, 0.9),
        "p99_s": percentile(samples, 0.99),
        "run_medians_s": spread(run_medians),
        "candidates": dict(crossed),
    }


async def throughput(
    shard: Shard, *, runs: int, batches: int, per_symbol: int = 1
) -> dict[str, Any]:
    """Ticks per second through Engine.process when every batch changes every symbol.

    ``per_symbol`` marks of each symbol are offered before each take, so a
    batch conflates them (to the latest plus the extremes), as a busy feed's
    would. Reported: symbol-ticks processed per second and raw marks per second.
    """
    prices = shard.engine.live_marks()
    rates: list[float] = []
    before = shard.engine.candidates.copy()
    for _ in range(runs):
        t0 = time.perf_counter()
        for b in range(batches):
            for k in range(per_symbol):
                shard.offer(wiggle(prices, up=(b + k) % 2 == 0))
            await shard.engine.process(shard.marks.take(time.monotonic()))
        rates.append(batches * len(prices) / (time.perf_counter() - t0))
    return {
        "symbols_per_batch": len(prices),
        "marks_per_symbol_per_batch": per_symbol,
        "batches_per_run": batches,
        "ticks_per_s": spread(rates),
        "raw_marks_per_s_median": percentile(rates, 0.5) * per_symbol,
        "candidates": dict(shard.engine.candidates - before),
    }


# --- cross bands under random walks ---------------------------------------------------


async def band_walk(
    shard: Shard, book: bookgen.Book, *, steps: int, sigma: float, seed: int
) -> dict[str, Any]:
    """Walk every symbol's mark one lognormal step per batch; count cross re-evaluations.

    A re-pricing approach prices every cross account holding a symbol that
    moved: here every batch moves every symbol, so every open cross account.
    liqwatch evaluates the accounts whose trigger band a mark crossed.
    """
    walker = walk(seed, sigma)
    holders = Counter(p.symbol for a in book.accounts for p in a.cross)
    cross_accounts = book.cross_accounts
    prices = shard.engine.live_marks()
    before = shard.engine.candidates.copy()
    events0 = await shard.redis.xlen(shard.keys.events)
    t0 = time.perf_counter()
    for _ in range(steps):
        prices = {s: walker.step(p) for s, p in prices.items()}
        await shard.tick(prices)
    seconds = time.perf_counter() - t0
    got = shard.engine.candidates - before
    reevals = got["cross"]
    touched = cross_accounts * steps
    return {
        "steps": steps,
        "sigma_per_step": sigma,
        "cross_accounts": cross_accounts,
        "repricing_touches": touched,
        "repricing_touches_per_symbol_tick": sum(holders.values()) * steps,
        "band_reevaluations": reevals,
        "reevaluations_per_step": reevals / steps,
        "ratio": touched / reevals if reevals else math.inf,
        "isolated_candidates": got["isolated"],
        "liquidations": await shard.redis.xlen(shard.keys.events) - events0,
        "seconds": seconds,
        "move_over_walk": {s: float(prices[s] / p - 1) for s, p in bookgen.start_marks().items()},
    }


# --- latency at a fixed tick rate -----------------------------------------------------


class _Targets:
    """Prices just past the isolated positions nearest to each symbol's mark, both ways.

    Read once from the index before the run: a long's down score and a
    short's up score are their exact liquidation prices (rounded toward the
    mark), so a mark a hair past one liquidates that position, and whatever
    else lies between.
    """

    def __init__(self, down: dict[str, list[float]], up: dict[str, list[float]]) -> None:
        self.down = down
        self.up = up
        self.turn: Counter[str] = Counter()

    @classmethod
    async def read(cls, shard: Shard, symbols: Sequence[str], depth: int) -> _Targets:
        pipe = shard.redis.pipeline(transaction=False)
        for s in symbols:
            pipe.zrevrangebyscore(
                shard.keys.index(s, "down"), "+inf", "-inf", start=0, num=depth, withscores=True
            )
            pipe.zrangebyscore(
                shard.keys.index(s, "up"), "-inf", "+inf", start=0, num=depth, withscores=True
            )
        replies = await pipe.execute()
        down, up = {}, {}
        for i, s in enumerate(symbols):
            down[s] = [sc for m, sc in replies[2 * i] if m.startswith(b"I|") and sc < math.inf]
            up[s] = [sc for m, sc in replies[2 * i + 1] if m.startswith(b"I|")]
        return cls(down, up)

    def next_price(self, symbol: str, mark: Decimal) -> Decimal | None:
        """The price just past the next isolated trigger, alternately below and above."""
        self.turn[symbol] += 1
        below = self.turn[symbol] % 2 == 1
        scores = self.down[symbol] if below else self.up[symbol]
        while scores:
            score = Decimal(repr(scores.pop(0)))
            if (score < mark) if below else (score > mark):
                past = score * (1 - Decimal("1e-7") if below else 1 + Decimal("1e-7"))
                step = Decimal(1).scaleb(past.adjusted() - 9)
                return past.quantize(step, rounding=ROUND_FLOOR if below else ROUND_CEILING)
        return None


async def latency(
    shard: Shard,
    *,
    rate: float,
    seconds: float,
    sigma: float,
    seed: int,
    target_every: int = 0,
) -> dict[str, Any]:
    """Run the engine task as the daemon does and feed it ``rate`` marks a second.

    Each mark is one lognormal step of one symbol (drawn uniformly), offered to
    the MarkBook when due; with ``target_every``, every so many marks is
    instead a move of a symbol just past its next isolated position's
    liquidation price (alternately down and up), so that events come at a
    steady pace. Latency of an event: from the offer of the mark it carries to
    the moment the commit that XADDed it returned (the reply of the pipelined
    commit script, so the event is in Redis).
    """
    rng = random.Random(seed)
    walker = walk(seed, sigma)
    engine = shard.engine
    prices = engine.live_marks()
    symbols = sorted(prices)
    depth = int(rate * seconds / max(target_every, 1) / len(symbols)) * 2 + 50
    targets = await _Targets.read(shard, symbols, depth) if target_every else None
    offered: dict[tuple[str, Decimal], list[float]] = {}
    last = await events(shard.redis, shard.keys.events, "-", count=None, newest=True)
    since = last[0][0] if last else "0-0"
    shard.store.record_commits = True
    stop = asyncio.Event()
    engine_task = asyncio.create_task(engine.run(stop))
    sent = targeted = 0
    lag: list[float] = []
    t0 = time.perf_counter()
    end = t0 + seconds
    while (now := time.perf_counter()) < end:
        due = int((now - t0) * rate)
        if due - sent > 1:
            lag.append((due - sent) / rate)
        while sent < due:
            symbol = rng.choice(symbols)
            price = None
            if targets is not None and sent % target_every == 0:
                price = targets.next_price(symbol, prices[symbol])
                targeted += price is not None
            prices[symbol] = price or walker.step(prices[symbol])
            shard.offer({symbol: prices[symbol]})
            offered.setdefault((symbol, prices[symbol]), []).append(time.perf_counter())
            sent += 1
        await asyncio.sleep(0.0005)
    # Let the last marks be decided.
    await asyncio.sleep(0.2)
    stop.set()
    await engine_task
    shard.store.record_commits = False
    elapsed = time.perf_counter() - t0
    entries = await events(shard.redis, shard.keys.events, f"({since}")
    latencies: list[float] = []
    unmatched = 0
    for entry_id, fields in entries:
        done = shard.store.committed.get(entry_id)
        symbol = fields["symbol"]
        price = Decimal(fields["mark_price"])
        times = [t for t in offered.get((symbol, price), []) if done is not None and t <= done]
        if done is None or not times:
            unmatched += 1
            continue
        latencies.append(done - times[-1])
    shard.store.committed.clear()
    ms = [x * 1000 for x in latencies]
    return {
        "rate_target": rate,
        "marks_offered": sent,
        "seconds": elapsed,
        "rate_achieved": sent / seconds,
        "sigma_per_mark": sigma,
        "targeted_marks": targeted,
        "events": len(entries),
        "events_matched": len(latencies),
        "unmatched": unmatched,
        "p50_ms": percentile(ms, 0.5),
        "p90_ms": percentile(ms, 0.9),
        "p99_ms": percentile(ms, 0.99),
        "p999_ms": percentile(ms, 0.999),
        "max_ms": max(ms, default=float("nan")),
        "feed_behind_max_ms": max(lag, default=0.0) * 1000,
    }


# --- one tick liquidating very many -------------------------------------------------


async def events(
    redis: aioredis.Redis, key: str, start: str, *, count: int | None = None, newest: bool = False
) -> list[tuple[str, dict[str, str]]]:
    """Stream entries from ``start`` on (or the newest ``count``), decoded."""
    if newest:
        raw: Any = await redis.xrevrange(key, count=count or 1)
    else:
        raw = await redis.xrange(key, min=start, max="+", count=count)
    return [
        (eid.decode(), {k.decode(): v.decode() for k, v in fields.items()}) for eid, fields in raw
    ]


async def liquidated_so_far(redis: aioredis.Redis, events_key: str) -> dict[tuple[str, str], int]:
    """(account, "CROSS") or (account, symbol) -> how many events name it."""
    seen: Counter[tuple[str, str]] = Counter()
    start = "-"
    while True:
        chunk = await events(redis, events_key, start, count=10_000)
        for _, fields in chunk:
            kind = fields["kind"]
            seen[(fields["account"], "CROSS" if kind == "CROSS" else fields["symbol"])] += 1
        if len(chunk) < 10_000:
            return dict(seen)
        start = "(" + chunk[-1][0]


def open_book(
    book: bookgen.Book, liquidated: Mapping[tuple[str, str], int]
) -> list[bookgen.Account]:
    """The accounts as the daemon holds them now: liquidated legs and positions left out."""
    out = []
    for a in book.accounts:
        cross = [] if (a.name, "CROSS") in liquidated else a.cross
        iso = [p for p in a.isolated if (a.name, p.symbol) not in liquidated]
        if cross or iso:
            out.append(bookgen.Account(a.name, a.balance, cross, iso))
    return out


def crash_price(
    accounts: Sequence[bookgen.Account], marks: Mapping[str, Decimal], symbol: str, target: int
) -> tuple[Decimal, int]:
    """The highest price of ``symbol`` whose tick liquidates at least ``target`` positions.

    Exact: every account with a long cross leg on the symbol gets that leg's
    liquidation price with the other legs at ``marks``, every long isolated
    position its own; counted in positions (a cross account counts its legs).
    """
    models = bookgen.models()
    prices: list[tuple[Decimal, int]] = []
    for a in accounts:
        leg = next((p for p in a.cross if p.symbol == symbol), None)
        if leg is not None and leg.qty > 0:
            liq = margin.cross_leg_liq_price(a.balance, a.cross, models, marks, symbol)
            if liq is not None:
                prices.append((liq, len(a.cross)))
        for p in a.isolated:
            if p.symbol == symbol and p.qty > 0:
                liq = margin.isolated_liq_price(p, models[symbol])
                if liq is not None:
                    prices.append((liq, 1))
    prices.sort(reverse=True)
    count = 0
    for price, n in prices:
        count += n
        if count >= target:
            # Just below this one's price: a tick at its price might not liquidate it
            # (the rounded-toward-the-mark bound), a hair under always does.
            return price * (1 - Decimal("1e-9")), count
    raise ValueError(f"only {count} positions can be liquidated by a fall of {symbol}")


async def mass_liquidation(
    shard: Shard, book: bookgen.Book, *, symbol: str, target: int
) -> dict[str, Any]:
    """One tick of ``symbol`` that liquidates at least ``target`` positions; check the events."""
    redis = shard.redis
    before = await liquidated_so_far(redis, shard.keys.events)
    accounts = open_book(book, before)
    marks = shard.engine.live_marks()
    t0 = time.perf_counter()
    price, planned = crash_price(accounts, marks, symbol, target)
    prep_s = time.perf_counter() - t0
    crashed = {**marks, symbol: price}
    # What a full recompute says the tick must liquidate (its own check, not the daemon's).
    expected = full_recompute(
        [a for a in accounts if any(p.symbol == symbol for p in (*a.cross, *a.isolated))],
        bookgen.models(),
        crashed,
    )
    n_events0 = await redis.xlen(shard.keys.events)
    shard.store.reset_timing()
    shard.offer({symbol: price})
    batch = shard.marks.take(time.monotonic())
    t1 = time.perf_counter()
    await shard.engine.process(batch)
    tick_s = time.perf_counter() - t1
    timing = dict(shard.store.timing)
    after = await liquidated_so_far(redis, shard.keys.events)
    new = {k for k in after if k not in before}
    twice = sum(1 for n in after.values() if n > 1)
    legs = {a.name: len(a.cross) for a in accounts}
    positions = sum(legs[acct] if kind == "CROSS" else 1 for acct, kind in new)
    return {
        "symbol": symbol,
        "from_price": str(marks[symbol]),
        "to_price": str(price.quantize(Decimal("0.01"))),
        "move": float(price / marks[symbol] - 1),
        "target_positions": target,
        "positions_liquidated": positions,
        "events": await redis.xlen(shard.keys.events) - n_events0,
        "cross_events": sum(1 for _, k in new if k == "CROSS"),
        "isolated_events": sum(1 for _, k in new if k != "CROSS"),
        "tick_s": tick_s,
        "prep_s": prep_s,
        "planned_positions": planned,
        "store_timing": timing,
        "engine_deferred": shard.engine.counters["decisions_deferred"],
        "check_each_once": twice == 0,
        "check_equals_full_recompute": new == expected,
        "missing": len(expected - new),
        "extra": len(new - expected),
    }


async def final_check(shard: Shard, book: bookgen.Book) -> dict[str, Any]:
    """At the final marks: a full recompute over the whole book; nothing it finds is unclaimed."""
    liquidated = await liquidated_so_far(shard.redis, shard.keys.events)
    marks = shard.engine.live_marks()
    t0 = time.perf_counter()
    now = full_recompute(book.accounts, bookgen.models(), marks)
    seconds = time.perf_counter() - t0
    missed = now - set(liquidated)
    return {
        "recompute_s": seconds,
        "liquidatable_now": len(now),
        "liquidated_total": len(liquidated),
        "missed": len(missed),
        "emitted_twice": sum(1 for n in liquidated.values() if n > 1),
        "ok": not missed and all(n == 1 for n in liquidated.values()),
    }


# --- the liquidation map ------------------------------------------------------------


async def liquidation_map(
    shard: Shard, book: bookgen.Book, *, symbol: str, range_: str, step: str
) -> dict[str, Any]:
    """``liqwatch map`` on the loaded book: its whole work, timed, and what it read.

    Read the marks, query the symbol's index sets over the range and every
    other symbol's at its mark, read the candidate accounts (a chunk in flight
    while the last is judged) and judge each along the steps with the
    daemon's decision functions: what the command does before printing.
    """
    t0 = time.perf_counter()
    read = await build_map(
        shard.store,
        bookgen.models(),
        symbol,
        at_equality=False,
        range_=Decimal(range_),
        step=Decimal(step),
    )
    seconds = time.perf_counter() - t0
    m = read.map
    holders = sum(
        1 for a in book.accounts if any(p.symbol == symbol for p in (*a.cross, *a.isolated))
    )
    down, up = m.down[-1].cumulative, m.up[-1].cumulative
    return {
        "symbol": symbol,
        "range": range_,
        "step": step,
        "steps_each_way": len(m.down),
        "seconds": seconds,
        "accounts": len(book.accounts),
        "accounts_holding_symbol": holders,
        "candidates_read": read.candidates,
        "judged": m.judged,
        "liquidatable_now": m.already,
        "down_total": {"count": down.count, "notional": float(down.notional)},
        "up_total": {"count": up.count, "notional": float(up.notional)},
    }
