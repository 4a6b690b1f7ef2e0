"""Orderly's partial liquidation (state/partial.py, docs/margin.md "Partial liquidation").

Three kinds of checks: the numbers of Orderly's liquidation documentation
(tiers, fees, minimum takeover, its liquidator example, the fee split);
hand-computed cases as a table; and the property that matters, that after
transferring the computed quantity (its fee paid) the account's margin
ratio equals its initial margin ratio, to the cent.
"""

from __future__ import annotations

import random
from decimal import ROUND_UP, Decimal

import pytest

from state import partial
from state.account import AccountState, StoredPosition
from state.decisions import decide_cross, decide_isolated
from state.errors import MarginError
from state.keys import Keys
from state.models import MarginMode, Market, OrderlyModel, PartialRule, Position, Tier
from state.rules import Rules

D = Decimal
CENT = D("0.01")
# An orderly model that stays at its base rates (a tiny imr_factor), 10% / 5%,
# so that the hand computations are one division.
FLATISH = OrderlyModel(D("0.1"), D("0.05"), D("1e-10"))
BTC_MODEL = OrderlyModel(D("0.01"), D("0.006"), D("0.000000091"))
LOW = PartialRule(Tier.LOW, D(10_000), D("0.012"), D("0.006"))
HIGH = PartialRule(Tier.HIGH, D(5_000), D("0.012"), D("0.006"))


def cross(symbol: str, qty: str, entry: str) -> Position:
    return Position("A", symbol, MarginMode.CROSS, D(qty), D(entry))


def markets(**rules: PartialRule) -> dict[str, Market]:
    return {s: Market(s, FLATISH, partial=r) for s, r in rules.items()}


def after(plan: partial.PartialPlan, legs: list[partial.Leg], group: int = 0) -> partial.After:
    return partial.after_transfer(plan.equity, legs, plan.groups[group])


# --- Orderly's documented numbers -------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "tier", "fee", "liquidator", "minimum"),
    [
        ("PERP_BTC_USDC", Tier.LOW, "0.006", "0.003", 10_000),
        ("PERP_ETH_USDC", Tier.LOW, "0.006", "0.003", 10_000),
        ("PERP_SOL_USDC", Tier.HIGH, "0.006", "0.003", 5_000),
        ("PERP_DOGE_USDC", Tier.HIGH, "0.012", "0.006", 5_000),
        ("PERP_NEAR_USDC", Tier.HIGH, "0.012", "0.006", 5_000),
        ("BTCUSDT", Tier.LOW, "0.006", "0.003", 10_000),
        ("ETH-USD-SWAP", Tier.LOW, "0.006", "0.003", 10_000),
    ],
)
def test_orderly_defaults_are_its_documented_tiers_fees_and_minimums(
    symbol: str, tier: Tier, fee: str, liquidator: str, minimum: int
) -> None:
    """Low tier BTC and ETH; fees 0.6%/0.3% for BTC, ETH, SOL, 1.2%/0.6% else; 10k/5k minimum."""
    assert partial.default_rule(symbol) == PartialRule(tier, D(minimum), D(fee), D(liquidator))


def test_the_documented_liquidator_example() -> None:
    """Orderly's liquidator push: 12.6 NEAR at 1.5918 is 20.05668 transferred; 1.75% is 0.350992.

    (The example dates from the fee table where "Others" paid a 1.75% liquidator
    fee; a position far below the minimum takeover is transferred whole.)
    """
    rule = PartialRule(Tier.HIGH, D(5_000), D("0.035"), D("0.0175"))
    near = Market("PERP_NEAR_USDC", FLATISH, partial=rule)
    position = Position("A", "PERP_NEAR_USDC", MarginMode.ISOLATED, D("12.6"), D("1.7"), D("2.2"))
    plan = partial.plan_isolated(position, near, D("1.5918"))
    assert plan is not None
    (group,) = plan.groups
    leg = group.legs[0]
    assert (group.rule, leg.qty) == (partial.BELOW_MINIMUM, D("12.6"))
    assert leg.notional == D("20.05668")
    assert leg.liquidator_fee.quantize(D("0.000001")) == D("0.350992")
    assert leg.liquidation_fee == D("20.05668") * D("0.035")


