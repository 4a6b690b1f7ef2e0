"""The daemon end to end: Orderly frames in, exact decisions, events out."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from tests.helpers.harness import Harness, topology_harness
from watcher.demo.redis_server import RedisServer

ETH = "PERP_ETH_USDC"
BTC = "PERP_BTC_USDC"
SOL = "PERP_SOL_USDC"


@pytest.fixture
async def h(redis_server: RedisServer, redis_client, topology):
    prices = {ETH: "3000", BTC: "60000", SOL: "150"}
    async with topology_harness(*topology[:1], redis_server.url, topology[1], prices) as harness:
        await harness.tick({ETH: "3000", BTC: "60000", SOL: "150"})
        yield harness


async def example_7(h: Harness) -> None:
    await h.send(
        {"type": "balance", "account": "A", "balance": "700"},
        {
            "type": "position",
            "account": "A",
            "symbol": ETH,
            "margin_mode": "CROSS",
            "qty": "1",
            "entry_price": "3000",
        },
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


async def test_example_7_cross_at_2300(h: Harness) -> None:
    await example_7(h)
    await h.tick({ETH: "2300"})
    (event,) = await h.events()
    assert event["kind"] == "CROSS"
    assert event["account"] == "A"
    positions = orjson.loads(event["positions"])
    assert [(p["symbol"], p["margin_mode"], p["qty"]) for p in positions] == [(ETH, "CROSS", "1")]
    assert cents(event["liq_price"]) == Decimal("2313.88")
    assert Decimal(event["mark_price"]) == 2300
    assert set(event) == {
        "id",
        "kind",
        "account",
        "symbol",
        "positions",
        "mark_price",
        "marks",
        "liq_price",
        "equity",
        "maintenance_margin",
        "mark_ts",
        "detected_ts",
        "seq",
        # Optional fields (after the original 13): a cross event's balance.
        "balance",
    }
    # The isolated short is untouched and still watched.
    assert await h.redis.zscore(h.keys("A").index(ETH, "up"), "I|A") is not None


async def test_example_7_isolated_at_3300(h: Harness) -> None:
    await example_7(h)
    await h.tick({ETH: "3300"})
    (event,) = await h.events()
    assert event["kind"] == "ISOLATED"
    assert event["symbol"] == ETH
    (position,) = orjson.loads(event["positions"])
    assert position["margin_mode"] == "ISOLATED"
    assert position["qty"] == "-1"
    assert cents(event["liq_price"]) == Decimal("3280.32")
    # The cross account is untouched and still watched.
    assert await h.redis.zscore(h.keys("A").index(ETH, "down"), "C|A") is not None


async def test_three_legs_profit_offsets_loss_then_one_event(h: Harness) -> None:
    await h.send(
        {"type": "balance", "account": "B", "balance": "2000"},
        {"type": "position", "account": "B", "symbol": ETH, "qty": "10", "entry_price": "3000"},
        {"type": "position", "account": "B", "symbol": BTC, "qty": "-0.5", "entry_price": "60000"},
        {"type": "position", "account": "B", "symbol": SOL, "qty": "100", "entry_price": "150"},
        {
            "type": "position",
            "account": "B",
            "symbol": SOL,
            "margin_mode": "ISOLATED",
            "qty": "-10",
            "entry_price": "150",
            "margin": "500",
        },
    )
    await h.drained()
    # ETH alone would wipe the account (-5,000), but the BTC short gains 6,000.
    await h.tick({ETH: "2500", BTC: "48000"})
    assert await h.events() == []
    # BTC comes back: the ETH loss is no longer covered.
    await h.tick({BTC: "59000"})
    (event,) = await h.events()
    assert event["kind"] == "CROSS"
    legs = sorted((p["symbol"], p["margin_mode"]) for p in orjson.loads(event["positions"]))
    assert legs == [(BTC, "CROSS"), (ETH, "CROSS"), (SOL, "CROSS")]
    assert set(orjson.loads(event["marks"])) == {ETH, BTC, SOL}


BOUNDARIES = [
    # (mode, qty, liquidation price to the cent, the cent on the safe side, the cent past)
    # long: exactly 2716.2977..., short: exactly 3280.3180...
    ("ISOLATED", "1", "2716.30", "2716.30", "2716.29"),
    ("ISOLATED", "-1", "3280.32", "3280.31", "3280.32"),
    ("CROSS", "1", "2716.30", "2716.30", "2716.29"),
    ("CROSS", "-1", "3280.32", "3280.31", "3280.32"),
]


def cents(text: str) -> Decimal:
    return Decimal(text).quantize(Decimal("0.01"))


@pytest.mark.parametrize(("mode", "qty", "liq", "safe", "past"), BOUNDARIES)
async def test_boundaries_one_cent(h: Harness, mode, qty, liq, safe, past) -> None:
    """One cent on the safe side: nothing; one cent past: exactly one event."""
    # 1 ETH at 3,000 with 300 of margin (isolated) or 300 of balance (cross).
    msgs = [
        {
            "type": "position",
            "account": "E",
            "symbol": ETH,
            "margin_mode": mode,
            "qty": qty,
            "entry_price": "3000",
        }
    ]
    if mode == "ISOLATED":
        msgs[0]["margin"] = "300"
    else:
        msgs.insert(0, {"type": "balance", "account": "E", "balance": "300"})
    await h.send(*msgs)
    await h.drained()
    await h.tick({ETH: safe})
    assert await h.events() == []
    await h.tick({ETH: past})
    events = await h.events()
    assert len(events) == 1
    assert events[0]["kind"] == mode
    assert cents(events[0]["liq_price"]) == Decimal(liq)
