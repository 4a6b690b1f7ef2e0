"""Scaling over worker processes: the cascade and the input rate with S shards and W workers.

Every worker is a real ``liqwatch run`` process (``python -m watcher.cli run``)
with a config of its own: the bench's 20 markets, one Orderly feed served by
a simulated server in this process, ``[shards] count = S``. With S > 1 the
workers share the shards through the daemon's own per-shard leases in Redis
(:mod:`watcher.daemon.shards`); with S = 1 one process runs the one shard, as
the default deployment does. Every run has a fresh redis-server on
127.0.0.1 (one server, no persistence, no cluster): every worker, the server
and this process share the machine's cores.

One run of :func:`measure` makes three (or more) runs on the same book:
S = 1 with one worker (the baseline, no shard overhead), then S shards with
W = 1, 2, ... workers. Each run:

1. starts the workers and waits until each holds its share of the shards
   and has the marks live (read from their heartbeats and the leases);
2. **input**: appends the whole book to the shards' input streams (each
   message to its account's shard, ``redis-cli --pipe``) and samples how many
   entries the workers' consumer groups have applied until none is left; the
   rate is taken between 10% and 90% of the entries (after the append ends);
3. **cascade**: one push of the feed moves one symbol to the price solved
   beforehand to liquidate about ``target`` positions; timed from that push
   to the last event committed, read from the entry ids of every shard's
   events stream (Redis's clock is this machine's); then every event is read
   back: each expected liquidation (a full recompute of the book at the new
   marks) exactly once, nothing else, each in its account's shard;
4. notes the CPU seconds of each worker (``/proc``), of redis-server (``INFO
   cpu``), of this process and of the whole machine, for both phases: what
   is left over is other jobs on the machine.

The audit is turned off in the workers (the single-process suite does not
run it either); the jump guard too (a crash of a quarter is the point).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Container, Sequence
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from bench import book as bookgen
from bench import suite
from bench.rig import spread
from state.keys import INPUT_GROUP, Keys
from state.models import BracketsModel, FlatModel, OrderlyModel
from state.shards import shard_of
from state.store.client import open_client
from watcher.daemon.config import parse_settings
from watcher.demo.redis_server import RedisServer
from watcher.demo.sim.orderly import OrderlyMarkServer

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "liq"
POLL = 0.1
REDIS_MODE = "one redis-server on 127.0.0.1, no persistence, no cluster, fresh for each run"
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# --- the workers' config ---------------------------------------------------------------


def _dec(value: Decimal) -> str:
    return format(value, "f")


def markets_toml() -> str:
    """The bench's 20 markets as a config's ``[markets.*]`` tables (no partial liquidation)."""
    out = []
    for spec in bookgen.SPECS:
        m = spec.market.maintenance
        out.append(f"[markets.{spec.symbol}]")
        if isinstance(m, OrderlyModel):
            out.append("partial = false")
            out.append(
                f'maintenance = {{ model = "orderly", base_imr = "{_dec(m.base_imr)}",'
                f' base_mmr = "{_dec(m.base_mmr)}", imr_factor = "{_dec(m.imr_factor)}" }}'
            )
        elif isinstance(m, FlatModel):
            out.append(f'maintenance = {{ model = "flat", rate = "{_dec(m.rate)}" }}')
        elif isinstance(m, BracketsModel):
            rows = ", ".join(
                f'["{_dec(b.floor)}", "{_dec(b.rate)}", "{_dec(b.amount)}"]' for b in m.brackets
            )
            out.append(f'maintenance = {{ model = "brackets", brackets = [{rows}] }}')
        else:
            raise TypeError(f"{spec.symbol}: no config form for {m!r}")
    return "\n".join(out) + "\n"


def config_text(
    redis_url: str, feed_url: str, *, instance: str, shards: int, lease_ttl: float
) -> str:
    """One worker's config: the bench's markets, one Orderly feed, S shards, no audit."""
    symbols = orjson.dumps(list(bookgen.SYMBOLS)).decode()
    return f"""[redis]
