"""/metrics and /ready scraped over HTTP from a running daemon: each figure moves when it should."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.harness import Harness
from watcher.daemon.metrics import METRICS
from watcher.demo.redis_server import RedisServer, free_port

ETH = "PERP_ETH_USDC"
BTC = "PERP_BTC_USDC"


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as reply,
    ):
        assert reply.status == 200
        text = await reply.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def ready(port: int) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/ready") as reply,
    ):
        return reply.status, await reply.json()


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
async def h(redis_server: RedisServer, redis_client):
    port = free_port()
    extra = f'[metrics]\nlisten = "127.0.0.1:{port}"\n[warnings]\nlevel = "1.5"\ninterval = 0.02\n'
    async with Harness(
        redis_server.url, {ETH: "3000", BTC: "60000"}, extra=extra, stale_after=0.6
    ) as harness:
        harness.port = port  # type: ignore[attr-defined]
        await harness.start()
        yield harness


async def _beat(h: Harness) -> None:
    await h.daemon.beat()


async def test_every_metric_is_served_and_moves(h: Harness) -> None:
    port = h.port  # type: ignore[attr-defined]
    await h.tick({ETH: "3000", BTC: "60000"})
    await _beat(h)
    before = await scrape(port)
    names = {name for name, _ in before}
    for name, (kind, _) in METRICS.items():
        wanted = f"{name}_count" if kind == "histogram" else name
        if name in (
            "liqwatch_liquidations_total",
            "liqwatch_in_warning",
            "liqwatch_warnings_total",
            "liqwatch_mark_refusals_total",
            "liqwatch_engine_candidates_total",
        ):
            continue  # labelled by what happened: none yet
        assert wanted in names, name
    assert value(before, "liqwatch_up") == 1
    assert value(before, "liqwatch_mark_live", symbol=ETH) == 1
    assert value(before, "liqwatch_redis_degraded") == 0
    assert value(before, "liqwatch_leases_held") == 1

    await h.isolated_long("M")  # input applied
    await h.send({"type": "balance", "account": "M", "balance": "1", "seq": 1})  # a duplicate
    await h.drained()
    await h.tick({ETH: "2720", BTC: "60000"})  # M in warning: below 1.5 x maintenance
    async with asyncio.timeout(10):
        while not await h.redis.xlen(h.keys().warnings):
            await asyncio.sleep(0.02)
    await _beat(h)
    warned = await scrape(port)
    assert value(warned, "liqwatch_in_warning", kind="isolated") == 1
    assert value(warned, "liqwatch_in_warning", kind="cross") == 0
    assert value(warned, "liqwatch_warnings_total", kind="ISOLATED") == 1
    await h.tick({ETH: "2700", BTC: "60000"})  # liquidates M
    await _beat(h)
    after = await scrape(port)

    def grew(name: str, **labels: str) -> bool:
        return value(after, name, **labels) > value(before, name, **labels)

    assert grew("liqwatch_engine_ticks_total")
    assert grew("liqwatch_marks_total")
    assert grew("liqwatch_feed_frames_total", feed="orderly-0")
    assert grew("liqwatch_input_applied_total")
    assert grew("liqwatch_input_duplicates_total")
    assert grew("liqwatch_engine_candidates_total", kind="ISOLATED")
    assert value(after, "liqwatch_liquidations_total", kind="ISOLATED", symbol=ETH) == 1
    assert grew("liqwatch_tick_to_commit_seconds_count")
    assert grew("liqwatch_redis_round_trips_total", call="tick")
    assert value(after, "liqwatch_liquidations_in_flight") == 1
    assert value(after, "liqwatch_heartbeat_timestamp_seconds") > 0

    await h.send({"type": "bogus", "account": "M", "seq": 9})
    await h.drained()
    await _beat(h)
    assert value(await scrape(port), "liqwatch_input_dead_letters_total") == 1


async def test_ready_only_while_every_symbol_is_live(h: Harness) -> None:
    port = h.port  # type: ignore[attr-defined]
    await h.tick({ETH: "3000", BTC: "60000"})
    await _beat(h)
    status, body = await ready(port)
    assert (status, body["ready"]) == (200, True), body
    # BTC falls silent: STALE after 0.6 s.
    await h.tick({ETH: "3000"})
    await asyncio.sleep(0.8)
    await h.tick({ETH: "3001"})
    status, body = await ready(port)
    assert status == 503
    assert any(f"STALE: {BTC}" in r for r in body["reasons"]), body
    samples = await scrape(port)
    assert value(samples, "liqwatch_mark_live", symbol=BTC) == 0
    assert value(samples, "liqwatch_mark_live", symbol=ETH) == 1
    await h.tick({ETH: "3001", BTC: "60000"})
    status, body = await ready(port)
    assert status == 200, body


async def test_a_taken_metrics_port_does_not_stop_the_daemon(redis_server, redis_client) -> None:
    """Liquidations go on; the listener error is one log line; the port is tried again."""
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    extra = f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
    try:
        async with Harness(redis_server.url, {ETH: "3000", BTC: "60000"}, extra=extra) as h:
            await h.start()
            await h.tick({ETH: "3000", BTC: "60000"})
            await h.isolated_long("M")
            await h.tick({ETH: "2700", BTC: "60000"})
            assert len(await h.events()) == 1
            assert not h.daemons[0][2].done()
    finally:
        taken.close()
