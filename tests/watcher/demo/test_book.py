"""The book generator: deterministic, valid input (README, "Input"), spread for a lively demo."""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import Decimal

import pytest

from state.margin import (
    evaluate_cross,
    isolated_health,
    isolated_margin_from_leverage,
    maintenance,
)
from state.models import MarginMode, Position
from watcher.demo.book import (
    Shape,
    demo_book,
    demo_markets,
    demo_marks,
    demo_specs,
    generate,
    write_jsonl,
)

ACCOUNTS = 400
DECIMAL_FIELDS = ("balance", "qty", "entry_price", "margin", "leverage")
ALLOWED = {
    "balance": {"type", "account", "balance", "seq"},
    "position": {
        "type",
        "account",
        "symbol",
        "margin_mode",
        "qty",
        "entry_price",
        "seq",
        "margin",
        "leverage",
    },
    "leverage": {"type", "account", "symbol", "margin_mode", "leverage", "seq"},
}
REQUIRED = {
    "balance": ALLOWED["balance"],
    "position": ALLOWED["position"] - {"margin", "leverage"},
    "leverage": ALLOWED["leverage"],
}


@pytest.fixture(scope="module")
def book() -> list[dict[str, object]]:
    return [json.loads(m) for m in demo_book(ACCOUNTS, seed=42).messages]


def replay(book):
    """Apply the book as the daemon would: balances, leverages, positions per account."""
    balances: dict[str, Decimal] = {}
    leverages: dict[tuple[str, str, str], Decimal] = {}
    positions: dict[str, dict[tuple[str, str], Position]] = defaultdict(dict)
    for m in book:
        account = m["account"]
        if m["type"] == "balance":
            balances[account] = Decimal(m["balance"])
        elif m["type"] == "leverage":
            leverages[account, m["symbol"], m["margin_mode"]] = Decimal(m["leverage"])
        else:
            mode = MarginMode(m["margin_mode"])
            qty, entry = Decimal(m["qty"]), Decimal(m["entry_price"])
            margin = None
            if mode is MarginMode.ISOLATED:
                if "margin" in m:
                    margin = Decimal(m["margin"])
                else:
                    lev = m.get("leverage") or leverages[account, m["symbol"], mode.value]
                    margin = isolated_margin_from_leverage(qty, entry, Decimal(lev))
            positions[account][m["symbol"], mode.value] = Position(
                account, m["symbol"], mode, qty, entry, margin
            )
    return balances, positions


def test_same_seed_same_book_other_seed_other_book(book) -> None:
    again = demo_book(ACCOUNTS, seed=42)
    other = demo_book(ACCOUNTS, seed=43)
    assert [json.loads(m) for m in again.messages] == book
    assert [json.loads(m) for m in other.messages] != book


def test_the_book_in_memory_is_what_its_messages_say(book) -> None:
    """The accounts the generator returns are the state its messages build."""
    balances, positions = replay(book)
    generated = demo_book(ACCOUNTS, seed=42)
    assert {a.name: a.balance for a in generated.accounts} == balances
    for account in generated.accounts:
        held = {(p.symbol, p.margin_mode.value): p for p in [*account.cross, *account.isolated]}
        assert {k: (p.qty, p.entry_price, p.margin) for k, p in held.items()} == {
            k: (p.qty, p.entry_price, p.margin) for k, p in positions[account.name].items()
        }


def test_messages_follow_the_contract(book) -> None:
    markets = demo_markets()
    last_seq: dict[str, int] = {}
    for m in book:
        kind = m["type"]
        assert kind in ALLOWED
        assert REQUIRED[kind] <= m.keys() <= ALLOWED[kind], m
        assert isinstance(m["account"], str)
        assert m["account"]
        seq = m["seq"]
        assert type(seq) is int
        if m["account"] not in last_seq:
            assert kind == "balance", "an account starts with its balance"
        else:
            assert seq > last_seq[m["account"]]
        last_seq[m["account"]] = seq
        for name in DECIMAL_FIELDS:
            if name in m:
                text = m[name]
                assert isinstance(text, str)
                assert "E" not in text.upper()
                assert Decimal(text).is_finite()
        if kind != "balance":
            assert m["symbol"] in markets
            assert m["margin_mode"] in ("CROSS", "ISOLATED")
        if kind == "position":
            assert Decimal(m["qty"]) != 0
            assert Decimal(m["entry_price"]) > 0
            if m["margin_mode"] == "CROSS":
                assert "margin" not in m
        if "leverage" in m:
            assert Decimal(m["leverage"]) == int(m["leverage"])
            assert 2 <= int(m["leverage"]) <= 50
        if "margin" in m:
            assert Decimal(m["margin"]) > 0
        if kind == "balance":
            assert Decimal(m["balance"]) >= 0
    assert len(last_seq) == ACCOUNTS
    json.dumps(book)


