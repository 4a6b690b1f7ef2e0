"""Every worked example of docs/margin.md, to the cent."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import pytest

from state import margin
from state.models import (
    BracketsModel,
    FlatModel,
    MaintenanceModel,
    MarginMode,
    OrderlyModel,
    Position,
)

D = Decimal
CENT = D("0.01")
BTC = OrderlyModel(D("0.01"), D("0.006"), D("0.000000091"))


def cents(x: Decimal | None) -> Decimal | None:
    return None if x is None else x.quantize(CENT, rounding=ROUND_HALF_EVEN)


def cross(qty: str, entry: str, symbol: str = "X") -> Position:
    return Position("A", symbol, MarginMode.CROSS, D(qty), D(entry))


def isolated(qty: str, entry: str, margin_: str, symbol: str = "X") -> Position:
    return Position("A", symbol, MarginMode.ISOLATED, D(qty), D(entry), D(margin_))


CROSS_CASES: list[tuple[str, str, Position, MaintenanceModel, str, str | None]] = [
    # (example, balance, leg, model, mark, expected liq)
    ("1 Binance cross", "500", cross("0.02", "50000"), FlatModel(D("0.004")), "50000", "25100.40"),
    ("3 Orderly cross long", "1000", cross("0.1", "60000"), BTC, "60000", "50301.81"),
    ("4 Orderly cross short", "1000", cross("-0.1", "60000"), BTC, "60000", "69582.50"),
    ("5 never liquidatable", "10000", cross("0.1", "60000"), FlatModel(D("0.006")), "60000", None),
    ("7 cross long", "700", cross("1", "3000"), FlatModel(D("0.006")), "3000", "2313.88"),
]

ISOLATED_CASES: list[tuple[str, Position, MaintenanceModel, str]] = [
    ("2 dYdX isolated short", isolated("-3", "3000", "1000"), FlatModel(D("0.05")), "3174.60"),
    ("6 Orderly isolated long 10x", isolated("1", "3000", "300"), FlatModel(D("0.006")), "2716.30"),
    ("7 isolated short", isolated("-1", "3000", "300"), FlatModel(D("0.006")), "3280.32"),
    ("8 Hyperliquid long", isolated("1", "100000", "5000"), FlatModel(D(1) / 80), "96202.53"),
    ("8 Hyperliquid short", isolated("-1", "100000", "5000"), FlatModel(D(1) / 80), "103703.70"),
    ("11 Bybit long 50x", isolated("1", "20000", "400"), FlatModel(D("0.005")), "19698.49"),
]


@pytest.mark.parametrize(
    ("name", "balance", "leg", "model", "mark", "expected"),
    CROSS_CASES,
    ids=[c[0] for c in CROSS_CASES],
)
def test_cross_examples(
    name: str, balance: str, leg: Position, model: MaintenanceModel, mark: str, expected: str | None
) -> None:
    models = {leg.symbol: model}
    marks = {leg.symbol: D(mark)}
    got = margin.cross_leg_liq_price(D(balance), [leg], models, marks, leg.symbol)
    assert cents(got) == (None if expected is None else D(expected))
    if expected is not None:
        # A one-leg account's trigger band is its exact liquidation price.
        (band,) = margin.trigger_bands(D(balance), [leg], models, marks)
        assert band.down if leg.qty > 0 else band.up
        band = band.down if leg.qty > 0 else band.up
        assert cents(band) == D(expected)


def test_example_5_formula_gives_negative_price() -> None:
    # The closed form itself gives -40,241.45: a long that can never be liquidated.
    q, e, b, r = D("0.1"), D("60000"), D("10000"), D("0.006")
    assert cents((q * e - b) / (q * (1 - r))) == D("-40241.45")


@pytest.mark.parametrize(
    ("name", "position", "model", "expected"),
    ISOLATED_CASES,
    ids=[c[0] for c in ISOLATED_CASES],
)
def test_isolated_examples(
    name: str, position: Position, model: MaintenanceModel, expected: str
) -> None:
    assert cents(margin.isolated_liq_price(position, model)) == D(expected)


def test_example_6_margin_from_leverage() -> None:
    assert margin.isolated_margin_from_leverage(D(1), D(3000), D(10)) == D(300)


def test_example_7_one_symbol_both_modes() -> None:
    models = {"PERP_ETH_USDC": FlatModel(D("0.006"))}
    leg = cross("1", "3000", "PERP_ETH_USDC")
    short = isolated("-1", "3000", "300", "PERP_ETH_USDC")
    at_2300 = {"PERP_ETH_USDC": D(2300)}
    at_3300 = {"PERP_ETH_USDC": D(3300)}
    model = models["PERP_ETH_USDC"]
    # 2,300: the cross account is below maintenance, the isolated short is fine.
    assert margin.is_liquidatable(margin.evaluate_cross(D(700), [leg], models, at_2300).health)
    assert not margin.is_liquidatable(margin.isolated_health(short, D(2300), model))
    # 3,300: the reverse.
    assert not margin.is_liquidatable(margin.evaluate_cross(D(700), [leg], models, at_3300).health)
    assert margin.is_liquidatable(margin.isolated_health(short, D(3300), model))


def test_example_9_orderly_rate() -> None:
    model = OrderlyModel(D("0.1"), D("0.05"), D("0.0000002512"))
    n = D("5197.2")
    assert margin.orderly_dynamic_term(model, n).quantize(D("1e-12")) == D("0.000117924809")
    assert margin.maintenance_rate(model, n) == D("0.05")
    assert cents(margin.maintenance(model, n)) == D("259.86")


def test_example_10_binance_bracket_amounts() -> None:
    model = BracketsModel.from_rates(
        [(D(0), D("0.004")), (D(50000), D("0.005")), (D(250000), D("0.01"))]
    )
    assert [b.amount for b in model.brackets] == [D(0), D(50), D(1300)]
    # Continuous at each floor.
    for b in model.brackets[1:]:
        below = margin.maintenance(model, b.floor - D("0.000001"))
        assert abs(margin.maintenance(model, b.floor) - below) < D("0.00001")


def test_equality_rule() -> None:
    assert not margin.is_liquidatable(D(0))
    assert margin.is_liquidatable(D(0), at_equality=True)
    assert margin.is_liquidatable(D("-0.000001"))
    assert not margin.is_liquidatable(D("0.000001"), at_equality=True)


def test_long_falls_into_lower_brackets() -> None:
    # 10 BTC long at 30,000 (notional 300k, the 1% bracket) whose liquidation
    # lies at a notional inside the 0.5% bracket: the price must be solved there.
    model = BracketsModel.from_rates(
        [(D(0), D("0.004")), (D(50000), D("0.005")), (D(250000), D("0.01"))]
    )
    pos = isolated("10", "30000", "120000")
    p = margin.isolated_liq_price(pos, model)
    assert p is not None
    assert D(50000) <= 10 * p < D(250000)
    assert margin.isolated_health(pos, p, model) >= 0
    assert margin.isolated_health(pos, p - D("0.000001"), model) < 0


def test_short_climbs_into_higher_brackets() -> None:
    model = BracketsModel.from_rates(
        [(D(0), D("0.004")), (D(50000), D("0.005")), (D(250000), D("0.01"))]
    )
    pos = isolated("-4", "30000", "200000")  # notional 120k at entry, 0.5% bracket
    p = margin.isolated_liq_price(pos, model)
    assert p is not None
    assert 4 * p >= D(250000)
    assert margin.isolated_health(pos, p, model) >= 0
    assert margin.isolated_health(pos, p + D("0.000001"), model) < 0
