"""Decisions: the liquidation rule applied to stored accounts, and the claims it writes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal, localcontext
from typing import Any

import orjson
import pytest

from state import margin
from state.account import AccountState, Status, StoredPosition
from state.bands import ALWAYS_DOWN
from state.changes import ChangeSet
from state.decisions import (
    CROSS,
    decide_cross,
    decide_isolated,
    judge_cross,
    judge_isolated,
    liquidatable,
    liquidatable_state,
)
from state.events import EventLeg, LiquidationEvent
from state.keys import Keys, index_member, liquidating_member, position_field
from state.models import FlatModel, MarginMode, Market, Position, Seq
from state.rules import Rules

D = Decimal
ETH, BTC, SOL = "ETH", "BTC", "SOL"
MARKETS = {
    ETH: Market(ETH, FlatModel(D("0.006"))),
    BTC: Market(BTC, FlatModel(D("0.01"))),
    SOL: Market(SOL, FlatModel(D("0.01"))),
}
KEYS = Keys("t")
RULES = Rules(KEYS, MARKETS)
RULES_EQ = Rules(KEYS, MARKETS, at_equality=True)
ACCT = "A"
MARK_TS = 1_700_000_000_000
NOW_MS = 1_700_000_000_250
# Far below a 40-digit liquidation price's last digit of the integer part, far above its ulp.
STEP = D("1e-30")


def iso(symbol: str, qty: str, entry: str, margin_: str) -> Position:
    return Position(ACCT, symbol, MarginMode.ISOLATED, D(qty), D(entry), D(margin_))


def cross(symbol: str, qty: str, entry: str) -> Position:
    return Position(ACCT, symbol, MarginMode.CROSS, D(qty), D(entry))


def account(
    balance: str = "0",
    *positions: Position | StoredPosition,
    seq: int | None = 9,
    version: int = 4,
    status: Status = Status.OPEN,
) -> AccountState:
    stored = {}
    for p in positions:
        sp = p if isinstance(p, StoredPosition) else StoredPosition(p)
        stored[(sp.position.margin_mode, sp.position.symbol)] = sp
    return replace(
        AccountState.empty(ACCT),
        balance=D(balance),
        seq=None if seq is None else Seq.of(seq),
        version=version,
        status=status,
        positions=stored,
    )


def shift(price: Decimal, by: Decimal) -> Decimal:
    """``price + by`` without the default 28-digit context rounding it away."""
    with localcontext() as ctx:
        ctx.prec = 80
        return price + by


def spec(cs: ChangeSet) -> dict[str, Any]:
    return orjson.loads(cs.argument())  # type: ignore[no-any-return]


def ops(cs: ChangeSet) -> list[tuple[Any, ...]]:
    """The change set's writes: (op, key, args...)."""
    return [tuple(op) for op in spec(cs).get("ops", [])]


def index_ops(cs: ChangeSet, member: str) -> list[tuple[Any, ...]]:
    return [o for o in ops(cs) if ":idx:" in o[1] and o[-1] == member]


def xadd_fields(cs: ChangeSet) -> tuple[str, dict[str, str]]:
    key, flat = spec(cs)["xadd"]
    return key, dict(zip(flat[::2], flat[1::2], strict=True))


def assert_claim(cs: ChangeSet, state: AccountState, event: LiquidationEvent) -> None:
    """The claim carries the NX guard on the id, the version guard, a bump and one XADD."""
    s = spec(cs)
    assert s["version"] == str(state.version)
    assert s["bump"] == 1
    nx_key, ttl = s["nx"]
    assert nx_key == KEYS.liq_id(event.id)
    assert ttl == RULES.liq_id_ttl
    assert "xadd" in s
    assert all(o[0] != "xadd" for o in ops(cs))
    stream, fields = xadd_fields(cs)
    assert stream == KEYS.events
    assert fields == event.to_fields()
    assert LiquidationEvent.from_fields(fields) == event


# --- decide_isolated at a list of prices ---------------------------------------------

EX6 = iso(ETH, "1", "3000", "300")  # docs/margin.md example 6: liq 2716.30
EX7_SHORT = iso(ETH, "-1", "3000", "300")  # docs/margin.md example 7: liq 3280.32


