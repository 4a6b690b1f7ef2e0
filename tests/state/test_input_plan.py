"""Input planning: one account's batch of updates becomes one guarded change set."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from decimal import Context, Decimal
from typing import Any

import orjson
import pytest

from state import margin
from state.account import AccountState, PositionKey, Status, StoredPosition
from state.bands import ALWAYS_DOWN
from state.changes import ChangeSet
from state.input_plan import InputPlan, plan_inputs
from state.inputs import InputMessage, parse_input
from state.keys import Keys, index_member, liquidating_member
from state.models import FlatModel, MarginMode, Market, Position, Seq
from state.rules import Rules

D = Decimal
ETH, BTC = "ETH", "BTC"
MARKETS = {
    ETH: Market(ETH, FlatModel(D("0.006"))),
    BTC: Market(BTC, FlatModel(D("0.01"))),
}
KEYS = Keys("t")
RULES = Rules(KEYS, MARKETS)
ACCT = "A1"
MARKS = {ETH: D("3000"), BTC: D("60000")}
CROSS_MEMBER = index_member(MarginMode.CROSS, ACCT)
ISO_MEMBER = index_member(MarginMode.ISOLATED, ACCT)
ISO, CRS = MarginMode.ISOLATED, MarginMode.CROSS


def msg(**fields: Any) -> InputMessage:
    """Parse one input message through the real parser."""
    # The standard json module, as a producer might: it writes integers of any size.
    return parse_input(json.dumps({"account": ACCT, **fields}).encode(), MARKETS)


def balance(seq: int, value: str) -> InputMessage:
    return msg(type="balance", balance=value, seq=seq)


def position(seq: int, symbol: str, mode: MarginMode, qty: str, **extra: str) -> InputMessage:
    fields = {"symbol": symbol, "margin_mode": mode.value, "qty": qty, **extra}
    return msg(type="position", seq=seq, **fields)


def leverage(seq: int, symbol: str, mode: MarginMode, value: str) -> InputMessage:
    return msg(type="leverage", symbol=symbol, margin_mode=mode.value, leverage=value, seq=seq)


def stored(
    symbol: str, mode: MarginMode, qty: str, entry: str, margin_: str | None = None
) -> StoredPosition:
    m = None if margin_ is None else D(margin_)
    return StoredPosition(Position(ACCT, symbol, mode, D(qty), D(entry), m))


def account(
    balance_: str = "0",
    *positions: StoredPosition,
    seq: int | None = None,
    version: int = 0,
    status: Status = Status.OPEN,
    lev: dict[PositionKey, str] | None = None,
) -> AccountState:
    return replace(
        AccountState.empty(ACCT),
        balance=D(balance_),
        seq=None if seq is None else Seq.of(seq),
        version=version,
        status=status,
        positions={(sp.position.margin_mode, sp.position.symbol): sp for sp in positions},
        leverage={k: D(v) for k, v in (lev or {}).items()},
    )


def spec(cs: ChangeSet) -> dict[str, Any]:
    return orjson.loads(cs.argument())  # type: ignore[no-any-return]


def ops(cs: ChangeSet) -> list[tuple[Any, ...]]:
    """The change set's writes: (op, key, args...)."""
    return [tuple(op) for op in spec(cs).get("ops", [])]


def index_ops(cs: ChangeSet, member: str) -> list[tuple[Any, ...]]:
    return [o for o in ops(cs) if ":idx:" in o[1] and o[-1] == member]


def hsets(cs: ChangeSet, key: str) -> dict[str, str]:
    """The last value each field of ``key`` is set to."""
    return {o[2]: o[3] for o in ops(cs) if o[0] == "hset" and o[1] == key}


def plan(state: AccountState, *msgs: InputMessage, marks: dict[str, Decimal] = MARKS) -> InputPlan:
    return plan_inputs(RULES, state, list(msgs), marks)


