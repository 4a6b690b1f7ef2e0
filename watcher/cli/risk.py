"""``liqwatch map`` and ``liqwatch whatif``: the book's liquidation risk, read-only.

Both read the live state in Redis through the index wherever it can answer
(:mod:`state.store.risk`) and judge every account with the daemon's own
decision functions (:mod:`state.risk`); neither writes anything.

- ``map SYMBOL``: per step of the symbol's mark down and up (other marks
  held), what would be liquidated, cumulative: a terminal chart, ``--json``,
  and ``--png FILE`` (matplotlib, the optional ``plot`` extra).
- ``whatif``: moved marks and/or other maintenance parameters; what would be
  liquidated, and what the new parameters change.
"""

from __future__ import annotations

import argparse
import json
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from state.errors import StoreError
from state.models import BracketsModel, FlatModel, MaintenanceModel
from state.risk import (
    Liquidation,
    LiquidationMap,
    MapStep,
    Totals,
    account_liquidations,
    largest_first,
    moved,
)
from state.store import Store
from state.store.risk import (
    StoredMark,
    all_accounts,
    build_map,
    read_accounts,
    read_marks,
    whatif_candidates,
)
from watcher.cli.context import EXIT_USAGE, Failed, settings_from, with_redis
from watcher.daemon.config import ConfigError, Settings, parse_model

# A map or a what-if over a large book reads a lot: it may take this long in all.
RISK_TIMEOUT = 300.0
DEFAULT_RANGE = "10%"
DEFAULT_STEP = "1%"
BAR_WIDTH = 32
_EIGHTHS = " ▏▎▍▌▋▊▉"


def fraction(text: str) -> Decimal:
    """Parse ``10%`` or ``0.1`` as the fraction 0.1 (argparse type)."""
    raw = text.strip()
    try:
        value = Decimal(raw[:-1]) / 100 if raw.endswith("%") else Decimal(raw)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a percentage or fraction: {text!r}") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return value


def compact(value: Decimal) -> str:
    """Money at a glance: 1.23M, 45.6k, 789.00."""
    a = abs(value)
    for limit, suffix in ((Decimal(10) ** 9, "B"), (Decimal(10) ** 6, "M"), (Decimal(1000), "k")):
        if a >= limit:
            return f"{value / limit:.2f}{suffix}"
    return f"{value:.2f}"


def _pct(value: Decimal) -> str:
    text = f"{value * 100:+f}".rstrip("0").rstrip(".")
    return ("0" if text in ("+0", "-0") else text) + "%"


def _dec(value: Decimal) -> str:
    return str(value)


# --- map ---------------------------------------------------------------------------


