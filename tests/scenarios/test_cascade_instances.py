"""A cascade of 10,000+ positions decided by two daemon processes, one killed -9 in the middle.

Both processes hear every mark and race for every claim; the guards (the
account version, ``SET NX`` on the deterministic liquidation id) let each
decision through once. The survivor finishes the cascade; the set of
decisions equals a brute-force recompute.
"""

from __future__ import annotations

import asyncio
import random
import time
from decimal import Decimal
from pathlib import Path

import orjson

from state.rules import Rules
from state.store.client import open_client
from tests.helpers.harness import config_text, settings_for
from tests.helpers.model import Model, decided, random_book
from tests.helpers.processes import DaemonProcess, drained
from tests.helpers.rig import KEYS, MARKS
from watcher.demo.redis_server import RedisServer
from watcher.demo.sim.orderly import OrderlyMarkServer

CRASH = {s: (p * Decimal("0.88")).quantize(Decimal("0.01")) for s, p in MARKS.items()}


async def test_two_instances_one_killed_mid_cascade(tmp_path: Path) -> None:
    """Every decision once, none missed, against a brute-force recompute."""
    book = random_book(random.Random(10), 6000)
    positions = sum(1 for m in book if m["type"] == "position")
    assert positions > 10_000
    with RedisServer(appendonly=True) as server:
        async with OrderlyMarkServer(MARKS, interval=0.2, ping_interval=0) as sim:
            daemons = []
            for name in ("one", "two"):
                config = tmp_path / f"{name}.toml"
                config.write_text(config_text(server.url, sim.url, list(MARKS), instance=name))
                daemons.append(DaemonProcess(config, tmp_path / f"{name}.log").start())
            redis = open_client(server.url)
            try:
                # Either may win the input lease; both decide.
                async with asyncio.timeout(30):
                    while not await redis.exists(KEYS.input_lease):
                        await asyncio.sleep(0.05)
                pipe = redis.pipeline(transaction=False)
                for m in book:
                    pipe.xadd(KEYS.input, {"msg": orjson.dumps(m)})
                await pipe.execute()
                await drained(redis, KEYS.input, timeout=60)
                rules = Rules(KEYS, settings_for(server.url, sim.url, list(MARKS)).markets)
                model = Model(book, rules)
                model.step(MARKS)
                model.step(CRASH)
                for symbol, price in CRASH.items():
                    sim.set_price(symbol, price)
                async with asyncio.timeout(30):
                    while await redis.xlen(KEYS.events) < 50:
                        await asyncio.sleep(0.002)
                daemons[0].kill()
                at_kill = await redis.xlen(KEYS.events)
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline:
                    got = await _decisions(redis)
                    if len(set(got)) >= len(model.liquidated):
                        break
                    await asyncio.sleep(0.2)
                await asyncio.sleep(1.0)
                got = await _decisions(redis)
            finally:
                await redis.aclose()
                for d in daemons:
                    d.kill()
    assert len(got) == len(set(got)), "a decision was emitted twice"
    assert set(got) == model.liquidated
    assert len(model.liquidated) > 1000
    # The kill landed in the middle: most of the cascade was left to the survivor.
    assert at_kill < len(model.liquidated) / 2, (at_kill, len(model.liquidated))


async def _decisions(redis) -> list[tuple[str, str, str]]:
    entries = await redis.xrange(KEYS.events)
    return decided([{k.decode(): v.decode() for k, v in f.items()} for _, f in entries])
