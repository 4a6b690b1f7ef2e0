"""STALE holds, exactly-once claims, restarts, two instances, the index against brute force."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

import orjson
import pytest
from structlog.testing import capture_logs

from state.decisions import decide_isolated
from tests.helpers.harness import Harness
from tests.helpers.model import Model, decided, random_book, walk
from watcher.demo.redis_server import RedisServer

ETH = "PERP_ETH_USDC"
BTC = "PERP_BTC_USDC"
SOL = "PERP_SOL_USDC"
D = Decimal


async def test_stale_symbol_holds_cross_account_until_live(redis_server: RedisServer, redis_client):
    async with Harness(redis_server.url, {ETH: "3000", BTC: "60000"}, stale_after=0.4) as h:
        await h.start()
        await h.tick({ETH: "3000", BTC: "60000"})
        await h.send(
            {"type": "balance", "account": "S", "balance": "1000"},
            {"type": "position", "account": "S", "symbol": ETH, "qty": "1", "entry_price": "3000"},
            {
                "type": "position",
                "account": "S",
                "symbol": BTC,
                "qty": "0.1",
                "entry_price": "60000",
            },
        )
        await h.drained()
        keys = h.daemon.store.keys
        with capture_logs() as logs:
            # Only BTC ticks for a while: ETH goes STALE.
            for _ in range(8):
                await h.tick({BTC: "60000"})
                await asyncio.sleep(0.1)
            assert (await h.redis.hget(keys.mark(ETH), "status")) == b"STALE"
            assert (await h.redis.hget(keys.mark(BTC), "status")) == b"LIVE"
            # BTC crashes: at the last ETH mark the account is under water, but
            # ETH is STALE, so it is held, not decided.
            await h.tick({BTC: "40000"})
            await h.tick({BTC: "40000.5"})
            assert await h.events() == []
        stale_alerts = [e for e in logs if e["event"] == "feed.stale"]
        assert [e["symbol"] for e in stale_alerts] == [ETH]
        # A fresh ETH tick: every leg LIVE again, decided once.
        await h.tick({ETH: "3000"})
        await h.tick({BTC: "40000"})
        events = await h.events()
        assert len(events) == 1
        assert events[0]["kind"] == "CROSS"
        assert orjson.loads(events[0]["marks"]) == {ETH: "3000.0", BTC: "40000.0"}


async def test_silent_symbol_turns_stale_and_decides_nothing(redis_server, redis_client):
    async with Harness(redis_server.url, {ETH: "3000"}, stale_after=0.3) as h:
        await h.start()
        await h.tick({ETH: "3000"})
        await h.isolated_long("I")
        await asyncio.sleep(0.3 + 0.5)
        assert (await h.redis.hget(h.daemon.store.keys.mark(ETH), "status")) == b"STALE"
        assert ETH not in h.daemon.engine.live_marks()
        assert await h.events() == []
        # The first fresh tick decides, at that tick's price.
        await h.tick({ETH: "2700"})
        (event,) = await h.events()
        assert D(event["mark_price"]) == 2700


async def test_claim_retried_after_it_ran_emits_once(redis_server, redis_client):
    async with Harness(redis_server.url, {ETH: "3000"}) as h:
        await h.start()
        await h.isolated_long("X")
        store, rules = h.daemon.store, h.daemon.rules
        state = await store.load("X")
        cs, event = decide_isolated(rules, state, ETH, [D("2700")], 1, 2)
        assert cs is not None
        assert event is not None
        first = await store.commit(cs)
        again = await store.commit(cs)  # the reply was lost; the client retries
        assert first.ok
        # The claim is found made, with the event that made it: nothing twice,
        # and the engine can still log the liquidation its lost answer hid.
        assert (again.outcome, again.entry_id) == ("NX", first.entry_id)
        # Even a claim computed on the old state by a second replica finds the id taken.
        state_again = type(state)(**{f: getattr(state, f) for f in state.__slots__})
        cs2, _ = decide_isolated(rules, state_again, ETH, [D("2600")], 1, 3)
        assert cs2 is not None
        cs2._spec.pop("version")  # no version guard: only SET NX stands in the way
        assert (await store.commit(cs2)).outcome == "NX"
        assert len(await h.events()) == 1


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_liquidated_set_equals_brute_force_after_every_tick(redis_server, redis_client, seed):
    rng = random.Random(seed)
    marks = {ETH: D(3000), BTC: D(60000), SOL: D(150)}
    async with Harness(redis_server.url, {s: str(p) for s, p in marks.items()}) as h:
        await h.start()
        await h.tick({s: str(p) for s, p in marks.items()})
        book = random_book(rng, 150)
        await h.send(*book)
        await h.drained()
        model = Model(book, h.daemon.rules)
        model.step(marks)
        for _ in range(40):
            moved = walk(rng, marks)
            if not moved:
                continue
            marks.update(moved)
            await h.tick({s: str(p) for s, p in moved.items()})
            model.step(marks)
            got = decided(await h.events())
            assert len(got) == len(set(got)), "a decision was emitted twice"
            assert set(got) == model.liquidated
        assert len(model.liquidated) > 10, "the walk should liquidate a good part of the book"


async def test_restart_and_two_instances_emit_every_decision_once(redis_server, redis_client):
    rng = random.Random(7)
    marks = {ETH: D(3000), BTC: D(60000), SOL: D(150)}
    async with Harness(redis_server.url, {s: str(p) for s, p in marks.items()}) as h:
        await h.start("one")
        await h.start("two")
        await h.tick({s: str(p) for s, p in marks.items()})
        book = random_book(rng, 200)
        await h.send(*book)
        await h.drained()
        model = Model(book, h.daemon.rules)
        for step in range(30):
            moved = walk(rng, marks)
            marks.update(moved)
            if step == 10:
                # Kill instance one while the tick is in flight, then start it again.
                for sym, p in moved.items():
                    h.server.set_price(sym, p)
                h.last_ts += 500
                await h.server.push()
                await asyncio.sleep(0.002)
                await h.kill(0)
                await h.start("one-again")
            if moved:
                await h.tick({s: str(p) for s, p in moved.items()})
            model.step(marks)
        got = decided(await h.events())
        assert len(got) == len(set(got))
        assert set(got) == model.liquidated
        assert len(got) > 10


async def held(book) -> None:
    async with asyncio.timeout(5):
        while book.held(ETH) is None:
            await asyncio.sleep(0.005)


async def test_jump_guard_holds_a_spike_and_acts_on_a_confirmed_move(redis_server, redis_client):
    async with Harness(redis_server.url, {ETH: "3000"}, jump_band=0.1) as h:
        await h.start()
        await h.tick({ETH: "3000"})
        await h.isolated_long("J")
        book = h.daemon.book
        with capture_logs() as logs:
            # A one-tick spike down to 2,000 (-33%) and straight back: held, never acted on.
            h.server.set_price(ETH, D(2000))
            h.last_ts += 1000
            await h.server.push()
            await held(book)
            await h.tick({ETH: "3001"})
            assert await h.events() == []
            assert book.rejected["jump_held"] == 1
            assert book.rejected["jump_unconfirmed"] == 1
            # A real move: 2,000 twice in a row. The second confirms it.
            h.server.set_price(ETH, D(2000))
            h.last_ts += 1000
            await h.server.push()
            await held(book)
            assert await h.events() == []
            await h.tick({ETH: "2001"})
        (event,) = await h.events()
        assert D(event["mark_price"]) == 2001
        assert [e["event"] for e in logs].count("price.jump_held") == 2


async def test_a_symbol_live_and_stale_again_within_one_batch_is_not_acted_on(redis_client):
    """A symbol whose first mark after STALE is followed by silence longer than
    stale_after, all while the engine was busy, must not stay LIVE in its eyes."""
    from state.keys import Keys
    from state.models import MarkPrice
    from state.rules import Rules
    from state.store import Store
    from watcher.daemon.engine import Engine
    from watcher.feeds.book import MarkBook

    now = [100.0]
    book = MarkBook({ETH: 1.0})
    keys = Keys("t")
    engine = Engine(Store(redis_client, keys), Rules(keys, {}), book, clock=lambda: now[0])
    book.offer(MarkPrice(ETH, D(3000), 1, now[0], "feed"))
    await engine.process(book.take(now[0]))
    assert engine.live_marks() == {ETH: D(3000)}
    now[0] += 5.0  # a long batch, then silence: no check_staleness ran in between
    assert engine.live_marks() == {}
    await engine.check_staleness()
    assert book.check_staleness(now[0]) == []  # reported once, by the engine's check
    assert await redis_client.hget(keys.mark(ETH), "status") == b"STALE"
