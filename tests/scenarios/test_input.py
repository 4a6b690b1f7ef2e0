"""Input stream: seq order, dead letters with reasons, closing, isolated margin from leverage."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import orjson
import pytest
from structlog.testing import capture_logs

from tests.helpers.harness import Harness, topology_harness
from watcher.demo.redis_server import RedisServer

ETH = "PERP_ETH_USDC"


@pytest.fixture
async def h(redis_server: RedisServer, redis_client, topology):
    async with topology_harness(
        topology[0], redis_server.url, topology[1], {ETH: "3000"}
    ) as harness:
        await harness.tick({ETH: "3000"})
        yield harness


async def account(h: Harness, name: str) -> dict[str, str]:
    raw = await h.redis.hgetall(h.keys(name).account(name))
    return {k.decode(): v.decode() for k, v in raw.items()}


async def positions(h: Harness, name: str) -> dict[str, dict[str, str]]:
    raw = await h.redis.hgetall(h.keys(name).positions(name))
    return {k.decode(): orjson.loads(v) for k, v in raw.items()}


async def test_old_and_equal_seq_are_ignored(h: Harness) -> None:
    await h.send({"type": "balance", "account": "A", "balance": "100", "seq": 5})
    await h.send({"type": "balance", "account": "A", "balance": "999", "seq": 3})
    await h.send({"type": "balance", "account": "A", "balance": "998", "seq": 5})
    await h.drained()
    state = await account(h, "A")
    assert state["balance"] == "100"
    assert state["seq"] == "5"
    await h.send({"type": "balance", "account": "A", "balance": "200", "seq": 2**70})
    await h.drained()
    assert (await account(h, "A"))["seq"] == str(2**70)
    assert await h.dead() == []


INVALID = [
    (b"not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    ({"type": "deposit", "account": "A", "seq": 1}, "type: must be"),
    ({"type": "balance", "account": "A|B", "balance": "1", "seq": 1}, "account:"),
    ({"type": "balance", "account": "A", "balance": "1", "seq": -1}, "seq:"),
    ({"type": "balance", "account": "A", "balance": "1"}, "seq:"),
    ({"type": "balance", "account": "A", "seq": 1}, "balance: missing"),
    ({"type": "balance", "account": "A", "balance": "NaN", "seq": 1}, "balance: not a finite"),
    ({"type": "balance", "account": "A", "balance": "1_000", "seq": 1}, "balance:"),
    (
        {
            "type": "position",
            "account": "A",
            "symbol": "PERP_NOPE_USDC",
            "qty": "1",
            "entry_price": "1",
            "seq": 1,
        },
        "symbol: not a configured market",
    ),
    (
        {
            "type": "position",
            "account": "A",
            "symbol": ETH,
            "margin_mode": "HEDGE",
            "qty": "1",
            "entry_price": "1",
            "seq": 1,
        },
        "margin_mode:",
    ),
    (
        {
            "type": "position",
            "account": "A",
            "symbol": ETH,
            "qty": "1",
            "entry_price": "0",
            "seq": 1,
        },
        "entry_price: must be > 0",
    ),
    (
        {
            "type": "position",
            "account": "A",
            "symbol": ETH,
            "margin_mode": "ISOLATED",
            "qty": "1",
            "entry_price": "3000",
            "margin": "-5",
            "seq": 1,
        },
        "margin: must be >= 0",
    ),
    (
        {
            "type": "position",
            "account": "A",
            "symbol": ETH,
            "margin_mode": "CROSS",
            "qty": "1",
            "entry_price": "3000",
            "margin": "5",
            "seq": 1,
        },
        "only an ISOLATED position",
    ),
    (
        {
            "type": "position",
            "account": "A",
            "symbol": ETH,
            "margin_mode": "ISOLATED",
            "qty": "1",
            "entry_price": "3000",
            "seq": 1,
        },
        "no leverage",
    ),
    (
        {
            "type": "leverage",
            "account": "A",
            "symbol": ETH,
            "margin_mode": "ISOLATED",
            "leverage": "0",
            "seq": 1,
        },
        "leverage: must be in",
    ),
]


async def test_every_invalid_message_is_dead_lettered_with_its_reason(h: Harness) -> None:
    for msg, _ in INVALID:
        raw = msg if isinstance(msg, bytes) else orjson.dumps(msg)
        await h.send_raw(raw)
    await h.send({"type": "balance", "account": "OK", "balance": "1", "seq": 1})
    await h.drained()
    dead = await h.dead()
    assert len(dead) == len(INVALID)
    # Matched by message: over several shards, dead letters land in each shard's stream.
    by_msg = {letter["msg"]: letter for letter in dead}
    for msg, reason in INVALID:
        raw = msg if isinstance(msg, bytes) else orjson.dumps(msg)
        letter = by_msg[raw.decode(errors="replace")]
        assert reason in letter["reason"], (reason, letter)
    # Nothing of them was applied, and the daemon went on with the next message.
    assert await account(h, "A") == {}
    assert (await account(h, "OK"))["balance"] == "1"
    assert not h.daemons[0][2].done()


async def test_qty_zero_closes_and_unindexes(h: Harness) -> None:
    keys = h.keys("A")
    await h.send(
        {"type": "balance", "account": "A", "balance": "1000"},
        {"type": "position", "account": "A", "symbol": ETH, "qty": "1", "entry_price": "3000"},
        {
            "type": "position",
            "account": "A",
            "symbol": ETH,
            "margin_mode": "ISOLATED",
            "qty": "-1",
            "entry_price": "3000",
            "margin": "300",
        },
    )
    await h.drained()
    assert await h.redis.zscore(keys.index(ETH, "down"), "C|A") is not None
    assert await h.redis.zscore(keys.index(ETH, "up"), "I|A") is not None
    await h.send(
        {"type": "position", "account": "A", "symbol": ETH, "qty": "0"},
        {"type": "position", "account": "A", "symbol": ETH, "margin_mode": "ISOLATED", "qty": "0"},
    )
    await h.drained()
    assert await positions(h, "A") == {}
    for direction in ("down", "up"):
        assert await h.redis.zrange(keys.index(ETH, direction), 0, -1) == []
    await h.tick({ETH: "1"})
    assert await h.events() == []


async def test_isolated_margin_from_leverage(h: Harness) -> None:
    await h.send(
        {
            "type": "leverage",
            "account": "L",
            "symbol": ETH,
            "margin_mode": "ISOLATED",
            "leverage": "10",
        },
        {
            "type": "leverage",
            "account": "L",
            "symbol": ETH,
            "margin_mode": "CROSS",
            "leverage": "2",
        },
        {
            "type": "position",
            "account": "L",
            "symbol": ETH,
            "margin_mode": "ISOLATED",
            "qty": "1",
            "entry_price": "3000",
        },
        {
            "type": "position",
            "account": "M",
            "symbol": ETH,
            "margin_mode": "ISOLATED",
            "qty": "-2",
            "entry_price": "3000",
            "leverage": "20",
        },
    )
    await h.drained()
    (pos,) = (await positions(h, "L")).values()
    assert Decimal(pos["margin"]) == 300  # 1 * 3000 / 10, not the CROSS setting
    (pos,) = (await positions(h, "M")).values()
    assert Decimal(pos["margin"]) == 300  # 2 * 3000 / 20
    # And the liquidation happens at example 6's price.
    await h.tick({ETH: "2716.30"})
    assert await h.events() == []
    await h.tick({ETH: "2716.29"})
    (event,) = await h.events()
    assert event["account"] == "L"


async def test_default_margin_mode_is_the_markets(redis_server: RedisServer, redis_client):
    markets = """
