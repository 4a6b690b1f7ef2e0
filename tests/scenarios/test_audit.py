"""The self-audit against a running daemon: drift injected by hand is found and repaired.

Each case writes into Redis what no liqwatch code path writes (a member
removed, a score moved, a member without a position, an account nobody
indexed, a cross band that no longer protects) and waits for the audit,
paced at 20 ms a batch here, to find it, log it and put it right.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from structlog.testing import capture_logs

from state import margin
from state.models import FlatModel, MarginMode, Position
from tests.helpers.harness import Harness
from tests.helpers.wait import wait_for

ETH = "PERP_ETH_USDC"
BTC = "PERP_BTC_USDC"
AUDIT = "[audit]\ninterval = 0.02\nbatch = 50\n"
EXAMPLE_6 = Position("X", ETH, MarginMode.ISOLATED, Decimal(1), Decimal(3000), Decimal(300))
# Example 6's exact liquidation price as the index scores it.
SCORE_6 = margin.index_score(
    margin.isolated_liq_price(EXAMPLE_6, FlatModel(Decimal("0.006"))) or Decimal(0), down=True
)


def logged(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == event]


async def test_a_removed_or_moved_isolated_member_is_put_back(redis_server, redis_client) -> None:
    """A member taken out of the index, or moved to a late score, is scored exactly again."""
    async with Harness(redis_server.url, {ETH: "3000"}, extra=AUDIT) as h:
        await h.start()
        await h.tick({ETH: "3000"})
        await h.isolated_long("X")
        down = h.daemon.store.keys.index(ETH, "down")
        assert await h.redis.zscore(down, "I|X") == SCORE_6
        with capture_logs() as logs:
            await h.redis.zrem(down, "I|X")
            await wait_for(lambda: h.redis.zscore(down, "I|X"))
            assert await h.redis.zscore(down, "I|X") == SCORE_6
            # Moved far below its price: the filter would be late. Repaired too.
            await h.redis.zadd(down, {"I|X": 1000.0})
            await wait_for(lambda: _score_is(h, down, "I|X", SCORE_6))
        found = logged(logs, "audit.index_mismatch")
        assert len(found) >= 2
        assert all(e["account"] == "X" for e in found)
        assert h.daemon.auditor.counters["audit_repairs"] >= 2
        assert await h.events() == []


async def _score_is(h: Harness, key: str, member: str, score: float) -> bool:
    return bool(await h.redis.zscore(key, member) == score)


async def test_a_member_without_a_position_is_removed(redis_server, redis_client) -> None:
    """An index member whose account holds no such position is taken out."""
    async with Harness(redis_server.url, {ETH: "3000"}, extra=AUDIT) as h:
        await h.start()
        await h.tick({ETH: "3000"})
        down = h.daemon.store.keys.index(ETH, "down")
        with capture_logs() as logs:
            await h.redis.zadd(down, {"I|GHOST": 10.0, "C|GHOST": 10.0})
            await wait_for(lambda: _gone(h, down, ["I|GHOST", "C|GHOST"]))
        assert {e["account"] for e in logged(logs, "audit.index_mismatch")} == {"GHOST"}


async def _gone(h: Harness, key: str, members: list[str]) -> bool:
    scores = [await h.redis.zscore(key, m) for m in members]
    return all(score is None for score in scores)


async def test_a_liquidatable_account_nobody_indexed_is_decided(redis_server, redis_client) -> None:
    """An account written behind the daemon's back, under water at the LIVE marks: audit.missed."""
    async with Harness(redis_server.url, {ETH: "3000"}, extra=AUDIT) as h:
        await h.start()
        await h.tick({ETH: "2700"})
        keys = h.daemon.store.keys
        position = {"qty": "1", "entry_price": "3000", "margin": "300", "status": "OPEN"}
        with capture_logs() as logs:
            await h.redis.hset(
                keys.account("M"), mapping={"balance": "0", "seq": "1", "version": "1"}
            )
            await h.redis.hset(keys.positions("M"), "ISOLATED|" + ETH, json.dumps(position))
            await wait_for(lambda: _has_events(h))
        (event,) = await h.events()
        assert (event["kind"], event["account"], event["symbol"]) == ("ISOLATED", "M", ETH)
        assert Decimal(event["mark_price"]) == 2700
        (missed,) = logged(logs, "audit.missed")
        assert missed["account"] == "M"
        assert missed["liquidatable"] == [ETH]


async def _has_events(h: Harness) -> bool:
    return bool(await h.events())


async def test_an_unsound_cross_band_is_rebanded(redis_server, redis_client) -> None:
    """A cross leg's band moved so far that health would be negative before it fires."""
    async with Harness(redis_server.url, {ETH: "3000", BTC: "60000"}, extra=AUDIT) as h:
        await h.start()
        await h.tick({ETH: "3000", BTC: "60000"})
        await h.send(
            {"type": "balance", "account": "C", "balance": "500"},
            {"type": "position", "account": "C", "symbol": ETH, "qty": "1", "entry_price": "3000"},
            {
                "type": "position",
                "account": "C",
                "symbol": BTC,
                "qty": "0.1",
                "entry_price": "60000",
            },
        )
        await h.drained()
        down = h.daemon.store.keys.index(ETH, "down")
        band = await h.redis.zscore(down, "C|C")
        assert band is not None
        with capture_logs() as logs:
            await h.redis.zadd(down, {"C|C": 1.0})
            await wait_for(lambda: _score_is(h, down, "C|C", band))
        (found,) = logged(logs, "audit.index_mismatch")
        assert "unsound" in found["found"][0]