def test_example_liquidation_prices() -> None:
    """The two positions used below have the documented liquidation prices, to the cent."""
    model = MARKETS[ETH].maintenance
    long_liq = margin.isolated_liq_price(EX6, model)
    short_liq = margin.isolated_liq_price(EX7_SHORT, model)
    assert long_liq is not None
    assert short_liq is not None
    assert long_liq.quantize(D("0.01")) == D("2716.30")
    assert short_liq.quantize(D("0.01")) == D("3280.32")
    # Neither root terminates, so the rounded price itself is on the healthy side.
    assert margin.isolated_health(EX6, long_liq, model) > 0
    assert margin.isolated_health(EX7_SHORT, short_liq, model) > 0


def _prices(position: Position, offsets: list[str | int | Decimal]) -> list[Decimal]:
    """Prices from a list: numbers are absolute, strings 'liq', 'liq+' or 'liq-' (one step)."""
    liq = margin.isolated_liq_price(position, MARKETS[position.symbol].maintenance)
    assert liq is not None
    table = {"liq": liq, "liq+": shift(liq, STEP), "liq-": shift(liq, -STEP)}
    return [table[o] if isinstance(o, str) else D(o) for o in offsets]


ISOLATED_PRICE_CASES = [
    # (position, prices, index of the first price that liquidates, or None)
    pytest.param(EX6, [3000, 2800, "liq+", "liq"], None, id="long-above"),
    pytest.param(EX6, ["liq"], None, id="long-on-rounded-liq"),
    pytest.param(EX6, ["liq-"], 0, id="long-one-step-below"),
    pytest.param(EX6, [3000, "liq+", "liq", "liq-", 2000], 3, id="long-first-crossing"),
    pytest.param(EX6, [2000, "liq-"], 0, id="long-far-below-first"),
    pytest.param(EX6, ["liq+", 3500, 2716, 1000], 2, id="long-integer-below"),
    pytest.param(EX7_SHORT, [3000, 3200, "liq-", "liq"], None, id="short-below"),
    pytest.param(EX7_SHORT, [3000, "liq", "liq+", 4000], 2, id="short-first-crossing"),
    pytest.param(EX7_SHORT, [3281, "liq-"], 0, id="short-integer-above-first"),
]


@pytest.mark.parametrize(("position", "offsets", "hit"), ISOLATED_PRICE_CASES)
def test_decide_isolated_at_prices(
    position: Position, offsets: list[str | int | Decimal], hit: int | None
) -> None:
    """The position is liquidated at the first price of the list that crosses, and only then."""
    prices = _prices(position, offsets)
    state = account("0", position, cross(BTC, "1", "100"))
    cs, event = decide_isolated(RULES, state, ETH, prices, MARK_TS, NOW_MS)
    if hit is None:
        assert (cs, event) == (None, None)
        return
    assert cs is not None
    assert event is not None
    price = prices[hit]
    model = MARKETS[ETH].maintenance
    assert event.mark_price == price
    assert event.marks == {ETH: price}
    assert event.kind is MarginMode.ISOLATED
    assert event.id == f"{ACCT}:ISOLATED:{ETH}:{state.version}"
    assert event.symbol == ETH
    assert event.positions == (EventLeg.of(position, price),)
    assert event.liq_price == margin.isolated_liq_price(position, model)
    assert event.equity == margin.isolated_equity(position, price)
    assert (event.mark_ts, event.detected_ts, event.seq) == (MARK_TS, NOW_MS, state.seq)
    assert_claim(cs, state, event)


@pytest.mark.parametrize(
    ("position", "offsets"),
    [
        pytest.param(EX6, [2000], id="long-round-price"),
        pytest.param(EX7_SHORT, [4000], id="short-round-price"),
        pytest.param(EX6, ["liq-"], id="long-one-step-below"),
        pytest.param(EX7_SHORT, ["liq+"], id="short-one-step-above"),
        pytest.param(
            iso(ETH, "1.23456789012345", "2500", "100"),
            [D("2345.67890123456789")],
            id="long-long-notional",
        ),
    ],
)
def test_isolated_event_figures(position: Position, offsets: list[str | int | Decimal]) -> None:
    """The event's equity and maintenance margin are the exact figures the health came from."""
    (price,) = _prices(position, offsets)
    model = MARKETS[ETH].maintenance
    _, event = decide_isolated(RULES, account("0", position), ETH, [price], MARK_TS, NOW_MS)
    assert event is not None
    with localcontext() as ctx:
        ctx.prec = 80
        notional = abs(position.qty) * price
    health = margin.isolated_health(position, price, model)
    assert health < 0
    assert event.equity == margin.isolated_equity(position, price)
    assert event.maintenance_margin == margin.maintenance(model, notional)
    assert event.equity < event.maintenance_margin
    with localcontext() as ctx:
        ctx.prec = margin.PRECISION
        assert event.equity - event.maintenance_margin == health


