"""Marks exactly on liquidation prices, through the whole daemon: the decision is the Decimal rule.

Positions are chosen so that their liquidation price is a terminating decimal
a mark can be equal to: health is exactly zero there. A mark on the price
liquidates only with ``at_equality``; one tick past it always; one tick
short never. Long and short, isolated and cross, both equality rules, and a
two-leg cross account whose health is zero at a mark vector.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from state import margin
from state.models import FlatModel, MarginMode, Position
from tests.helpers.harness import topology_harness

ETH = "PERP_ETH_USDC"
BTC = "PERP_BTC_USDC"
D = Decimal
MARKETS = """
[markets.PERP_ETH_USDC]
maintenance = { model = "flat", rate = "0.01" }
[markets.PERP_BTC_USDC]
maintenance = { model = "flat", rate = "0.02" }
"""
RATE = D("0.01")
TICK = D("0.01")
# (name, mode, qty, collateral, price where health is exactly 0)
# long:  collateral + (p - 3000) - 0.01 p = 0  at p = 2970  => collateral 59.7
# short: collateral - (p - 3000) - 0.01 p = 0  at p = 3030  => collateral 60.3
CASES = [
    ("isolated-long", MarginMode.ISOLATED, D(1), D("59.7"), D(2970)),
    ("isolated-short", MarginMode.ISOLATED, D(-1), D("60.3"), D(3030)),
    ("cross-long", MarginMode.CROSS, D(1), D("59.7"), D(2970)),
    ("cross-short", MarginMode.CROSS, D(-1), D("60.3"), D(3030)),
]


def health(mode: MarginMode, qty: Decimal, collateral: Decimal, mark: Decimal) -> Decimal:
    """The rule, in Decimal, independently of the daemon's planner."""
    model = FlatModel(RATE)
    if mode is MarginMode.ISOLATED:
        p = Position("X", ETH, mode, qty, D(3000), collateral)
        return margin.isolated_health(p, mark, model)
    leg = Position("X", ETH, mode, qty, D(3000))
    return margin.evaluate_cross(collateral, [leg], {ETH: model}, {ETH: mark}).health


def messages(account: str, mode: MarginMode, qty: Decimal, collateral: Decimal) -> list[dict]:
    position: dict[str, object] = {
        "type": "position",
        "account": account,
        "symbol": ETH,
        "margin_mode": mode.value,
        "qty": str(qty),
        "entry_price": "3000",
    }
    if mode is MarginMode.ISOLATED:
        return [{**position, "margin": str(collateral)}]
    return [{"type": "balance", "account": account, "balance": str(collateral)}, position]


@pytest.mark.parametrize("at_equality", [False, True], ids=["strict", "at-equality"])
@pytest.mark.parametrize(
    ("name", "mode", "qty", "collateral", "root"), CASES, ids=[c[0] for c in CASES]
)
async def test_a_mark_on_the_price_liquidates_only_at_equality(
    redis_server, redis_client, topology, at_equality, name, mode, qty, collateral, root
) -> None:
    """Short of, on, and past the price: each decision is the Decimal rule's."""
    assert health(mode, qty, collateral, root) == 0
    extra = f"[liquidation]\nat_equality = {'true' if at_equality else 'false'}\n"
    away = TICK if qty > 0 else -TICK  # toward safety
    async with topology_harness(
        topology[0], redis_server.url, topology[1], {ETH: "3000"}, markets=MARKETS, extra=extra
    ) as h:
        await h.tick({ETH: "3000"})
        await h.send(*messages("X", mode, qty, collateral))
        await h.drained()
        for mark in (root + away, root, root - away):
            await h.tick({ETH: str(mark)})
            expected = margin.is_liquidatable(
                health(mode, qty, collateral, mark), at_equality=at_equality
            )
            events = await h.events()
            assert bool(events) == expected, (name, str(mark), at_equality)
            if events:
                (event,) = events
                assert D(event["mark_price"]) == mark
                break


@pytest.mark.parametrize("at_equality", [False, True], ids=["strict", "at-equality"])
async def test_a_two_leg_cross_account_at_zero_health(
    redis_server, redis_client, topology, at_equality
):
    """Long ETH, short BTC: health exactly 0 at (2900, 61000); the rule decides it."""
    # balance + (2900 - 3000) - (61000 - 60000) * 0.1 ... with maintenance 0.01*2900 + 0.02*6100
    legs = [
        Position("Y", ETH, MarginMode.CROSS, D(1), D(3000)),
        Position("Y", BTC, MarginMode.CROSS, D("-0.1"), D(60000)),
    ]
    models = {ETH: FlatModel(RATE), BTC: FlatModel(D("0.02"))}
    at = {ETH: D(2900), BTC: D(61000)}
    balance = -margin.evaluate_cross(D(0), legs, models, at).health
    assert margin.evaluate_cross(balance, legs, models, at).health == 0
    extra = f"[liquidation]\nat_equality = {'true' if at_equality else 'false'}\n"
    async with topology_harness(
        topology[0],
        redis_server.url,
        topology[1],
        {ETH: "3000", BTC: "60000"},
        markets=MARKETS,
        extra=extra,
    ) as h:
        await h.tick({ETH: "3000", BTC: "60000"})
        await h.send(
            {"type": "balance", "account": "Y", "balance": str(balance)},
            *(
                {
                    "type": "position",
                    "account": "Y",
                    "symbol": leg.symbol,
                    "margin_mode": "CROSS",
                    "qty": str(leg.qty),
                    "entry_price": str(leg.entry_price),
                }
                for leg in legs
            ),
        )
        await h.drained()
        await h.tick({ETH: "2900.01", BTC: "61000"})
        assert await h.events() == []
        await h.tick({ETH: "2900", BTC: "61000"})
        events = await h.events()
        assert bool(events) == at_equality
        if not at_equality:
            await h.tick({ETH: "2899.99", BTC: "61000"})
            (event,) = await h.events()
            assert event["kind"] == "CROSS"