url = "{redis_url}"
prefix = "{PREFIX}"
[shards]
count = {shards}
[[feeds]]
venue = "orderly"
url = "{feed_url}"
symbols = {symbols}
stale_after = 3600
jump_band = 0
[daemon]
instance = "{instance}"
lease_ttl = {lease_ttl}
heartbeat_interval = 0.5
[audit]
enabled = false
{markets_toml()}"""


def check_config() -> None:
    """The config the workers read holds exactly the markets the bench's book is judged by."""
    text = config_text(
        "redis://127.0.0.1:1/0", "ws://127.0.0.1:1/ws", instance="x", shards=2, lease_ttl=5.0
    )
    got = parse_settings(text, {}).markets
    want = bookgen.markets()
    if dict(got) != want:
        bad = sorted(s for s in want if got.get(s) != want[s])
        raise AssertionError(f"the workers' markets differ from the book's: {bad}")


# --- the crash and what it must liquidate ------------------------------------------------


def plan_crash(book: bookgen.Book, symbol: str, target: int) -> dict[str, Any]:
    """The price of ``symbol`` liquidating at least ``target`` positions, and the expected set.

    Solved at the starting marks on the fresh book (``suite.crash_price``),
    then rounded down to 8 significant digits so that the feed's JSON number
    carries it exactly; the expected set is a full recompute there.
    """
    marks = bookgen.start_marks()
    exact, _ = suite.crash_price(book.accounts, marks, symbol, target)
    price = exact.quantize(Decimal(1).scaleb(exact.adjusted() - 7), rounding=ROUND_FLOOR)
    if Decimal(repr(float(price))) != price:
        raise AssertionError(f"{price} does not survive a JSON number")
    holders = [a for a in book.accounts if any(p.symbol == symbol for p in (*a.cross, *a.isolated))]
    expected = suite.full_recompute(holders, bookgen.models(), {**marks, symbol: price})
    legs = {a.name: len(a.cross) for a in holders}
    positions = sum(legs[name] if what == "CROSS" else 1 for name, what in expected)
    return {
        "symbol": symbol,
        "from_price": marks[symbol],
        "price": price,
        "move": float(price / marks[symbol] - 1),
        "expected": expected,
        "positions": positions,
    }


# --- input: the book as redis-cli --pipe input, each message in its account's shard ------


def write_input(messages: Sequence[bytes], shards: int, path: Path) -> list[int]:
    """Write XADDs of every message to its account's shard input stream; return counts by shard."""
    heads = []
    for k in range(shards):
        key = Keys(PREFIX, k).input.encode()
        heads.append(b"*5\r\n$4\r\nXADD\r\n$%d\r\n%s\r\n$1\r\n*\r\n$3\r\nmsg\r\n" % (len(key), key))
    counts = [0] * shards
    where: dict[str, int] = {}
    chunk: list[bytes] = []
    with path.open("wb") as f:
        for raw in messages:
            k = 0
            if shards > 1:
                account = orjson.loads(raw)["account"]
                k = where.get(account, -1)
                if k < 0:
                    k = where[account] = shard_of(account, shards)
            counts[k] += 1
            chunk.append(heads[k] + b"$%d\r\n%s\r\n" % (len(raw), raw))
            if len(chunk) >= 10_000:
                f.write(b"".join(chunk))
                chunk.clear()
        f.write(b"".join(chunk))
    return counts