def test_mix_of_modes_sides_and_margin_styles(book) -> None:
    leverage_set = {(m["account"], m["symbol"]) for m in book if m["type"] == "leverage"}
    isolated = [m for m in book if m["type"] == "position" and m["margin_mode"] == "ISOLATED"]
    cross = [m for m in book if m["type"] == "position" and m["margin_mode"] == "CROSS"]
    assert any("margin" in m for m in isolated)
    assert any("margin" not in m and "leverage" in m for m in isolated)
    assert any(
        "margin" not in m and "leverage" not in m and (m["account"], m["symbol"]) in leverage_set
        for m in isolated
    )
    both = {(m["account"], m["symbol"]) for m in cross} & {
        (m["account"], m["symbol"]) for m in isolated
    }
    assert len(both) >= ACCOUNTS // 20
    legs_per_account: dict[str, int] = defaultdict(int)
    for m in cross:
        legs_per_account[m["account"]] += 1
    assert set(legs_per_account.values()) == {1, 2, 3, 4}
    assert 0.55 < len(legs_per_account) / ACCOUNTS < 0.85
    for group in (cross, isolated):
        assert any(Decimal(m["qty"]) > 0 for m in group)
        assert any(Decimal(m["qty"]) < 0 for m in group)
    assert {m["symbol"] for m in cross} == set(demo_markets())


def test_sizes_and_entries_are_sensible(book) -> None:
    marks = demo_marks()
    for m in book:
        if m["type"] == "position":
            mark = marks[m["symbol"]]
            notional = abs(Decimal(m["qty"])) * mark
            assert Decimal(100) <= notional <= Decimal(200_000)
            assert abs(Decimal(m["entry_price"]) / mark - 1) <= Decimal("0.061")


def test_healthy_at_the_marks_with_liquidations_spread_out(book) -> None:
    """Nothing is liquidatable at the start; a few % move against everyone liquidates some."""
    markets, marks = demo_markets(), demo_marks()
    models = {s: m.maintenance for s, m in markets.items()}
    balances, positions = replay(book)

    def liquidated(move: Decimal) -> int:
        count = 0
        for account, held in positions.items():
            cross = [p for p in held.values() if p.margin_mode is MarginMode.CROSS]
            moved = {
                p.symbol: marks[p.symbol] * (1 - move if p.is_long else 1 + move) for p in cross
            }
            if cross and evaluate_cross(balances[account], cross, models, moved).health < 0:
                count += 1
            for p in held.values():
                if p.margin_mode is MarginMode.ISOLATED:
                    at = marks[p.symbol] * (1 - move if p.is_long else 1 + move)
                    count += isolated_health(p, at, models[p.symbol]) < 0
        return count

    units = sum(
        any(p.margin_mode is MarginMode.CROSS for p in held.values())
        + sum(p.margin_mode is MarginMode.ISOLATED for p in held.values())
        for held in positions.values()
    )
    assert liquidated(Decimal(0)) == 0
    near = liquidated(Decimal("0.01"))
    mid = liquidated(Decimal("0.05"))
    assert 0.01 * units < near < 0.15 * units
    assert near < mid < 0.6 * units
    # Some SOL positions are large enough for Orderly's size-dependent rate.
    sol = markets["PERP_SOL_USDC"].maintenance
    assert any(
        maintenance(sol, abs(p.qty) * marks[p.symbol])
        > abs(p.qty) * marks[p.symbol] * Decimal("0.006")
        for held in positions.values()
        for p in held.values()
        if p.symbol == "PERP_SOL_USDC"
    )


def test_write_jsonl_round_trips(book, tmp_path) -> None:
    path = tmp_path / "book.jsonl"
    assert write_jsonl(demo_book(ACCOUNTS, seed=42).messages[:50], path) == 50
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == book[:50]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="accounts"):
        generate(demo_specs(), Shape(), seed=1, accounts=-1)
    with pytest.raises(ValueError, match="either"):
        generate(demo_specs(), Shape(), seed=1, accounts=1, positions=1)
    with pytest.raises(ValueError, match="no market"):
        generate((), Shape(), seed=1, accounts=1)
    assert demo_book(0, seed=1).messages == []