def expected_band_ops(state: AccountState, marks: dict[str, Decimal]) -> list[tuple[Any, ...]]:
    """The index writes of fresh bands for the cross legs of ``state``, from the margin math."""
    legs = state.cross_legs
    bands = margin.trigger_bands(state.balance, legs, RULES.models, marks)
    out: list[tuple[Any, ...]] = []
    for leg, triggers in zip(legs, bands, strict=True):
        for direction, price in (("down", triggers.down), ("up", triggers.up)):
            key = KEYS.index(leg.symbol, direction)  # type: ignore[arg-type]
            if price is None:
                out.append(("zrem", key, CROSS_MEMBER))
            else:
                score = margin.index_score(price, down=direction == "down")
                out.append(("zadd", key, repr(score), CROSS_MEMBER))
    return out


# --- seq dedupe ------------------------------------------------------------------------

SEQ_CASES = [
    # (stored seq, seqs in the batch, applied indexes, duplicate indexes)
    pytest.param(None, [1, 2, 3], [0, 1, 2], [], id="new-account"),
    pytest.param(None, [0, 0], [0], [1], id="new-account-seq-zero-twice"),
    pytest.param(5, [3, 5, 6, 6, 8, 7], [2, 4], [0, 1, 3, 5], id="older-equal-and-repeated"),
    pytest.param(5, [6, 7, 9], [0, 1, 2], [], id="gaps-allowed"),
    pytest.param(5, [5, 4, 0], [], [0, 1, 2], id="all-duplicates"),
    pytest.param(2**70, [2**70, 2**70 + 1], [1], [0], id="past-2-to-the-64"),
]


@pytest.mark.parametrize(("stored_seq", "seqs", "applied", "duplicates"), SEQ_CASES)
def test_seq_dedupe(
    stored_seq: int | None, seqs: list[int], applied: list[int], duplicates: list[int]
) -> None:
    """Updates not newer than the last applied seq are duplicates; the last applied seq is kept."""
    state = account("1", seq=stored_seq, version=3)
    msgs = [balance(s, str(100 + i)) for i, s in enumerate(seqs)]
    p = plan(state, *msgs)
    assert p.applied == applied
    assert p.duplicates == duplicates
    assert p.rejected == []
    if not applied:
        assert p.change is None
        assert p.after == state
        return
    assert p.change is not None
    last = msgs[applied[-1]]
    assert p.after.seq == last.seq
    assert p.after.balance == D(100 + applied[-1])
    s = spec(p.change)
    assert s["set_seq"] == str(last.seq)
    assert s["bump"] == len(applied)
    assert s["version"] == "3"
    assert "seq" not in s
    assert p.after.version == 3 + len(applied)
    # Only applied updates write their balance.
    written = [o[3] for o in ops(p.change) if o[0] == "hset" and o[2] == "balance"]
    assert written == [str(100 + i) for i in applied]


def test_seq_as_a_string_of_digits() -> None:
    """A seq sent as a string of digits past 2^53 is compared exactly."""
    big = 2**53 + 1
    state = account("1", seq=big - 1)
    dup = msg(type="balance", balance="5", seq=str(big - 1))
    new = msg(type="balance", balance="6", seq=str(big))
    p = plan(state, dup, new)
    assert (p.applied, p.duplicates) == ([1], [0])
    assert p.after.seq == Seq.of(big)


# --- refusals ---------------------------------------------------------------------------

REFUSALS = [
    pytest.param({}, None, id="no-leverage-anywhere"),
    pytest.param({(CRS, ETH): "10"}, None, id="cross-leverage-does-not-count"),
    pytest.param({(ISO, BTC): "10"}, None, id="other-symbol-does-not-count"),
    pytest.param({}, leverage(1, ETH, CRS, "10"), id="cross-leverage-in-batch"),
]


