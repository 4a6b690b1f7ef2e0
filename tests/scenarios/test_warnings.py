"""Near-liquidation warnings through the whole daemon: one per crossing, hysteresis, re-arm.

The isolated long W (1 @ 3,000, margin 300) and the cross account C
(balance 300, 1 ETH long @ 3,000) have the same figures on the flat 0.006
ETH market: equity ``p - 2,700``, maintenance ``0.006 p``. With level 1.5
and re-arm 1.6 they are in warning below 2,700 / 0.991 = 2,724.52, re-armed
at 2,700 / 0.9904 = 2,726.17 and above, liquidated below 2,716.30.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from state.keys import Keys
from state.models import MarginMode
from state.warnings import WarningEvent
from tests.helpers.harness import Harness, topology_harness
from tests.helpers.wait import wait_for

ETH = "PERP_ETH_USDC"
WARNINGS = '[warnings]\nlevel = "1.5"\nrearm = "1.6"\ninterval = 0.02\n'


async def warnings_of(h: Harness) -> list[WarningEvent]:
    """Every shard's warning events, in stream order per shard."""
    out = []
    for keys in h.all_keys:
        for _, fields in await h.redis.xrange(keys.warnings):
            out.append(WarningEvent.from_fields(fields))
    return out


async def count_is(h: Harness, n: int) -> None:
    async def enough() -> bool:
        return len(await warnings_of(h)) >= n

    await wait_for(enough, what=f"{n} warnings")
    await asyncio.sleep(0.2)  # a few more rounds: nothing more comes
    assert len(await warnings_of(h)) == n


async def in_warning(h: Harness) -> set[str]:
    out: set[str] = set()
    for keys in h.all_keys:
        for mode in MarginMode:
            out |= {m.decode() for m in await h.redis.zrange(keys.warned(mode), 0, -1)}
    return out


async def open_both(h: Harness) -> None:
    await h.isolated_long("W")
    await h.send(
        {"type": "balance", "account": "C", "balance": "300"},
        {
            "type": "position",
            "account": "C",
            "symbol": ETH,
            "margin_mode": "CROSS",
            "qty": "1",
            "entry_price": "3000",
        },
    )
    await h.drained()


async def test_one_warning_per_crossing_and_rearmed_past_the_rearm_level(
    redis_server, topology
) -> None:
    """Cross the level: one warning each; inside the hysteresis: none; recover, cross: one more."""
    async with topology_harness(
        topology[0], redis_server.url, topology[1], {ETH: "3000"}, extra=WARNINGS
    ) as h:
        await h.tick({ETH: "3000"})
        await open_both(h)
        await h.tick({ETH: "2800"})
        await asyncio.sleep(0.2)
        assert await warnings_of(h) == []

        await h.tick({ETH: "2720"})
        await count_is(h, 2)
        first = {w.kind: w for w in await warnings_of(h)}
        cross, isolated = first[MarginMode.CROSS], first[MarginMode.ISOLATED]
        assert (isolated.id, isolated.account, isolated.symbol) == (
            "W:WARNING:ISOLATED:PERP_ETH_USDC:1",
            "W",
            ETH,
        )
        assert (cross.id, cross.account, cross.count) == ("C:WARNING:CROSS:1", "C", 1)
        for w in (cross, isolated):
            assert w.equity == Decimal("20")  # 300 + (2720 - 3000)
            assert w.maintenance_margin == Decimal("16.320")  # 0.006 * 2720
            assert w.required == Decimal("1.5") * Decimal("16.320")
            assert w.marks == {ETH: Decimal("2720")}
        assert cross.balance == Decimal("300")
        assert await in_warning(h) == {"C", "W|PERP_ETH_USDC"}

        for price in ("2725", "2721", "2726", "2719"):  # inside the band: still in warning
            await h.tick({ETH: price})
            await asyncio.sleep(0.05)
        await count_is(h, 2)

        await h.tick({ETH: "2727"})  # past 2,726.17: re-armed

        async def rearmed() -> bool:
            return await in_warning(h) == set()

        await wait_for(rearmed, what="re-armed")
        await h.tick({ETH: "2724"})
        await count_is(h, 4)
        second = sorted(w.id for w in await warnings_of(h) if w.count == 2)
        assert second == ["C:WARNING:CROSS:2", "W:WARNING:ISOLATED:PERP_ETH_USDC:2"]


async def test_an_update_that_drops_equity_warns_without_a_tick(redis_server, redis_client) -> None:
    """A withdrawal puts the account under the level: warned through the dirty set."""
    async with Harness(redis_server.url, {ETH: "3000"}, extra=WARNINGS) as h:
        await h.start()
        await h.tick({ETH: "2720"})
        await h.send(
            {"type": "balance", "account": "C", "balance": "1000"},
            {
                "type": "position",
                "account": "C",
                "symbol": ETH,
                "margin_mode": "CROSS",
                "qty": "1",
                "entry_price": "3000",
            },
        )
        await h.drained()
        await asyncio.sleep(0.2)
        assert await warnings_of(h) == []
        await h.send({"type": "balance", "account": "C", "balance": "300"})
        await h.drained()
        await count_is(h, 1)
        assert (await warnings_of(h))[0].symbol == ""  # no mark fired it: an update did
        assert await h.redis.scard(Keys().warn_dirty) == 0


async def test_a_liquidation_clears_the_warning(redis_server, redis_client) -> None:
    async with Harness(redis_server.url, {ETH: "3000"}, extra=WARNINGS) as h:
        await h.start()
        await h.tick({ETH: "3000"})
        await open_both(h)
        await h.tick({ETH: "2720"})
        await count_is(h, 2)
        await h.tick({ETH: "2700"})  # liquidates both

        async def cleared() -> bool:
            return await in_warning(h) == set()

        await wait_for(cleared, what="warnings cleared")
        keys = Keys()
        for index in (keys.warn_index, keys.rearm_index):
            for direction in ("down", "up"):
                assert await h.redis.zcard(index(ETH, direction)) == 0  # type: ignore[arg-type]
        account = await h.redis.hgetall(keys.account("C"))
        assert not [f for f in account if f.startswith(b"warn|")]
        assert len(await h.events()) == 2


async def test_two_instances_warn_once(redis_server, redis_client) -> None:
    """Hot standby: both instances decide; each warning is written once (its id, SET NX)."""
    async with Harness(redis_server.url, {ETH: "3000"}, extra=WARNINGS) as h:
        await h.start("a")
        await h.start("b")
        await h.tick({ETH: "3000"})
        await open_both(h)
        for price in ("2720", "2730", "2720", "2730", "2720"):
            await h.tick({ETH: price})
            await asyncio.sleep(0.15)
        await asyncio.sleep(0.3)
        ids = [w.id for w in await warnings_of(h)]
        assert len(ids) == len(set(ids)) == 6  # three crossings of two parts


async def test_without_warnings_no_warning_key_is_written(redis_server, redis_client) -> None:
    async with Harness(redis_server.url, {ETH: "3000"}) as h:
        await h.start()
        await h.tick({ETH: "3000"})
        await open_both(h)
        await h.tick({ETH: "2720"})
        await h.tick({ETH: "2700"})
        keys = [k.decode() for k in await h.redis.keys("*")]
        assert not [k for k in keys if ":warn" in k or ":rearm:" in k], keys
