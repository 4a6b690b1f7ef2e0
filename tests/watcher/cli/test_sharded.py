"""The commands over 16 shards on a 3-master Redis Cluster, with two workers running.

``load`` routes each line to its account's shard; ``inspect`` reads across
shards; ``health`` names each shard's owner and fails when one has none.
"""

from __future__ import annotations

import asyncio
import json
import sys
from decimal import Decimal
from pathlib import Path

import orjson

from state.keys import Keys
from state.shards import shard_of
from state.store.client import open_client
from tests.helpers.harness import Harness, config_text

S = 16
ETH = "PERP_ETH_USDC"
ACCOUNTS = [f"acct-{i}" for i in range(12)]


def _isolated_long(account: str, seq: int = 1) -> bytes:
    msg = {
        "type": "position",
        "account": account,
        "symbol": ETH,
        "margin_mode": "ISOLATED",
        "qty": "1",
        "entry_price": "3000",
        "margin": "300",
        "seq": seq,
    }
    return orjson.dumps(msg)


class _Out:
    def __init__(self) -> None:
        self.out = ""
        self.err = ""

    def readouterr(self) -> _Out:
        return self


OUT = _Out()


async def _cli(*argv: str) -> int:
    """Run the command as a process (the workers log to this one's stdout)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "watcher.cli",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    OUT.out, OUT.err = out.decode(), err.decode()
    assert proc.returncode is not None
    return proc.returncode


async def test_load_inspect_and_health_across_shards(redis_cluster, tmp_path: Path):
    capsys = OUT
    client = open_client(redis_cluster.url, cluster=True)
    await client.flushall()
    await client.aclose()
    async with Harness(redis_cluster.url, {ETH: "3000"}, shards=S, cluster=True) as h:
        config = tmp_path / "liqwatch.toml"
        config.write_text(
            config_text(redis_cluster.url, h.server.url, [ETH], shards=S, cluster=True)
        )
        book = tmp_path / "book.jsonl"
        book.write_bytes(b"\n".join(_isolated_long(a) for a in ACCOUNTS) + b"\n")
        assert await _cli("load", "--config", str(config), str(book)) == 0
        assert "each line to its account's shard" in capsys.readouterr().out
        for account in ACCOUNTS:
            stream = Keys("liq", shard_of(account, S)).input
            assert await h.redis.xlen(stream) >= 1
        shards_used = {shard_of(a, S) for a in ACCOUNTS}
        assert len(shards_used) > 5

        await h.start("w0")
        await h.start("w1")
        await h.balanced()
        await h.tick({ETH: "3000"})
        await h.drained()
        await h.tick({ETH: "2700"})  # every position liquidated (below 2,716.30)

        assert await _cli("inspect", "--config", str(config), "events", "--json") == 0
        events = json.loads(capsys.readouterr().out)
        assert sorted(e["account"] for e in events) == sorted(ACCOUNTS)
        assert {e["shard"] for e in events} == shards_used

        assert await _cli("inspect", "--config", str(config), "liquidating", "--json") == 0
        assert len(json.loads(capsys.readouterr().out)) == len(ACCOUNTS)

        assert await _cli("inspect", "--config", str(config), "account", ACCOUNTS[3], "--json") == 0
        view = json.loads(capsys.readouterr().out)
        assert view["shard"] == shard_of(ACCOUNTS[3], S)

        await asyncio.sleep(0.5)  # a heartbeat flushes the counters
        assert await _cli("inspect", "--config", str(config), "stats", "--json") == 0
        stats = json.loads(capsys.readouterr().out)
        assert stats["streams"]["events"] == len(ACCOUNTS)
        assert stats["counters"]["liquidations_isolated"] == len(ACCOUNTS)
        assert len(stats["shards"]) == S

        assert await _cli("inspect", "--config", str(config), "marks", "--json") == 0
        (mark,) = json.loads(capsys.readouterr().out)
        assert Decimal(mark["price"]) == 2700

        assert await _cli("inspect", "--config", str(config), "executors") == 0
        assert capsys.readouterr().out.count("stream liq:{") == S

        assert await _cli("health", "--config", str(config)) == 0
        report = json.loads(capsys.readouterr().out)
        assert set(report["shards"].values()) == {"w0", "w1"}
        assert sorted(report["workers"]["w0"]["shards"] + report["workers"]["w1"]["shards"]) == (
            list(range(S))
        )

        await h.kill(1)  # as a crash: its leases stay until they lapse (1 s), its beat ages
        await asyncio.sleep(0.45)
        assert await _cli("health", "--config", str(config), "--max-age", "0.3") == 1
        # Its beat has aged (and, on a slow start of the command, its leases lapsed too).
        reason = capsys.readouterr().err
        assert "w1, which is not healthy" in reason or "is held by no worker" in reason, reason
        await h.balanced()
        await asyncio.sleep(0.3)
        assert await _cli("health", "--config", str(config)) == 0
        report = json.loads(capsys.readouterr().out)
        assert set(report["shards"].values()) == {"w0"}
        await h.stop(0)  # a clean stop hands every shard back: none is held
        assert await _cli("health", "--config", str(config)) == 1
        assert "is held by no worker" in capsys.readouterr().err


async def test_load_refuses_another_shard_count_than_recorded(redis_server, redis_client, tmp_path):
    """Lines routed for S=2 into data laid out for 4 would go where no worker reads them."""
    await redis_client.set(Keys("liq").shard_count, 4)
    book = tmp_path / "book.jsonl"
    book.write_bytes(_isolated_long("A") + b"\n")
    for count in (2, 1):
        config = tmp_path / f"s{count}.toml"
        config.write_text(config_text(redis_server.url, "ws://127.0.0.1:9/ws", [ETH], shards=count))
        assert await _cli("load", "--config", str(config), str(book)) == 1
        assert "laid out for 4 shards" in OUT.err
    assert await redis_client.keys("liq:{*}:in") == []
    # A count recorded by nobody yet is recorded by the loader, as a worker does.
    await redis_client.delete(Keys("liq").shard_count)
    config = tmp_path / "s2.toml"
    assert await _cli("load", "--config", str(config), str(book)) == 0
    assert await redis_client.get(Keys("liq").shard_count) == b"2"