@pytest.mark.parametrize(("lev", "before"), REFUSALS)
def test_isolated_without_margin_or_leverage_is_rejected(
    lev: dict[PositionKey, str], before: InputMessage | None
) -> None:
    """An ISOLATED position with neither margin nor a known leverage is rejected; the rest apply."""
    state = account("0", lev=lev, version=2)
    msgs = [
        *([before] if before else []),
        balance(2, "1000"),
        position(3, ETH, ISO, "1", entry_price="3000"),
        position(4, BTC, CRS, "0.1", entry_price="60000"),
    ]
    p = plan(state, *msgs)
    bad = len(msgs) - 2
    assert [i for i, _ in p.rejected] == [bad]
    reason = p.rejected[0][1].reason
    assert "margin" in reason
    assert "leverage" in reason
    assert p.applied == [i for i in range(len(msgs)) if i != bad]
    assert p.duplicates == []
    assert (ISO, ETH) not in p.after.positions
    assert (CRS, BTC) in p.after.positions
    assert p.after.balance == D("1000")
    assert p.after.seq == Seq.of(4)
    assert p.change is not None
    assert "ISOLATED|ETH" not in hsets(p.change, KEYS.positions(ACCT))
    assert not index_ops(p.change, ISO_MEMBER)
    assert spec(p.change)["bump"] == len(p.applied)


def test_rejected_last_update_does_not_advance_seq() -> None:
    """The stored seq is the last applied update's, not a rejected later one's."""
    p = plan(account("0", seq=1), balance(2, "5"), position(3, ETH, ISO, "1", entry_price="1"))
    assert p.applied == [0]
    assert [i for i, _ in p.rejected] == [1]
    assert p.change is not None
    assert spec(p.change)["set_seq"] == "2"
    assert p.after.seq == Seq.of(2)


def test_only_rejected_updates_plan_nothing() -> None:
    """A batch with nothing applied has no change set and leaves the account as it was."""
    state = account("0", seq=1, version=5)
    p = plan(state, position(2, ETH, ISO, "1", entry_price="1"))
    assert p.change is None
    assert p.after == state
    assert p.applied == []


# --- margin from leverage ----------------------------------------------------------------

MARGIN_CASES = [
    # (stored leverage, batch before the position, position extras, qty, entry, leverage used)
    pytest.param({}, [], {"leverage": "20"}, "-1.5", "3000", "20", id="in-message"),
    pytest.param({}, [leverage(1, ETH, ISO, "8")], {}, "2", "1000", "8", id="earlier-in-batch"),
    pytest.param({(ISO, ETH): "4"}, [], {}, "0.3", "2500", "4", id="stored-in-account"),
    pytest.param(
        {(ISO, ETH): "4"}, [], {"leverage": "10"}, "1", "3000", "10", id="msg-over-stored"
    ),
    pytest.param(
        {(ISO, ETH): "4"},
        [leverage(1, ETH, ISO, "5")],
        {},
        "1",
        "3000",
        "5",
        id="batch-over-stored",
    ),
    pytest.param({}, [], {"leverage": "3"}, "1", "1000", "3", id="non-terminating"),
    pytest.param({}, [], {"leverage": "1000"}, "0.000001", "7", "1000", id="tiny"),
]


@pytest.mark.parametrize(("lev", "before", "extra", "qty", "entry", "used"), MARGIN_CASES)
def test_isolated_margin_from_leverage(
    lev: dict[PositionKey, str],
    before: list[InputMessage],
    extra: dict[str, str],
    qty: str,
    entry: str,
    used: str,
) -> None:
    """Without a margin the stored margin is |qty| * entry / leverage, exactly (40 digits)."""
    # Settings of other (mode, symbol) keys never price this position.
    state = account("0", lev={**lev, (CRS, ETH): "50", (ISO, BTC): "2"})
    update = position(len(before) + 1, ETH, ISO, qty, entry_price=entry, **extra)
    p = plan(state, *before, update)
    assert p.rejected == []
    assert p.change is not None
    expected = Context(prec=40).divide(abs(D(qty)) * D(entry), D(used))
    stored_pos = p.after.positions[(ISO, ETH)].position
    assert stored_pos.margin == expected
    assert stored_pos.leverage == D(used)
    raw = orjson.loads(hsets(p.change, KEYS.positions(ACCT))["ISOLATED|ETH"])
    assert D(raw["margin"]) == expected
    assert D(raw["leverage"]) == D(used)
    assert raw["status"] == "OPEN"


