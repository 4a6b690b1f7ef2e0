"""``liqwatch explain``: every event of a random book re-derives; a tampered one does not."""

from __future__ import annotations

import asyncio
import json
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from state.events import LiquidationEvent
from state.explain import derive
from state.store.client import open_client
from tests.helpers.riskbook import KEYS, Loaded, write_config
from watcher.cli.main import main
from watcher.demo.book import Shape, demo_markets, demo_marks, demo_specs, generate
from watcher.demo.redis_server import RedisServer

D = Decimal
SHAPE = Shape(distances=((1, 20, 300), (1, 300, 900)))


async def _crash(url: str, seed: int) -> None:
    """A book, then a random walk of every mark: liquidations of every kind."""
    client = open_client(url)
    try:
        loaded = Loaded(client, demo_markets())
        await loaded.start()
        marks = demo_marks()
        await loaded.tick(marks)
        book = generate(demo_specs(), SHAPE, seed=seed, accounts=150, prefix="x-")
        await loaded.apply(book.messages)
        rng = random.Random(seed)
        for _ in range(12):
            marks = {s: (p * D(repr(rng.gauss(1, 0.015)))).quantize(p) for s, p in marks.items()}
            await loaded.tick(marks)
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory):
    server = RedisServer()
    server.start()
    try:
        asyncio.run(_crash(server.url, 5))
        yield server, write_config(tmp_path_factory.mktemp("explain"), server.url)
    finally:
        server.close()


def _events(url: str) -> list[tuple[str, dict[str, str]]]:
    r = redis.Redis.from_url(url)
    try:
        return [
            (eid.decode(), {k.decode(): v.decode() for k, v in f.items()})
            for eid, f in r.xrange(KEYS.events)
        ]
    finally:
        r.close()


def explain(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(["explain", "--config", str(config), *argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def test_every_event_of_a_random_book_re_derives(crashed, capsys) -> None:
    server, config = crashed
    events = _events(server.url)
    kinds = {f["kind"] for _, f in events}
    assert kinds == {"CROSS", "ISOLATED"}
    assert any("transfer_qty" in f for _, f in events), "orderly markets carry a transfer"
    assert len(events) > 20
    for _, fields in events:
        code, doc = explain(capsys, config, fields["id"])
        assert code == 0, doc["differences"]
        assert doc["exact"]
        assert doc["liquidatable"]
        assert doc["equity"] == str(D(fields["equity"]))


def test_explain_text_shows_the_derivation(crashed, capsys) -> None:
    server, config = crashed
    cross = next(f for _, f in _events(server.url) if f["kind"] == "CROSS")
    capsys.readouterr()
    assert main(["explain", "--config", str(config), cross["id"]]) == 0
    out = capsys.readouterr().out
    for text in ("balance", "equity       balance + sum(pnl)", "verdict      LIQUIDATE"):
        assert text in out
    assert "re-derived exactly" in out


def _tampered(fields: dict[str, str], how: str) -> dict[str, str]:
    out = dict(fields)
    legs = orjson.loads(out["positions"])
    if how == "mark":
        symbol = legs[0]["symbol"]
        price = str(D(legs[0]["mark_price"]) * D("1.01"))
        legs[0]["mark_price"] = price
        marks = orjson.loads(out["marks"])
        marks[symbol] = price
        out["marks"] = orjson.dumps(marks).decode()
        if out["symbol"] == symbol:
            out["mark_price"] = price
    else:
        legs[0]["qty"] = str(D(legs[0]["qty"]) * 2)
    out["positions"] = orjson.dumps(legs).decode()
    out["id"] = out["id"] + ":tampered-" + how
    return out


@pytest.mark.parametrize("kind", ["CROSS", "ISOLATED"])
@pytest.mark.parametrize("how", ["mark", "qty"])
def test_a_tampered_event_does_not_re_derive(crashed, capsys, kind: str, how: str) -> None:
    server, config = crashed
    original = next(f for _, f in _events(server.url) if f["kind"] == kind)
    r = redis.Redis.from_url(server.url)
    try:
        entry = r.xadd(KEYS.events, _tampered(original, how)).decode()
    finally:
        r.close()
    code, doc = explain(capsys, config, entry)
    assert code == 1
    assert not doc["exact"]
    assert any(d.startswith(("equity", "maintenance_margin")) for d in doc["differences"])
    capsys.readouterr()
    assert main(["explain", "--config", str(config), entry]) == 1
    assert "does NOT re-derive" in capsys.readouterr().out


def test_found_by_id_after_its_idempotency_key_is_gone(crashed, capsys) -> None:
    server, config = crashed
    _, fields = _events(server.url)[0]
    r = redis.Redis.from_url(server.url)
    try:
        r.delete(KEYS.liq_id(fields["id"]))
    finally:
        r.close()
    code, doc = explain(capsys, config, fields["id"])
    assert code == 0
    assert doc["id"] == fields["id"]


def test_an_unknown_event_is_one_line_and_exit_1(crashed, capsys) -> None:
    _, config = crashed
    capsys.readouterr()
    assert main(["explain", "--config", str(config), "nobody:CROSS:1"]) == 1
    assert "no event 'nobody:CROSS:1'" in capsys.readouterr().err


def test_an_old_event_without_balance_re_derives_from_its_equity(crashed) -> None:
    server, _ = crashed
    fields = next(f for _, f in _events(server.url) if f["kind"] == "CROSS")
    old = {k: v for k, v in fields.items() if k not in ("balance",)}
    d = derive(LiquidationEvent.from_fields(old), demo_markets(), at_equality=False)
    assert d.balance_derived
    assert d.exact, d.differences
