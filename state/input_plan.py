"""Plan input updates: an account's updates in a batch become one guarded change set.

Pure: takes the account as read (with its version) and returns the writes
that apply the updates atomically if, and only if, the account is still at
that version. Duplicates (seq not newer) are skipped, invalid updates set
aside with their reason, and the cross bands computed once, from the state
after the last update.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from state import margin
from state.account import AccountState, PositionKey, Status, StoredPosition
from state.bands import always, index_cross, index_isolated, unindex
from state.changes import ChangeSet
from state.errors import InputError, MarginError
from state.inputs import BalanceUpdate, InputMessage, LeverageUpdate, PositionUpdate
from state.keys import index_member, leverage_field, liquidating_member, position_field
from state.models import MarginMode, Position
from state.rules import Rules


@dataclass(frozen=True, slots=True)
class InputPlan:
    """An account's input updates planned as one atomic change.

    ``change`` holds the writes of every applied update (None if none
    applies); ``applied`` and ``duplicates`` index into the planned messages,
    ``rejected`` pairs an index with the reason it must be dead-lettered.
    ``needs_decision``: what the updates wrote may be liquidatable at the
    marks it was planned with (health not above zero, or an isolated
    position's trigger already crossed), so the engine should look at once.
    """

    change: ChangeSet | None
    after: AccountState
    applied: list[int]
    duplicates: list[int]
    rejected: list[tuple[int, InputError]]
    needs_decision: bool = False


def plan_inputs(
    rules: Rules, state: AccountState, msgs: Sequence[InputMessage], marks: Mapping[str, Decimal]
) -> InputPlan:
    """Plan consecutive updates of one account, in order, as one guarded change set.

    Duplicates (seq not newer) and invalid updates are left out; the account's
    bands are computed once, from the state after the last update.
    """
    keys = rules.keys
    cs = ChangeSet(keys, state.account).expect_version(state.version)
    current = state
    reband = False
    crossed = False
    applied: list[int] = []
    duplicates: list[int] = []
    rejected: list[tuple[int, InputError]] = []
    for i, msg in enumerate(msgs):
        if current.seq is not None and msg.seq <= current.seq:
            duplicates.append(i)
            continue
        part = ChangeSet(keys, state.account)
        try:
            current, needs_bands, isolated_crossed = _apply(rules, part, current, msg, marks)
        except InputError as exc:
            rejected.append((i, exc))
            continue
        except (ArithmeticError, MarginError) as exc:
            # Valid on its face, but the math cannot take it: set it aside.
            rejected.append((i, InputError(f"cannot be priced: {exc!r}")))
            continue
        cs.absorb(part)
        reband = reband or needs_bands
        crossed = crossed or isolated_crossed
        applied.append(i)
    if not applied:
        return InputPlan(None, state, applied, duplicates, rejected)
    if reband:
        try:
            priced = index_cross(cs, rules, current, marks)
        except (ArithmeticError, MarginError):
            # Bands cannot be had for this state: look at it on every tick;
            # the engine sets it aside if it cannot decide it either.
            always(cs, rules, current)
            priced = None
        crossed = crossed or (priced is not None and priced.health <= 0)
    assert current.seq is not None  # every applied update carries one
    if rules.warnings is not None:
        # Its warning state is looked at again at the marks of the moment.
        cs.sadd(keys.warn_dirty, state.account)
    cs.set_seq(current.seq).bump(len(applied))
    current = replace(current, version=state.version + len(applied))
    return InputPlan(cs, current, applied, duplicates, rejected, crossed)


def _apply(
    rules: Rules,
    cs: ChangeSet,
    state: AccountState,
    msg: InputMessage,
    marks: Mapping[str, Decimal],
) -> tuple[AccountState, bool, bool]:
    """Add one update's writes (no bands).

    Returns the account after it, whether to re-band, and whether an isolated
    position it wrote has its trigger crossed at ``marks``.
    """
    keys = rules.keys
    acct_key = keys.account(state.account)
    positions = dict(state.positions)
    leverage = dict(state.leverage)
    balance = state.balance
    reband = crossed = False
    if isinstance(msg, BalanceUpdate):
        balance = msg.balance
        cs.hset(acct_key, "balance", str(balance))
        reband = True
    elif isinstance(msg, LeverageUpdate):
        leverage[(msg.margin_mode, msg.symbol)] = msg.leverage
        cs.hset(acct_key, leverage_field(msg.margin_mode, msg.symbol), str(msg.leverage))
    else:
        triggers = _plan_position(rules, cs, state, msg, positions, leverage)
        reband = triggers is None and msg.margin_mode is MarginMode.CROSS
        mark = marks.get(msg.symbol)
        crossed = triggers is not None and mark is not None and triggers.crossed(mark)
    status = (
        Status.LIQUIDATING
        if any(
            sp.status is Status.LIQUIDATING
            for (mode, _), sp in positions.items()
            if mode is MarginMode.CROSS
        )
        else Status.OPEN
    )
    if status is not state.status:
        cs.hset(acct_key, "status", status.value)
        if status is Status.OPEN:
            cs.zrem(keys.liquidating, liquidating_member(MarginMode.CROSS, state.account))
            reband = True
    after = AccountState(
        state.account, balance, msg.seq, state.version, status, positions, leverage, state.warnings
    )
    return after, reband, crossed


def _plan_position(
    rules: Rules,
    cs: ChangeSet,
    state: AccountState,
    msg: PositionUpdate,
    positions: dict[PositionKey, StoredPosition],
    leverage: dict[PositionKey, Decimal],
) -> margin.Triggers | None:
    """Add the writes of a position update; an isolated position's new triggers, if any."""
    keys = rules.keys
    pkey = (msg.margin_mode, msg.symbol)
    pos_key = keys.positions(state.account)
    member = index_member(msg.margin_mode, state.account)
    was = positions.get(pkey)
    if (
        msg.margin_mode is MarginMode.ISOLATED
        and was is not None
        and was.status is Status.LIQUIDATING
    ):
        cs.zrem(
            keys.liquidating, liquidating_member(MarginMode.ISOLATED, state.account, msg.symbol)
        )
    if msg.qty == 0:
        positions.pop(pkey, None)
        cs.hdel(pos_key, position_field(*pkey))
        unindex(cs, rules, msg.symbol, member)
        return None
    assert msg.entry_price is not None  # parse_input guarantees it for qty != 0
    if msg.leverage is not None:
        leverage[pkey] = msg.leverage
        cs.hset(keys.account(state.account), leverage_field(*pkey), str(msg.leverage))
    isolated_margin = None
    if msg.margin_mode is MarginMode.ISOLATED:
        isolated_margin = msg.margin
        if isolated_margin is None:
            lev = leverage.get(pkey)
            if lev is None:
                raise InputError(
                    f"margin: missing, and no leverage for ({msg.symbol}, ISOLATED) to derive it"
                )
            isolated_margin = margin.isolated_margin_from_leverage(msg.qty, msg.entry_price, lev)
    try:
        position = Position(
            state.account,
            msg.symbol,
            msg.margin_mode,
            msg.qty,
            msg.entry_price,
            isolated_margin,
            leverage.get(pkey),
        )
    except MarginError as exc:
        raise InputError(str(exc)) from None
    stored = StoredPosition(position)
    positions[pkey] = stored
    cs.hset(pos_key, position_field(*pkey), stored.to_json())
    if msg.margin_mode is MarginMode.ISOLATED:
        return index_isolated(cs, rules, position)
    return None