def test_low_tier_fees_add_up_over_its_symbols() -> None:
    """Low tier: fee = sum(fee_i * |notional_i|), liquidator fee likewise, over the group."""
    btc = PartialRule(Tier.LOW, D(0), D("0.006"), D("0.003"))
    eth = PartialRule(Tier.LOW, D(0), D("0.008"), D("0.004"))
    mk = {"BTC": Market("BTC", FLATISH, partial=btc), "ETH": Market("ETH", FLATISH, partial=eth)}
    legs = [cross("BTC", "1", "100000"), cross("ETH", "-10", "2000")]
    marks = {"BTC": D(95_000), "ETH": D(2_500)}
    plan = partial.plan_cross(D(1_000), legs, mk, marks)
    assert plan is not None
    (group,) = plan.groups
    assert group.rule == partial.INSUFFICIENT
    assert group.notional == D(95_000) + D(25_000)
    assert group.liquidation_fee == D(95_000) * D("0.006") + D(25_000) * D("0.008")
    assert group.liquidator_fee == D(95_000) * D("0.003") + D(25_000) * D("0.004")


@pytest.mark.parametrize(
    ("equity", "to_liquidator", "to_fund", "takeover"),
    [
        # Plenty of margin: the fee is split in half between the liquidator and the fund.
        ("1000", "60", "60", False),
        # Between the liquidator's fee and the whole fee: the liquidator gets its half,
        # the fund what is left of the margin.
        ("100", "60", "40", False),
        # Not even the liquidator's fee: the fund takes the account over and pays it.
        ("25", "60", "-35", True),
    ],
)
def test_the_fee_is_split_as_documented(
    equity: str, to_liquidator: str, to_fund: str, takeover: bool
) -> None:
    split = partial.fee_split(D(equity), D(120), D(60))
    assert split == partial.FeeSplit(D(to_liquidator), D(to_fund), takeover)


# --- hand-computed cases -------------------------------------------------------------


def _up(value: Decimal) -> Decimal:
    return value.quantize(partial.QTY_QUANTUM, rounding=ROUND_UP).normalize()


CASES = [
    pytest.param(
        # One leg: long 100 @ 1,000 at 950 on balance 9,000: equity 4,000, notional
        # 95,000, IM 9,500 (10%), fee 1.2%: x = (9,500 - 4,000) / (9,500 - 1,140).
        {"X": HIGH},
        D(9_000),
        [cross("X", "100", "1000")],
        {"X": D(950)},
        [(Tier.HIGH, partial.RATIO, {"X": _up(D(100) * D(5_500) / D(8_360))})],
        [(D("62500.00"), D("750.00"), D("375.00"), D("3250.00"))],
        id="one-leg",
    ),
    pytest.param(
        # A low-tier pair, reduced together: equity 15,000 - 5,000 - 5,000 = 5,000,
        # notional 120,000, IM 12,000, fee 1,440: x = 7,000 / 10,560.
        {"BTC": LOW, "ETH": LOW},
        D(15_000),
        [cross("BTC", "1", "100000"), cross("ETH", "10", "3000")],
        {"BTC": D(95_000), "ETH": D(2_500)},
        [
            (
                Tier.LOW,
                partial.RATIO,
                {"BTC": _up(D(7_000) / D(10_560)), "ETH": _up(D(70_000) / D(10_560))},
            )
        ],
        [(D("79545.45"), D("954.55"), D("477.27"), D("4045.45"))],
        id="low-tier-pair",
    ),
    pytest.param(
        # A high-tier symbol next to a low-tier leg: ALT alone (IM of BTC 1,000 stays):
        # equity 57,000 - 50,000 = 7,000, x = (16,000 - 7,000) / (15,000 - 1,800);
        # BTC alone cannot bring it back (7,000 - 60 < 15,000): whole.
        {"BTC": LOW, "ALT": HIGH},
        D(57_000),
        [cross("ALT", "1000", "200"), cross("BTC", "0.1", "100000")],
        {"ALT": D(150), "BTC": D(100_000)},
        [
            (Tier.LOW, partial.INSUFFICIENT, {"BTC": D("0.1")}),
            (Tier.HIGH, partial.RATIO, {"ALT": _up(D(1_000) * D(9_000) / D(13_200))}),
        ],
        [None, (D("102272.73"), D("1227.27"), D("613.64"), D("5772.73"))],
        id="high-tier-symbol",
    ),
    pytest.param(
        # 3,000 of notional, below the 5,000 minimum takeover: the whole position.
        {"X": HIGH},
        D(1_140),
        [cross("X", "20", "200")],
        {"X": D(150)},
        [(Tier.HIGH, partial.BELOW_MINIMUM, {"X": D(20)})],
        [None],
        id="below-minimum",
    ),
    pytest.param(
        # 6,000 of notional; the ratio needs 3,977 of it, under the 5,000 minimum:
        # 5,000 is transferred (50 of 60), leaving the ratio above the IMR.
        {"X": HIGH},
        D(850),
        [cross("X", "60", "110")],
        {"X": D(100)},
        [(Tier.HIGH, partial.MINIMUM, {"X": D(50)})],
        [None],
        id="raised-to-minimum",
    ),
]


