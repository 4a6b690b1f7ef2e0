"""Liquidation events the event tests share: one of each kind, and the documented field order."""

from __future__ import annotations

from decimal import Decimal

from state.events import EventLeg, LiquidationEvent
from state.models import MarginMode, Seq

D = Decimal

FIELD_ORDER = [
    "id",
    "kind",
    "account",
    "symbol",
    "positions",
    "mark_price",
    "marks",
    "liq_price",
    "equity",
    "maintenance_margin",
    "mark_ts",
    "detected_ts",
    "seq",
]

CROSS_EVENT = LiquidationEvent(
    id="A1:CROSS:7",
    kind=MarginMode.CROSS,
    account="A1",
    symbol="PERP_ETH_USDC",
    positions=(
        EventLeg("PERP_BTC_USDC", MarginMode.CROSS, D("0.000001"), D("1E+3"), None, D("990.50")),
        EventLeg("PERP_ETH_USDC", MarginMode.CROSS, D("-1.5"), D("2300.0"), None, D("2400")),
    ),
    mark_price=D("2400"),
    marks={"PERP_BTC_USDC": D("990.50"), "PERP_ETH_USDC": D("2400")},
    liq_price=D("2412.345678901234567890123456789012345678"),
    equity=D("-12.0"),
    maintenance_margin=D("1E+1"),
    mark_ts=1_700_000_000_123,
    detected_ts=1_700_000_000_456,
    seq=Seq.of(2**64 + 1),
)

ISOLATED_EVENT = LiquidationEvent(
    id="A2:ISOLATED:PERP_ETH_USDC:3",
    kind=MarginMode.ISOLATED,
    account="A2",
    symbol="PERP_ETH_USDC",
    positions=(
        EventLeg("PERP_ETH_USDC", MarginMode.ISOLATED, D("1"), D("3000"), D("300.00"), D("2700")),
    ),
    mark_price=D("2700"),
    marks={"PERP_ETH_USDC": D("2700")},
    liq_price=D("2716.297786720321931589537223340040241449"),
    equity=D("0.0"),
    maintenance_margin=D("16.2"),
    mark_ts=0,
    detected_ts=1,
    seq=None,
)

NO_LIQ_PRICE_EVENT = LiquidationEvent(
    id="A3:CROSS:0",
    kind=MarginMode.CROSS,
    account="A3",
    symbol="X",
    positions=(EventLeg("X", MarginMode.CROSS, D("2"), D("1e-3"), None, D("0.000001")),),
    mark_price=D("0.000001"),
    marks={"X": D("0.000001")},
    liq_price=None,
    equity=D("-1E-18"),
    maintenance_margin=D("0"),
    mark_ts=5,
    detected_ts=6,
    seq=Seq.of(0),
)
