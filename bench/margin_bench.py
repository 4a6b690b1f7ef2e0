"""Price 1,000,000 isolated positions and 100,000 three-leg cross accounts on one core.

Run: ``.venv/bin/python -m bench.margin_bench [--isolated N] [--cross N]``.
The baseline in the same run is the cheapest exact thing there is: one
isolated health evaluation per position, so the ratio says what a
liquidation price costs relative to checking a position once.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from decimal import Decimal

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
MODELS: list[tuple[str, MaintenanceModel, Decimal]] = [
    ("PERP_BTC_USDC", OrderlyModel(D("0.01"), D("0.006"), D("0.000000091")), D("97000")),
    ("PERP_ETH_USDC", OrderlyModel(D("0.01"), D("0.006"), D("0.0000001724")), D("3400")),
    ("PERP_SOL_USDC", OrderlyModel(D("0.01"), D("0.006"), D("0.0000010667")), D("180")),
    (
        "BTCUSDT",
        BracketsModel.from_rates(
            [(D(0), D("0.004")), (D(50000), D("0.005")), (D(250000), D("0.01"))]
        ),
        D("97000"),
    ),
    ("PERP_DOGE_USDC", FlatModel(D("0.01")), D("0.3")),
]


def _isolated(rng: random.Random, n: int) -> list[tuple[Position, MaintenanceModel, Decimal]]:
    out = []
    for i in range(n):
        sym, model, mark = MODELS[i % len(MODELS)]
        notional = D(round(10 ** rng.uniform(2, 6.5), 2))  # $100 to $3M: some past thresholds
        qty = (notional / mark).quantize(D("0.0001")) or D("0.0001")
        qty *= rng.choice((1, -1))
        entry = (mark * D(str(round(rng.uniform(0.95, 1.05), 4)))).quantize(D("0.01"))
        lev = D(rng.randint(2, 50))
        m = margin.isolated_margin_from_leverage(qty, entry, lev)
        out.append((Position("A", sym, MarginMode.ISOLATED, qty, entry, m, lev), model, mark))
    return out


def _timed(fn, items) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    for item in items:
        fn(*item)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--isolated", type=int, default=1_000_000)
    parser.add_argument("--cross", type=int, default=100_000)
    args = parser.parse_args()
    rng = random.Random(7)
    print(f"cores: {os.cpu_count()}, one used")

    book = _isolated(rng, args.isolated)
    price_s = _timed(lambda p, m, _mark: margin.isolated_liq_price(p, m), book)
    health_s = _timed(margin.isolated_health, [(p, mark, m) for p, m, mark in book])
    print(
        f"isolated liquidation prices: {args.isolated:,} in {price_s:.2f} s ="
        f" {args.isolated / price_s:,.0f}/s (baseline, one health check each:"
        f" {args.isolated / health_s:,.0f}/s; price/health cost ratio {price_s / health_s:.2f})"
    )

    accounts = []
    models = {sym: model for sym, model, _ in MODELS}
    marks = {sym: mark for sym, _, mark in MODELS}
    for _ in range(args.cross):
        legs = []
        for sym, _model, mark in rng.sample(MODELS, 3):
            qty = (D(round(10 ** rng.uniform(2, 5.5), 2)) / mark).quantize(D("0.0001"))
            qty = (qty or D("0.0001")) * rng.choice((1, -1))
            legs.append(Position("A", sym, MarginMode.CROSS, qty, mark))
        notional = sum(abs(leg.qty) * marks[leg.symbol] for leg in legs)
        deficit = margin.evaluate_cross(D(0), legs, models, marks).health
        cushion = notional * D(str(round(rng.uniform(0.02, 0.5), 4)))
        balance = (cushion - deficit).quantize(D("0.01"))
        accounts.append((balance, legs, models, marks))
    bands_s = _timed(margin.trigger_bands, accounts)
    eval_s = _timed(margin.evaluate_cross, accounts)
    print(
        f"cross accounts (3 legs) banded: {args.cross:,} in {bands_s:.2f} s ="
        f" {args.cross / bands_s:,.0f} accounts/s, {3 * args.cross / bands_s:,.0f} legs/s"
        f" (baseline, one health evaluation each: {args.cross / eval_s:,.0f}/s)"
    )


if __name__ == "__main__":
    main()
