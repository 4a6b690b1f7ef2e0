"""``liqwatch inspect`` views on a state written straight into a real redis-server."""

from __future__ import annotations

import json
import math
import time
from decimal import Decimal
from typing import Any

import pytest

from state import margin
from state.account import AccountState, Status, StoredPosition
from state.keys import position_field
from state.models import FlatModel, MarginMode, Market, Position
from tests.helpers.config import BTC, ETH, KEYS
from watcher.cli import views
from watcher.cli.main import main

ETH_MODEL = FlatModel(Decimal("0.006"))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def put_mark(r, symbol: str, price: str, *, status: str = "LIVE", age_ms: int = 0) -> None:
    recv = now_ms() - age_ms
    r.hset(
        KEYS.mark(symbol),
        mapping={
            "price": price,
            "venue_ts": recv - 3,
            "recv_ms": recv,
            "status": status,
            "source": "orderly|wss://example/ws",
        },
    )


def put_account(r, account: str, balance: str, seq: int, version: int, *positions) -> None:
    r.hset(
        KEYS.account(account),
        mapping={
            "balance": balance,
            "seq": seq,
            "version": version,
            "status": "OPEN",
            "lev|ISOLATED|" + ETH: "10",
        },
    )
    for stored in positions:
        p = stored.position
        r.hset(KEYS.positions(account), position_field(p.margin_mode, p.symbol), stored.to_json())


