"""Risk views over accounts as Redis holds them: a symbol's liquidation map, and what-if.

Pure: accounts, marks and models in, figures out. Every verdict is the
daemon's own, :func:`state.decisions.judge_cross` or
:func:`state.decisions.judge_isolated` with the equality rule, on the OPEN
parts of an account only (a LIQUIDATING account or position is the
executor's already). A cross account is judged only when every leg has a
mark, as the daemon judges it.

- **Map**: one symbol's mark moves step by step down and up (the other
  marks held); each isolated position and cross account not liquidatable
  now is counted at the first step that liquidates it, with its notional
  there, and the counts add up step by step (cumulative). Liquidatability
  is monotone along one direction for a position whose value moves one way
  with its price (every model but an orderly long past the notional where
  its marginal maintenance rate reaches 1), so the first step is found by
  bisection over the steps; otherwise every step is judged.
- **What-if**: everything liquidatable at a set of marks under a set of
  models; the CLI compares two of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal

from state.account import AccountState, Status
from state.decisions import judge_cross, judge_isolated
from state.models import ZERO, MaintenanceModel, MarginMode, OrderlyModel, Position

# What can be liquidated: (account, "CROSS") or (account, an isolated position's symbol).
ItemKey = tuple[str, str]
CROSS = "CROSS"


@dataclass(frozen=True, slots=True)
class Liquidation:
    """A cross account or an isolated position found liquidatable, with its figures."""

    account: str
    kind: MarginMode
    symbols: tuple[str, ...]
    notional: Decimal
    equity: Decimal
    maintenance: Decimal

    @property
    def key(self) -> ItemKey:
        """(account, "CROSS") or (account, the isolated position's symbol)."""
        return (self.account, CROSS if self.kind is MarginMode.CROSS else self.symbols[0])

    @property
    def health(self) -> Decimal:
        """Equity less maintenance margin (negative: under water)."""
        return self.equity - self.maintenance


# --- what-if -------------------------------------------------------------------------


def largest_first(found: Iterable[Liquidation]) -> list[Liquidation]:
    """Liquidations by notional, largest first (ties by key: a stable order)."""
    return sorted(found, key=lambda x: (-x.notional, x.key))


def account_liquidations(
    state: AccountState,
    marks: Mapping[str, Decimal],
    models: Mapping[str, MaintenanceModel],
    *,
    at_equality: bool,
) -> list[Liquidation]:
    """What of one account is liquidatable at ``marks``: its cross part, its isolated positions."""
    out: list[Liquidation] = []
    legs = state.cross_legs if state.status is Status.OPEN else []
    if legs and all(leg.symbol in marks for leg in legs):
        verdict, priced = judge_cross(state.balance, legs, models, marks, at_equality=at_equality)
        if verdict.liquidatable:
            symbols = tuple(leg.symbol for leg in legs)
            out.append(
                Liquidation(
                    state.account,
                    MarginMode.CROSS,
                    symbols,
                    priced.notional,
                    verdict.equity,
                    verdict.maintenance,
                )
            )
    for position in state.open_isolated:
        mark = marks.get(position.symbol)
        if mark is None:
            continue
        v = judge_isolated(position, models[position.symbol], mark, at_equality=at_equality)
        if v.liquidatable:
            notional = abs(position.qty) * mark
            out.append(
                Liquidation(
                    state.account,
                    MarginMode.ISOLATED,
                    (position.symbol,),
                    notional,
                    v.equity,
                    v.maintenance,
                )
            )
    return out


@dataclass(frozen=True, slots=True)
class Totals:
    """Counts and notionals of a set of liquidations."""

    cross: int = 0
    cross_notional: Decimal = ZERO
    isolated: int = 0
    isolated_notional: Decimal = ZERO

    @classmethod
    def of(cls, found: Iterable[Liquidation]) -> Totals:
        """Add ``found`` up."""
        c = i = 0
        cn = ino = ZERO
        for x in found:
            if x.kind is MarginMode.CROSS:
                c, cn = c + 1, cn + x.notional
            else:
                i, ino = i + 1, ino + x.notional
        return cls(c, cn, i, ino)

    @property
    def count(self) -> int:
        """Cross accounts and isolated positions."""
        return self.cross + self.isolated

    @property
    def notional(self) -> Decimal:
        """Their notional."""
        return self.cross_notional + self.isolated_notional


def moved(
    marks: Mapping[str, Decimal], moves: Mapping[str, tuple[str, Decimal]]
) -> dict[str, Decimal]:
    """``marks`` with each move applied: ("relative", -0.08) or ("price", 90000)."""
    out = dict(marks)
    for symbol, (how, value) in moves.items():
        if how == "price":
            out[symbol] = value
        else:
            out[symbol] = out[symbol] * (1 + value)
    return out


# --- the liquidation map ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MapStep:
    """One step of a map: what it liquidates first, and everything up to it."""

    step: int
    move: Decimal
    price: Decimal
    new: Totals
    cumulative: Totals


@dataclass(slots=True)
class LiquidationMap:
    """A symbol's liquidation map: steps down and up from its mark, other marks held."""

    symbol: str
    mark: Decimal
    range: Decimal
    step: Decimal
    down: list[MapStep] = field(default_factory=list)
    up: list[MapStep] = field(default_factory=list)
    # Items liquidatable at the current marks already (not counted in the steps).
    already: int = 0
    # Accounts judged.
    judged: int = 0


def step_count(range_: Decimal, step: Decimal) -> int:
    """How many steps of ``step`` fit in ``range_`` (both fractions of the mark)."""
    if not (ZERO < step <= range_ < 1):
        raise ValueError(f"need 0 < step <= range < 1, got step {step}, range {range_}")
    return int((range_ / step).to_integral_value(rounding=ROUND_FLOOR))


def step_prices(
    mark: Decimal, range_: Decimal, step: Decimal
) -> tuple[list[Decimal], list[Decimal]]:
    """The prices of the steps down and up: ``mark * (1 -/+ k * step)``, k = 1..n."""
    n = step_count(range_, step)
    down = [mark * (1 - k * step) for k in range(1, n + 1)]
    up = [mark * (1 + k * step) for k in range(1, n + 1)]
    return down, up


class MapBuilder:
    """A liquidation map built account by account (so that accounts can stream in)."""

    def __init__(
        self,
        symbol: str,
        marks: Mapping[str, Decimal],
        models: Mapping[str, MaintenanceModel],
        *,
        at_equality: bool,
        range_: Decimal,
        step: Decimal,
    ) -> None:
        self.symbol = symbol
        self.marks = dict(marks)
        self.models = models
        self.at_equality = at_equality
        self.down, self.up = step_prices(marks[symbol], range_, step)
        self.map = LiquidationMap(symbol, marks[symbol], range_, step)
        self._found: dict[int, list[Liquidation]] = {}

    def add(self, state: AccountState) -> None:
        """Judge one account along the steps."""
        self.map.judged += 1
        for _item, signed, hit in _account_items(
            state, self.symbol, self.marks, self.models, self.at_equality, self.down, self.up
        ):
            if signed == 0:
                self.map.already += 1
                continue
            self._found.setdefault(signed, []).append(hit)

    def result(self) -> LiquidationMap:
        """The map of every account added."""
        self.map.down = _steps(self._found, self.down, -1, self.map.step)
        self.map.up = _steps(self._found, self.up, 1, self.map.step)
        return self.map


def _steps(
    found: Mapping[int, list[Liquidation]], prices: Sequence[Decimal], sign: int, step: Decimal
) -> list[MapStep]:
    out = []
    total = Totals()
    for k, price in enumerate(prices, start=1):
        new = Totals.of(found.get(sign * k, []))
        total = Totals(
            total.cross + new.cross,
            total.cross_notional + new.cross_notional,
            total.isolated + new.isolated,
            total.isolated_notional + new.isolated_notional,
        )
        out.append(MapStep(sign * k, sign * k * step, price, new, total))
    return out


# (item, the signed first step of a direction, or 0: liquidatable now; the liquidation there)
_Found = tuple[ItemKey, int, Liquidation]


def _account_items(
    state: AccountState,
    symbol: str,
    marks: Mapping[str, Decimal],
    models: Mapping[str, MaintenanceModel],
    at_equality: bool,
    down: Sequence[Decimal],
    up: Sequence[Decimal],
) -> list[_Found]:
    out: list[_Found] = []
    legs = state.cross_legs if state.status is Status.OPEN else []
    on_symbol = [leg for leg in legs if leg.symbol == symbol]
    if on_symbol and all(leg.symbol in marks for leg in legs):

        def judge(price: Decimal) -> Liquidation | None:
            at = {**marks, symbol: price}
            verdict, priced = judge_cross(state.balance, legs, models, at, at_equality=at_equality)
            if not verdict.liquidatable:
                return None
            symbols = tuple(leg.symbol for leg in legs)
            return Liquidation(
                state.account,
                MarginMode.CROSS,
                symbols,
                priced.notional,
                verdict.equity,
                verdict.maintenance,
            )

        for hit in _first_hits(judge, on_symbol[0], models[symbol], marks[symbol], down, up):
            out.append(((state.account, CROSS), *hit))
    for position in state.open_isolated:
        if position.symbol != symbol:
            continue
        model = models[symbol]

        def judge_iso(
            price: Decimal, p: Position = position, m: MaintenanceModel = model
        ) -> Liquidation | None:
            v = judge_isolated(p, m, price, at_equality=at_equality)
            if not v.liquidatable:
                return None
            return Liquidation(
                state.account,
                MarginMode.ISOLATED,
                (symbol,),
                abs(p.qty) * price,
                v.equity,
                v.maintenance,
            )

        for hit in _first_hits(judge_iso, position, model, marks[symbol], down, up):
            out.append(((state.account, symbol), *hit))
    return out


def _first_hits(
    judge: Callable[[Decimal], Liquidation | None],
    position: Position,
    model: MaintenanceModel,
    mark: Decimal,
    down: Sequence[Decimal],
    up: Sequence[Decimal],
) -> list[tuple[int, Liquidation]]:
    """The signed first step of each direction that liquidates; [(0, ...)]: liquidatable now."""
    now = judge(mark)
    if now is not None:
        return [(0, now)]
    out = []
    for sign, prices in ((-1, down), (1, up)):
        if not prices:
            continue
        top = max(mark, prices[-1])
        found = _first(judge, prices, _monotone(position, model, top))
        if found is not None:
            k, hit = found
            out.append((sign * k, hit))
    return out


def _monotone(position: Position, model: MaintenanceModel, top: Decimal) -> bool:
    """Whether the position's value moves one way with its price up to ``top``.

    A short's value always falls as its price rises; a long's rises while its
    marginal maintenance rate is below 1, which only an orderly long can pass
    (at its model's ``cap`` notional).
    """
    if position.qty < 0 or not isinstance(model, OrderlyModel):
        return True
    return abs(position.qty) * top < model.cap


def _first(
    judge: Callable[[Decimal], Liquidation | None], prices: Sequence[Decimal], monotone: bool
) -> tuple[int, Liquidation] | None:
    """The first step (1-based) of ``prices`` that ``judge`` liquidates, and its liquidation.

    The steps go away from a mark that does not liquidate; moving one way,
    once liquidated a monotone position stays so, and bisection finds the
    first step with log2(steps) verdicts; otherwise every step is judged.
    """
    if not monotone:
        for k, price in enumerate(prices, start=1):
            hit = judge(price)
            if hit is not None:
                return k, hit
        return None
    last = judge(prices[-1])
    if last is None:
        return None
    lo, hi, best = 0, len(prices), last
    while hi - lo > 1:
        mid = (lo + hi) // 2
        hit = judge(prices[mid - 1])
        if hit is None:
            lo = mid
        else:
            hi, best = mid, hit
    return hi, best