async def _append(port: int, path: Path, total: int) -> None:
    """Send the XADDs of ``path`` through ``redis-cli --pipe``; check every one was taken."""
    cli = shutil.which("redis-cli")
    if cli is None:
        raise RuntimeError("redis-cli is not on PATH (it comes with redis-server: redis-tools)")
    with path.open("rb") as stdin:
        proc = await asyncio.create_subprocess_exec(
            cli,
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "--pipe",
            stdin=stdin,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    if proc.returncode != 0 or f"errors: 0, replies: {total}" not in text:
        raise RuntimeError(f"redis-cli --pipe failed: {text.strip()[-300:]}")


# --- CPU accounting ------------------------------------------------------------------------


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _machine_busy() -> float:
    """CPU seconds the whole machine spent busy since boot (every core, every process)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


async def _redis_cpu(redis: aioredis.Redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class _Cpu:
    """CPU seconds of the workers, redis-server, this process and the machine, at one moment."""

    def __init__(self, workers: list[float], redis: float, bench: float, machine: float) -> None:
        self.workers = workers
        self.redis = redis
        self.bench = bench
        self.machine = machine

    @classmethod
    async def now(cls, redis: aioredis.Redis, pids: list[int]) -> _Cpu:
        return cls(
            [_proc_cpu(p) for p in pids],
            await _redis_cpu(redis),
            time.process_time(),
            _machine_busy(),
        )

    def since(self, before: _Cpu, wall: float) -> dict[str, Any]:
        workers = [a - b for a, b in zip(self.workers, before.workers, strict=True)]
        ours = sum(workers) + self.redis - before.redis + self.bench - before.bench
        machine = self.machine - before.machine
        return {
            "wall_s": wall,
            "workers_s": workers,
            "workers_total_s": sum(workers),
            "redis_s": self.redis - before.redis,
            "bench_s": self.bench - before.bench,
            "machine_busy_s": machine,
            # Busy CPU of anything else on the machine (other jobs, redis-cli, the kernel).
            "other_s": machine - ours,
            "cores_busy": machine / wall if wall > 0 else float("nan"),
        }


# --- the worker processes ------------------------------------------------------------------


def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc() if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL it if the bench dies without cleaning up."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Worker:
    """One ``liqwatch run`` process, its log in a file."""

    def __init__(self, name: str, config: Path, log: Path) -> None:
        self.name = name
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "watcher.cli", "run", "--config", str(self.config)],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                # Started from the event loop's thread, which lives as long as the bench.
                preexec_fn=_die_with_parent,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def check(self) -> None:
        """Raise if the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"worker {self.name} exited with {self.proc.returncode}: {self.tail()}"
            )

    def tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def warnings(self) -> dict[str, Any]:
        """Log lines at warning or above: counts by event, and the first few (but liquidations)."""
        seen: Counter[str] = Counter()
        examples: list[str] = []
        with contextlib.suppress(OSError):
            for line in self.log.read_bytes().splitlines():
                try:
                    entry = orjson.loads(line)
                except orjson.JSONDecodeError:
                    entry = {"level": "error", "event": "(not json)"}
                if entry.get("level") in ("warning", "error", "critical"):
                    event = str(entry.get("event"))
                    seen[event] += 1
                    if event != "liquidation.emitted" and len(examples) < 3:
                        examples.append(line.decode(errors="replace")[:300])
        return {"counts": dict(seen), "examples": examples}

    async def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; return the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        self.kill()
        return proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# --- reading Redis -----------------------------------------------------------------------


async def _owners(redis: aioredis.Redis, shards: int) -> list[str | None]:
    pipe = redis.pipeline(transaction=False)
    for k in range(shards):
        pipe.get(Keys(PREFIX, k).input_lease)
    return [None if v is None else v.decode() for v in await pipe.execute()]


async def _wait_ready(
    redis: aioredis.Redis, workers: list[Worker], shards: int, timeout: float
) -> dict[str, list[int]]:
    """Until every worker beats with every mark live and holds its share; return who holds what."""
    keys = Keys(PREFIX)
    names = [w.name for w in workers]
    beat_keys = [keys.health] if shards == 1 else [keys.worker_health(n) for n in names]
    share = math.ceil(shards / len(workers))
    symbols = set(bookgen.SYMBOLS)
    async with asyncio.timeout(timeout):
        while True:
            for w in workers:
                w.check()
            raw = await redis.mget(beat_keys)
            beats: list[dict[str, Any]] = [orjson.loads(b) for b in raw if b]
            if len(beats) == len(names) and all(set(b["live"]) == symbols for b in beats):
                if shards == 1:
                    return {names[0]: [0]}
                held = {n: list(b["shards"]["held"]) for n, b in zip(names, beats, strict=True)}
                owners = await _owners(redis, shards)
                if (
                    sorted(k for h in held.values() for k in h) == list(range(shards))
                    and all(len(h) <= share for h in held.values())
                    and all(owners[k] == n for n, h in held.items() for k in h)
                ):
                    return held
            await asyncio.sleep(0.05)


