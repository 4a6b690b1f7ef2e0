"""The demo console: pure line formatting, and the live view against a real redis-server."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from state.errors import LiqwatchError
from state.events import EventError, LiquidationEvent
from state.keys import Keys
from watcher.demo.console import ConsoleView, format_event, format_marks, format_unreadable

KEYS = Keys("t")

EVENT = {
    "id": "liq-7f3a",
    "kind": "CROSS",
    "account": "demo-0042",
    "symbol": "PERP_ETH_USDC",
    "positions": json.dumps(
        [
            {
                "symbol": "PERP_ETH_USDC",
                "margin_mode": "CROSS",
                "qty": "1.5",
                "entry_price": "3000",
                "mark_price": "2313.1",
            },
            {
                "symbol": "PERP_BTC_USDC",
                "margin_mode": "CROSS",
                "qty": "-0.1",
                "entry_price": "60000",
                "mark_price": "61000",
            },
        ]
    ),
    "mark_price": "2313.1",
    "marks": json.dumps({"PERP_ETH_USDC": "2313.1", "PERP_BTC_USDC": "61000"}),
    "liq_price": "2313.8812345678901234567",
    "equity": "123.456789",
    "maintenance_margin": "130.1",
    "mark_ts": "1700000001230",
    "detected_ts": "1700000001234",
    "seq": "17",
}


def test_format_event_shows_every_field() -> None:
    line = format_event(
        LiquidationEvent.from_fields({k.encode(): v.encode() for k, v in EVENT.items()})
    )
    assert "\n" not in line
    words = f" {line} "
    for expected in (
        "22:13:21.234",  # detected_ts in UTC
        "CROSS",
        "demo-0042",
        "PERP_ETH_USDC",
        "mark 2313.10",
        "liq 2313.88",
        "equity/mm 123.46/130.10",
        "legs 2",
        "lag 4ms",
        "seq 17",
        "id liq-7f3a",
    ):
        assert f" {expected} " in words, (expected, line)
    assert format_event(LiquidationEvent.from_fields(EVENT)) == line


def test_an_unreadable_event_is_one_line_naming_what_is_wrong() -> None:
    with pytest.raises(EventError) as caught:
        LiquidationEvent.from_fields({"kind": "ISOLATED", "liq_price": "", "positions": "[{}]"})
    assert isinstance(caught.value, LiqwatchError)
    assert format_unreadable("5-0", caught.value) == "unreadable event 5-0: marks: missing"


def test_format_marks() -> None:
    line = format_marks(
        {
            "PERP_BTC_USDC": (b"97012.3", b"LIVE"),
            "PERP_DOGE_USDC": ("0.3312345678", "STALE"),
            "PERP_XRP_USDC": (None, None),
        },
        {"ISOLATED": 5, "CROSS": 2},
    )
    assert "BTC 97012.30 LIVE" in line
    assert "DOGE 0.331235 STALE" in line
    assert "XRP ? ?" in line
    assert "events 7 (CROSS 2, ISOLATED 5)" in line
    assert format_marks({}, {}).endswith("events 0")


async def test_console_prints_events_as_they_arrive_and_marks(redis_client) -> None:
    await redis_client.hset(
        KEYS.mark("PERP_ETH_USDC"), mapping={"price": "2313.1", "status": "LIVE"}
    )
    await redis_client.xadd(KEYS.events, EVENT)
    out = io.StringIO()
    view = ConsoleView(
        redis_client,
        KEYS,
        ["PERP_ETH_USDC", "PERP_BTC_USDC"],
        out=out,
        marks_every=0.05,
        block_ms=20,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(view.run(stop))
    await redis_client.xadd(KEYS.events, {**EVENT, "kind": "ISOLATED", "id": "liq-2"})

    def lines():
        return out.getvalue().splitlines()

    for _ in range(300):
        if sum(line.startswith("marks") for line in lines()) >= 2 and len(lines()) >= 4:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, timeout=2)

    printed = lines()
    events = [line for line in printed if not line.startswith("marks")]
    assert [("id liq-7f3a" in e, "id liq-2" in e) for e in events] == [(True, False), (False, True)]
    assert "ETH 2313.10 LIVE | BTC ? ?" in printed[0]
    assert printed[-1].endswith("events 2 (CROSS 1, ISOLATED 1)")
    assert view.totals == {"CROSS": 1, "ISOLATED": 1}
