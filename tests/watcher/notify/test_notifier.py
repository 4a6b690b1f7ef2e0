"""The notifier end to end, in-process: a real redis-server, real HTTP sinks on 127.0.0.1."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from decimal import Decimal

import aiohttp

from state.keys import Keys
from tests.helpers.notify import (
    BTC,
    ETH,
    FAST,
    HMAC_KEY,
    KEYS,
    PREFIX,
    ROUTING_KEY,
    append,
    event,
    group_pending,
    has_group,
    notify_settings,
    pagerduty,
    running,
    settings,
    slack,
    wait_for,
    webhook,
)
from tests.helpers.sinks import Hang, event_ids
from watcher.demo.redis_server import free_port
from watcher.notify import keys as notify_keys
from watcher.notify.app import Notifier

DEAD = notify_keys.dead_letters(KEYS)


def accounted(server) -> int:
    """Events a webhook sink has: alone, or counted in a summary."""
    return sum(b.get("count", 1) for b in server.bodies())


async def settled(redis, notifier) -> bool:
    """Nothing held by the notifier, nothing pending in its group."""
    return notifier.progress.in_flight == 0 and await group_pending(redis) == 0


def sample(metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_every_event_reaches_every_sink_once(redis_server, redis_client, sink):
    hook, chat, pager = await sink(secret=HMAC_KEY), await sink(), await sink()
    notify = notify_settings(
        webhook("hook", hook.url), slack("chat", chat.url), pagerduty("pager", pager.url)
    )
    notifier = Notifier(settings(redis_server.url), notify, redis_client)
    events = [event(n) for n in range(20)]
    ids = await append(redis_client, events)
    async with running(notifier):
        await wait_for(lambda: min(len(s.delivered) for s in (hook, chat, pager)) >= 20)
        await wait_for(lambda: settled(redis_client, notifier), what="all acknowledged")
    assert await group_pending(redis_client) == 0
    assert sorted(event_ids(hook.bodies())) == sorted(e.id for e in events)
    assert [b["entry_id"] for b in hook.bodies()] == ids
    assert hook.bad_signatures == 0
    assert [b["dedup_key"] for b in pager.bodies()] == [e.id for e in events]
    assert {b["routing_key"] for b in pager.bodies()} == {ROUTING_KEY}
    assert all(f"`{e.account}`" in b["text"] for e, b in zip(events, chat.bodies(), strict=True))
    assert len(hook.received) == len(chat.received) == len(pager.received) == 20
    assert sample(notifier.metrics, "liqwatch_notify_delivered_total", sink="chat") == 20
    # Nothing left in the progress hash once every entry is acknowledged.
    assert await redis_client.exists(notify_keys.sent(KEYS, "notify")) == 0


async def test_failing_hanging_then_recovering_sinks_lose_nothing(redis_server, redis_client, sink):
    # 500s, one request that hangs past the 0.5 s timeout, then 200 for good.
    hook = await sink(secret=HMAC_KEY, plan=[500, 503, 500, Hang(2.0), 500, 502])
    chat = await sink(plan=[Hang(2.0), 500])
    patient = replace(FAST, max_tries=8)
    notify = notify_settings(webhook("hook", hook.url, patient), slack("chat", chat.url, patient))
    notifier = Notifier(settings(redis_server.url), notify, redis_client)
    events = [event(n) for n in range(10)]
    await append(redis_client, events)
    async with running(notifier):
        await wait_for(lambda: len(chat.delivered) >= 10 and len(hook.delivered) >= 10)
        await wait_for(lambda: settled(redis_client, notifier), what="settled")
    assert set(event_ids(hook.bodies())) == {e.id for e in events}
    assert len(chat.delivered) >= 10
    assert hook.bad_signatures == 0
    assert sample(notifier.metrics, "liqwatch_notify_failures_total", sink="hook") == 6
    assert sample(notifier.metrics, "liqwatch_notify_failures_total", sink="chat") == 2
    assert await redis_client.xlen(DEAD) == 0
    assert await group_pending(redis_client) == 0


async def test_a_sink_that_keeps_failing_dead_letters_after_max_tries(
    redis_server, redis_client, sink
):
    broken, healthy = await sink(default=500), await sink()
    three = replace(FAST, max_tries=3)
    notify = notify_settings(slack("broken", broken.url, three), slack("healthy", healthy.url))
    notifier = Notifier(settings(redis_server.url), notify, redis_client)
    events = [event(n) for n in range(5)]
    ids = await append(redis_client, events)
    async with running(notifier):
        await wait_for(lambda: len(healthy.delivered) == 5, what="the healthy sink served")
        await wait_for(lambda: settled(redis_client, notifier), what="all settled")
    assert len(broken.received) == 5 * 3  # exactly max_tries attempts per event
    assert len(healthy.delivered) == 5  # the failing sink held nobody up
    dead = await redis_client.xrange(DEAD)
    rows = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in dead]
    assert [r["entry_id"] for r in rows] == ids
    assert [r["id"] for r in rows] == [e.id for e in events]
    assert {(r["sink"], r["reason"], r["tries"], r["group"]) for r in rows} == {
        ("broken", "HTTP 500", "3", "notify")
    }
    assert sample(notifier.metrics, "liqwatch_notify_dead_letters_total", sink="broken") == 5
    assert sample(notifier.metrics, "liqwatch_notify_dead_letters_total", sink="healthy") == 0
    assert await group_pending(redis_client) == 0


async def test_a_refused_request_is_not_retried(redis_server, redis_client, sink):
    # The receiver checks signatures with its own key: a notifier signing with
    # another one is refused (401), and asking again would not help.
    hook = await sink(secret=HMAC_KEY)
    notify = notify_settings(webhook("hook", hook.url, key="another-key"))
    notifier = Notifier(settings(redis_server.url), notify, redis_client)
    await append(redis_client, [event(1), event(2)])
    async with running(notifier):
        await wait_for(lambda: notifier.progress.in_flight == 0 and len(hook.received) == 2)
    assert hook.bad_signatures == 2
    assert hook.delivered == []
    reasons = {fields[b"reason"] for _, fields in await redis_client.xrange(DEAD)}
    assert reasons == {b"HTTP 401 (not retried)"}


async def test_a_redelivered_entry_skips_the_sinks_that_have_it(redis_server, redis_client, sink):
    good, stuck = await sink(), await sink(default=Hang(30.0))
    slow = replace(FAST, timeout=20.0)
    notify = notify_settings(slack("good", good.url), slack("stuck", stuck.url, slow))
    events = [event(n) for n in range(3)]
    ids = await append(redis_client, events)
    first = Notifier(settings(redis_server.url), notify, redis_client)
    async with running(first):
        await wait_for(lambda: len(good.delivered) == 3 and len(stuck.received) == 1)
        sent = notify_keys.sent(KEYS, "notify")
        await wait_for(lambda: redis_client.hlen(sent), what="progress written")
    # Stopped mid-delivery: every entry still pending, the good sink's part recorded.
    assert await group_pending(redis_client) == 3
    fields = {f.decode() for f in await redis_client.hkeys(sent)}
    assert fields == {f"{i}|good" for i in ids}
    stuck.default = 200
    second = Notifier(settings(redis_server.url), notify, redis_client)
    async with running(second):
        await wait_for(lambda: second.progress.in_flight == 0 and len(stuck.delivered) == 3)
    assert len(good.received) == 3  # not one more
    assert await group_pending(redis_client) == 0
    assert await redis_client.exists(sent) == 0


async def test_a_burst_is_summarized_within_the_message_budget(redis_server, redis_client, sink):
    hook = await sink(secret=HMAC_KEY)
    budget = replace(FAST, summary_window=1.0, max_messages_per_window=3)
    notifier = Notifier(
        settings(redis_server.url),
        notify_settings(webhook("hook", hook.url, budget), start="new"),
        redis_client,
    )
    symbols = (ETH, BTC)
    events = [event(n, symbols[n % 2], equity=str(-n)) for n in range(10_000)]
    async with running(notifier):
        await wait_for(lambda: has_group(redis_client), what="the group")
        await append(redis_client, events)
        await wait_for(lambda: accounted(hook) == 10_000, what="the burst delivered")
        await wait_for(lambda: settled(redis_client, notifier), what="acknowledged")
    bodies = hook.bodies()
    singles = [b for b in bodies if b["type"] == "liquidation"]
    summaries = [b for b in bodies if b["type"] == "liquidation_summary"]
    # Every event accounted for exactly once, alone or in a summary.
    assert len(singles) + sum(s["count"] for s in summaries) == 10_000
    # Bounded: per window at most 3 single events plus one summary per symbol.
    span = hook.delivered[-1].at - hook.delivered[0].at
    windows = math.floor(span / budget.summary_window) + 2
    assert len(bodies) <= windows * (3 + len(symbols)), (len(bodies), span)
    assert len(bodies) < 40
    assert summaries, "a burst this size must be folded"
    assert {s["symbol"] for s in summaries} == set(symbols)
    assert all(
        len({s["symbol"] for s in summaries if s["window_start_ms"] == w})
        == len([s for s in summaries if s["window_start_ms"] == w])
        for w in {s["window_start_ms"] for s in summaries}
    ), "one summary per symbol"
    # The totals add up: notional 2 x (1000 + n) per event, worst equity -n.
    single_notional = sum(
        Decimal(b["event"]["positions"][0]["qty"]) * Decimal(b["event"]["mark_price"])
        for b in singles
    )
    total = single_notional + sum(Decimal(s["total_notional"]) for s in summaries)
    assert total == sum(Decimal(2 * (1000 + n)) for n in range(10_000))
    assert min(Decimal(s["worst_equity"]) for s in summaries) == Decimal(-9999)
    last = max(summaries, key=lambda s: s["window_end_ms"])
    assert last["window_end_ms"] > last["window_start_ms"]
    assert hook.bad_signatures == 0
    assert sample(notifier.metrics, "liqwatch_notify_delivered_total", sink="hook") == 10_000


async def test_entries_another_consumer_left_pending_are_claimed(redis_server, redis_client, sink):
    chat = await sink()
    events = [event(n) for n in range(4)]
    await redis_client.xgroup_create(KEYS.events, "notify", id="0", mkstream=True)
    await append(redis_client, events)
    # A notifier under another name read them, then died.
    await redis_client.xreadgroup("notify", "dead-peer", {KEYS.events: ">"}, count=3)
    await asyncio.sleep(1.1)
    notify = notify_settings(slack("chat", chat.url), claim_idle=1.0)
    notifier = Notifier(settings(redis_server.url), notify, redis_client)
    async with running(notifier):
        await wait_for(lambda: len(chat.delivered) == 4 and notifier.progress.in_flight == 0)
    assert await group_pending(redis_client) == 0


async def test_a_new_group_starts_at_new_events_unless_told(redis_server, redis_client, sink):
    chat = await sink()
    await append(redis_client, [event(1)])
    notifier = Notifier(
        settings(redis_server.url),
        notify_settings(slack("chat", chat.url), start="new"),
        redis_client,
    )
    async with running(notifier):
        await wait_for(lambda: has_group(redis_client), what="the group")
        await append(redis_client, [event(2)])
        await wait_for(lambda: len(chat.delivered) == 1)
        await asyncio.sleep(0.2)
    assert "`A2`" in chat.bodies()[0]["text"]
    assert len(chat.received) == 1


async def test_an_entry_that_is_not_an_event_is_dead_lettered(redis_server, redis_client, sink):
    chat = await sink()
    bad = (await redis_client.xadd(KEYS.events, {"kind": "NEITHER"})).decode()
    await append(redis_client, [event(1)])
    notifier = Notifier(
        settings(redis_server.url), notify_settings(slack("chat", chat.url)), redis_client
    )
    async with running(notifier):
        await wait_for(lambda: len(chat.delivered) == 1 and notifier.progress.in_flight == 0)
    [(_, fields)] = await redis_client.xrange(DEAD)
    assert fields[b"entry_id"].decode() == bad
    assert fields[b"sink"] == b"*"
    assert fields[b"reason"].startswith(b"not a liquidation event")
    assert await group_pending(redis_client) == 0


async def test_metrics_are_served_over_http(redis_server, redis_client, sink):
    chat, broken = await sink(), await sink(default=404)
    port = free_port()
    notify = notify_settings(
        slack("chat", chat.url), slack("broken", broken.url), metrics_listen=("127.0.0.1", port)
    )
    notifier = Notifier(settings(redis_server.url), notify, redis_client)
    await append(redis_client, [event(n) for n in range(3)])
    async with running(notifier), aiohttp.ClientSession() as http:
        await wait_for(lambda: len(broken.received) == 3 and len(chat.delivered) == 3)
        await wait_for(lambda: settled(redis_client, notifier), what="settled")
        await asyncio.sleep(2.5)  # one reading of the group's gauges
        async with http.get(f"http://127.0.0.1:{port}/metrics") as answer:
            assert answer.status == 200
            text = await answer.text()
    lines = set(text.splitlines())
    assert 'liqwatch_notify_delivered_total{sink="chat"} 3.0' in lines
    assert 'liqwatch_notify_messages_total{kind="event",sink="chat"} 3.0' in lines
    assert 'liqwatch_notify_failures_total{sink="broken"} 3.0' in lines
    assert 'liqwatch_notify_dead_letters_total{sink="broken"} 3.0' in lines
    assert "liqwatch_notify_pending_entries 0.0" in lines
    assert "liqwatch_notify_lag_entries 0.0" in lines
    assert chat.url not in text


async def test_every_shard_stream_is_read(redis_server, redis_client, sink):
    chat = await sink(default=500)
    ok = await sink()
    two = replace(settings(redis_server.url), shards=2)
    notify = notify_settings(
        slack("ok", ok.url), slack("chat", chat.url, replace(FAST, max_tries=1))
    )
    shard1 = Keys(PREFIX, 1)
    await append(redis_client, [event(1), event(2)])
    await append(redis_client, [event(3)], keys=shard1)
    notifier = Notifier(two, notify, redis_client)
    async with running(notifier):
        await wait_for(lambda: len(ok.delivered) == 3 and notifier.progress.in_flight == 0)
    assert sorted(b["text"].split("`")[1] for b in ok.bodies()) == ["A1", "A2", "A3"]
    # Each shard's failures go to that shard's dead letters; each is acknowledged.
    assert await redis_client.xlen(DEAD) == 2
    assert await redis_client.xlen(notify_keys.dead_letters(shard1)) == 1
    assert await group_pending(redis_client, keys=shard1) == 0
    assert await group_pending(redis_client) == 0


async def test_a_group_lost_with_redis_data_is_made_again(redis_server, redis_client, sink):
    chat = await sink()
    notifier = Notifier(
        settings(redis_server.url), notify_settings(slack("chat", chat.url)), redis_client
    )
    await append(redis_client, [event(1)])
    async with running(notifier):
        await wait_for(lambda: len(chat.delivered) == 1)
        await redis_client.flushall()  # as a Redis restarted empty would be
        await wait_for(lambda: has_group(redis_client), what="the group made again")
        await append(redis_client, [event(2)])
        await wait_for(lambda: len(chat.delivered) == 2)
    assert "`A2`" in chat.bodies()[1]["text"]