async def _applied(redis: aioredis.Redis, shards: int) -> tuple[int, int]:
    """Entries the input groups of every shard have applied (read and acknowledged), pending."""
    pipe = redis.pipeline(transaction=False)
    for k in range(shards):
        pipe.xinfo_groups(Keys(PREFIX, k).input)
    applied = pending = 0
    for reply in await pipe.execute(raise_on_error=False):
        if isinstance(reply, Exception):
            continue
        for g in reply:
            name = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
            if name == INPUT_GROUP:
                applied += int(g.get("entries-read") or 0) - int(g["pending"])
                pending += int(g["pending"])
    return applied, pending


async def _events_count(redis: aioredis.Redis, shards: int) -> int:
    pipe = redis.pipeline(transaction=False)
    for k in range(shards):
        pipe.xlen(Keys(PREFIX, k).events)
    return sum(await pipe.execute())


async def _read_events(
    redis: aioredis.Redis, shards: int, *, known: Container[tuple[str, str]] = ()
) -> dict[str, Any]:
    """Every event of every shard: what each names, how often; when the first and last that
    name nothing in ``known`` were added."""
    seen: Counter[tuple[str, str]] = Counter()
    first = last = None
    misplaced = 0
    for k in range(shards):
        key, start = Keys(PREFIX, k).events, "-"
        while True:
            chunk = await suite.events(redis, key, start, count=10_000)
            for entry_id, fields in chunk:
                account = fields["account"]
                what = (account, "CROSS" if fields["kind"] == "CROSS" else fields["symbol"])
                seen[what] += 1
                misplaced += shards > 1 and shard_of(account, shards) != k
                if what not in known:
                    ms = int(entry_id.split("-", 1)[0])
                    first = ms if first is None else min(first, ms)
                    last = ms if last is None else max(last, ms)
            if len(chunk) < 10_000:
                break
            start = "(" + chunk[-1][0]
    return {"seen": seen, "first_ms": first, "last_ms": last, "misplaced": misplaced}


# --- one run: S shards, W workers ------------------------------------------------------------


def _expected(
    book: bookgen.Book, crash: dict[str, Any], before: Counter[tuple[str, str]]
) -> tuple[set[tuple[str, str]], int]:
    """What the crash must liquidate, and how many positions, with ``before`` already gone."""
    if not before:
        return crash["expected"], crash["positions"]
    symbol = crash["symbol"]
    holders = [
        a
        for a in suite.open_book(book, before)
        if any(p.symbol == symbol for p in (*a.cross, *a.isolated))
    ]
    marks = {**bookgen.start_marks(), symbol: crash["price"]}
    expected = suite.full_recompute(holders, bookgen.models(), marks)
    legs = {a.name: len(a.cross) for a in holders}
    return expected, sum(legs[name] if what == "CROSS" else 1 for name, what in expected)


