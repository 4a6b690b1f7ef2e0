"""``python -m bench``: the benchmark suite (``make bench``; never CI).

Runs every measurement against a throwaway redis-server on loopback, writes
``bench/results.json`` and the table between the ``bench:start``/``bench:end``
markers of README.md. ``--quick`` runs the same pieces at small N in about a
minute and writes nothing unless ``--out``/``--readme`` say where.
``--scale-only`` runs only :mod:`bench.scale` (the big book through 1 and 2
worker processes) and writes only to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import signal
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench import book as bookgen
from bench import report, scale, suite
from bench.rig import Shard, machine, quiet_logs, spread
from bench.warnings_bench import warnings_cost
from state.store.client import open_client
from watcher.daemon.app import tune_gc
from watcher.demo.redis_server import RedisServer

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
README = HERE.parent / "README.md"


@dataclass(frozen=True, slots=True)
class Config:
    """Sizes and repetitions of one run."""

    n: int = 1_000_000
    sizes: tuple[int, ...] = (10_000, 100_000)
    seed: int = 1
    recompute_runs: tuple[int, ...] = (20, 10, 5)  # per size, smallest first, n last
    tick_runs: int = 5
    ticks_per_run: int = 400
    throughput_runs: int = 5
    batches_per_run: int = 500
    walk_steps: int = 1_000
    walk_sigma: float = 2e-4
    stress_steps: int = 200
    stress_sigma: float = 1e-3
    latency_rate: float = 1_000.0
    latency_seconds: float = 20.0
    latency_sigma: float = 1.5e-5
    latency_target_every: int = 20
    volatile_sigma: float = 1e-4
    crash_symbol: str = "PERP_BTC_USDC"
    crash_target: int = 100_000
    map_symbol: str = "PERP_BTC_USDC"
    map_range: str = "0.10"
    map_step: str = "0.01"
    # bench/scale.py: the cascade and the input rate through S shards and W worker processes.
    scale: bool = True
    scale_shards: int = 8
    scale_workers: tuple[int, ...] = (1, 2)
    scale_lease_ttl: float = 5.0
    scale_repeats: int = 1


QUICK = Config(
    n=20_000,
    sizes=(2_000, 5_000),
    recompute_runs=(5, 3, 2),
    tick_runs=3,
    ticks_per_run=100,
    throughput_runs=3,
    batches_per_run=100,
    walk_steps=100,
    stress_steps=50,
    latency_seconds=3.0,
    volatile_sigma=1e-3,
    crash_target=2_000,
)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def run(
    config: Config, *, log: Any = _log, freeze_gc: bool = True, scale_only: bool = False
) -> dict[str, Any]:
    """Run every measurement of ``config``; return the results.

    ``freeze_gc``: move the generated books out of the garbage collector's
    sight once built. The daemon never holds them; without this, collections
    walking millions of Position objects would be timed as liqwatch's cost.
    """
    started = time.perf_counter()
    results: dict[str, Any] = {"config": asdict(config), "date": time.strftime("%Y-%m-%d")}
    sizes = (config.n,) if scale_only else (*config.sizes, config.n)
    books = {}
    for i, n in enumerate(sizes):
        t0 = time.perf_counter()
        gc.disable()
        try:
            books[n] = bookgen.generate_book(n, seed=config.seed + i)
        finally:
            gc.enable()
        log(f"book of {n:,} positions generated in {time.perf_counter() - t0:.1f} s")
    if freeze_gc:
        # As the daemon's process does (its own objects out of the collector's sight).
        tune_gc()
    results["books"] = {str(n): b.summary() for n, b in books.items()}
    if scale_only:
        results["scale"] = await _scale(config, books[config.n], log)
        results["total_s"] = time.perf_counter() - started
        return results
    with RedisServer() as server:
        redis = open_client(server.url)
        try:
            results["machine"] = await machine(redis)
            await _measure(config, redis, books, results, log)
        finally:
            await redis.aclose()
    if config.scale:
        # After the suite's redis-server is gone: the workers and theirs have the machine.
        results["scale"] = await _scale(config, books[config.n], log)
    results["total_s"] = time.perf_counter() - started
    log(f"done in {results['total_s']:.0f} s")
    return results


async def _measure(
    config: Config,
    redis: aioredis.Redis,
    books: dict[int, bookgen.Book],
    results: dict[str, Any],
    log: Any,
) -> None:
    sizes = (*config.sizes, config.n)
    per_tick: dict[str, Any] = {}
    loads: dict[str, Any] = {}
    shard = None
    for i, n in enumerate(sizes):
        book = books[n]
        shard = Shard(redis, f"b{n}")
        await shard.tick(bookgen.start_marks())
        before = await shard.used_memory()
        loads[str(n)] = await suite.load(shard, book)
        log(f"N={n:,}: {loads[str(n)]['messages_per_s']:,.0f} input entries/s")
        if n == config.n:
            results["memory"] = await suite.memory_per_position(shard, before, book.positions)
            log(f"N={n:,}: {results['memory']['bytes_per_position']:.0f} bytes/position")
        else:
            await redis.delete(shard.keys.input)
        tick = await suite.per_tick(shard, runs=config.tick_runs, ticks=config.ticks_per_run)
        recompute = suite.time_recompute(
            book.accounts, bookgen.start_marks(), config.recompute_runs[i]
        )
        tick["recompute_s"] = spread(recompute)
        tick["ratio"] = tick["recompute_s"]["median"] / tick["median_s"]
        per_tick[str(n)] = tick
        log(
            f"N={n:,}: liqwatch {tick['median_s'] * 1e3:.3f} ms/tick, full recompute"
            f" {tick['recompute_s']['median']:.3f} s/tick, ratio {tick['ratio']:,.0f}x"
        )
    assert shard is not None
    book = books[config.n]
    results["input"] = loads
    results["per_tick"] = per_tick
    results["throughput"] = {
        "conflated_1": await suite.throughput(
            shard, runs=config.throughput_runs, batches=config.batches_per_run
        ),
        "conflated_5": await suite.throughput(
            shard, runs=config.throughput_runs, batches=config.batches_per_run, per_symbol=5
        ),
    }
    log(f"throughput: {results['throughput']['conflated_1']['ticks_per_s']['median']:,.0f} ticks/s")
    results["map"] = await suite.liquidation_map(
        shard, book, symbol=config.map_symbol, range_=config.map_range, step=config.map_step
    )
    rm = results["map"]
    log(
        f"map of {rm['symbol']}: {rm['seconds']:.2f} s, {rm['candidates_read']:,} candidate"
        f" accounts of {rm['accounts']:,}"
    )
    results["latency"] = await suite.latency(
        shard,
        rate=config.latency_rate,
        seconds=config.latency_seconds,
        sigma=config.latency_sigma,
        seed=config.seed,
        target_every=config.latency_target_every,
    )
    _log_latency(log, "latency, steady", results["latency"])
    results["bands"] = {
        "calm": await suite.band_walk(
            shard, book, steps=config.walk_steps, sigma=config.walk_sigma, seed=config.seed
        ),
        "volatile": await suite.band_walk(
            shard,
            book,
            steps=config.stress_steps,
            sigma=config.stress_sigma,
            seed=config.seed + 1,
        ),
    }
    log(f"bands: ratio {results['bands']['calm']['ratio']:,.0f}x (calm)")
    results["latency_volatile"] = await suite.latency(
        shard,
        rate=config.latency_rate,
        seconds=config.latency_seconds,
        sigma=config.volatile_sigma,
        seed=config.seed + 1,
    )
    _log_latency(log, "latency, volatile", results["latency_volatile"])
    results["mass_liquidation"] = await suite.mass_liquidation(
        shard, book, symbol=config.crash_symbol, target=config.crash_target
    )
    mass = results["mass_liquidation"]
    log(
        f"mass liquidation: {mass['positions_liquidated']:,} positions in"
        f" {mass['tick_s']:.2f} s, each once: {mass['check_each_once']},"
        f" equals recompute: {mass['check_equals_full_recompute']}"
    )
    results["final_check"] = await suite.final_check(shard, book)
    log(f"final check: {results['final_check']}")
    mid = config.sizes[-1]
    results["warnings"] = await warnings_cost(
        redis, books[mid], runs=config.tick_runs, ticks=config.ticks_per_run
    )
    wr = results["warnings"]
    log(
        f"warnings on, N={mid:,}: engine {wr['engine_median_s'] * 1e3:.3f} ms/tick, warning"
        f" round {wr['round_median_s'] * 1e3:.3f} ms; book indexed at"
        f" {wr['accounts_indexed_per_s']:,.0f} accounts/s"
    )


async def _scale(config: Config, book: bookgen.Book, log: Any) -> dict[str, Any]:
    return await scale.measure(
        book,
        shards=config.scale_shards,
        workers=config.scale_workers,
        symbol=config.crash_symbol,
        target=config.crash_target,
        lease_ttl=config.scale_lease_ttl,
        repeats=config.scale_repeats,
        log=log,
    )


def _log_latency(log: Any, name: str, lat: dict[str, Any]) -> None:
    log(
        f"{name}: {lat['events_matched']} events, p50 {lat['p50_ms']:.2f} ms,"
        f" p99 {lat['p99_ms']:.2f} ms, p99.9 {lat['p999_ms']:.2f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small N, about a minute")
    parser.add_argument("--n", type=int, help="positions in the big book")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="results JSON (default: bench/results.json)")
    parser.add_argument("--readme", type=Path, help="README to update (default: README.md)")
    parser.add_argument(
        "--scale-only", action="store_true", help="only bench/scale.py; writes only --out"
    )
    parser.add_argument("--no-scale", action="store_true", help="leave bench/scale.py out")
    parser.add_argument(
        "--scale-repeats", type=int, default=1, help="bench/scale.py's runs per layout"
    )
    args = parser.parse_args(argv)
    config = QUICK if args.quick else Config()
    config = replace(config, seed=args.seed)
    if args.n:
        config = replace(config, n=args.n, crash_target=max(1, args.n // 10))
    if args.no_scale:
        config = replace(config, scale=False)
    config = replace(config, scale_repeats=max(1, args.scale_repeats))
    quiet_logs()
    # A SIGTERM unwinds like a Ctrl-C: every worker process and redis-server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = asyncio.run(run(config, scale_only=args.scale_only))
    if args.scale_only:
        if args.out is not None:
            args.out.write_text(json.dumps(results, indent=1, sort_keys=True, default=str) + "\n")
            _log(f"wrote {args.out}")
        return 0
    out = args.out or (None if args.quick else RESULTS)
    readme = args.readme or (None if args.quick else README)
    if out is not None:
        out.write_text(json.dumps(results, indent=1, sort_keys=True, default=str) + "\n")
        _log(f"wrote {out}")
    if readme is not None:
        report.update_readme(readme, results)
        _log(f"updated {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
