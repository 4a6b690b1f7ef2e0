"""A brute-force reference for the daemon: a random book, a random walk, every account priced."""

from __future__ import annotations

import random
from decimal import Decimal

from state import margin
from state.models import MarginMode, Position

ETH = "PERP_ETH_USDC"
BTC = "PERP_BTC_USDC"
SOL = "PERP_SOL_USDC"
D = Decimal


def random_book(rng: random.Random, n: int) -> list[dict[str, object]]:
    """Accounts with 1-3 cross legs and isolated positions, liquidation prices near the marks."""
    marks = {ETH: D(3000), BTC: D(60000), SOL: D(150)}
    msgs: list[dict[str, object]] = []
    for i in range(n):
        acct = f"acct{i}"
        seq = 0

        def nxt() -> int:
            nonlocal seq
            seq += 1
            return seq

        if rng.random() < 0.7:
            legs = rng.sample(list(marks), rng.randint(1, 3))
            notional = D(0)
            for sym in legs:
                qty = (D(rng.uniform(1000, 20000)) / marks[sym]).quantize(D("0.001"))
                qty *= rng.choice((1, -1))
                entry = (marks[sym] * D(rng.uniform(0.97, 1.03))).quantize(D("0.01"))
                msgs.append(
                    {
                        "type": "position",
                        "account": acct,
                        "symbol": sym,
                        "margin_mode": "CROSS",
                        "qty": str(qty),
                        "entry_price": str(entry),
                        "seq": nxt(),
                    }
                )
                notional += abs(qty) * marks[sym]
            balance = (notional * D(rng.uniform(0.03, 0.25))).quantize(D("0.01"))
            msgs.insert(
                len(msgs) - len(legs),
                {"type": "balance", "account": acct, "balance": str(balance), "seq": 0},
            )
        if rng.random() < 0.5:
            sym = rng.choice(list(marks))
            qty = (D(rng.uniform(1000, 20000)) / marks[sym]).quantize(D("0.001"))
            qty *= rng.choice((1, -1))
            msgs.append(
                {
                    "type": "position",
                    "account": acct,
                    "symbol": sym,
                    "margin_mode": "ISOLATED",
                    "qty": str(qty),
                    "entry_price": str(marks[sym]),
                    "leverage": str(rng.randint(5, 40)),
                    "seq": nxt(),
                }
            )
    return msgs


class Model:
    """Brute force: every open account and position priced at every tick, no index."""

    def __init__(self, msgs: list[dict[str, object]], rules) -> None:
        self.rules = rules
        self.balance: dict[str, Decimal] = {}
        self.cross: dict[str, list[Position]] = {}
        self.isolated: dict[tuple[str, str], Position] = {}
        for m in msgs:
            acct = str(m["account"])
            if m["type"] == "balance":
                self.balance[acct] = D(str(m["balance"]))
            elif m["margin_mode"] == "CROSS":
                self.cross.setdefault(acct, []).append(
                    Position(
                        acct,
                        str(m["symbol"]),
                        MarginMode.CROSS,
                        D(str(m["qty"])),
                        D(str(m["entry_price"])),
                    )
                )
            else:
                qty, entry = D(str(m["qty"])), D(str(m["entry_price"]))
                mg = margin.isolated_margin_from_leverage(qty, entry, D(str(m["leverage"])))
                self.isolated[(acct, str(m["symbol"]))] = Position(
                    acct, str(m["symbol"]), MarginMode.ISOLATED, qty, entry, mg
                )
        self.liquidated: set[tuple[str, str, str]] = set()

    def step(self, marks: dict[str, Decimal]) -> None:
        models = self.rules.models
        for acct, legs in self.cross.items():
            if ("CROSS", acct, "") in self.liquidated:
                continue
            h = margin.evaluate_cross(self.balance.get(acct, D(0)), legs, models, marks).health
            if margin.is_liquidatable(h):
                self.liquidated.add(("CROSS", acct, ""))
        for (acct, sym), pos in self.isolated.items():
            if ("ISOLATED", acct, sym) in self.liquidated:
                continue
            if margin.is_liquidatable(margin.isolated_health(pos, marks[sym], models[sym])):
                self.liquidated.add(("ISOLATED", acct, sym))


def decided(events: list[dict[str, str]]) -> list[tuple[str, str, str]]:
    return [
        (e["kind"], e["account"], e["symbol"] if e["kind"] == "ISOLATED" else "") for e in events
    ]


def walk(rng: random.Random, marks: dict[str, Decimal]) -> dict[str, Decimal]:
    moved = {}
    for sym, p in marks.items():
        if rng.random() < 0.7:
            factor = D(str(round(rng.gauss(1, 0.012), 5)))
            moved[sym] = (p * factor).quantize(D("0.01"))
    return moved
