"""``liqwatch inspect executors`` and scenario 12 (an executor dies before acknowledging)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.helpers.config import KEYS
from watcher.cli.main import main

EVENTS = KEYS.events
# Ids 300 s in the past, a second apart: ages are known to the test.
AGO_MS = 300_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def add_events(r, count: int, *, start_ms: int) -> list[str]:
    """Append ``count`` events with ids a second apart from ``start_ms``; return their ids."""
    out = []
    for i in range(count):
        entry_id = f"{start_ms + i * 1000}-0"
        r.xadd(EVENTS, {"id": f"A{i}:CROSS:1", "kind": "CROSS", "account": f"A{i}"}, id=entry_id)
        out.append(entry_id)
    return out


def read(r, group: str, consumer: str, count: int) -> list[str]:
    reply = r.xreadgroup(group, consumer, {EVENTS: ">"}, count=count)
    return [e.decode() for e, _ in reply[0][1]] if reply else []


def executors(config, capsys, *options: str) -> tuple[int, Any]:
    code = main(["inspect", "--config", str(config), "executors", "--json", *options])
    out = capsys.readouterr().out
    return code, json.loads(out) if code == 0 else out


def trim(config, capsys, *options: str) -> tuple[int, str]:
    code = main(["trim", "--config", str(config), *options])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def two_groups(r) -> list[str]:
    """Ten old events; ``exec``: A read 4, acked 1, died; ``alerts`` read and acked all."""
    entry_ids = add_events(r, 10, start_ms=now_ms() - AGO_MS)
    r.xgroup_create(EVENTS, "exec", id="0")
    r.xgroup_create(EVENTS, "alerts", id="0")
    assert read(r, "exec", "A", 4) == entry_ids[:4]
    r.xack(EVENTS, "exec", entry_ids[0])
    r.xack(EVENTS, "alerts", *read(r, "alerts", "X", 100))
    return entry_ids


def test_groups_pending_age_lag_and_warning(config, sync_redis, capsys):
    entry_ids = two_groups(sync_redis)

    code, view = executors(config, capsys)

    assert code == 0
    assert view["stream"] == EVENTS
    assert (view["length"], view["first_entry_id"], view["last_entry_id"]) == (
        10,
        entry_ids[0],
        entry_ids[-1],
    )
    assert view["warn_after_s"] == 60
    alerts, exec_ = view["groups"]
    assert alerts["name"] == "alerts"
    assert (alerts["pending"], alerts["oldest_pending_id"], alerts["oldest_pending_age_s"]) == (
        0,
        None,
        None,
    )
    assert (alerts["last_delivered_id"], alerts["lag"], alerts["lag_counted"]) == (
        entry_ids[-1],
        0,
        False,
    )
    assert (alerts["warning"], alerts["stalled"]) == (False, False)
    assert [c["name"] for c in alerts["consumers"]] == ["X"]
    assert exec_["name"] == "exec"
    assert (exec_["pending"], exec_["oldest_pending_id"]) == (3, entry_ids[1])
    # The entry was added 299 s ago (its id says so), whatever its delivery time.
    assert exec_["oldest_pending_age_s"] == pytest.approx(AGO_MS / 1000 - 1, abs=5)
    assert exec_["oldest_pending_consumer"] == "A"
    assert exec_["oldest_pending_deliveries"] == 1
    assert exec_["oldest_pending_idle_s"] < 5
    assert exec_["consumers"] == [{"name": "A", "pending": 3, "idle_s": pytest.approx(0, abs=5)}]
    assert (exec_["last_delivered_id"], exec_["lag"]) == (entry_ids[3], 6)
    assert exec_["oldest_undelivered_id"] == entry_ids[4]
    assert (exec_["warning"], exec_["stalled"]) == (True, True)
    assert view["warning"] is True
    assert any(w.startswith("group exec: oldest pending entry") for w in view["warnings"])


def test_warn_after_bounds_the_warning(config, sync_redis, capsys):
    two_groups(sync_redis)

    code, view = executors(config, capsys, "--warn-after", "1000")

    assert code == 0
    assert view["warn_after_s"] == 1000
    assert [(g["warning"], g["stalled"]) for g in view["groups"]] == [(False, False)] * 2
    assert (view["warning"], view["warnings"]) == (False, [])


def test_warn_after_defaults_to_the_config(config, sync_redis, capsys):
    two_groups(sync_redis)
    config.write_text(config.read_text() + "\n[executors]\nwarn_after = 1000\n")

    code, view = executors(config, capsys)

    assert (code, view["warn_after_s"], view["warning"]) == (0, 1000, False)
    # The command line still wins.
    assert executors(config, capsys, "--warn-after", "10")[1]["warning"] is True


def test_lag_is_counted_when_redis_cannot_tell(config, sync_redis, capsys):
    entry_ids = add_events(sync_redis, 6, start_ms=now_ms() - 1000)
    sync_redis.xgroup_create(EVENTS, "exec", id="0")
    read(sync_redis, "exec", "A", 2)
    # A deletion among the undelivered leaves Redis without a lag.
    sync_redis.xdel(EVENTS, entry_ids[3])
    assert sync_redis.xinfo_groups(EVENTS)[0]["lag"] is None

    code, view = executors(config, capsys)

    assert code == 0
    [group] = view["groups"]
    assert (group["lag"], group["lag_counted"]) == (3, True)
    assert (group["warning"], group["stalled"]) == (False, False)


@pytest.mark.parametrize("with_stream", [False, True])
def test_no_group_is_said_and_warned(config, sync_redis, capsys, with_stream):
    if with_stream:
        add_events(sync_redis, 2, start_ms=now_ms())

    code, view = executors(config, capsys)

    assert code == 0
    assert (view["groups"], view["warning"]) == ([], True)
    assert view["length"] == (2 if with_stream else 0)
    assert view["warnings"] == [f"no consumer group on {EVENTS}: nothing is consuming it"]
    assert main(["inspect", "--config", str(config), "executors"]) == 0
    text = capsys.readouterr().out
    assert "(none)" in text
    assert f"WARNING: no consumer group on {EVENTS}" in text


def test_text_form(config, sync_redis, capsys):
    entry_ids = two_groups(sync_redis)

    assert main(["inspect", "--config", str(config), "executors"]) == 0

    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].startswith(f"stream {EVENTS}  length 10  first {entry_ids[0]}")
    assert lines[0].endswith("warn after 60 s")
    assert lines[2].split() == [
        "GROUP",
        "CONSUMERS",
        "PENDING",
        "OLDEST",
        "PENDING",
        "AGE",
        "S",
        "LAST",
        "DELIVERED",
        "LAG",
        "WARN",
    ]
    assert lines[3].split() == ["alerts", "1", "0", "-", "-", entry_ids[-1], "0", "no"]
    exec_row = lines[4].split()
    assert exec_row[:4] == ["exec", "1", "3", entry_ids[1]]
    assert exec_row[5:] == [entry_ids[3], "6", "old", "pending,", "stalled"]
    assert "consumers of exec" in text
    assert f"WARNING: group exec: oldest pending entry {entry_ids[1]} is" in text


def test_a_stream_key_of_another_type_fails_in_one_line(config, sync_redis, capsys):
    sync_redis.set(EVENTS, "not a stream")

    assert main(["inspect", "--config", str(config), "executors"]) == 1

    err = capsys.readouterr().err
    assert "WRONGTYPE" in err
    assert len(err.strip().splitlines()) == 1


def test_scenario_12_executor_dies_before_acknowledging(config, sync_redis, capsys):
    """Consumer A reads 5 and dies; B claims them after min-idle and acks; only then trim."""
    entry_ids = add_events(sync_redis, 8, start_ms=now_ms() - AGO_MS)
    sync_redis.xgroup_create(EVENTS, "exec", id="0")
    died_with = read(sync_redis, "exec", "A", 5)
    assert died_with == entry_ids[:5]

    code, view = executors(config, capsys)
    [group] = view["groups"]
    assert (code, group["pending"], group["oldest_pending_id"], group["warning"]) == (
        0,
        5,
        entry_ids[0],
        True,
    )
    assert group["consumers"][0]["name"] == "A"
    # Trimming while they are pending removes none of them.
    assert trim(config, capsys)[0] == 0
    assert [e.decode() for e, _ in sync_redis.xrange(EVENTS)] == entry_ids
    # B claims only what was idle long enough: A might merely be slow.
    min_idle_ms = 200
    _, claimed, _ = sync_redis.xautoclaim(EVENTS, "exec", "B", min_idle_ms, "0-0")
    assert claimed == []
    time.sleep(min_idle_ms / 1000 + 0.05)
    _, claimed, _ = sync_redis.xautoclaim(EVENTS, "exec", "B", min_idle_ms, "0-0")
    assert [e.decode() for e, _ in claimed] == died_with
    assert all(fields for _, fields in claimed)
    code, out = trim(config, capsys)
    assert (code, sync_redis.xlen(EVENTS)) == (0, 8)  # claimed is still pending
    assert f"removed 0 entries from {EVENTS} below MINID {entry_ids[0]}" in out

    sync_redis.xack(EVENTS, "exec", *died_with)
    code, out = trim(config, capsys)

    assert code == 0
    after_last = entry_ids[4].replace("-0", "-1")
    assert out.startswith(f"removed 5 entries from {EVENTS} below MINID {after_last}; 3 left")
    assert [e.decode() for e, _ in sync_redis.xrange(EVENTS)] == entry_ids[5:]
    code, view = executors(config, capsys)
    [group] = view["groups"]
    assert (group["pending"], group["lag"], group["warning"]) == (0, 3, False)
    assert view["length"] == 3