[markets.PERP_ETH_USDC]
maintenance = { model = "flat", rate = "0.006" }
default_margin_mode = "ISOLATED"
"""
    async with Harness(redis_server.url, {ETH: "3000"}, markets=markets) as h:
        await h.start()
        await h.send(
            {
                "type": "position",
                "account": "D",
                "symbol": ETH,
                "qty": "1",
                "entry_price": "3000",
                "margin": "300",
            }
        )
        await h.drained()
        assert list(await positions(h, "D")) == ["ISOLATED|PERP_ETH_USDC"]


async def test_liquidating_resolved_by_newer_input(h: Harness) -> None:
    keys = h.keys("R")
    await h.isolated_long("R")
    await h.tick({ETH: "2700"})
    assert len(await h.events()) == 1
    assert await h.redis.zrange(keys.liquidating, 0, -1) == [b"I|R|PERP_ETH_USDC"]
    # Out of the index while LIQUIDATING: further ticks do nothing.
    await h.tick({ETH: "2600"})
    assert len(await h.events()) == 1
    # The executor's fill closes it.
    await h.send(
        {"type": "position", "account": "R", "symbol": ETH, "margin_mode": "ISOLATED", "qty": "0"}
    )
    await h.drained()
    assert await h.redis.zrange(keys.liquidating, 0, -1) == []
    assert await positions(h, "R") == {}


def test_deeply_nested_input_is_an_input_error() -> None:
    from state.errors import InputError
    from state.inputs import parse_input

    with pytest.raises(InputError, match="nested too deeply"):
        parse_input(b"[" * 50_000, {})


async def test_stuck_liquidation_alerts(redis_server: RedisServer, redis_client) -> None:
    extra = "[liquidation]\nstuck_after = 0.3\n"
    async with Harness(redis_server.url, {ETH: "3000"}, extra=extra) as h:
        await h.start()
        await h.tick({ETH: "3000"})
        await h.isolated_long("Z")
        with capture_logs() as logs:
            await h.tick({ETH: "2700"})
            await asyncio.sleep(0.8)
        stuck = [e for e in logs if e["event"] == "liquidation.stuck"]
        assert stuck
        assert stuck[-1]["oldest"] == "I|Z|PERP_ETH_USDC"
        health = orjson.loads(await h.redis.get(h.daemon.store.keys.health))
        assert health["stuck_liquidations"] == 1


async def test_an_unreadable_account_stops_nobody_else(h: Harness) -> None:
    keys = h.keys("BAD")
    for account in ("BAD", "GOOD"):
        await h.isolated_long(account)
    # Someone writes garbage into one account's positions.
    await h.redis.hset(keys.positions("BAD"), "ISOLATED|PERP_ETH_USDC", b"{not json")
    await h.send({"type": "balance", "account": "BAD", "balance": "5"})
    await h.drained()
    (letter,) = await h.dead()
    assert "unreadable" in letter["reason"]
    await h.tick({ETH: "2700"})
    (event,) = await h.events()
    assert event["account"] == "GOOD"
    assert not h.daemons[0][2].done()


async def test_poison_magnitudes_are_dead_lettered_and_stop_nothing(h: Harness) -> None:
    keys = h.keys("BAD")
    for qty, entry in (("1e999999999", "3000"), ("1", "1e500000"), ("1e-30", "3000")):
        for mode in ("ISOLATED", "CROSS"):
            msg = {
                "type": "position",
                "account": "P",
                "symbol": ETH,
                "margin_mode": mode,
                "qty": qty,
                "entry_price": entry,
                "leverage": "10",
            }
            await h.send(msg)
    await h.drained()
    dead = await h.dead()
    assert len(dead) == 6
    assert all("out of range" in d["reason"] for d in dead)
    # Something the math cannot take that got into Redis anyway (by hand, or by an
    # older version): the engine sets that account aside and decides everyone else.
    await h.isolated_long("OK")
    poison = b'{"qty":"1E+999999999","entry_price":"3000","margin":"1","status":"OPEN"}'
    await h.redis.hset(keys.positions("BAD"), "ISOLATED|PERP_ETH_USDC", poison)
    await h.redis.zadd(keys.index(ETH, "down"), {"I|BAD": float("inf")})
    with capture_logs() as logs:
        await h.tick({ETH: "2700"})
    (event,) = await h.events()
    assert event["account"] == "OK"
    assert any(e["event"] == "account.undecidable" for e in logs)
    assert not h.daemons[0][2].done()


def test_input_batch_is_capped() -> None:
    from tests.helpers.harness import settings_for
    from watcher.daemon.config import ConfigError

    with pytest.raises(ConfigError, match=r"daemon\.input_batch"):
        settings_for(
            "redis://127.0.0.1:1/0", "ws://127.0.0.1:1", [ETH], extra="input_batch = 100000"
        )