def test_exact_leverage_margins() -> None:
    """The derived margins of round cases are the exact quotients, not rounded to cents."""
    cases = [
        ("-1.5", "3000", "20", "225"),
        ("0.3", "2500", "4", "187.5"),
        ("1", "7", "1000", "0.007"),
    ]
    for qty, entry, lev, want in cases:
        p = plan(account("0"), position(1, ETH, ISO, qty, entry_price=entry, leverage=lev))
        assert p.after.positions[(ISO, ETH)].position.margin == D(want)


def test_message_leverage_is_stored_as_the_setting() -> None:
    """A position message carrying leverage also sets the account's leverage for its key."""
    p = plan(account("0"), position(1, ETH, ISO, "1", entry_price="3000", leverage="20"))
    assert p.change is not None
    assert hsets(p.change, KEYS.account(ACCT))["lev|ISOLATED|ETH"] == "20"
    assert p.after.leverage == {(ISO, ETH): D("20")}


def test_explicit_margin_wins_over_leverage() -> None:
    """An explicit margin is stored as sent, whatever the leverage."""
    state = account("0", lev={(ISO, ETH): "4"})
    p = plan(state, position(1, ETH, ISO, "1", entry_price="3000", margin="123.45", leverage="10"))
    pos = p.after.positions[(ISO, ETH)].position
    assert pos.margin == D("123.45")
    assert pos.leverage == D("10")


def test_isolated_position_is_indexed_at_its_liquidation_price() -> None:
    """A new isolated long is scored at its exact liquidation price and not re-bands the cross."""
    state = account("1000", stored(BTC, CRS, "0.1", "60000"))
    p = plan(state, position(1, ETH, ISO, "1", entry_price="3000", margin="300"))
    assert p.change is not None
    pos = p.after.positions[(ISO, ETH)].position
    liq = margin.isolated_liq_price(pos, MARKETS[ETH].maintenance)
    assert liq is not None
    assert index_ops(p.change, ISO_MEMBER) == [
        ("zadd", KEYS.index(ETH, "down"), repr(margin.index_score(liq, down=True)), ISO_MEMBER),
        ("zrem", KEYS.index(ETH, "up"), ISO_MEMBER),
    ]
    assert index_ops(p.change, CROSS_MEMBER) == []


# --- re-banding once per batch -------------------------------------------------------------


def _one_per_key(cs: ChangeSet, member: str) -> Counter[str]:
    return Counter(o[1] for o in index_ops(cs, member))


def test_rebands_once_from_the_final_state() -> None:
    """Several updates to a cross account write one set of bands, from the state after the last."""
    state = account(
        "1000",
        stored(ETH, CRS, "1", "3000"),
        stored(BTC, CRS, "-0.1", "60000"),
        seq=10,
        version=7,
    )
    msgs = [
        balance(9, "1"),  # duplicate
        balance(11, "900"),
        position(12, ETH, CRS, "2", entry_price="3000"),
        balance(13, "2000"),
        position(14, ETH, ISO, "1", entry_price="3000"),  # rejected: no margin, no leverage
        leverage(15, BTC, CRS, "10"),
        position(16, BTC, CRS, "-0.2", entry_price="61000"),
        balance(17, "1500"),
    ]
    p = plan(state, *msgs)
    assert p.applied == [1, 2, 3, 5, 6, 7]
    assert p.duplicates == [0]
    assert [i for i, _ in p.rejected] == [4]
    assert p.change is not None
    s = spec(p.change)
    assert s["bump"] == len(p.applied) == 6
    assert s["version"] == str(state.version)
    assert s["set_seq"] == "17"
    assert p.after.version == state.version + 6
    assert _one_per_key(p.change, CROSS_MEMBER) == {
        KEYS.index(ETH, "down"): 1,
        KEYS.index(ETH, "up"): 1,
        KEYS.index(BTC, "down"): 1,
        KEYS.index(BTC, "up"): 1,
    }
    assert p.after.balance == D("1500")
    assert index_ops(p.change, CROSS_MEMBER) == expected_band_ops(p.after, MARKS)
    # The bands are those of the final balance, not of an earlier one.
    earlier = replace(p.after, balance=D("2000"))
    assert index_ops(p.change, CROSS_MEMBER) != expected_band_ops(earlier, MARKS)


