"""The demo executor against a real redis-server: closing updates, ack after write, restarts."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest

from state.events import LiquidationEvent
from state.keys import Keys
from state.models import Seq
from watcher.demo.executor import DemoExecutor, remaining_balance

KEYS = Keys("t")

CROSS_POSITIONS = [
    {
        "symbol": "PERP_ETH_USDC",
        "margin_mode": "CROSS",
        "qty": "1.5",
        "entry_price": "3000",
        "mark_price": "2300",
    },
    {
        "symbol": "PERP_BTC_USDC",
        "margin_mode": "CROSS",
        "qty": "-0.1",
        "entry_price": "60000.5",
        "mark_price": "61000",
    },
]
ISOLATED_POSITIONS = [
    {
        "symbol": "PERP_ETH_USDC",
        "margin_mode": "ISOLATED",
        "qty": "-1",
        "entry_price": "3000",
        "margin": "300",
        "mark_price": "3300",
    },
]


def event(kind, account, symbol, positions, *, equity, mm, seq, liq_id=None):
    return {
        "id": liq_id or f"{kind}:{account}:{symbol}:{seq}",
        "kind": kind,
        "account": account,
        "symbol": symbol,
        "positions": json.dumps(positions),
        "mark_price": positions[0]["mark_price"],
        "marks": json.dumps({p["symbol"]: p["mark_price"] for p in positions}),
        "liq_price": "2313.88",
        "equity": equity,
        "maintenance_margin": mm,
        "mark_ts": "1700000000000",
        "detected_ts": "1700000000004",
        "seq": str(seq),
    }


CROSS_EVENT = event(
    "CROSS", "A1", "PERP_ETH_USDC", CROSS_POSITIONS, equity="20.7", mm="40.5", seq=7
)
ISOLATED_EVENT = event(
    "ISOLATED", "A2", "PERP_ETH_USDC", ISOLATED_POSITIONS, equity="-1.25", mm="19.8", seq=3
)

CROSS_CLOSE = [
    {
        "type": "position",
        "account": "A1",
        "symbol": "PERP_ETH_USDC",
        "margin_mode": "CROSS",
        "qty": "0",
        "entry_price": "3000",
        "seq": 8,
    },
    {
        "type": "position",
        "account": "A1",
        "symbol": "PERP_BTC_USDC",
        "margin_mode": "CROSS",
        "qty": "0",
        "entry_price": "60000.5",
        "seq": 9,
    },
    # 20.7 - 40.5 * 0.5
    {"type": "balance", "account": "A1", "balance": "0.45", "seq": 10},
]
ISOLATED_CLOSE = [
    {
        "type": "position",
        "account": "A2",
        "symbol": "PERP_ETH_USDC",
        "margin_mode": "ISOLATED",
        "qty": "0",
        "entry_price": "3000",
        "margin": "0",
        "seq": 4,
    },
]


async def inputs(redis):
    entries = await redis.xrange(KEYS.input)
    assert all(set(fields) == {b"msg"} for _, fields in entries)
    return [json.loads(fields[b"msg"]) for _, fields in entries]


async def pending(redis, group="demo-executor"):
    return (await redis.xpending(KEYS.events, group))["pending"]


async def test_closes_cross_and_isolated_events_and_acks(redis_client) -> None:
    executor = DemoExecutor(redis_client, KEYS)
    await executor.ensure_group()
    await redis_client.xadd(KEYS.events, CROSS_EVENT)
    await redis_client.xadd(KEYS.events, ISOLATED_EVENT)

    assert await executor.step() == 2

    assert await inputs(redis_client) == CROSS_CLOSE + ISOLATED_CLOSE
    assert await pending(redis_client) == 0
    assert await executor.step() == 0
    assert len(await inputs(redis_client)) == 4


async def test_group_created_on_an_absent_stream_sees_earlier_events(redis_client) -> None:
    await redis_client.xadd(KEYS.events, ISOLATED_EVENT)
    executor = DemoExecutor(redis_client, KEYS)
    assert await executor.step() == 1
    # A second executor of the same group finds the group already there.
    assert await DemoExecutor(redis_client, KEYS, consumer="demo-2").step() == 0
    assert await inputs(redis_client) == ISOLATED_CLOSE


class CrashBeforeWrite(DemoExecutor):
    """Dies after reading and deciding, before anything is written or acked."""

    async def _updates(self, event):
        await super()._updates(event)
        raise RuntimeError("simulated crash")


async def test_crash_before_ack_leaves_entry_pending_and_a_new_executor_handles_it(
    redis_client,
) -> None:
    await redis_client.xadd(KEYS.events, CROSS_EVENT)
    with pytest.raises(RuntimeError, match="simulated crash"):
        await CrashBeforeWrite(redis_client, KEYS).step()
    assert await pending(redis_client) == 1
    assert await inputs(redis_client) == []

    restarted = DemoExecutor(redis_client, KEYS)
    assert await restarted.step() == 1
    assert await inputs(redis_client) == CROSS_CLOSE
    assert await pending(redis_client) == 0


async def test_pending_entries_come_before_new_ones(redis_client) -> None:
    first = DemoExecutor(redis_client, KEYS)
    await first.ensure_group()
    await redis_client.xadd(KEYS.events, CROSS_EVENT)
    # Delivered to demo-1 but never acked, as by a process killed mid-way.
    await redis_client.xreadgroup("demo-executor", "demo-1", {KEYS.events: ">"})
    await redis_client.xadd(KEYS.events, ISOLATED_EVENT)

    restarted = DemoExecutor(redis_client, KEYS)
    assert await restarted.step() == 1
    assert await inputs(redis_client) == CROSS_CLOSE
    assert await restarted.step() == 1
    assert await inputs(redis_client) == CROSS_CLOSE + ISOLATED_CLOSE
    assert await pending(redis_client) == 0


async def test_two_events_of_one_account_with_one_seq_get_distinct_seqs(redis_client) -> None:
    same_seq = event(
        "ISOLATED", "A1", "PERP_ETH_USDC", ISOLATED_POSITIONS, equity="1", mm="2", seq=7
    )
    await redis_client.xadd(KEYS.events, CROSS_EVENT)
    await redis_client.xadd(KEYS.events, same_seq)
    assert await DemoExecutor(redis_client, KEYS).step() == 2
    seqs = [m["seq"] for m in await inputs(redis_client)]
    assert seqs == [8, 9, 10, 11]


async def test_bad_event_is_acked_and_writes_nothing(redis_client) -> None:
    await redis_client.xadd(KEYS.events, {**ISOLATED_EVENT, "positions": "not json"})
    await redis_client.xadd(KEYS.events, {**ISOLATED_EVENT, "equity": "NaN"})
    assert await DemoExecutor(redis_client, KEYS).step() == 2
    assert await inputs(redis_client) == []
    assert await pending(redis_client) == 0


async def test_reopens_at_the_current_mark(redis_client) -> None:
    await redis_client.hset(
        KEYS.mark("PERP_ETH_USDC"), mapping={"price": "2290.5", "status": "LIVE"}
    )
    await redis_client.xadd(KEYS.events, CROSS_EVENT)
    await redis_client.xadd(KEYS.events, ISOLATED_EVENT)
    assert await DemoExecutor(redis_client, KEYS, reopen_probability=1.0).step() == 2
    messages = await inputs(redis_client)

    cross = [m for m in messages if m["account"] == "A1"]
    assert cross[:3] == CROSS_CLOSE
    deposit, opened = cross[3:]
    assert deposit["type"] == "balance"
    assert deposit["seq"] == 11
    assert opened["seq"] == 12
    assert opened["margin_mode"] == "CROSS"
    assert opened["symbol"] == "PERP_ETH_USDC"
    assert opened["entry_price"] == "2290.5"
    assert abs(Decimal(opened["qty"])) == Decimal("1.5")
    initial = Decimal(deposit["balance"]) - Decimal("0.45")
    notional = Decimal("1.5") * Decimal("2290.5")
    assert initial in {(notional / lev).quantize(Decimal("0.01")) for lev in range(5, 51)}

    isolated = [m for m in messages if m["account"] == "A2"]
    assert isolated[:1] == ISOLATED_CLOSE
    (reopened,) = isolated[1:]
    assert reopened["seq"] == 5
    assert reopened["margin_mode"] == "ISOLATED"
    assert reopened["entry_price"] == "2290.5"
    assert abs(Decimal(reopened["qty"])) == 1
    lev = int(reopened["leverage"])
    assert 5 <= lev <= 50
    assert Decimal(reopened["margin"]) == (Decimal("2290.5") / lev).quantize(Decimal("0.01"))


async def test_no_reopen_without_a_mark(redis_client) -> None:
    await redis_client.xadd(KEYS.events, ISOLATED_EVENT)
    assert await DemoExecutor(redis_client, KEYS, reopen_probability=1.0).step() == 1
    assert await inputs(redis_client) == ISOLATED_CLOSE


async def test_run_until_stopped(redis_client) -> None:
    stop = asyncio.Event()
    executor = DemoExecutor(redis_client, KEYS)
    task = asyncio.create_task(executor.run(stop, block_ms=20))
    await redis_client.xadd(KEYS.events, ISOLATED_EVENT)
    for _ in range(200):
        if await inputs(redis_client):
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, timeout=2)
    assert await inputs(redis_client) == ISOLATED_CLOSE


def test_parse_and_remaining_balance() -> None:
    parsed = LiquidationEvent.from_fields({k.encode(): v.encode() for k, v in CROSS_EVENT.items()})
    assert parsed.account == "A1"
    assert parsed.seq == Seq.of(7)
    assert [leg.qty for leg in parsed.positions] == [Decimal("1.5"), Decimal("-0.1")]
    assert remaining_balance(parsed, Decimal("0.5")) == Decimal("0.45")
    assert remaining_balance(parsed, Decimal(1)) == 0
