"""Hostile input and a clock 24 h ahead, against a daemon process that must stay up.

docs/reliability.md: bad input never stops it (a message that is not valid
goes to the dead letters with its reason, nothing of it applied), an entry
that keeps coming back undelivered is set aside, and a mark stamped far ahead
of our clock never blocks the correct marks after it.
"""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from pathlib import Path

import redis.asyncio as aioredis

from tests.helpers.processes import cli
from tests.helpers.rig import KEYS, Rig, open_rig
from watcher.clock import wall_ms

ETH = "PERP_ETH_USDC"
NINES = "9" * 5000
VALID = json.dumps({"type": "balance", "account": "OK", "balance": "100", "seq": 1}).encode()
# Each: a raw ``msg`` and a fragment of the reason it must be set aside with.
HOSTILE: list[tuple[bytes, str]] = [
    (b'{"type":"balance","account":"H1","balance":"' + NINES.encode() + b'","seq":1}', "balance"),
    (b'{"type":"balance","account":"H2","balance":' + NINES.encode() + b',"seq":1}', "balance"),
    (b'{"type":"balance","account":"H3","balance":1e999999999,"seq":1}', "out of range"),
    (b'{"type":"balance","account":"H4","balance":"1","seq":-' + NINES.encode() + b"}", "seq"),
    (b'{"type":"balance","account":"H5","balance":"1","seq":1.5}', "seq"),
    (b'{"type":"balance","account":"H6","balance":' + b"[" * 30000 + b"]" * 30000 + b"}", "JSON"),
    (b'{"type":"balance","account":5,"balance":"1","seq":1}', "account"),
    (b'{"type":"balance","account":"H8","balance":true,"seq":1}', "balance"),
    (b'{"type":["balance"],"account":"H9","balance":"1","seq":1}', "type"),
    (b'\xef\xbb\xbf{"type":"balance","account":"H10","balance":"1","seq":1}', "JSON"),
    (b'{"type":"balance","account":"H\x0011","balance":"1","seq":1}', "JSON"),
    (b'{"type":"balance","account":"H\\u000012","balance":"1","seq":1}', "account"),
    (
        b'{"type":"balance","account":"H13","balance":"1","seq":1,"x":"' + b"a" * 70000 + b'"}',
        "larger",
    ),
    (b'{"type":"balance","account":"H\xff14","balance":"1","seq":1}', "JSON"),
    (b'{"type":"position","account":"H15","symbol":"' + b"S" * 5000 + b'","qty":"1"}', "seq"),
    (b"null", "object"),
    (b"", "JSON"),
]


async def test_hostile_input_is_dead_lettered_and_the_daemon_stays_up(rig: Rig) -> None:
    """The poison seq is applied (any size is valid); every hostile message is set aside."""
    poison = {"type": "balance", "account": "P", "balance": "1", "seq": NINES}
    redis = await rig.client()
    try:
        await redis.xadd(KEYS.input, {"msg": json.dumps(poison)})
        ids = [(await redis.xadd(KEYS.input, {"msg": raw})).decode() for raw, _ in HOSTILE]
        await redis.xadd(KEYS.input, {"msg": VALID})
        async with asyncio.timeout(20):
            while await redis.hget(KEYS.account("OK"), "balance") is None:
                assert rig.daemon.alive()
                await asyncio.sleep(0.05)
        assert await redis.hget(KEYS.account("P"), "seq") == NINES.encode()
        dead = {
            f[b"entry_id"].decode(): f[b"reason"].decode() for _, f in await redis.xrange(KEYS.dead)
        }
        assert set(dead) == set(ids)
        for entry_id, (_, fragment) in zip(ids, HOSTILE, strict=True):
            assert fragment in dead[entry_id], (fragment, dead[entry_id])
        # Nothing of a hostile message was applied: the only accounts are the valid ones.
        for n in range(1, 16):
            assert not await redis.exists(KEYS.account(f"H{n}"))
        written = {k.decode() for k in await redis.keys(KEYS.account("*"))}
        assert written == {KEYS.account("OK"), KEYS.account("P")}, written
    finally:
        await redis.aclose()
    assert rig.daemon.alive()
    assert not rig.daemon.events("daemon.crashed")
    assert rig.daemon.terminate() == 0