def test_isolated_claim_writes() -> None:
    """The claim marks the position LIQUIDATING, unindexes it and adds it to the in-flight set."""
    liq_minus = _prices(EX6, ["liq-"])
    state = account("0", EX6)
    cs, event = decide_isolated(RULES, state, ETH, liq_minus, MARK_TS, NOW_MS)
    assert cs is not None
    assert event is not None
    member = index_member(MarginMode.ISOLATED, ACCT)
    claimed = StoredPosition(EX6, Status.LIQUIDATING, event.id)
    assert ops(cs) == [
        ("hset", KEYS.positions(ACCT), position_field(MarginMode.ISOLATED, ETH), claimed.to_json()),
        ("zrem", KEYS.index(ETH, "down"), member),
        ("zrem", KEYS.index(ETH, "up"), member),
        (
            "zadd",
            KEYS.liquidating,
            repr(NOW_MS),
            liquidating_member(MarginMode.ISOLATED, ACCT, ETH),
        ),
    ]


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param(None, id="no-position"),
        pytest.param(StoredPosition(EX6, Status.LIQUIDATING, "A:ISOLATED:ETH:1"), id="liquidating"),
    ],
)
def test_decide_isolated_cleans_up_a_stale_member(stored: StoredPosition | None) -> None:
    """Without an OPEN position on the symbol the decision only unindexes the member."""
    state = account("0", *([stored] if stored else []))
    cs, event = decide_isolated(RULES, state, ETH, [D("1")], MARK_TS, NOW_MS)
    assert event is None
    assert cs is not None
    s = spec(cs)
    assert s["version"] == str(state.version)
    assert not {"nx", "xadd", "bump"} & s.keys()
    member = index_member(MarginMode.ISOLATED, ACCT)
    assert ops(cs) == [
        ("zrem", KEYS.index(ETH, "down"), member),
        ("zrem", KEYS.index(ETH, "up"), member),
    ]


# --- the equality rule ---------------------------------------------------------------

# Flat 0.01 on SOL: margin + q*(p - e) == 0.01*|q|*p exactly at the given mark.
EQUALITY_CASES = [
    pytest.param(iso(SOL, "1", "100", "10.9"), D("90"), id="long"),
    pytest.param(iso(SOL, "-2", "50", "11.1"), D("55"), id="short"),
    pytest.param(iso(SOL, "0.5", "40", "0.2"), D("40"), id="long-at-entry"),
]


@pytest.mark.parametrize(("position", "mark"), EQUALITY_CASES)
def test_isolated_health_exactly_zero(position: Position, mark: Decimal) -> None:
    """Equality liquidates only under at_equality=True."""
    model = MARKETS[SOL].maintenance
    assert margin.isolated_health(position, mark, model) == 0
    assert not judge_isolated(position, model, mark, at_equality=False).liquidatable
    assert judge_isolated(position, model, mark, at_equality=True).liquidatable
    state = account("0", position)
    assert decide_isolated(RULES, state, SOL, [mark], MARK_TS, NOW_MS) == (None, None)
    cs, event = decide_isolated(RULES_EQ, state, SOL, [mark], MARK_TS, NOW_MS)
    assert cs is not None
    assert event is not None
    assert event.equity == event.maintenance_margin
    assert event.mark_price == mark


def test_cross_health_exactly_zero() -> None:
    """A cross account at health exactly 0 is held on every tick unless at_equality liquidates."""
    # 10.9 + (90 - 100) - 0.01 * 90 == 0
    state = account("10.9", cross(SOL, "1", "100"))
    marks = {SOL: D("90")}
    verdict, _ = judge_cross(
        state.balance, state.cross_legs, RULES.models, marks, at_equality=False
    )
    assert verdict.health == 0
    assert not verdict.liquidatable
    cs, event = decide_cross(RULES, state, SOL, marks, MARK_TS, NOW_MS)
    assert event is None
    assert cs is not None
    member = index_member(MarginMode.CROSS, ACCT)
    # No bands can be had at health 0: the leg is looked at on every tick.
    assert index_ops(cs, member) == [
        ("zadd", KEYS.index(SOL, "down"), repr(ALWAYS_DOWN), member),
        ("zrem", KEYS.index(SOL, "up"), member),
    ]
    cs, event = decide_cross(RULES_EQ, state, SOL, marks, MARK_TS, NOW_MS)
    assert cs is not None
    assert event is not None
    assert event.equity == event.maintenance_margin == D("0.9")