def test_rebands_always_without_every_mark() -> None:
    """Without a mark for every leg each cross leg is looked at on every tick, once per batch."""
    state = account("1000", stored(ETH, CRS, "1", "3000"), stored(BTC, CRS, "-0.1", "60000"))
    p = plan(state, balance(1, "900"), balance(2, "800"), marks={ETH: D("3000")})
    assert p.change is not None
    assert index_ops(p.change, CROSS_MEMBER) == [
        ("zadd", KEYS.index(BTC, "down"), repr(ALWAYS_DOWN), CROSS_MEMBER),
        ("zrem", KEYS.index(BTC, "up"), CROSS_MEMBER),
        ("zadd", KEYS.index(ETH, "down"), repr(ALWAYS_DOWN), CROSS_MEMBER),
        ("zrem", KEYS.index(ETH, "up"), CROSS_MEMBER),
    ]


def test_rebands_always_when_unhealthy() -> None:
    """A cross account left without positive health by its updates is looked at on every tick."""
    state = account("1000", stored(ETH, CRS, "1", "3000"))
    p = plan(state, balance(1, "900"), balance(2, "-5"))
    assert p.change is not None
    assert index_ops(p.change, CROSS_MEMBER) == [
        ("zadd", KEYS.index(ETH, "down"), repr(ALWAYS_DOWN), CROSS_MEMBER),
        ("zrem", KEYS.index(ETH, "up"), CROSS_MEMBER),
    ]


def test_leverage_only_batch_writes_no_index() -> None:
    """Leverage settings alone do not touch the index."""
    state = account("1000", stored(ETH, CRS, "1", "3000"), seq=1, version=2)
    p = plan(state, leverage(2, ETH, ISO, "10"), leverage(3, ETH, CRS, "5"))
    assert p.change is not None
    assert [o for o in ops(p.change) if ":idx:" in o[1]] == []
    assert spec(p.change)["bump"] == 2
    assert hsets(p.change, KEYS.account(ACCT)) == {"lev|ISOLATED|ETH": "10", "lev|CROSS|ETH": "5"}


def test_liquidating_cross_account_reopens_and_rebands_once() -> None:
    """Updating every leg of a LIQUIDATING cross account reopens it and bands it once."""
    legs = [
        StoredPosition(sp.position, Status.LIQUIDATING, "A1:CROSS:3")
        for sp in (stored(ETH, CRS, "1", "3000"), stored(BTC, CRS, "-0.1", "60000"))
    ]
    state = account("1000", *legs, seq=4, version=4, status=Status.LIQUIDATING)
    p = plan(
        state,
        position(5, ETH, CRS, "0"),
        position(6, BTC, CRS, "-0.05", entry_price="60000"),
    )
    assert p.change is not None
    assert p.after.status is Status.OPEN
    assert (CRS, ETH) not in p.after.positions
    assert hsets(p.change, KEYS.account(ACCT))["status"] == "OPEN"
    zrems = [o for o in ops(p.change) if o[1] == KEYS.liquidating]
    assert zrems == [("zrem", KEYS.liquidating, liquidating_member(CRS, ACCT))]
    assert _one_per_key(p.change, CROSS_MEMBER) == {
        KEYS.index(ETH, "down"): 1,
        KEYS.index(ETH, "up"): 1,
        KEYS.index(BTC, "down"): 1,
        KEYS.index(BTC, "up"): 1,
    }
    assert [o for o in index_ops(p.change, CROSS_MEMBER) if BTC in o[1]] == expected_band_ops(
        p.after, MARKS
    )


