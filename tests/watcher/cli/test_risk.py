"""``liqwatch map`` and ``liqwatch whatif`` against a brute force over every account in Redis.

Books are generated on the demo's six markets (Orderly's model, flat,
brackets) and loaded the daemon's way (input stream, InputConsumer, engine
holding marks), so the index is what the daemon writes. The brute force
judges every account at every step with ``state.decisions.liquidatable_state``.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from state.account import AccountState
from state.decisions import CROSS, liquidatable_state
from state.rules import Rules
from tests.helpers.riskbook import KEYS, every_account, load_demo_book, set_mark, write_config
from watcher.cli.main import main
from watcher.demo.book import Shape, demo_markets
from watcher.demo.redis_server import RedisServer

D = Decimal
RULES = Rules(KEYS, demo_markets())
MODELS = RULES.models
# Distances to liquidation within a few percent, so every step has something.
SHAPE = Shape(distances=((1, 20, 300), (1, 300, 900), (1, 900, 2500)))


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    capsys.readouterr()  # what loading the book logged
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)  # type: ignore[no-any-return]


def _notional(state: AccountState, item: str, marks: dict[str, Decimal]) -> Decimal:
    if item == CROSS:
        return sum((abs(p.qty) * marks[p.symbol] for p in state.cross_legs), D(0))
    (p,) = [p for p in state.open_isolated if p.symbol == item]
    return abs(p.qty) * marks[item]


def brute_map(
    states: list[AccountState], symbol: str, marks: dict[str, Decimal], rng: Decimal, step: Decimal
) -> dict[str, list[tuple[int, Decimal, int, Decimal]]]:
    """Per direction and step, cumulative (isolated, notional, cross, notional): all judged."""
    n = int(rng / step)
    now = {s.account: liquidatable_state(RULES, s, marks) for s in states}
    out: dict[str, list[tuple[int, Decimal, int, Decimal]]] = {}
    for name, sign in (("down", -1), ("up", 1)):
        seen: set[tuple[str, str]] = set()
        iso = cross = 0
        iso_n = cross_n = D(0)
        rows = []
        for k in range(1, n + 1):
            at = {**marks, symbol: marks[symbol] * (1 + sign * k * step)}
            for s in states:
                for item in liquidatable_state(RULES, s, at) - now[s.account]:
                    if (s.account, item) in seen:
                        continue
                    seen.add((s.account, item))
                    if item == CROSS:
                        cross, cross_n = cross + 1, cross_n + _notional(s, item, at)
                    else:
                        iso, iso_n = iso + 1, iso_n + _notional(s, item, at)
            rows.append((iso, iso_n, cross, cross_n))
        out[name] = rows
    return out


def from_json(doc: dict[str, Any]) -> dict[str, list[tuple[int, Decimal, int, Decimal]]]:
    out = {}
    for name in ("down", "up"):
        out[name] = [
            (
                r["cumulative"]["isolated"],
                D(r["cumulative"]["isolated_notional"]),
                r["cumulative"]["cross"],
                D(r["cumulative"]["cross_notional"]),
            )
            for r in doc[name]
        ]
    return out


@pytest.fixture(scope="module")
def books(tmp_path_factory: pytest.TempPathFactory):
    """One redis-server per seed, each holding a loaded book (read-only tests share them)."""
    servers = {}
    try:
        for seed in (11, 12, 13):
            server = RedisServer()
            server.start()
            servers[seed] = server
            asyncio.run(load_demo_book(server.url, accounts=160, seed=seed, shape=SHAPE))
        yield {
            seed: (s, write_config(tmp_path_factory.mktemp(f"b{seed}"), s.url))
            for seed, s in servers.items()
        }
    finally:
        for s in servers.values():
            s.close()


def _marks(url: str) -> dict[str, Decimal]:
    from state.store.client import open_client
    from state.store.risk import read_marks

    async def go() -> dict[str, Decimal]:
        r = open_client(url)
        try:
            return {s: m.price for s, m in (await read_marks(r, KEYS)).items()}
        finally:
            await r.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("seed", [11, 12, 13])
@pytest.mark.parametrize("symbol", ["PERP_BTC_USDC", "PERP_DOGE_USDC", "PERP_BNB_USDC"])
def test_map_equals_a_brute_force_at_every_step_both_ways(books, capsys, seed, symbol) -> None:
    server, config = books[seed]
    doc = run_json(capsys, "map", "--config", str(config), symbol, "--range", "12%", "--step", "1%")
    states = asyncio.run(every_account(server.url))
    expected = brute_map(states, symbol, _marks(server.url), D("0.12"), D("0.01"))
    assert from_json(doc) == expected
    assert len(doc["down"]) == len(doc["up"]) == 12
    # Read through the index, not a scan: fewer candidates than accounts.
    assert 0 < doc["candidates"] < len(states)
    last = expected["down"][-1]
    assert last[0] + last[2] > 0, "the book should liquidate something within 12%"


def test_map_reads_cross_accounts_whose_other_legs_crossed_their_triggers(
    tmp_path: Path, capsys
) -> None:
    """Another symbol's mark moved past triggers the daemon has not acted on: those accounts'
    bands no longer bound them, and the map still equals the brute force."""
    with RedisServer() as server:
        asyncio.run(load_demo_book(server.url, accounts=160, seed=21, shape=SHAPE))
        marks = _marks(server.url)
        asyncio.run(set_mark(server.url, "PERP_ETH_USDC", marks["PERP_ETH_USDC"] * D("0.97")))
        config = write_config(tmp_path, server.url)
        doc = run_json(capsys, "map", "--config", str(config), "PERP_BTC_USDC")
        states = asyncio.run(every_account(server.url))
        expected = brute_map(states, "PERP_BTC_USDC", _marks(server.url), D("0.1"), D("0.01"))
        assert from_json(doc) == expected
        assert doc["liquidatable_now"] > 0


def test_map_text_draws_a_chart_and_png_is_written(books, capsys, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    _, config = books[11]
    png = tmp_path / "map.png"
    capsys.readouterr()
    code = main(["map", "--config", str(config), "PERP_BTC_USDC", "--png", str(png)])
    out = capsys.readouterr().out
    assert code == 0
    assert "<- mark" in out
    assert "█" in out
    assert "-10%" in out
    assert "+10%" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["NOPE"], "no [markets.NOPE]"),
        (["PERP_BTC_USDC", "--range", "150%"], "--range < 100%"),
        (["PERP_BTC_USDC", "--step", "5%", "--range", "2%"], "0 < --step <= --range"),
    ],
)
def test_map_refuses_bad_arguments(books, capsys, argv: list[str], error: str) -> None:
    _, config = books[11]
    assert main(["map", "--config", str(config), *argv]) == 2
    assert error in capsys.readouterr().err


# --- whatif ------------------------------------------------------------------------


def brute_whatif(
    states: list[AccountState], marks: dict[str, Decimal], rules: Rules
) -> dict[tuple[str, str], Decimal]:
    out = {}
    for s in states:
        for item in liquidatable_state(rules, s, marks):
            out[(s.account, item)] = _notional(s, item, marks)
    return out


def _found(side: dict[str, Any]) -> dict[tuple[str, str], Decimal]:
    return {
        (x["account"], "CROSS" if x["kind"] == "CROSS" else x["symbols"][0]): D(x["notional"])
        for x in side["largest"]
    }


def _snapshot(url: str) -> dict[bytes, Any]:
    import redis

    r = redis.Redis.from_url(url)
    try:
        out: dict[bytes, Any] = {}
        for key in r.scan_iter(count=1000):
            kind = r.type(key)
            if kind == b"hash":
                out[key] = r.hgetall(key)
            elif kind == b"zset":
                out[key] = r.zrange(key, 0, -1, withscores=True)
            elif kind == b"stream":
                out[key] = r.xrange(key)
            else:
                out[key] = r.dump(key)
        return out
    finally:
        r.close()


@pytest.mark.parametrize("seed", [11, 12, 13])
@pytest.mark.parametrize(
    "moves",
    [
        {"PERP_BTC_USDC": "-8%"},
        {"PERP_BTC_USDC": "+6%", "PERP_ETH_USDC": "-5%"},
        {"PERP_SOL_USDC": "-12%", "PERP_DOGE_USDC": "+9%", "PERP_BNB_USDC": "650"},
    ],
)
def test_whatif_moves_equal_a_brute_force(books, capsys, seed, moves) -> None:
    server, config = books[seed]
    before = _snapshot(server.url)
    args = [f"--move={s}={m}" for s, m in moves.items()]
    doc = run_json(capsys, "whatif", "--config", str(config), *args, "--top", "100000")
    assert _snapshot(server.url) == before, "whatif wrote to Redis"
    marks = _marks(server.url)
    for s, m in moves.items():
        marks[s] = marks[s] * (1 + D(m[:-1]) / 100) if m.endswith("%") else D(m)
    states = asyncio.run(every_account(server.url))
    expected = brute_whatif(states, marks, RULES)
    assert _found(doc["current"]) == expected
    totals = doc["current"]["totals"]
    assert totals["count"] == len(expected)
    assert D(totals["notional"]) == sum(expected.values(), D(0))
    assert not doc["read"]["scanned"]
    assert doc["read"]["accounts"] < len(states)
    notionals = [D(x["notional"]) for x in doc["current"]["largest"]]
    assert notionals == sorted(notionals, reverse=True)


def test_whatif_with_new_parameters_scans_and_compares(books, capsys) -> None:
    server, config = books[12]
    before = _snapshot(server.url)
    doc = run_json(
        capsys,
        "whatif",
        "--config",
        str(config),
        "--move",
        "PERP_BTC_USDC=-4%",
        "--market",
        "PERP_BTC_USDC.base_mmr=0.009",
        "--market",
        'PERP_DOGE_USDC.maintenance={model = "flat", rate = "0.03"}',
        "--top",
        "100000",
    )
    assert _snapshot(server.url) == before
    marks = _marks(server.url)
    marks["PERP_BTC_USDC"] *= D("0.96")
    states = asyncio.run(every_account(server.url))
    new_markets = dict(demo_markets())
    from dataclasses import replace

    from state.models import FlatModel, OrderlyModel

    btc = new_markets["PERP_BTC_USDC"]
    assert isinstance(btc.maintenance, OrderlyModel)
    new_markets["PERP_BTC_USDC"] = replace(
        btc, maintenance=replace(btc.maintenance, base_mmr=D("0.009"))
    )
    new_markets["PERP_DOGE_USDC"] = replace(
        new_markets["PERP_DOGE_USDC"], maintenance=FlatModel(D("0.03"))
    )
    new_rules = Rules(KEYS, new_markets)
    current, new = brute_whatif(states, marks, RULES), brute_whatif(states, marks, new_rules)
    assert doc["read"] == {"accounts": len(states), "scanned": True, "unreadable": 0}
    assert _found(doc["current"]) == current
    assert _found(doc["new"]) == new
    assert {(x["account"], x["kind"]) for x in doc["added"]} == {
        (a, "CROSS" if i == "CROSS" else "ISOLATED") for a, i in set(new) - set(current)
    }
    assert len(new) > len(current)


def test_whatif_text_and_refusals(books, capsys) -> None:
    _, config = books[13]
    capsys.readouterr()
    code = main(["whatif", "--config", str(config), "--move", "PERP_BTC_USDC=-10%", "--top", "3"])
    out = capsys.readouterr().out
    assert code == 0
    assert "PERP_BTC_USDC 97000 -> 87300.0" in out
    assert "largest 3 (current parameters)" in out
    assert "nothing written" in out
    for argv, error in (
        ([], "at least one --move or --market"),
        (["--move", "NOPE=-1%"], "configured SYMBOL"),
        (["--move", "PERP_BTC_USDC=-100%"], "above -100%"),
        (["--market", "PERP_BTC_USDC.base_mmr=0.5"], "base_mmr"),
        (["--market", "PERP_BTC_USDC.colour=1"], "unknown key"),
    ):
        assert main(["whatif", "--config", str(config), *argv]) == 2, argv
        assert error in capsys.readouterr().err