# --- CROSS: held while a mark is missing ----------------------------------------------

# ETH long 1 @ 3000, BTC short -0.1 @ 60000. At ETH 2500, BTC 62000: pnl -700, MM 15 + 62.
CROSS_LEGS = (cross(ETH, "1", "3000"), cross(BTC, "-0.1", "60000"))
LOW_MARKS = {ETH: D("2500"), BTC: D("62000")}


@pytest.mark.parametrize("symbol", [ETH, BTC])
@pytest.mark.parametrize("missing", [ETH, BTC])
def test_decide_cross_held_without_a_mark(symbol: str, missing: str) -> None:
    """A cross account with a leg whose symbol has no mark is not decided, liquidatable or not."""
    state = account("750", *CROSS_LEGS)
    assert liquidatable_state(RULES, state, LOW_MARKS) == {CROSS}
    marks = {s: p for s, p in LOW_MARKS.items() if s != missing}
    assert decide_cross(RULES, state, symbol, marks, MARK_TS, NOW_MS) == (None, None)
    assert liquidatable_state(RULES, state, marks) == set()


@pytest.mark.parametrize("symbol", [ETH, BTC])
def test_decide_cross_liquidates_with_every_mark(symbol: str) -> None:
    """With every leg's mark present the liquidatable account is claimed, on either symbol."""
    state = account("750", *CROSS_LEGS)
    cs, event = decide_cross(RULES, state, symbol, LOW_MARKS, MARK_TS, NOW_MS)
    assert cs is not None
    assert event is not None
    priced = margin.evaluate_cross(state.balance, state.cross_legs, RULES.models, LOW_MARKS)
    assert priced.health == D("-27")
    assert event.kind is MarginMode.CROSS
    assert event.id == f"{ACCT}:CROSS:{state.version}"
    assert event.symbol == symbol
    assert event.mark_price == LOW_MARKS[symbol]
    assert event.marks == LOW_MARKS
    assert (event.equity, event.maintenance_margin) == (priced.equity, priced.maintenance)
    assert event.liq_price == margin.cross_leg_liq_price(
        state.balance, state.cross_legs, RULES.models, LOW_MARKS, symbol
    )
    assert_claim(cs, state, event)
    acct_writes = [o[2:] for o in ops(cs) if o[0] == "hset" and o[1] == KEYS.account(ACCT)]
    assert acct_writes == [
        ("status", "LIQUIDATING"),
        ("liq_id", event.id),
        ("liq_ts", str(NOW_MS)),
    ]


def test_decide_cross_ignores_marks_of_other_symbols() -> None:
    """Marks of symbols the account does not hold are not listed in the event."""
    state = account("750", *CROSS_LEGS)
    marks = {**LOW_MARKS, SOL: D("20")}
    _, event = decide_cross(RULES, state, ETH, marks, MARK_TS, NOW_MS)
    assert event is not None
    assert event.marks == LOW_MARKS


def test_decide_cross_healthy_rebands() -> None:
    """A healthy account gets fresh bands and no event, no claim and no bump."""
    state = account("1000", *CROSS_LEGS)
    cs, event = decide_cross(RULES, state, ETH, LOW_MARKS, MARK_TS, NOW_MS)
    assert event is None
    assert cs is not None
    s = spec(cs)
    assert s["version"] == str(state.version)
    assert not {"nx", "xadd", "bump"} & s.keys()
    bands = margin.trigger_bands(state.balance, state.cross_legs, RULES.models, LOW_MARKS)
    member = index_member(MarginMode.CROSS, ACCT)
    expected: list[tuple[Any, ...]] = []
    for leg, triggers in zip(state.cross_legs, bands, strict=True):
        for direction, price in (("down", triggers.down), ("up", triggers.up)):
            key = KEYS.index(leg.symbol, direction)  # type: ignore[arg-type]
            if price is None:
                expected.append(("zrem", key, member))
            else:
                score = margin.index_score(price, down=direction == "down")
                expected.append(("zadd", key, repr(score), member))
    assert ops(cs) == expected
    # The long ETH leg triggers below its mark, the short BTC leg above.
    assert bands[1].down is not None
    assert bands[1].down < LOW_MARKS[ETH]
    assert bands[0].up is not None
    assert bands[0].up > LOW_MARKS[BTC]