@pytest.mark.parametrize(("rules", "balance", "legs", "marks", "groups", "figures"), CASES)
def test_hand_computed_transfers(rules, balance, legs, marks, groups, figures) -> None:
    """Each case: the groups, their rule and quantities; where the ratio rules, the
    transferred notional, fee, liquidator fee and the equity left (= its initial margin),
    to the cent."""
    mk = markets(**rules)
    plan = partial.plan_cross(balance, legs, mk, marks)
    assert plan is not None
    got = [(g.tier, g.rule, g.qty) for g in plan.groups]
    assert got == groups
    built = partial.legs_of(legs, mk, marks)
    assert built is not None
    for i, expected in enumerate(figures):
        if expected is None:
            continue
        g = plan.groups[i]
        a = partial.after_transfer(plan.equity, built, g)
        notional, fee, liquidator, left = expected
        assert (g.notional.quantize(CENT), g.liquidation_fee.quantize(CENT)) == (notional, fee)
        assert g.liquidator_fee.quantize(CENT) == liquidator
        assert a.equity.quantize(CENT) == left
        assert a.initial_margin.quantize(CENT) == left
        assert 0 <= a.equity - a.initial_margin < CENT


def test_a_position_raised_to_the_minimum_ends_above_its_imr() -> None:
    mk = markets(X=HIGH)
    legs = [cross("X", "60", "110")]
    plan = partial.plan_cross(D(850), legs, mk, {"X": D(100)})
    assert plan is not None
    built = partial.legs_of(legs, mk, {"X": D(100)})
    assert built is not None
    a = after(plan, built)
    assert plan.groups[0].notional == D(5_000)
    assert a.equity == D(250) - D(60)
    assert a.margin_ratio is not None
    assert a.initial_margin_ratio is not None
    assert a.margin_ratio > a.initial_margin_ratio


def test_large_positions_past_the_dynamic_threshold_are_solved_to_the_cent() -> None:
    """Orderly's BTC parameters at 5.4M of notional: the IMR is dynamic, the root bisected."""
    market = Market("PERP_BTC_USDC", BTC_MODEL, partial=partial.default_rule("PERP_BTC_USDC"))
    legs = [cross("PERP_BTC_USDC", "60", "100000")]
    marks = {"PERP_BTC_USDC": D(90_000)}
    plan = partial.plan_cross(D(650_000), legs, {market.symbol: market}, marks)
    assert plan is not None
    (group,) = plan.groups
    assert group.rule == partial.RATIO
    assert partial.initial_margin_rate(BTC_MODEL, D(5_400_000)) > BTC_MODEL.base_imr
    built = partial.legs_of(legs, {market.symbol: market}, marks)
    assert built is not None
    a = partial.after_transfer(plan.equity, built, group)
    assert 0 <= a.equity - a.initial_margin < CENT
    assert a.margin_ratio is not None
    assert a.initial_margin_ratio is not None
    assert a.margin_ratio.quantize(D("1e-8")) == a.initial_margin_ratio.quantize(D("1e-8"))


