"""Near-liquidation warnings, pure: scaled models, re-arm triggers, and each part's plan."""

from __future__ import annotations

from decimal import Context, Decimal

import orjson
import pytest
from hypothesis import HealthCheck, given, note, seed, settings
from hypothesis import strategies as st

from state import margin
from state.account import AccountState, Status, StoredPosition
from state.errors import MarginError
from state.events import EventError
from state.keys import Keys
from state.models import (
    BracketsModel,
    FlatModel,
    MarginMode,
    Market,
    OrderlyModel,
    Position,
)
from state.rules import Rules
from state.warning_levels import WarningRules, scaled
from state.warnings import CROSS_PART, PartState, WarningEvent, isolated_part, plan_account
from tests.helpers.strategies import cross_accounts, dec, isolated_positions, models

D = Decimal
SEED = 20261127
KEYS = Keys("t")
ETH = "PERP_ETH_USDC"
BTC = "PERP_BTC_USDC"
FLAT = FlatModel(D("0.01"))
MARKETS = {ETH: Market(ETH, FLAT), BTC: Market(BTC, FlatModel(D("0.02")))}
# Level 1.5, re-armed at 1.5 too (no hysteresis: the boundaries below are exact).
RULES = Rules(
    KEYS, MARKETS, warnings=WarningRules.build(Rules(KEYS, MARKETS).models, D("1.5"), D("1.5"))
)
# Level 1.5, re-armed at 2.
HYST = Rules(
    KEYS, MARKETS, warnings=WarningRules.build(Rules(KEYS, MARKETS).models, D("1.5"), D(2))
)
many = settings(
    max_examples=600,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.parametrize(
    "model",
    [
        FLAT,
        BracketsModel.from_rates(
            [(D(0), D("0.01")), (D(50_000), D("0.02")), (D(10**6), D("0.05"))]
        ),
        OrderlyModel(D("0.01"), D("0.006"), D("0.000000091")),
    ],
    ids=["flat", "brackets", "orderly"],
)
@pytest.mark.parametrize("factor", [D("1.5"), D("1.6"), D(3)])
def test_a_scaled_model_requires_factor_times_the_maintenance(model, factor) -> None:
    s = scaled(model, factor)
    for n in (D(1), D(999), D(50_000), D("123456.789"), D(2 * 10**6), D(10**9)):
        want = Context(prec=40).multiply(factor, margin.maintenance(model, n))
        got = margin.maintenance(s, n)
        assert abs(got - want) <= want * D("1e-35"), (n, got, want)


@pytest.mark.parametrize(
    ("level", "rearm", "models_", "reason"),
    [
        (D(1), D(2), {ETH: FLAT}, "level must be > 1"),
        (D("1.5"), D("1.4"), {ETH: FLAT}, "rearm must be >= level"),
        (D(2), D(3), {ETH: FlatModel(D("0.4"))}, "PERP_ETH_USDC"),
        (D(2), D(2), {ETH: OrderlyModel(D("0.9"), D("0.3"), D(0))}, "PERP_ETH_USDC"),
    ],
)
def test_levels_a_model_cannot_take_are_refused_by_name(level, rearm, models_, reason) -> None:
    with pytest.raises(MarginError, match=reason):
        WarningRules.build(models_, level, rearm)


def test_part_state_reads_what_it_writes_and_defaults_to_armed() -> None:
    for st_ in (PartState(), PartState(3), PartState(4, True, 1700000000000)):
        assert PartState.parse(st_.text()) == st_
    assert PartState.parse(None) == PartState()
    assert PartState.parse("garbage") == PartState()


# An isolated long 1 @ 3,000 with margin 1,030 on flat 0.01: equity p - 1,970,
# maintenance 0.01 p: 1.5 x maintenance = equity exactly at p = 2,000.
ISO = Position("A", ETH, MarginMode.ISOLATED, D(1), D(3000), D(1030))


def account(
    *positions: Position,
    balance: Decimal = Decimal(0),
    warnings: dict[str, str] | None = None,
    status: Status = Status.OPEN,
) -> AccountState:
    stored = {
        (p.margin_mode, p.symbol): StoredPosition(
            p, status if p.margin_mode is MarginMode.CROSS else Status.OPEN
        )
        for p in positions
    }
    return AccountState("A", balance, None, 7, status, stored, {}, warnings or {})


def ops(plan) -> list[list[str]]:  # type: ignore[no-untyped-def]
    return orjson.loads(plan.change.argument()).get("ops", [])


@pytest.mark.parametrize(
    ("mark", "action"),
    [
        (D("2000.01"), "band"),
        (D(2000), "band"),  # equal to 1.5 x maintenance: not below
        (D("1999.99"), "warn"),
    ],
)
def test_an_armed_isolated_position_warns_only_below_the_level(mark, action) -> None:
    (plan,) = plan_account(RULES, account(ISO), {ETH: mark}, 1_000)
    assert plan.action == action
    spec = orjson.loads(plan.change.argument())
    assert spec["version"] == "7"
    assert spec["field"] == [KEYS.account("A"), isolated_part(ETH), ""]
    if action == "warn":
        event = plan.event
        assert event is not None
        assert event.id == "A:WARNING:ISOLATED:PERP_ETH_USDC:1"
        assert event.equity == mark - 1970
        assert event.maintenance_margin == D("0.01") * mark
        assert spec["nx"] == [KEYS.warn_id(event.id), RULES.liq_id_ttl]
        assert spec["xadd"][0] == KEYS.warnings
        assert (
            WarningEvent.from_fields(dict(zip(*[iter(spec["xadd"][1])] * 2, strict=True))) == event
        )
        assert ["hset", KEYS.account("A"), isolated_part(ETH), "1|W|1000"] in ops(plan)
        assert ["zadd", KEYS.warned(MarginMode.ISOLATED), "1000", "A|PERP_ETH_USDC"] in ops(plan)
    else:
        assert plan.event is None
        written = [op for op in ops(plan) if op[0] == "zadd"]
        assert written == [
            ["zadd", KEYS.warn_index(ETH, "down"), written[0][2], "I|A"],
        ]
        assert 2000 <= float(written[0][2]) <= 2000 * (1 + 2e-12)


@pytest.mark.parametrize(
    ("mark", "action"),
    [
        (D("2000.01"), "rearm"),
        (D(2000), "rearm"),  # back at the re-arm level: re-armed
        (D("1999.99"), "band"),
    ],
)
def test_a_warned_isolated_position_is_rearmed_at_the_rearm_level(mark, action) -> None:
    warned = {isolated_part(ETH): "1|W|5"}
    (plan,) = plan_account(RULES, account(ISO, warnings=warned), {ETH: mark}, 1_000)
    assert plan.action == action
    assert plan.event is None
    assert orjson.loads(plan.change.argument())["field"][2] == "1|W|5"
    if action == "rearm":
        assert ["hset", KEYS.account("A"), isolated_part(ETH), "1|A"] in ops(plan)
        assert ["zrem", KEYS.warned(MarginMode.ISOLATED), "A|PERP_ETH_USDC"] in ops(plan)
    else:
        # Its re-arm trigger: up, a hair under 2,000.
        (written,) = [op for op in ops(plan) if op[0] == "zadd"]
        assert written[1] == KEYS.rearm_index(ETH, "up")
        assert 2000 * (1 - 2e-12) <= float(written[2]) <= 2000


def test_hysteresis_between_level_and_rearm() -> None:
    # With re-arm at 2 x maintenance: equity p - 1,970 >= 0.02 p at p >= 2,010.204...
    warned = {isolated_part(ETH): "2|W|5"}
    for mark, action in ((D(2005), "band"), (D(2010), "band"), (D("2010.21"), "rearm")):
        (plan,) = plan_account(HYST, account(ISO, warnings=warned), {ETH: mark}, 1)
        assert plan.action == action, mark
    (plan,) = plan_account(
        HYST, account(ISO, warnings={isolated_part(ETH): "2|A"}), {ETH: D(1999)}, 1
    )
    assert plan.event is not None
    assert plan.event.id.endswith(":3")  # the third crossing


def test_a_cross_account_warns_with_its_legs_and_balance() -> None:
    eth = Position("A", ETH, MarginMode.CROSS, D(1), D(3000))
    btc = Position("A", BTC, MarginMode.CROSS, D("-0.1"), D(60000))
    marks = {ETH: D(2500), BTC: D(61000)}
    # equity = balance - 500 - 100 = balance - 600; maintenance = 25 + 122 = 147.
    for balance, action in ((D("820.5"), "band"), (D("820.49"), "warn")):
        (plan,) = plan_account(RULES, account(eth, btc, balance=balance), marks, 9, [("C", ETH)])
        assert plan.part == CROSS_PART
        assert plan.action == action
    assert plan.event is not None
    assert plan.event.symbol == ETH
    assert plan.event.equity == D("220.49")
    assert plan.event.maintenance_margin == D(147)
    assert plan.event.balance == D("820.49")
    assert [leg.symbol for leg in plan.event.positions] == [BTC, ETH]
    # Its re-arm bands: ETH up (a long recovers upward), BTC down.
    written = {(op[1], op[3]) for op in ops(plan) if op[0] == "zadd" and ":rearm:" in op[1]}
    assert written == {(KEYS.rearm_index(ETH, "up"), "C|A"), (KEYS.rearm_index(BTC, "down"), "C|A")}


def test_a_leg_without_a_mark_holds_the_cross_account() -> None:
    eth = Position("A", ETH, MarginMode.CROSS, D(1), D(3000))
    btc = Position("A", BTC, MarginMode.CROSS, D("-0.1"), D(60000))
    assert plan_account(RULES, account(eth, btc, balance=D(1)), {ETH: D(2500)}, 9) == []


def test_parts_gone_or_liquidating_are_cleared() -> None:
    eth = Position("A", ETH, MarginMode.CROSS, D(1), D(3000))
    state = account(
        eth,
        balance=D(1),
        status=Status.LIQUIDATING,
        warnings={CROSS_PART: "1|W|5", isolated_part(BTC): "1|W|5"},
    )
    plans = plan_account(RULES, state, {ETH: D(2500), BTC: D(1)}, 9, [("I", BTC)])
    by_part = {p.part: p for p in plans}
    assert {p.action for p in plans} == {"clear"}
    assert ["hdel", KEYS.account("A"), CROSS_PART] in ops(by_part[CROSS_PART])
    assert ["zrem", KEYS.warned(MarginMode.CROSS), "A"] in ops(by_part[CROSS_PART])
    assert ["zrem", KEYS.warn_index(ETH, "down"), "C|A"] in ops(by_part[CROSS_PART])
    iso = by_part[isolated_part(BTC)]
    assert ["zrem", KEYS.warned(MarginMode.ISOLATED), "A|PERP_BTC_USDC"] in ops(iso)
    assert ["zrem", KEYS.rearm_index(BTC, "up"), "I|A"] in ops(iso)


def test_without_warnings_nothing_is_planned() -> None:
    assert plan_account(Rules(KEYS, MARKETS), account(ISO), {ETH: D(1)}, 1) == []


# --- re-arm triggers never late ---------------------------------------------------


@seed(SEED)
@many
@given(isolated_positions(), models, st.data())
def test_isolated_rearm_trigger_is_never_late(position, model, data) -> None:
    """Below the re-arm level, the trigger sits at or before the exact price of recovery."""
    note(f"hypothesis seed: {SEED} (tests/state/test_warnings.py)")
    factor = data.draw(st.sampled_from([D("1.2"), D("1.6"), D(3)]))
    try:
        rearm_model = scaled(model, factor)
    except MarginError:
        return
    target = position.qty * position.entry_price - position.margin
    mark = position.entry_price * data.draw(dec("0.2", "3", 3))

    def health(p: Decimal) -> Decimal:
        return margin.isolated_equity(position, p) - factor * margin.isolated_maintenance(
            position, p, model
        )

    if mark <= 0 or health(mark) >= 0:
        return
    try:
        trig = margin.recovery_triggers(position.qty, rearm_model, target, mark)
    except MarginError:
        return
    # Never late: wherever the trigger has not fired, the position is still in warning.
    probes = [mark * data.draw(dec("0.3", "3", 4)) for _ in range(5)]
    for edge in (trig.down, trig.up):
        if edge is not None and edge > 0:
            probes += [edge * (1 + D("1e-11")), edge * (1 - D("1e-11"))]
    for p in probes:
        if p > 0 and not trig.crossed(p):
            assert health(p) < 0, (p, trig)


@seed(SEED)
@many
@given(cross_accounts(below_zero=True), st.data())
def test_rearm_bands_are_sound(account_, data) -> None:
    """While no leg's mark has crossed its re-arm trigger, the account is still below zero."""
    note(f"hypothesis seed: {SEED} (tests/state/test_warnings.py)")
    balance, legs, mdl, marks = account_
    bands = margin.recovery_bands(balance, legs, mdl, marks)
    for _ in range(10):
        moved = {}
        for leg, band in zip(legs, bands, strict=True):
            how = data.draw(st.sampled_from(["random", "at_band", "near_band"]))
            p0 = marks[leg.symbol]
            side = data.draw(st.sampled_from([band.down, band.up]))
            if how == "random" or side is None or side <= 0:
                p = p0 * data.draw(dec("0.3", "2", 4))
            else:
                nudge = side * D("1e-12") * (1 if side == band.up else -1)
                p = side if how == "at_band" else side - nudge
            moved[leg.symbol] = max(p, D("0.000001"))
        health = margin.evaluate_cross(balance, legs, mdl, moved).health
        crossed = any(
            band.crossed(moved[leg.symbol]) for leg, band in zip(legs, bands, strict=True)
        )
        if not crossed:
            assert health < 0, f"late: health {health} with no re-arm trigger crossed"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("equity", "NaN", "equity: must be finite"),
        ("count", "-1", "count: not a non-negative integer"),
        ("kind", "BOTH", "kind: must be CROSS or ISOLATED"),
        ("marks", "{", "marks: not JSON"),
    ],
)
def test_a_malformed_warning_entry_is_an_event_error(field, value, reason) -> None:
    (plan,) = plan_account(RULES, account(ISO), {ETH: D(1999)}, 1_000)
    assert plan.event is not None
    fields = {**plan.event.to_fields(), field: value}
    with pytest.raises(EventError, match=reason):
        WarningEvent.from_fields(fields)
    del fields[field]
    with pytest.raises(EventError, match=f"{field}: missing"):
        WarningEvent.from_fields(fields)
