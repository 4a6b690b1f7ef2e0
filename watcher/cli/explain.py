"""``liqwatch explain EVENT_ID``: prove a liquidation from its stored event (state/explain.py).

Exit 0 when every figure of the event re-derives exactly under the config's
markets and equality rule, 1 (with each difference) when one does not or
the event cannot be found or read.
"""

from __future__ import annotations

import argparse
import json
from decimal import Decimal
from typing import Any

from state import partial
from state.events import EventError, LiquidationEvent
from state.explain import Derivation, derive
from state.models import MarginMode
from state.store.risk import find_event
from watcher.cli.context import EXIT_FAILED, Failed, settings_from, with_redis


def add_explain_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``liqwatch explain``."""
    parser.add_argument("event_id", metavar="EVENT_ID", help="a liquidation id, or an entry id")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def explain_command(args: argparse.Namespace) -> int:
    """Print the re-derivation of one event; 0 if it re-derives exactly, else 1."""
    settings = settings_from(args.config)
    found = with_redis(settings, lambda r: find_event(r, settings.keys, args.event_id))
    if found is None:
        raise Failed(f"no event {args.event_id!r} in {settings.keys.events}")
    entry_id, fields = found
    try:
        event = LiquidationEvent.from_fields(fields)
    except EventError as exc:
        raise Failed(f"{args.event_id}: not a well-formed event: {exc}") from None
    d = derive(event, settings.markets, at_equality=settings.at_equality)
    print(json.dumps(derivation_json(d, entry_id), indent=2) if args.json else text(d, entry_id))
    return 0 if d.exact else EXIT_FAILED


def _s(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def derivation_json(d: Derivation, entry_id: str) -> dict[str, Any]:
    """The derivation as one JSON document (Decimals as strings)."""
    e = d.event
    return {
        "id": e.id,
        "entry_id": entry_id,
        "kind": e.kind.value,
        "account": e.account,
        "symbol": e.symbol,
        "legs": [
            {
                "symbol": f.symbol,
                "margin_mode": f.margin_mode.value,
                "qty": str(f.qty),
                "entry_price": str(f.entry_price),
                "margin": _s(f.margin),
                "mark": str(f.mark),
                "notional": str(f.notional),
                "pnl": str(f.pnl),
                "maintenance_margin": str(f.maintenance),
                "model": f.model,
            }
            for f in d.legs
        ],
        "balance": _s(d.balance),
        "balance_derived": d.balance_derived,
        "equity": _s(d.equity),
        "maintenance_margin": _s(d.maintenance),
        "health": _s(d.health),
        "at_equality": d.at_equality,
        "liquidatable": d.liquidatable,
        "liq_price": _s(d.liq_price),
        "partial": None if d.transfer is None else _plan_json(d.transfer),
        "exact": d.exact,
        "differences": list(d.differences),
    }


def _plan_json(plan: partial.PartialPlan) -> list[dict[str, Any]]:
    out = []
    for g in plan.groups:
        split = partial.fee_split(plan.equity, g.liquidation_fee, g.liquidator_fee)
        out.append(
            {
                "tier": g.tier.value,
                "rule": g.rule,
                "fraction": str(g.fraction),
                "qty": {leg.symbol: str(leg.qty) for leg in g.legs},
                "notional": str(g.notional),
                "liquidation_fee": str(g.liquidation_fee),
                "liquidator_fee": str(g.liquidator_fee),
                "to_liquidator": str(split.to_liquidator),
                "to_insurance_fund": str(split.to_insurance_fund),
                "insurance_takeover": split.insurance_takeover,
            }
        )
    return out


def text(d: Derivation, entry_id: str) -> str:
    """The derivation as text, step by step."""
    e = d.event
    cross = e.kind is MarginMode.CROSS
    lines = [
        f"event {e.id} (entry {entry_id}): {e.kind.value}, account {e.account},"
        f" {'triggered by' if cross else 'on'} {e.symbol} at {e.mark_price}",
    ]
    if d.legs:
        lines.append("legs (pnl = qty * (mark - entry); maintenance = MM(|qty| * mark)):")
        for f in d.legs:
            extra = f" margin {f.margin}" if f.margin is not None else ""
            lines.append(
                f"  {f.symbol} {f.margin_mode.value}: qty {f.qty} entry {f.entry_price}"
                f" mark {f.mark}{extra}"
            )
            lines.append(
                f"    notional {f.notional}  pnl {f.pnl}  maintenance {f.maintenance}  [{f.model}]"
            )
    if d.equity is not None:
        if cross:
            source = (
                "derived: equity - sum(pnl), the event has none" if d.balance_derived else "event"
            )
            lines.append(f"balance      {d.balance} ({source})")
            lines.append(f"equity       balance + sum(pnl) = {d.equity}   (event {e.equity})")
            lines.append(f"maintenance  sum(MM) = {d.maintenance}   (event {e.maintenance_margin})")
            rule = "CROSS: liquidate the account when balance + sum(pnl) < sum(MM)"
        else:
            lines.append(f"equity       margin + pnl = {d.equity}   (event {e.equity})")
            lines.append(f"maintenance  MM = {d.maintenance}   (event {e.maintenance_margin})")
            rule = "ISOLATED: liquidate the position when margin + pnl < MM"
        equality = "equality liquidates" if d.at_equality else "equality does not liquidate"
        lines.append(f"health       equity - maintenance = {d.health}")
        lines.append(f"rule         {rule} ({equality})")
        lines.append(f"verdict      {'LIQUIDATE' if d.liquidatable else 'do not liquidate'}")
        where = "with the other legs at their marks" if cross else "its exact liquidation price"
        lines.append(f"liq_price    {d.liq_price} ({where}; event {e.liq_price})")
    if d.transfer is not None:
        lines.append(
            f"partial      equity {d.transfer.equity}, initial margin {d.transfer.initial_margin}"
        )
        for g in d.transfer.groups:
            split = partial.fee_split(d.transfer.equity, g.liquidation_fee, g.liquidator_fee)
            qty = ", ".join(f"{leg.symbol} {leg.qty}" for leg in g.legs)
            lines.append(
                f"  {g.tier.value} tier ({g.rule}): transfer {qty}; fee {g.liquidation_fee},"
                f" liquidator {split.to_liquidator}, insurance fund {split.to_insurance_fund}"
                + (" (insurance fund takes the account over)" if split.insurance_takeover else "")
            )
    if d.exact:
        lines.append(
            "re-derived exactly: every figure of the event matches, and the rule liquidates"
        )
    else:
        lines.append(f"does NOT re-derive: {len(d.differences)} difference(s)")
        lines += [f"  - {x}" for x in d.differences]
    return "\n".join(lines)
