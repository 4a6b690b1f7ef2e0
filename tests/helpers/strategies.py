"""Hypothesis strategies for maintenance models, positions and cross accounts."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st

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


def dec(lo: str, hi: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(D(lo), D(hi), places=places, allow_nan=False, allow_infinity=False)


flat_models = st.builds(FlatModel, dec("0.001", "0.2", 4))


@st.composite
def brackets_models(draw: st.DrawFn) -> BracketsModel:
    count = draw(st.integers(1, 6))
    floors = [D(0)]
    for _ in range(count - 1):
        floors.append(floors[-1] + draw(dec("100", "5000000", 0)))
    rates = [draw(dec("0.001", "0.3", 4)) for _ in floors]
    return BracketsModel.from_rates(list(zip(floors, rates, strict=True)))


@st.composite
def orderly_models(draw: st.DrawFn) -> OrderlyModel:
    base_mmr = draw(dec("0.002", "0.1", 4))
    base_imr = min(base_mmr * draw(dec("1", "3", 2)), D("0.99"))
    # imr_factor spans real values (1e-7) up to ones whose dynamic rate takes
    # over at small notionals, so the numeric solve is exercised too.
    imr_factor = D(draw(st.sampled_from(["1", "2.5", "5", "9.1"]))) * D(10) ** draw(
        st.integers(-9, -4)
    )
    return OrderlyModel(base_imr, base_mmr, imr_factor)


models: st.SearchStrategy[MaintenanceModel] = st.one_of(
    flat_models, brackets_models(), orderly_models()
)

prices = dec("0.01", "200000", 2)
sizes = dec("0.0001", "1000", 4)
leverages = st.integers(1, 100).map(D)


@st.composite
def isolated_positions(draw: st.DrawFn) -> Position:
    qty = draw(sizes) * draw(st.sampled_from([1, -1]))
    entry = draw(prices)
    lev = draw(leverages)
    margin = abs(qty) * entry / lev * draw(dec("0.5", "2", 2))
    return Position("A", "X", MarginMode.ISOLATED, qty, entry, margin, lev)


@st.composite
def cross_accounts(
    draw: st.DrawFn, *, below_zero: bool = False
) -> tuple[Decimal, list[Position], dict[str, MaintenanceModel], dict[str, Decimal]]:
    """A cross account of 1-8 legs on its own models and marks: (balance, legs, models, marks).

    Its health at the marks is above zero by anything from a sliver to a fat
    cushion, or, ``below_zero``, below it by a sliver to half its notional.
    """
    n = draw(st.integers(1, 8))
    legs, mdl, marks = [], {}, {}
    for i in range(n):
        sym = f"S{i}"
        qty = draw(sizes) * draw(st.sampled_from([1, -1]))
        entry = draw(prices)
        legs.append(Position("A", sym, MarginMode.CROSS, qty, entry))
        mdl[sym] = draw(models)
        marks[sym] = (entry * draw(dec("0.7", "1.3", 3))).quantize(D("0.01")) or D("0.01")
    zero = margin.evaluate_cross(D(0), legs, mdl, marks).health
    total = sum(abs(leg.qty) * marks[leg.symbol] for leg in legs)
    if below_zero:
        return -zero - total * draw(dec("0.0001", "0.5", 4)), legs, mdl, marks
    return -zero + total * draw(dec("0.0001", "1", 4)), legs, mdl, marks