async def test_an_entry_delivered_too_often_is_set_aside_unread(tmp_path: Path) -> None:
    """An entry that kept coming back (each time taking a process down) is dead-lettered."""
    poison_id = ""

    async def delivered_eleven_times(redis: aioredis.Redis) -> None:
        nonlocal poison_id
        await redis.xgroup_create(KEYS.input, "liqwatch", id="0", mkstream=True)
        poison_id = (await redis.xadd(KEYS.input, {"msg": VALID})).decode()
        # Delivered once, then read back from the pending list ten times.
        await redis.xreadgroup("liqwatch", "crashed-daemon", {KEYS.input: ">"})
        for _ in range(10):
            await redis.xreadgroup("liqwatch", "crashed-daemon", {KEYS.input: "0"})

    async with open_rig(tmp_path, before_start=delivered_eleven_times) as rig:
        redis = await rig.client()
        try:
            async with asyncio.timeout(20):
                while not await redis.xlen(KEYS.dead):
                    await asyncio.sleep(0.05)
            ((_, fields),) = await redis.xrange(KEYS.dead)
            assert fields[b"entry_id"].decode() == poison_id
            assert b"max_deliveries 10" in fields[b"reason"]
            assert not await redis.exists(KEYS.account("OK"))
            # The input goes on: a new message is applied.
            await redis.xadd(KEYS.input, {"msg": VALID})
            async with asyncio.timeout(20):
                while await redis.hget(KEYS.account("OK"), "balance") is None:
                    await asyncio.sleep(0.05)
        finally:
            await redis.aclose()
        assert rig.daemon.terminate() == 0


def test_load_reports_hostile_lines_by_number_and_reason(tmp_path: Path) -> None:
    """``liqwatch load`` names each bad line and its reason, one line each, no traceback."""
    path = tmp_path / "input.jsonl"
    poison = json.dumps({"type": "balance", "account": "P", "balance": "1", "seq": NINES})
    lines = [poison.encode(), *(raw for raw, _ in HOSTILE[:5]), VALID]
    path.write_bytes(b"\n".join(lines) + b"\n")
    config = tmp_path / "liqwatch.toml"
    config.write_text(
        '[redis]\nurl = "redis://127.0.0.1:9/0"\n[[feeds]]\nvenue = "orderly"\n'
        'url = "ws://127.0.0.1:9/ws"\nsymbols = ["PERP_ETH_USDC"]\n'
        '[markets.PERP_ETH_USDC]\nmaintenance = { model = "flat", rate = "0.006" }\n'
    )
    done = cli("load", "--config", str(config), str(path))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    report = done.stderr.strip().splitlines()
    assert [line.split(": ")[0] for line in report[:-1]] == [f"{path}:{n}" for n in range(2, 7)]
    assert report[-1].endswith("5 bad line(s); nothing was appended")


async def test_a_mark_stamped_a_day_ahead_does_not_block_the_correct_marks(
    tmp_path: Path,
) -> None:
    """Refused as future_ts, never the reference: the correct marks after it decide."""
    ahead = [0]
    async with open_rig(tmp_path, clock_ms=lambda: wall_ms() + ahead[0]) as rig:
        await rig.send(
            [
                {
                    "type": "position",
                    "account": "F",
                    "symbol": ETH,
                    "margin_mode": "ISOLATED",
                    "qty": "1",
                    "entry_price": "3000",
                    "margin": "300",
                    "seq": 1,
                }
            ]
        )
        ahead[0] = 24 * 3600 * 1000
        rig.move({ETH: Decimal("2700")})  # past the position's 2,716.30, stamped a day ahead
        await asyncio.sleep(1.0)
        assert await rig.decisions() == []
        ahead[0] = 0
        corrected = time.monotonic()
        async with asyncio.timeout(30):
            while not await rig.decisions():
                await asyncio.sleep(0.05)
        assert time.monotonic() - corrected < 30.0  # the config's stale_after
        assert await rig.decisions() == [("ISOLATED", "F", ETH)]
        beat = await rig.daemon.wait_log("daemon.starting")
        assert beat["instance"] == "fault"
        assert rig.daemon.terminate() == 0