@pytest.mark.parametrize(
    "state",
    [
        pytest.param(account("750", *CROSS_LEGS, status=Status.LIQUIDATING), id="liquidating"),
        pytest.param(account("750", cross(BTC, "-0.1", "60000")), id="no-leg-on-symbol"),
    ],
)
def test_decide_cross_cleans_up(state: AccountState) -> None:
    """A LIQUIDATING account, or one without a leg on the symbol, is only unindexed there."""
    cs, event = decide_cross(RULES, state, ETH, LOW_MARKS, MARK_TS, NOW_MS)
    assert event is None
    assert cs is not None
    member = index_member(MarginMode.CROSS, ACCT)
    assert ops(cs) == [
        ("zrem", KEYS.index(ETH, "down"), member),
        ("zrem", KEYS.index(ETH, "up"), member),
    ]


# --- which legs an event lists ------------------------------------------------------

MIXED = account(
    "750",
    cross(ETH, "1", "3000"),
    cross(BTC, "-0.1", "60000"),
    iso(ETH, "1", "3000", "300"),
    iso(BTC, "0.1", "60000", "1000"),
)


def test_cross_event_lists_every_cross_leg_and_no_isolated_one() -> None:
    """A CROSS event lists each cross leg once, and the claim touches no isolated position."""
    cs, event = decide_cross(RULES, MIXED, ETH, LOW_MARKS, MARK_TS, NOW_MS)
    assert cs is not None
    assert event is not None
    assert event.positions == tuple(
        EventLeg.of(leg, LOW_MARKS[leg.symbol]) for leg in MIXED.cross_legs
    )
    assert {(leg.symbol, leg.margin_mode) for leg in event.positions} == {
        (ETH, MarginMode.CROSS),
        (BTC, MarginMode.CROSS),
    }
    assert all(leg.margin is None for leg in event.positions)
    fields = [o[2] for o in ops(cs) if o[0] == "hset" and o[1] == KEYS.positions(ACCT)]
    assert sorted(fields) == ["CROSS|BTC", "CROSS|ETH"]
    assert not [o for o in ops(cs) if o[-1] == index_member(MarginMode.ISOLATED, ACCT)]


def test_isolated_event_lists_exactly_one_position() -> None:
    """An ISOLATED event lists its one position, and the claim leaves the cross account alone."""
    cs, event = decide_isolated(RULES, MIXED, ETH, [D("2500")], MARK_TS, NOW_MS)
    assert cs is not None
    assert event is not None
    assert event.positions == (
        EventLeg.of(MIXED.positions[(MarginMode.ISOLATED, ETH)].position, D("2500")),
    )
    assert event.positions[0].margin == D("300")
    assert not [o for o in ops(cs) if o[1] == KEYS.account(ACCT)]
    assert not [o for o in ops(cs) if o[-1] == index_member(MarginMode.CROSS, ACCT)]
    fields = [o[2] for o in ops(cs) if o[0] == "hset"]
    assert fields == ["ISOLATED|ETH"]


# --- liquidatable and liquidatable_state against the margin math -----------------------


def direct(state: AccountState, marks: Mapping[str, Decimal], at_equality: bool) -> set[str]:
    """What the margin module says is liquidatable among the OPEN parts of ``state``."""
    out: set[str] = set()
    legs = state.cross_legs if state.status is Status.OPEN else []
    if legs and all(leg.symbol in marks for leg in legs):
        health = margin.evaluate_cross(state.balance, legs, RULES.models, marks).health
        if margin.is_liquidatable(health, at_equality=at_equality):
            out.add(CROSS)
    for sp in state.positions.values():
        p = sp.position
        if p.margin_mode is MarginMode.ISOLATED and sp.status is Status.OPEN and p.symbol in marks:
            health = margin.isolated_health(p, marks[p.symbol], RULES.models[p.symbol])
            if margin.is_liquidatable(health, at_equality=at_equality):
                out.add(p.symbol)
    return out


ISO_ETH = iso(ETH, "1", "3000", "300")  # at 2500: 300 - 500 - 15 < 0; at 2900: 182.6 > 0
ISO_BTC_SHORT = iso(BTC, "-0.1", "60000", "1000")  # at 60000: 940 > 0; at 70000: -70 < 0
CROSS_ETH = cross(ETH, "1", "3000")  # at 2500 with balance 600: 85; with 500: -15
HIGH = {ETH: D("2500"), BTC: D("70000")}
MID = {ETH: D("2900"), BTC: D("60000")}