async def run_one(
    *,
    book: bookgen.Book,
    shards: int,
    workers: int,
    crash: dict[str, Any],
    input_file: Path,
    counts: list[int],
    sim: OrderlyMarkServer,
    tmp: Path,
    lease_ttl: float,
) -> dict[str, Any]:
    """Start the workers on a fresh redis-server, load the book through them, crash one symbol."""
    total = sum(counts)
    symbol = crash["symbol"]
    for s, p in bookgen.start_marks().items():
        sim.set_price(s, p)
    out: dict[str, Any] = {"shards": shards, "workers": workers}
    procs: list[Worker] = []
    with RedisServer() as server:
        redis = open_client(server.url)
        try:
            for i in range(workers):
                name = f"s{shards}w{workers}-{i}"
                config = tmp / f"{name}.toml"
                config.write_text(
                    config_text(
                        server.url, sim.url, instance=name, shards=shards, lease_ttl=lease_ttl
                    )
                )
                procs.append(Worker(name, config, tmp / f"{name}.log").start())
            t0 = time.perf_counter()
            held = await _wait_ready(redis, procs, shards, timeout=60 + 4 * lease_ttl)
            out["ready_s"] = time.perf_counter() - t0
            out["held"] = held
            pids = [w.pid for w in procs]
            out["loadavg_before"] = os.getloadavg()

            # --- input --------------------------------------------------------------
            samples: list[tuple[float, int]] = []
            cpu0 = await _Cpu.now(redis, pids)
            t_start = time.perf_counter()
            append = asyncio.create_task(_append(server.port, input_file, total))
            t_appended = math.inf
            deadline = t_start + max(120.0, total / 2_000)
            while True:
                for w in procs:
                    w.check()
                if append.done() and t_appended == math.inf:
                    append.result()
                    t_appended = time.perf_counter()
                applied, pending = await _applied(redis, shards)
                samples.append((time.perf_counter(), applied))
                if applied >= total and pending == 0 and append.done():
                    break
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"input not applied in time: {applied:,} of {total:,}")
                await asyncio.sleep(POLL)
            t_done = samples[-1][0]
            cpu1 = await _Cpu.now(redis, pids)
            out["input"] = _input_result(samples, total, counts, t_start, t_appended, t_done)
            out["input"]["cpu"] = cpu1.since(cpu0, t_done - t_start)
            dead = sum([await redis.xlen(Keys(PREFIX, k).dead) for k in range(shards)])
            out["input"]["dead_letters"] = dead
            if dead:
                raise AssertionError(f"{dead} input entries dead-lettered")
            # An account's messages may straddle two input batches: between them it can
            # hold some of its legs and not the others, and be liquidatable for a moment
            # (the single-process suite sees the same). What was liquidated so is left out
            # of the cascade's expectation, as suite.mass_liquidation does.
            before: Counter[tuple[str, str]] = (await _read_events(redis, shards))["seen"]
            out["input"]["liquidated_while_loading"] = {
                "events": sum(before.values()),
                "cross": sum(1 for _, what in before if what == "CROSS"),
                "sample": sorted(before)[:5],
            }
            expected, positions = _expected(book, crash, before)

            # --- cascade --------------------------------------------------------------
            owners_before = await _owners(redis, shards)
            cpu2 = await _Cpu.now(redis, pids)
            t_push = time.time()
            p_push = time.perf_counter()
            sim.set_price(symbol, crash["price"])
            await sim.push()
            deadline = p_push + max(120.0, positions / 500)
            goal = len(expected) + sum(before.values())
            while (count := await _events_count(redis, shards)) < goal:
                for w in procs:
                    w.check()
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"cascade not done in time: {count:,} of {goal:,} events")
                await asyncio.sleep(POLL)
            p_seen = time.perf_counter()
            cpu3 = await _Cpu.now(redis, pids)
            # Anything late (a duplicate) has time to show.
            await asyncio.sleep(1.0)
            got = await _read_events(redis, shards, known=before)
            seen: Counter[tuple[str, str]] = got["seen"]
            last_s = (got["last_ms"] - t_push * 1000) / 1000
            new = set(seen) - set(before)
            out["cascade"] = {
                "positions_liquidated": positions,
                "events": sum(seen.values()) - sum(before.values()),
                "seconds": last_s,
                "first_event_s": (got["first_ms"] - t_push * 1000) / 1000,
                "check_each_once": all(n == 1 for n in seen.values()),
                "check_equals_full_recompute": new == expected,
                "missing": len(expected - new),
                "extra": len(new - expected),
                "misplaced": got["misplaced"],
                "same_holders": owners_before == await _owners(redis, shards),
                "cpu": cpu3.since(cpu2, p_seen - p_push),
            }
            out["loadavg_after"] = os.getloadavg()
        finally:
            codes = await asyncio.gather(*(w.stop() for w in procs), return_exceptions=True)
            for w in procs:
                w.kill()
            await redis.aclose()
    out["exit_codes"] = [c if isinstance(c, int | None) else repr(c) for c in codes]
    out["warnings"] = {w.name: w.warnings() for w in procs}
    return out


def _input_result(
    samples: list[tuple[float, int]],
    total: int,
    counts: list[int],
    t_start: float,
    t_appended: float,
    t_done: float,
) -> dict[str, Any]:
    """The steady rate (10% to 90% of the entries, after the append), the whole one, tenths."""
    lo = next(((t, n) for t, n in samples if n >= total * 0.1 and t >= t_appended), None)
    hi = next(((t, n) for t, n in samples if n >= total * 0.9), None)
    whole = total / (t_done - t_start)
    steady = whole
    if lo is not None and hi is not None and hi[0] > lo[0]:
        steady = (hi[1] - lo[1]) / (hi[0] - lo[0])
    rates = suite._window_rates([(t, n) for t, n in samples if t >= t_appended], total, 10)
    return {
        "messages": total,
        "by_shard": counts,
        "append_s": t_appended - t_start,
        "apply_s": t_done - t_start,
        "messages_per_s": steady,
        "messages_per_s_whole": whole,
        "window": "10%-90% of the entries, after the append" if lo and hi else "whole load",
        "window_rates": spread(rates) if rates else None,
    }