def add_map_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``liqwatch map``."""
    parser.add_argument("symbol", metavar="SYMBOL")
    parser.add_argument(
        "--range", type=fraction, default=DEFAULT_RANGE, help="how far to move the mark (10%%)"
    )
    parser.add_argument("--step", type=fraction, default=DEFAULT_STEP, help="step size (1%%)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--png", type=Path, metavar="FILE", help="also draw the map to a PNG file")


@dataclass(frozen=True, slots=True)
class MapResult:
    """A map as read, with what the reading cost."""

    map: LiquidationMap
    marks: dict[str, StoredMark]
    candidates: int
    unreadable: int
    seconds: float


def map_command(args: argparse.Namespace) -> int:
    """Print the liquidation map of ``args.symbol``."""
    settings = settings_from(args.config)
    if args.symbol not in settings.markets:
        raise Failed(f"{args.symbol}: no [markets.{args.symbol}] in the config", EXIT_USAGE)
    if not (0 < args.step <= args.range < 1):
        raise Failed(
            f"need 0 < --step <= --range < 100%, got step {args.step}, range {args.range}",
            EXIT_USAGE,
        )
    result = with_redis(settings, lambda r: read_map(r, settings, args), timeout=RISK_TIMEOUT)
    if args.png is not None:
        write_png(result, args.png)
    print(json.dumps(map_json(result), indent=2) if args.json else map_text(result))
    return 0


async def read_map(
    redis: aioredis.Redis, settings: Settings, args: argparse.Namespace
) -> MapResult:
    """Build the map from Redis."""
    started = time.perf_counter()
    models = {s: m.maintenance for s, m in settings.markets.items()}
    read = await build_map(
        Store(redis, settings.keys),
        models,
        args.symbol,
        at_equality=settings.at_equality,
        range_=args.range,
        step=args.step,
    )
    return MapResult(
        read.map, read.marks, read.candidates, len(read.unreadable), time.perf_counter() - started
    )


def _totals_json(t: Totals) -> dict[str, Any]:
    return {
        "isolated": t.isolated,
        "isolated_notional": _dec(t.isolated_notional),
        "cross": t.cross,
        "cross_notional": _dec(t.cross_notional),
        "count": t.count,
        "notional": _dec(t.notional),
    }


def _step_json(s: MapStep) -> dict[str, Any]:
    return {
        "step": s.step,
        "move": _dec(s.move),
        "price": _dec(s.price),
        "new": _totals_json(s.new),
        "cumulative": _totals_json(s.cumulative),
    }


def map_json(result: MapResult) -> dict[str, Any]:
    """The map as one JSON document (Decimals as strings)."""
    m = result.map
    return {
        "symbol": m.symbol,
        "mark": _dec(m.mark),
        "mark_status": result.marks[m.symbol].status,
        "range": _dec(m.range),
        "step": _dec(m.step),
        "other_marks": {
            s: {"price": _dec(x.price), "status": x.status}
            for s, x in result.marks.items()
            if s != m.symbol
        },
        "candidates": result.candidates,
        "judged": m.judged,
        "liquidatable_now": m.already,
        "unreadable": result.unreadable,
        "seconds": round(result.seconds, 3),
        "down": [_step_json(s) for s in m.down],
        "up": [_step_json(s) for s in m.up],
    }


def bar(value: Decimal, top: Decimal, width: int = BAR_WIDTH) -> str:
    """A horizontal bar of ``width`` cells for ``value`` out of ``top``, in eighths."""
    if top <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value / top * width * 8))
    full, part = divmod(int(eighths), 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


def map_text(result: MapResult) -> str:
    """The map as a terminal chart: steps up on top, the mark, steps down below."""
    m = result.map
    status = result.marks[m.symbol].status or "?"
    others = ", ".join(
        f"{s} {x.price}" + ("" if x.status in ("LIVE", "") else f" ({x.status})")
        for s, x in result.marks.items()
        if s != m.symbol
    )
    steps = [*m.up, *m.down]
    top = max((s.cumulative.notional for s in steps), default=Decimal(0))
    head = (
        f"{'move':>6} {'price':>16}  {'isolated':>8} {'notional':>9}  {'cross':>6}"
        f" {'notional':>9}  cumulative notional liquidated"
    )
    lines = [
        f"liquidation map of {m.symbol}: mark {m.mark} ({status}), steps of {_pct(m.step)[1:]}"
        f" to {_pct(m.range)[1:]} each way; other marks held: {others or 'none'}",
        f"read through the index: {result.candidates} candidate accounts"
        f" ({m.already} liquidatable now, not counted; {result.unreadable} unreadable)"
        f" in {result.seconds:.2f} s",
        "counts and notionals are cumulative: everything liquidated on the way to that price",
        "",
        head,
    ]
    for s in reversed(m.up):
        lines.append(_row(s, top))
    lines.append(f"{'0%':>6} {_price(m.mark):>16}  {'':>8} {'':>9}  {'':>6} {'':>9}  <- mark")
    for s in m.down:
        lines.append(_row(s, top))
    return "\n".join(lines)


def _price(p: Decimal) -> str:
    return f"{p:,.2f}" if p >= 100 else f"{p:,.6g}"


def _row(s: MapStep, top: Decimal) -> str:
    c = s.cumulative
    iso, cross = compact(c.isolated_notional), compact(c.cross_notional)
    return (
        f"{_pct(s.move):>6} {_price(s.price):>16}  {c.isolated:>8} {iso:>9}"
        f"  {c.cross:>6} {cross:>9}  {bar(c.notional, top):<{BAR_WIDTH}} {compact(c.notional)}"
    )


def write_png(result: MapResult, path: Path) -> None:
    """Draw the map (cumulative notional per step, isolated and cross stacked) to a PNG."""
    try:
        import matplotlib
    except ImportError:
        raise Failed("--png needs matplotlib: pip install 'liqwatch[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    m = result.map
    steps = [*reversed(m.down), *m.up]
    x = [float(s.move * 100) for s in steps]
    iso = [float(s.cumulative.isolated_notional) for s in steps]
    cross = [float(s.cumulative.cross_notional) for s in steps]
    width = float(m.step * 100) * 0.8
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=110)
    try:
        ax.bar(x, iso, width=width, color="#d95f02", label="isolated positions")
        ax.bar(x, cross, width=width, bottom=iso, color="#7570b3", label="cross accounts")
        for xi, s in zip(x, steps, strict=True):
            c = s.cumulative
            if c.count:
                ax.annotate(
                    f"{c.count}",
                    (xi, float(c.notional)),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlabel(f"move of {m.symbol} from its mark {m.mark} (%), other marks held")
        ax.set_ylabel("notional liquidated on the way, cumulative (USDC)")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: compact(Decimal(repr(float(v))))))
        ax.set_title(f"liqwatch liquidation map: {m.symbol}")
        ax.legend(loc="upper center")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        try:
            fig.savefig(path)
        except OSError as exc:
            raise Failed(f"{path}: cannot write: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)


# --- whatif ------------------------------------------------------------------------


def add_whatif_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``liqwatch whatif``."""
    parser.add_argument(
        "--move",
        action="append",
        default=[],
        metavar="SYMBOL=MOVE",
        help="move a mark: -8%%, +5%% or an absolute price (repeatable)",
    )
    parser.add_argument(
        "--market",
        action="append",
        default=[],
        metavar="SYMBOL.KEY=VALUE",
        help="change a maintenance parameter: base_mmr=0.008, rate=0.02,"
        ' maintenance={model="flat", rate="0.02"} (repeatable)',
    )
    parser.add_argument("--top", type=int, default=20, metavar="N", help="largest N listed (20)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def parse_moves(items: Sequence[str], markets: Mapping[str, Any]) -> dict[str, tuple[str, Decimal]]:
    """``SYMBOL=-8%`` -> ("relative", -0.08); ``SYMBOL=90000`` -> ("price", 90000)."""
    out: dict[str, tuple[str, Decimal]] = {}
    for item in items:
        symbol, sep, value = item.partition("=")
        if not sep or symbol not in markets:
            raise Failed(f"--move {item}: need SYMBOL=MOVE with a configured SYMBOL", EXIT_USAGE)
        text = value.strip()
        try:
            if text.endswith("%"):
                rel = Decimal(text[:-1]) / 100
                if not (rel.is_finite() and rel > -1):
                    raise InvalidOperation
                out[symbol] = ("relative", rel)
            else:
                price = Decimal(text)
                if not (price.is_finite() and price > 0):
                    raise InvalidOperation
                out[symbol] = ("price", price)
        except InvalidOperation:
            raise Failed(
                f"--move {item}: MOVE must be a percentage above -100% or a price > 0", EXIT_USAGE
            ) from None
    return out


def model_spec(model: MaintenanceModel) -> dict[str, Any]:
    """A model as the config's ``maintenance`` table."""
    if isinstance(model, FlatModel):
        return {"model": "flat", "rate": str(model.rate)}
    if isinstance(model, BracketsModel):
        rows = [[str(b.floor), str(b.rate), str(b.amount)] for b in model.brackets]
        return {"model": "brackets", "brackets": rows}
    return {
        "model": "orderly",
        "base_imr": str(model.base_imr),
        "base_mmr": str(model.base_mmr),
        "imr_factor": str(model.imr_factor),
    }


def parse_markets(
    items: Sequence[str], models: Mapping[str, MaintenanceModel]
) -> dict[str, MaintenanceModel]:
    """The models with ``SYMBOL.KEY=VALUE`` changes applied (checked as the config checks them)."""
    out = dict(models)
    for item in items:
        target, sep, value = item.partition("=")
        symbol, dot, key = target.rpartition(".")
        if not sep or not dot or symbol not in out:
            raise Failed(
                f"--market {item}: need SYMBOL.KEY=VALUE with a configured SYMBOL", EXIT_USAGE
            )
        parsed = _value(value)
        spec = parsed if key == "maintenance" else {**model_spec(out[symbol]), key: parsed}
        try:
            out[symbol] = parse_model(spec, f"--market {symbol}.maintenance")
        except ConfigError as exc:
            raise Failed(str(exc), EXIT_USAGE) from None
    return out


def _value(text: str) -> Any:
    """A decimal stays text (exact); anything else is read as a TOML value."""
    stripped = text.strip()
    try:
        Decimal(stripped)
    except InvalidOperation:
        pass
    else:
        return stripped
    try:
        return tomllib.loads(f"v = {stripped}")["v"]
    except tomllib.TOMLDecodeError:
        raise Failed(
            f"--market: cannot read {text!r} (a decimal or a TOML value)", EXIT_USAGE
        ) from None


@dataclass(slots=True)
class WhatIf:
    """A what-if: the marks, the parameters, what each set of parameters liquidates."""

    marks: dict[str, StoredMark]
    scenario: dict[str, Decimal]
    moves: dict[str, tuple[str, Decimal]]
    changed: dict[str, tuple[MaintenanceModel, MaintenanceModel]]
    scanned: bool
    read: int
    unreadable: int
    current: list[Liquidation]
    new: list[Liquidation] | None
    now: set[tuple[str, str]]
    seconds: float


def whatif_command(args: argparse.Namespace) -> int:
    """Print what the moves and parameter changes would liquidate."""
    settings = settings_from(args.config)
    if not args.move and not args.market:
        raise Failed("whatif: give at least one --move or --market", EXIT_USAGE)
    if args.top < 0:
        raise Failed(f"--top must be >= 0, got {args.top}", EXIT_USAGE)
    moves = parse_moves(args.move, settings.markets)
    models = {s: m.maintenance for s, m in settings.markets.items()}
    new_models = parse_markets(args.market, models)
    result = with_redis(
        settings,
        lambda r: read_whatif(r, settings, moves, models, new_models),
        timeout=RISK_TIMEOUT,
    )
    print(
        json.dumps(whatif_json(result, args.top), indent=2)
        if args.json
        else whatif_text(result, args.top)
    )
    return 0


async def read_whatif(
    redis: aioredis.Redis,
    settings: Settings,
    moves: dict[str, tuple[str, Decimal]],
    models: Mapping[str, MaintenanceModel],
    new_models: Mapping[str, MaintenanceModel],
) -> WhatIf:
    """Read the marks and the accounts that matter, and judge them both ways. Writes nothing."""
    started = time.perf_counter()
    store = Store(redis, settings.keys)
    stored = await read_marks(redis, settings.keys)
    base = {s: m.price for s, m in stored.items()}
    missing = sorted(set(moves) - set(base))
    if missing:
        raise StoreError(f"no mark in Redis for {', '.join(missing)}: nothing to move")
    scenario = moved(base, moves)
    changed = {s: (models[s], new_models[s]) for s in models if models[s] != new_models[s]}
    if changed:
        # The bands were drawn under the current parameters: only a scan is sure.
        names = set(await all_accounts(store))
    else:
        names = await whatif_candidates(redis, settings.keys, scenario)
    at_eq = settings.at_equality
    current: list[Liquidation] = []
    new: list[Liquidation] | None = [] if changed else None
    now: set[tuple[str, str]] = set()
    broken: dict[str, StoreError] = {}
    async for states in read_accounts(store, names, broken=broken):
        for state in states.values():
            found = account_liquidations(state, scenario, models, at_equality=at_eq)
            current += found
            if new is not None:
                new += account_liquidations(state, scenario, new_models, at_equality=at_eq)
            hits = found + (new or [])
            if hits:
                already = account_liquidations(state, base, models, at_equality=at_eq)
                now.update(x.key for x in already)
    order = largest_first
    return WhatIf(
        stored,
        scenario,
        moves,
        changed,
        bool(changed),
        len(names),
        len(broken),
        order(current),
        None if new is None else order(new),
        now,
        time.perf_counter() - started,
    )


def _liq_json(x: Liquidation, now: set[tuple[str, str]]) -> dict[str, Any]:
    return {
        "account": x.account,
        "kind": x.kind.value,
        "symbols": list(x.symbols),
        "notional": _dec(x.notional),
        "equity": _dec(x.equity),
        "maintenance_margin": _dec(x.maintenance),
        "health": _dec(x.health),
        "liquidatable_now": x.key in now,
    }


def _side_json(found: list[Liquidation], now: set[tuple[str, str]], top: int) -> dict[str, Any]:
    return {
        "totals": _totals_json(Totals.of(found)),
        "liquidatable_now": sum(1 for x in found if x.key in now),
        "largest": [_liq_json(x, now) for x in found[:top]],
    }


def whatif_json(w: WhatIf, top: int) -> dict[str, Any]:
    """The what-if as one JSON document."""
    out: dict[str, Any] = {
        "marks": {s: _dec(p) for s, p in w.scenario.items()},
        "moves": {s: {"from": _dec(w.marks[s].price), "to": _dec(w.scenario[s])} for s in w.moves},
        "parameters": {
            s: {"from": model_spec(a), "to": model_spec(b)} for s, (a, b) in w.changed.items()
        },
        "read": {"accounts": w.read, "scanned": w.scanned, "unreadable": w.unreadable},
        "seconds": round(w.seconds, 3),
        "current": _side_json(w.current, w.now, top),
    }
    if w.new is not None:
        out["new"] = _side_json(w.new, w.now, top)
        added, removed = _diff(w.current, w.new)
        out["added"] = [_liq_json(x, w.now) for x in added]
        out["removed"] = [_liq_json(x, w.now) for x in removed]
    return out


def _diff(
    a: list[Liquidation], b: list[Liquidation]
) -> tuple[list[Liquidation], list[Liquidation]]:
    ka, kb = {x.key for x in a}, {x.key for x in b}
    return [x for x in b if x.key not in ka], [x for x in a if x.key not in kb]


def _model_text(model: MaintenanceModel) -> str:
    spec = model_spec(model)
    return " ".join(f"{k} {v}" for k, v in spec.items())


def whatif_text(w: WhatIf, top: int) -> str:
    """The what-if as text: the scenario, the totals side by side, the largest, the change."""
    lines = []
    if w.moves:
        moves = ", ".join(f"{s} {w.marks[s].price} -> {w.scenario[s]}" for s in w.moves)
        lines.append(f"marks: {moves}; every other mark as in Redis")
    else:
        lines.append("marks: as in Redis")
    for s, (a, b) in w.changed.items():
        lines.append(f"parameters: {s}: {_model_text(a)}  ->  {_model_text(b)}")
    how = (
        f"every account scanned ({w.read}): the index bands were drawn under the current parameters"
        if w.scanned
        else f"{w.read} candidate accounts read through the index"
    )
    lines.append(f"read: {how}; {w.unreadable} unreadable; {w.seconds:.2f} s; nothing written")
    lines.append("")
    sides = [("current parameters", w.current)]
    if w.new is not None:
        sides.append(("new parameters", w.new))
    totals = [Totals.of(found) for _, found in sides]
    header = f"{'':<28}" + "".join(f"{name:>26}" for name, _ in sides)
    lines.append(header)
    rows: list[tuple[str, list[str]]] = [
        ("cross accounts", [f"{t.cross} ({compact(t.cross_notional)})" for t in totals]),
        ("isolated positions", [f"{t.isolated} ({compact(t.isolated_notional)})" for t in totals]),
        ("total", [f"{t.count} ({compact(t.notional)})" for t in totals]),
    ]
    for label, cells in rows:
        lines.append(f"{label:<28}" + "".join(f"{cell:>26}" for cell in cells))
    lines.append(
        f"{'of them liquidatable now':<28}"
        + "".join(f"{sum(1 for x in found if x.key in w.now):>26}" for _, found in sides)
    )
    name, found = sides[-1]
    lines += ["", f"largest {min(top, len(found))} ({name}):"]
    lines += _table(found[:top], w.now)
    if w.new is not None:
        added, removed = _diff(w.current, w.new)
        lines += [
            "",
            f"the new parameters liquidate {len(added)} more"
            f" ({compact(Totals.of(added).notional)}) and spare {len(removed)}"
            f" ({compact(Totals.of(removed).notional)})",
        ]
        lines += _table(added[:top], w.now)
    return "\n".join(lines)


def _table(found: Sequence[Liquidation], now: set[tuple[str, str]]) -> list[str]:
    if not found:
        return ["  (none)"]
    out = [
        f"  {'account':<20} {'kind':<8} {'symbols':<32} {'notional':>10} {'equity':>12}"
        f" {'maintenance':>12}  now"
    ]
    for x in found:
        symbols = ",".join(x.symbols)
        out.append(
            f"  {x.account:<20} {x.kind.value:<8} {symbols[:32]:<32} {compact(x.notional):>10}"
            f" {x.equity:>12,.2f} {x.maintenance:>12,.2f}  {'yes' if x.key in now else ''}"
        )
    return out