LIQUIDATABLE_CASES = [
    pytest.param(account("600", CROSS_ETH), HIGH, set(), id="cross-only-healthy"),
    pytest.param(account("500", CROSS_ETH), HIGH, {CROSS}, id="cross-only-liquidatable"),
    pytest.param(account("1000", *CROSS_LEGS), LOW_MARKS, set(), id="cross-two-legs-healthy"),
    pytest.param(account("750", *CROSS_LEGS), LOW_MARKS, {CROSS}, id="cross-two-legs-liq"),
    pytest.param(account("750", *CROSS_LEGS), {ETH: D("2500")}, set(), id="cross-leg-unmarked"),
    pytest.param(account("0", ISO_ETH, ISO_BTC_SHORT), MID, set(), id="isolated-healthy"),
    pytest.param(account("0", ISO_ETH, ISO_BTC_SHORT), HIGH, {ETH, BTC}, id="isolated-both"),
    pytest.param(
        account("0", ISO_ETH, ISO_BTC_SHORT), {ETH: D("2500")}, {ETH}, id="isolated-one-marked"
    ),
    pytest.param(account("600", CROSS_ETH, ISO_ETH), HIGH, {ETH}, id="one-symbol-isolated-liq"),
    pytest.param(account("100", CROSS_ETH, ISO_ETH), MID, {CROSS}, id="one-symbol-cross-liq"),
    pytest.param(account("500", CROSS_ETH, ISO_ETH), HIGH, {CROSS, ETH}, id="one-symbol-both"),
    pytest.param(account("600", CROSS_ETH, ISO_ETH), MID, set(), id="one-symbol-neither"),
    pytest.param(
        account("750", *CROSS_LEGS, ISO_BTC_SHORT),
        {ETH: D("2500"), BTC: D("70000")},
        {CROSS, BTC},
        id="cross-and-isolated-short",
    ),
    pytest.param(
        account("600", CROSS_ETH, StoredPosition(ISO_ETH, Status.LIQUIDATING, "A:ISOLATED:ETH:1")),
        HIGH,
        set(),
        id="liquidating-isolated-not-reported",
    ),
    pytest.param(
        account(
            "0",
            StoredPosition(ISO_ETH, Status.LIQUIDATING, "A:ISOLATED:ETH:1"),
            ISO_BTC_SHORT,
        ),
        HIGH,
        {BTC},
        id="liquidating-isolated-beside-open-one",
    ),
    pytest.param(
        account(
            "500",
            StoredPosition(CROSS_ETH, Status.LIQUIDATING, "A:CROSS:1"),
            ISO_ETH,
            status=Status.LIQUIDATING,
        ),
        HIGH,
        {ETH},
        id="liquidating-cross-not-reported",
    ),
]


@pytest.mark.parametrize(("state", "marks", "expected"), LIQUIDATABLE_CASES)
def test_liquidatable_state(
    state: AccountState, marks: dict[str, Decimal], expected: set[str]
) -> None:
    """liquidatable_state reports the OPEN parts the margin math finds liquidatable."""
    assert direct(state, marks, at_equality=False) == expected
    assert liquidatable_state(RULES, state, marks) == expected


@pytest.mark.parametrize(("state", "marks", "expected"), LIQUIDATABLE_CASES)
def test_liquidatable(state: AccountState, marks: dict[str, Decimal], expected: set[str]) -> None:
    """liquidatable over an account's OPEN cross legs and isolated positions agrees."""
    legs = state.cross_legs if state.status is Status.OPEN else []
    got = liquidatable(
        state.balance, legs, state.open_isolated, RULES.models, marks, at_equality=False
    )
    assert got == expected


@pytest.mark.parametrize(
    ("state", "marks", "expected_strict", "expected_eq"),
    [
        pytest.param(
            account("10.9", cross(SOL, "1", "100")), {SOL: D("90")}, set(), {CROSS}, id="cross"
        ),
        pytest.param(
            account("0", iso(SOL, "-2", "50", "11.1")), {SOL: D("55")}, set(), {SOL}, id="iso"
        ),
    ],
)
def test_liquidatable_at_equality(
    state: AccountState,
    marks: dict[str, Decimal],
    expected_strict: set[str],
    expected_eq: set[str],
) -> None:
    """Health exactly 0 is reported only under at_equality, as the margin math says."""
    assert liquidatable_state(RULES, state, marks) == expected_strict
    assert direct(state, marks, at_equality=False) == expected_strict
    assert liquidatable_state(RULES_EQ, state, marks) == expected_eq
    assert direct(state, marks, at_equality=True) == expected_eq