# --- closing ----------------------------------------------------------------------------

FULL = account(
    "1000",
    stored(ETH, CRS, "1", "3000"),
    stored(BTC, CRS, "-0.1", "60000"),
    stored(ETH, ISO, "1", "3000", "300"),
    seq=1,
    version=9,
)


@pytest.mark.parametrize("mode", [ISO, CRS])
def test_closing_removes_the_position_and_its_members(mode: MarginMode) -> None:
    """qty 0 deletes the position from the hash and its member from both index sets."""
    p = plan(FULL, position(2, ETH, mode, "0"))
    assert p.applied == [0]
    assert p.change is not None
    assert (mode, ETH) not in p.after.positions
    assert set(p.after.positions) == set(FULL.positions) - {(mode, ETH)}
    deletes = [o for o in ops(p.change) if o[0] == "hdel"]
    assert deletes == [("hdel", KEYS.positions(ACCT), f"{mode.value}|ETH")]
    member = index_member(mode, ACCT)
    eth_ops = [o for o in index_ops(p.change, member) if f":idx:{ETH}:" in o[1]]
    assert eth_ops == [
        ("zrem", KEYS.index(ETH, "down"), member),
        ("zrem", KEYS.index(ETH, "up"), member),
    ]


def test_closing_an_isolated_position_leaves_the_cross_bands_alone() -> None:
    """Closing an isolated position writes no cross index entries."""
    p = plan(FULL, position(2, ETH, ISO, "0"))
    assert p.change is not None
    assert index_ops(p.change, CROSS_MEMBER) == []


def test_closing_a_cross_leg_rebands_the_others() -> None:
    """Closing one cross leg re-bands the remaining legs from the account without it."""
    p = plan(FULL, position(2, ETH, CRS, "0"))
    assert p.change is not None
    assert [leg.symbol for leg in p.after.cross_legs] == [BTC]
    btc = [o for o in index_ops(p.change, CROSS_MEMBER) if f":idx:{BTC}:" in o[1]]
    assert btc == expected_band_ops(p.after, MARKS)
    assert index_ops(p.change, ISO_MEMBER) == []


def test_closing_the_last_cross_leg() -> None:
    """Closing the only cross leg leaves no cross member anywhere."""
    state = account("1000", stored(ETH, CRS, "1", "3000"), seq=1)
    p = plan(state, position(2, ETH, CRS, "0"))
    assert p.change is not None
    assert p.after.positions == {}
    assert index_ops(p.change, CROSS_MEMBER) == [
        ("zrem", KEYS.index(ETH, "down"), CROSS_MEMBER),
        ("zrem", KEYS.index(ETH, "up"), CROSS_MEMBER),
    ]


def test_open_then_close_in_one_batch() -> None:
    """A position opened and closed in one batch ends absent, its last index write a removal."""
    p = plan(
        account("0"),
        position(1, ETH, ISO, "1", entry_price="3000", margin="300"),
        position(2, ETH, ISO, "0"),
    )
    assert p.change is not None
    assert p.after.positions == {}
    writes = [o for o in ops(p.change) if o[1] == KEYS.positions(ACCT)]
    assert [o[0] for o in writes] == ["hset", "hdel"]
    last = {}
    for o in index_ops(p.change, ISO_MEMBER):
        last[o[1]] = o[0]
    assert last == {KEYS.index(ETH, "down"): "zrem", KEYS.index(ETH, "up"): "zrem"}