def inspect(config, capsys, *view: str) -> tuple[int, Any]:
    code = main(["inspect", "--config", str(config), *view, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if code == 0 else out


CROSS_ETH = Position("A1", ETH, MarginMode.CROSS, Decimal(1), Decimal(3000))
ISOLATED_ETH = Position(
    "A1", ETH, MarginMode.ISOLATED, Decimal(-2), Decimal(3000), Decimal(600), Decimal(10)
)


def test_account_prices_cross_and_isolated_at_the_marks(config, sync_redis, capsys):
    put_mark(sync_redis, ETH, "2900")
    put_account(
        sync_redis,
        "A1",
        "1000",
        12345678901234567890123,
        7,
        StoredPosition(CROSS_ETH),
        StoredPosition(ISOLATED_ETH),
    )

    code, view = inspect(config, capsys, "account", "A1")

    assert code == 0
    assert view["account"] == "A1"
    assert (view["balance"], view["seq"], view["version"]) == ("1000", "12345678901234567890123", 7)
    assert view["status"] == "OPEN"
    assert view["leverage"] == {f"ISOLATED|{ETH}": "10"}
    assert view["positions"] == [
        {
            "symbol": ETH,
            "mode": "CROSS",
            "qty": "1",
            "entry_price": "3000",
            "margin": None,
            "leverage": None,
            "status": "OPEN",
            "liq_id": None,
        },
        {
            "symbol": ETH,
            "mode": "ISOLATED",
            "qty": "-2",
            "entry_price": "3000",
            "margin": "600",
            "leverage": "10",
            "status": "OPEN",
            "liq_id": None,
        },
    ]
    cross = view["cross"]
    # equity 1000 + (2900 - 3000) = 900; maintenance 0.006 * 2900 = 17.4
    assert Decimal(cross["equity"]) == 900
    assert Decimal(cross["maintenance"]) == Decimal("17.4")
    assert Decimal(cross["health"]) == Decimal("882.6")
    assert abs(Decimal(cross["margin_ratio"]) - Decimal(9) / Decimal(29)) < Decimal("1e-20")
    assert cross["liquidatable"] is False
    assert cross["missing_marks"] == cross["unknown_markets"] == []
    [leg] = cross["legs"]
    # 1000 + (x - 3000) - 0.006 x = 0  =>  x = 2000 / 0.994
    assert abs(Decimal(leg["liq_price"]) - Decimal(2000) / Decimal("0.994")) < Decimal("1e-20")
    assert leg["mark"] == "2900"
    assert leg["mark_status"] == "LIVE"
    assert leg["distance_pct"] == pytest.approx((2000 / 0.994 - 2900) / 2900 * 100, abs=1e-4)
    [iso] = view["isolated"]
    # 600 - 2 (2900 - 3000) - 0.006 * 5800 = 765.2; liq: 600 - 2 (x - 3000) - 0.012 x = 0
    assert Decimal(iso["health"]) == Decimal("765.2")
    assert Decimal(iso["equity"]) == 800
    assert iso["liq_price"] == str(margin.isolated_liq_price(ISOLATED_ETH, ETH_MODEL))
    assert abs(Decimal(iso["liq_price"]) - Decimal(6600) / Decimal("2.012")) < Decimal("1e-20")
    assert iso["distance_pct"] == pytest.approx((6600 / 2.012 - 2900) / 2900 * 100, abs=1e-4)
    assert iso["liquidatable"] is False


def test_account_with_a_leg_without_a_mark(config, sync_redis, capsys):
    put_mark(sync_redis, ETH, "2900", status="STALE")
    btc = Position("A2", BTC, MarginMode.CROSS, Decimal("-0.1"), Decimal(60000))
    iso_btc = Position("A2", BTC, MarginMode.ISOLATED, Decimal("0.1"), Decimal(60000), Decimal(600))
    put_account(
        sync_redis,
        "A2",
        "500",
        3,
        3,
        StoredPosition(Position("A2", ETH, MarginMode.CROSS, Decimal(1), Decimal(3000))),
        StoredPosition(btc, Status.LIQUIDATING, "A2:CROSS:3"),
        StoredPosition(iso_btc),
    )

    code, view = inspect(config, capsys, "account", "A2")

    assert code == 0
    cross = view["cross"]
    assert cross["missing_marks"] == [BTC]
    assert cross["equity"] is None
    assert [(leg["symbol"], leg["mark"], leg["mark_status"]) for leg in cross["legs"]] == [
        (BTC, None, None),
        (ETH, "2900", "STALE"),
    ]
    [iso] = view["isolated"]
    assert iso["mark"] is None
    assert iso["health"] is None
    # The isolated liquidation price needs no mark: 600 + 0.1 (x - 60000) - 0.0005 x = 0.
    assert abs(Decimal(iso["liq_price"]) - Decimal(5400) / Decimal("0.0995")) < Decimal("1e-20")
    assert {p["liq_id"] for p in view["positions"]} == {None, "A2:CROSS:3"}

    assert main(["inspect", "--config", str(config), "account", "A2"]) == 0
    text = capsys.readouterr().out
    assert "not priced: no mark for PERP_BTC_USDC" in text
    assert "no mark" in text
    assert "LIQUIDATING" in text


def test_unknown_account_is_one_line_and_exit_1(config, sync_redis, capsys):
    assert main(["inspect", "--config", str(config), "account", "nobody"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "liqwatch: no account 'nobody' in Redis at " + (
        f"redis://127.0.0.1:{sync_redis.connection_pool.connection_kwargs['port']}/0\n"
    )


def test_symbol_lists_the_nearest_members_with_always(config, sync_redis, capsys):
    put_mark(sync_redis, ETH, "2900")
    sync_redis.zadd(
        KEYS.index(ETH, "down"),
        {
            "C|A1": 2012.0724346076461,
            "I|A3": 2500.0,
            "C|A4": math.inf,
            "C|A5": 1000.0,
        },
    )
    sync_redis.zadd(KEYS.index(ETH, "up"), {"I|A1": 3280.3180914512923, "C|A6": -math.inf})

    code, view = inspect(config, capsys, "symbol", ETH, "--limit", "2")

    assert code == 0
    assert view["symbol"] == ETH
    assert view["mark"]["price"] == "2900"
    assert [(r["member"], r["mode"], r["account"], r["trigger"]) for r in view["down"]] == [
        ("C|A4", "CROSS", "A4", "always"),
        ("I|A3", "ISOLATED", "A3", "2500.0"),
    ]
    assert view["down"][0]["distance_pct"] is None
    assert view["down"][1]["distance_pct"] == pytest.approx(-13.7931, abs=1e-4)
    assert [(r["member"], r["trigger"]) for r in view["up"]] == [
        ("C|A6", "always"),
        ("I|A1", "3280.3180914512923"),
    ]
    assert view["up"][1]["distance_pct"] == pytest.approx(13.1144, abs=1e-4)

    assert main(["inspect", "--config", str(config), "symbol", ETH]) == 0
    text = capsys.readouterr().out
    assert "C|A5" in text
    assert "always" in text


def test_symbol_without_mark_or_members(config, sync_redis, capsys):
    code, view = inspect(config, capsys, "symbol", BTC)
    assert code == 0
    assert view == {"symbol": BTC, "mark": None, "down": [], "up": []}


def test_marks_lists_every_symbol_with_status_and_age(config, sync_redis, capsys):
    put_mark(sync_redis, ETH, "2900.5", age_ms=1500)
    put_mark(sync_redis, BTC, "61000", status="STALE", age_ms=9000)

    code, rows = inspect(config, capsys, "marks")

    assert code == 0
    assert [(m["symbol"], m["price"], m["status"], m["source"]) for m in rows] == [
        (BTC, "61000", "STALE", "orderly|wss://example/ws"),
        (ETH, "2900.5", "LIVE", "orderly|wss://example/ws"),
    ]
    assert rows[0]["age_s"] == pytest.approx(9.0, abs=1.0)
    assert rows[1]["age_s"] == pytest.approx(1.5, abs=1.0)
    assert rows[1]["venue_ts"] == rows[1]["recv_ms"] - 3

    assert main(["inspect", "--config", str(config), "marks"]) == 0
    assert "STALE" in capsys.readouterr().out


def event(n: int) -> dict[str, str]:
    return {
        "id": f"A{n}:CROSS:{n}",
        "kind": "CROSS",
        "account": f"A{n}",
        "symbol": ETH,
        "positions": json.dumps(
            [
                {
                    "symbol": ETH,
                    "margin_mode": "CROSS",
                    "qty": "1",
                    "entry_price": "2010",
                    "mark_price": "2000",
                }
            ]
        ),
        "mark_price": "2000",
        "marks": json.dumps({ETH: "2000"}),
        "liq_price": "2012.07",
        "equity": "5",
        "maintenance_margin": "12",
        "mark_ts": "1700000000000",
        "detected_ts": "1700000000004",
        "seq": str(n),
    }


def test_events_are_the_last_n_oldest_first_with_flat_fields(config, sync_redis, capsys):
    ids = [sync_redis.xadd(KEYS.events, event(n)).decode() for n in range(5)]

    code, rows = inspect(config, capsys, "events", "--count", "2")

    assert code == 0
    assert rows == [{"entry_id": ids[3], **event(3)}, {"entry_id": ids[4], **event(4)}]
    assert main(["inspect", "--config", str(config), "events"]) == 0
    text = capsys.readouterr().out
    assert "A0:CROSS:0" in text
    assert "2023-11-14 22:13:20.004" in text


def test_liquidating_members_with_their_age(config, sync_redis, capsys):
    now = now_ms()
    sync_redis.zadd(KEYS.liquidating, {"C|A1": now - 2000, f"I|A2|{ETH}": now - 5000})

    code, rows = inspect(config, capsys, "liquidating")

    assert code == 0
    assert [(r["member"], r["mode"], r["account"], r["symbol"], r["claimed_ms"]) for r in rows] == [
        (f"I|A2|{ETH}", "ISOLATED", "A2", ETH, now - 5000),
        ("C|A1", "CROSS", "A1", None, now - 2000),
    ]
    assert rows[0]["age_s"] == pytest.approx(5.0, abs=1.0)
    assert main(["inspect", "--config", str(config), "liquidating"]) == 0
    assert "C|A1" in capsys.readouterr().out


def test_dead_letters(config, sync_redis, capsys):
    sync_redis.xadd(KEYS.dead, {"msg": "not json", "reason": "not JSON: x"})
    long_id = sync_redis.xadd(KEYS.dead, {"msg": "x" * 200, "reason": "account: bad"}).decode()

    code, rows = inspect(config, capsys, "dead", "--count", "1")

    assert code == 0
    assert rows == [{"entry_id": long_id, "msg": "x" * 200, "reason": "account: bad"}]
    assert main(["inspect", "--config", str(config), "dead"]) == 0
    text = capsys.readouterr().out
    assert "not JSON: x" in text
    assert "x" * 200 not in text


def test_stats_with_and_without_the_input_group(config, sync_redis, capsys):
    sync_redis.hset(KEYS.stats, mapping={"inputs_applied": 7, "liquidations": 2})
    for i in range(3):
        sync_redis.xadd(KEYS.input, {"msg": f"m{i}"})
    sync_redis.xadd(KEYS.events, {"id": "e"})

    code, view = inspect(config, capsys, "stats")

    assert code == 0
    assert view == {
        "counters": {"inputs_applied": 7, "liquidations": 2},
        "streams": {"in": 3, "dead": 0, "events": 1},
        "input_group": None,
    }

    sync_redis.xgroup_create(KEYS.input, views.INPUT_GROUP, id="0")
    sync_redis.xreadgroup(views.INPUT_GROUP, "w1", {KEYS.input: ">"}, count=1)
    code, view = inspect(config, capsys, "stats")
    group = view["input_group"]
    assert group["name"] == "liqwatch"
    assert group["pending"] == 1
    assert group["consumers"] == {"w1": 1}
    assert group["lag"] == 2
    assert main(["inspect", "--config", str(config), "stats"]) == 0
    assert "pending 1" in capsys.readouterr().out


def test_stats_on_an_empty_redis(config, sync_redis, capsys):
    code, view = inspect(config, capsys, "stats")
    assert code == 0
    assert view["streams"] == {"in": 0, "dead": 0, "events": 0}
    assert view["input_group"] is None


def test_a_wrongly_typed_key_is_one_line(config, sync_redis, capsys):
    sync_redis.set(KEYS.events, "oops")
    assert main(["inspect", "--config", str(config), "events"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "refused: WRONGTYPE" in err


def test_describe_account_with_an_unknown_market_and_a_liquidatable_account():
    legs = {
        (MarginMode.CROSS, ETH): StoredPosition(CROSS_ETH),
        (MarginMode.ISOLATED, "OLD"): StoredPosition(
            Position("A1", "OLD", MarginMode.ISOLATED, Decimal(1), Decimal(10), Decimal(1))
        ),
    }
    state = AccountState("A1", Decimal(20), 5, 5, Status.OPEN, legs, {})
    mark = views.MarkInfo(ETH, Decimal(2900), "LIVE", "orderly", 1, 1)
    markets = {ETH: Market(ETH, ETH_MODEL)}

    view = views.describe_account(state, markets, {ETH: mark})

    # 20 - 100 < 17.4: below maintenance; the liquidation price is above the mark.
    assert view["cross"]["liquidatable"] is True
    assert view["cross"]["legs"][0]["distance_pct"] > 0
    [old] = view["isolated"]
    assert old["known_market"] is False
    assert old["liq_price"] is None


def test_warnings_lists_what_is_in_warning_and_the_last_warnings(config, sync_redis, capsys):
    from state.warnings import WarningEvent

    now = now_ms()
    sync_redis.zadd(KEYS.warned(MarginMode.CROSS), {"A1": now - 5000})
    sync_redis.zadd(KEYS.warned(MarginMode.ISOLATED), {f"A2|{ETH}": now - 1000})
    event = WarningEvent(
        id="A1:WARNING:CROSS:1",
        kind=MarginMode.CROSS,
        account="A1",
        symbol=ETH,
        positions=(),
        marks={ETH: Decimal(2720)},
        equity=Decimal(20),
        maintenance_margin=Decimal("16.32"),
        level=Decimal("1.5"),
        rearm=Decimal("1.6"),
        detected_ts=now - 5000,
        seq="3",
        count=1,
        balance=Decimal(300),
    )
    sync_redis.xadd(KEYS.warnings, event.to_fields())

    code, view = inspect(config, capsys, "warnings")

    assert code == 0
    assert view["in_warning"] == {"cross": 1, "isolated": 1}
    assert [(m["mode"], m["account"], m["symbol"]) for m in view["members"]] == [
        ("CROSS", "A1", None),
        ("ISOLATED", "A2", ETH),
    ]
    assert view["members"][0]["age_s"] >= 5
    (recent,) = view["recent"]
    assert recent["id"] == "A1:WARNING:CROSS:1"
    assert recent["required"] == "24.480"
    assert main(["inspect", "--config", str(config), "warnings"]) == 0
    text = capsys.readouterr().out
    assert "in warning: 1 cross accounts, 1 isolated positions" in text
    assert "A1:WARNING:CROSS:1" in text