def test_isolated_position_is_its_own_account() -> None:
    market = Market("X", FLATISH, partial=HIGH)
    position = Position("A", "X", MarginMode.ISOLATED, D("-100"), D("1000"), D("9000"))
    # Short at 1,090: equity 9,000 - 9,000 = 0... move it a little less: 1,050.
    plan = partial.plan_isolated(position, market, D(1_050))
    assert plan is not None
    assert plan.equity == D(9_000) - D(5_000)
    (group,) = plan.groups
    assert group.rule == partial.RATIO
    assert group.legs[0].qty < 0
    built = partial.legs_of([position], {"X": market}, {"X": D(1_050)})
    assert built is not None
    a = partial.after_transfer(plan.equity, built, group)
    assert 0 <= a.equity - a.initial_margin < CENT


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_after_the_transfer_the_margin_ratio_is_the_imr_to_the_cent(seed: int) -> None:
    """Random orderly accounts just under maintenance: every group set by the ratio lands
    on the initial margin to the cent (and never below it); the others go whole or more."""
    rng = random.Random(seed)
    checked = 0
    for _ in range(150):
        names = rng.sample(["BTC", "ETH", "SOL", "DOGE", "ALT"], rng.randint(1, 4))
        mk = {}
        legs, marks = [], {}
        for name in names:
            model = rng.choice([FLATISH, BTC_MODEL, OrderlyModel(D("0.05"), D("0.025"), D("2e-6"))])
            fee = D(rng.choice(["0.002", "0.006", "0.012"]))
            rule = PartialRule(
                Tier.LOW if name in ("BTC", "ETH") else Tier.HIGH, D(0), fee, fee / 2
            )
            mk[name] = Market(name, model, partial=rule)
            mark = D(rng.choice(["95000", "2500", "150", "0.33", "12.5"]))
            notional = D(rng.randint(1_000, 8_000_000))
            qty = (notional / mark).quantize(D("0.0001")) * rng.choice((1, -1))
            legs.append(cross(name, str(qty), str(mark)))
            marks[name] = mark
        built = partial.legs_of(legs, mk, marks)
        assert built is not None
        mm = sum((partial.margin.maintenance(leg.model, leg.notional) for leg in built), D(0))
        equity = mm * D(rng.uniform(0.3, 0.99)).quantize(D("0.0001"))
        plan = partial.plan(equity, built)
        for group in plan.groups:
            a = partial.after_transfer(plan.equity, built, group)
            if group.rule == partial.RATIO:
                assert 0 <= a.equity - a.initial_margin < CENT, (seed, legs, group)
                checked += 1
            elif group.rule == partial.INSUFFICIENT:
                whole = {p.symbol: p.position.qty for p in built}
                assert all(leg.qty == whole[leg.symbol] for leg in group.legs)
    assert checked > 20


def test_no_plan_without_a_rule_on_every_leg() -> None:
    from state.models import FlatModel

    mk = {"X": Market("X", FLATISH, partial=HIGH), "F": Market("F", FlatModel(D("0.01")))}
    legs = [cross("X", "1", "100"), cross("F", "1", "100")]
    assert partial.plan_cross(D(1), legs, mk, {"X": D(90), "F": D(90)}) is None
    assert partial.plan_cross(D(1), legs[:1], {"X": Market("X", FLATISH)}, {"X": D(90)}) is None


def test_a_partial_rule_needs_the_orderly_model() -> None:
    from state.models import FlatModel

    with pytest.raises(MarginError, match="orderly"):
        Market("F", FlatModel(D("0.01")), partial=HIGH)
    with pytest.raises(MarginError, match="liquidator_fee"):
        PartialRule(Tier.HIGH, D(0), D("0.01"), D("0.02"))


# --- in the events -------------------------------------------------------------------


def test_decisions_put_the_transfer_and_the_balance_in_the_event() -> None:
    mk = markets(BTC=LOW, ETH=LOW)
    rules = Rules(Keys("t"), mk)
    legs = [cross("BTC", "1", "100000"), cross("ETH", "10", "3000")]
    state = AccountState(
        "A",
        D(15_000),
        None,
        3,
        AccountState.empty("A").status,
        {(MarginMode.CROSS, p.symbol): StoredPosition(p) for p in legs},
        {},
    )
    marks = {"BTC": D(95_000), "ETH": D(2_500)}
    _, event = decide_cross(rules, state, "BTC", marks, 1, 2)
    assert event is not None
    assert event.balance == D(15_000)
    assert event.transfer is not None
    assert {s: t.qty for s, t in event.transfer.items()} == {
        "BTC": _up(D(7_000) / D(10_560)),
        "ETH": _up(D(70_000) / D(10_560)),
    }
    assert {t.tier for t in event.transfer.values()} == {"low"}
    fields = event.to_fields()
    assert list(fields)[13:] == [
        "balance",
        "tier",
        "transfer_qty",
        "liquidation_fee",
        "liquidator_fee",
    ]
    iso = Position("A", "BTC", MarginMode.ISOLATED, D("1"), D("100000"), D("9000"))
    state = AccountState(
        "A", D(0), None, 1, state.status, {(MarginMode.ISOLATED, "BTC"): StoredPosition(iso)}, {}
    )
    _, event = decide_isolated(rules, state, "BTC", [D(94_000)], 1, 2)
    assert event is not None
    assert event.transfer is not None
    assert event.balance is None
    assert event.transfer["BTC"].tier == "low"