# --- the whole measurement ---------------------------------------------------------------------


async def measure(
    book: bookgen.Book,
    *,
    shards: int = 8,
    workers: Sequence[int] = (1, 2),
    symbol: str = "PERP_BTC_USDC",
    target: int = 100_000,
    lease_ttl: float = 5.0,
    repeats: int = 1,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """S = 1 with one worker, then ``shards`` shards with each count of ``workers``; one book.

    ``repeats``: the whole sequence that many times over (the layouts take
    turns, so that a spell of other load falls on all of them); the figures
    are the medians of each layout's runs.
    """
    if shards < 2:
        raise ValueError("shards must be at least 2 (S = 1 is always the baseline)")
    started = time.perf_counter()
    check_config()
    crash = plan_crash(book, symbol, target)
    log(
        f"scale: {symbol} {crash['from_price']} -> {crash['price']} ({crash['move'] * 100:.1f}%)"
        f" liquidates {crash['positions']:,} positions ({len(crash['expected']):,} events)"
    )
    layouts = [(1, 1), *((shards, w) for w in workers)]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="liqwatch-scale-") as name:
        tmp = Path(name)
        files = {}
        for s in sorted({s for s, _ in layouts}):
            path = tmp / f"input-{s}.resp"
            files[s] = (path, write_input(book.messages, s, path))
        async with OrderlyMarkServer(bookgen.start_marks(), interval=0.5, ping_interval=0) as sim:
            for repeat, (s, w) in itertools.product(range(repeats), layouts):
                path, counts = files[s]
                run = await run_one(
                    book=book,
                    shards=s,
                    workers=w,
                    crash=crash,
                    input_file=path,
                    counts=counts,
                    sim=sim,
                    tmp=tmp,
                    lease_ttl=lease_ttl,
                )
                run["repeat"] = repeat
                runs.append(run)
                c, i = run["cascade"], run["input"]
                log(
                    f"scale S={s} W={w}: input {i['messages_per_s']:,.0f}/s; cascade of"
                    f" {c['positions_liquidated']:,} positions {c['seconds']:.2f} s, each once:"
                    f" {c['check_each_once']}, equals recompute: {c['check_equals_full_recompute']}"
                )
    result: dict[str, Any] = {
        "redis": REDIS_MODE,
        "cores": os.cpu_count(),
        "shards": shards,
        "workers": list(workers),
        "lease_ttl": lease_ttl,
        "repeats": repeats,
        "crash": {
            "symbol": symbol,
            "from_price": str(crash["from_price"]),
            "to_price": str(crash["price"]),
            "move": crash["move"],
            "target_positions": target,
            "positions": crash["positions"],
            "events": len(crash["expected"]),
        },
        "runs": runs,
        "seconds": time.perf_counter() - started,
    }
    result["layouts"] = summarize(runs)
    result["ratios"] = ratios(result["layouts"], shards)
    result["estimate"] = estimate(result["layouts"], shards)
    return result


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each layout (S, W) over its runs: medians (min, max) of the rate, the time, the CPU."""
    out = []
    for s, w in dict.fromkeys((r["shards"], r["workers"]) for r in runs):
        mine = [r for r in runs if r["shards"] == s and r["workers"] == w]
        rates = [r["input"]["messages_per_s"] for r in mine]
        times = [r["cascade"]["seconds"] for r in mine]
        layout: dict[str, Any] = {
            "shards": s,
            "workers": w,
            "runs": len(mine),
            "input_per_s": statistics.median(rates),
            "input_per_s_range": [min(rates), max(rates)],
            "cascade_s": statistics.median(times),
            "cascade_s_range": [min(times), max(times)],
            "positions": statistics.median([r["cascade"]["positions_liquidated"] for r in mine]),
            "events": statistics.median([r["cascade"]["events"] for r in mine]),
            "checks_ok": all(
                r["cascade"]["check_each_once"]
                and r["cascade"]["check_equals_full_recompute"]
                and not r["cascade"]["misplaced"]
                for r in mine
            ),
            "other_cores_max": max(
                max(0.0, r[phase]["cpu"]["other_s"] / r[phase]["cpu"]["wall_s"])
                for r in mine
                for phase in ("input", "cascade")
            ),
        }
        for phase, units in (("input", "messages"), ("cascade", "positions_liquidated")):
            for who, key in (("python", "workers_total_s"), ("redis", "redis_s")):
                layout[f"{phase}_{who}_us"] = statistics.median(
                    [r[phase]["cpu"][key] / r[phase][units] * 1e6 for r in mine]
                )
        out.append(layout)
    return out


def _layout(layouts: list[dict[str, Any]], shards: int, workers: int) -> dict[str, Any]:
    return next(x for x in layouts if x["shards"] == shards and x["workers"] == workers)


def ratios(layouts: list[dict[str, Any]], shards: int) -> dict[str, Any]:
    """Speed-ups over W = 1 at S shards (input: rate over rate; cascade: time over time).

    Also the shard overhead (S shards over S = 1, one worker) and the ceiling
    that the CPU seconds of the W = 1 run put on the speed-up on this machine
    (nothing else running): its Python work split over W processes, Redis's on
    its one thread, all of it on the machine's cores; the time bound is the
    largest of the three, with one worker and with W.
    """
    base, one = _layout(layouts, 1, 1), _layout(layouts, shards, 1)
    cores = os.cpu_count() or 1
    out: dict[str, Any] = {
        "input_sharded_over_single": one["input_per_s"] / base["input_per_s"],
        "cascade_sharded_over_single": base["cascade_s"] / one["cascade_s"],
    }
    for x in layouts:
        w = x["workers"]
        if x["shards"] != shards or w == 1:
            continue
        out[f"input_w{w}_over_w1"] = x["input_per_s"] / one["input_per_s"]
        out[f"cascade_w{w}_over_w1"] = one["cascade_s"] / x["cascade_s"]
        for phase in ("input", "cascade"):
            py, rd = one[f"{phase}_python_us"], one[f"{phase}_redis_us"]
            alone, split = max((py + rd) / cores, rd, py), max((py + rd) / cores, rd, py / w)
            out[f"{phase}_w{w}_ceiling_here"] = alone / split if split > 0 else float("nan")
    return out


def estimate(
    layouts: list[dict[str, Any]], shards: int, *, cores: int = 16, nodes: int = 3
) -> dict[str, Any]:
    """What ``cores`` cores of workers and a Redis Cluster of ``nodes`` masters would do.

    From the CPU seconds of the S-shard, one-worker run: Python per input
    entry and per liquidated position (the worker's CPU), Redis per each (the
    server's). Workers scale with cores (one worker a core, S >= cores, the
    shards spread evenly), Redis with nodes (one thread each, a third of the
    shards each); the bound is whichever saturates first. Two layouts: Redis
    on machines of its own (``cores`` for workers), and Redis sharing the
    ``cores`` (``cores - nodes`` for workers).
    """
    one = _layout(layouts, shards, 1)
    positions = one["positions"]
    out: dict[str, Any] = {"cores": cores, "nodes": nodes, "from": f"S={shards}, W=1"}
    for phase in ("input", "cascade"):
        py = one[f"{phase}_python_us"] / 1e6
        rd = one[f"{phase}_redis_us"] / 1e6
        out[f"{phase}_python_us"] = py * 1e6
        out[f"{phase}_redis_us"] = rd * 1e6
        out[f"{phase}_python_share"] = py / (py + rd) if py + rd else float("nan")
        for layout, worker_cores in (("own_nodes", cores), ("shared", cores - nodes)):
            # A tiny run's CPU can read 0 (the clock ticks 10 ms): no bound from it.
            python_rate = worker_cores / py if py > 0 else math.inf
            redis_rate = nodes / rd if rd > 0 else math.inf
            rate = min(python_rate, redis_rate)
            bound = "python" if python_rate <= redis_rate else "redis"
            if phase == "input":
                out[f"input_per_s_{layout}"] = rate
            else:
                out[f"cascade_s_{layout}"] = positions / rate
            out[f"{phase}_bound_{layout}"] = bound
    return out
