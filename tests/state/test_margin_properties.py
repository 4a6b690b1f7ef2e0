"""Properties of the margin math over random inputs, for every model and both sides."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, note, seed, settings
from hypothesis import strategies as st

from state import margin
from state.errors import MarginError
from state.models import MaintenanceModel, MarginMode, Position
from tests.helpers.strategies import (
    cross_accounts,
    dec,
    isolated_positions,
    leverages,
    models,
    prices,
    sizes,
)

D = Decimal
PROPERTY_SEED = 20261125
REL_TICK = D("1e-9")
many = settings(
    max_examples=1500,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)


@seed(PROPERTY_SEED)
@many
@given(isolated_positions(), models)
def test_isolated_price_is_the_boundary(position: Position, model: MaintenanceModel) -> None:
    note(f"hypothesis seed: {PROPERTY_SEED} (tests/test_margin_properties.py)")
    health = margin.isolated_health
    p = margin.isolated_liq_price(position, model)
    if p is None:
        # No falling price liquidates this long: healthy even at a vanishing price.
        assert position.qty > 0
        assert health(position, D("1e-12"), model) >= 0
        return
    tick = p * REL_TICK
    if position.qty > 0:
        triggers = margin.isolated_triggers(position, model)
        if triggers.up is not None and triggers.up <= p:
            # Below maintenance at every price (an orderly long past its cap).
            assert health(position, p, model) < 0
            return
        assert health(position, p + tick, model) >= 0
        assert p - tick <= 0 or health(position, p - tick, model) < 0
    else:
        assert health(position, p - tick, model) >= 0
        assert health(position, p + tick, model) < 0


@seed(PROPERTY_SEED)
@many
@given(isolated_positions(), models, st.lists(dec("0.001", "1000", 3), min_size=1, max_size=20))
def test_isolated_triggers_are_never_late(
    position: Position, model: MaintenanceModel, factors: list[Decimal]
) -> None:
    note(f"hypothesis seed: {PROPERTY_SEED} (tests/test_margin_properties.py)")
    triggers = margin.isolated_triggers(position, model)
    probes = [position.entry_price * f for f in factors]
    for t in (triggers.down, triggers.up):
        if t is not None and t > 0:
            probes += [t * (1 - REL_TICK), t, t * (1 + REL_TICK)]
    for p in probes:
        if margin.is_liquidatable(margin.isolated_health(position, p, model), at_equality=True):
            assert triggers.crossed(p), f"health <= 0 at {p} but no trigger fired: {triggers}"


@seed(PROPERTY_SEED)
@many
@given(sizes, st.sampled_from([1, -1]), prices, leverages, leverages, models)
def test_higher_leverage_never_moves_price_away_from_entry(
    size: Decimal,
    sign: int,
    entry: Decimal,
    lev_a: Decimal,
    lev_b: Decimal,
    model: MaintenanceModel,
) -> None:
    note(f"hypothesis seed: {PROPERTY_SEED} (tests/test_margin_properties.py)")
    lo, hi = sorted((lev_a, lev_b))
    qty = size * sign

    def triggers(lev: Decimal) -> margin.Triggers:
        m = margin.isolated_margin_from_leverage(qty, entry, lev)
        return margin.isolated_triggers(
            Position("A", "X", MarginMode.ISOLATED, qty, entry, m, lev), model
        )

    t_lo, t_hi = triggers(lo), triggers(hi)
    # Down triggers rise toward entry as leverage grows (None is -infinity),
    # up triggers fall toward it (None is +infinity).
    assert t_lo.down is None or (t_hi.down is not None and t_lo.down <= t_hi.down)
    assert t_hi.up is None or (t_lo.up is None or t_lo.up >= t_hi.up)
    assert (t_lo.up is None) == (t_hi.up is None)


@seed(PROPERTY_SEED)
@many
@given(isolated_positions(), models)
def test_score_is_never_late(position: Position, model: MaintenanceModel) -> None:
    note(f"hypothesis seed: {PROPERTY_SEED} (tests/test_margin_properties.py)")
    triggers = margin.isolated_triggers(position, model)
    for p, down in ((triggers.down, True), (triggers.up, False)):
        if p is None:
            continue
        score = D(margin.index_score(p, down=down))
        # A down trigger fires when mark <= score: the score must not be below p.
        assert score >= p if down else score <= p
        # ... and it is the nearest double on that side, not an arbitrary one.
        assert abs(score - p) <= abs(p) * D("1e-15")


@seed(PROPERTY_SEED)
@many
@given(dec("0.000001", "1000000000", 6))
def test_mark_bound_never_misses(mark: Decimal) -> None:
    note(f"hypothesis seed: {PROPERTY_SEED} (tests/test_margin_properties.py)")
    assert D(margin.mark_bound(mark, down=True)) <= mark
    assert D(margin.mark_bound(mark, down=False)) >= mark


@seed(PROPERTY_SEED)
@settings(
    max_examples=2000,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(cross_accounts(), st.data())
def test_band_soundness(account, data) -> None:
    note(f"hypothesis seed: {PROPERTY_SEED} (tests/test_margin_properties.py)")
    balance, legs, mdl, marks = account
    bands = margin.trigger_bands(balance, legs, mdl, marks)
    for _ in range(10):
        moved = {}
        for leg, band in zip(legs, bands, strict=True):
            how = data.draw(st.sampled_from(["random", "at_band", "near_band"]))
            p0 = marks[leg.symbol]
            side = data.draw(st.sampled_from([band.down, band.up]))
            if how == "random" or side is None or side <= 0:
                p = p0 * data.draw(dec("0.3", "2", 4))
            else:
                # Right at a trigger, or a hair on its safe side.
                nudge = side * D("1e-12") * (1 if side == band.down else -1)
                p = side if how == "at_band" else side + nudge
            moved[leg.symbol] = max(p, D("0.000001"))
        health = margin.evaluate_cross(balance, legs, mdl, moved).health
        crossed = any(
            band.crossed(moved[leg.symbol]) for leg, band in zip(legs, bands, strict=True)
        )
        if not crossed:
            assert health > 0, f"missed: health {health} with no trigger crossed"
        if health < 0:
            assert crossed


@seed(PROPERTY_SEED)
@settings(max_examples=500, deadline=None, database=None, print_blob=True)
@given(cross_accounts())
def test_bands_use_the_whole_slack(account) -> None:
    """Every leg at its trigger at once leaves (almost) no health: the bands are tight."""
    note(f"hypothesis seed: {PROPERTY_SEED} (tests/test_margin_properties.py)")
    balance, legs, mdl, marks = account
    bands = margin.trigger_bands(balance, legs, mdl, marks)
    near = [b.down if leg.qty > 0 else b.up for leg, b in zip(legs, bands, strict=True)]
    if any(p is None or p <= 0 for p in near):
        return
    h0 = margin.evaluate_cross(balance, legs, mdl, marks).health
    at_bands = {leg.symbol: p for leg, p in zip(legs, near, strict=True)}
    health = margin.evaluate_cross(balance, legs, mdl, at_bands).health
    assert D(0) <= health <= h0 * D("1e-6")


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: margin.maintenance(_flat(), D("-1")), "notional must be >= 0"),
        (lambda: margin.maintenance(_flat(), D("NaN")), "finite"),
        (lambda: margin.isolated_margin_from_leverage(D(1), D(100), D(0)), "leverage must be > 0"),
        (lambda: margin.isolated_margin_from_leverage(D(1), D(-100), D(5)), "entry_price"),
        (lambda: margin.isolated_health(_iso(), D("Infinity"), _flat()), "finite"),
        (lambda: margin.isolated_health(_iso(), D(0), _flat()), "mark must be > 0"),
        (lambda: margin.leg_triggers(D(0), _flat(), D(1)), "qty must not be 0"),
        (lambda: margin.index_score(D("NaN"), down=True), "finite"),
        (lambda: margin.evaluate_cross(D(1), [_iso()], {"X": _flat()}, {"X": D(1)}), "ISOLATED"),
        (lambda: margin.evaluate_cross(D(1), [_leg()], {}, {"X": D(1)}), "no maintenance model"),
        (lambda: margin.evaluate_cross(D(1), [_leg()], {"X": _flat()}, {}), "no mark for X"),
        (lambda: margin.trigger_bands(D(-1), [_leg()], {"X": _flat()}, {"X": D(1)}), "health > 0"),
    ],
)
def test_bad_inputs_raise_one_typed_error(call, reason: str) -> None:
    with pytest.raises(MarginError, match=reason):
        call()


def _flat():
    from state.models import FlatModel

    return FlatModel(D("0.01"))


def _iso() -> Position:
    return Position("A", "X", MarginMode.ISOLATED, D(1), D(100), D(10))


def _leg() -> Position:
    return Position("A", "X", MarginMode.CROSS, D(1), D(100))
