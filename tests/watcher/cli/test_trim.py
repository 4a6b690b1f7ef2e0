"""``liqwatch trim`` end to end: what it prints, what it removes, its exit codes."""

from __future__ import annotations

import pytest

from tests.helpers.config import KEYS, write_config
from watcher.cli.main import main
from watcher.demo.redis_server import free_port


def trim(config, capsys, *options: str) -> tuple[int, str, str]:
    code = main(["trim", "--config", str(config), *options])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def stream_ids(r, stream: str) -> list[str]:
    return [e.decode() for e, _ in r.xrange(stream)]


def setup_events(r) -> None:
    """Entries 1..10; ``exec`` has 3..5 pending; ``alerts`` acked 1..8."""
    for n in range(1, 11):
        r.xadd(KEYS.events, {"n": n}, id=f"{n}-0")
    r.xgroup_create(KEYS.events, "exec", id="0")
    r.xgroup_create(KEYS.events, "alerts", id="0")
    r.xreadgroup("exec", "A", {KEYS.events: ">"}, count=5)
    r.xack(KEYS.events, "exec", "1-0", "2-0")
    r.xreadgroup("alerts", "X", {KEYS.events: ">"}, count=8)
    r.xack(KEYS.events, "alerts", *(f"{n}-0" for n in range(1, 9)))


def test_trim_prints_the_count_the_minid_and_each_groups_bound(config, sync_redis, capsys):
    setup_events(sync_redis)

    code, out, err = trim(config, capsys)

    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"removed 2 entries from {KEYS.events} below MINID 3-0; 8 left"
    assert lines[2].split()[:3] == ["GROUP", "PENDING", "OLDEST"]
    assert lines[3].split() == [
        "alerts",
        "0",
        "-",
        "8-0",
        "8-1",
        *["the", "entry", "after", "its", "last", "delivered"],
    ]
    assert lines[4].split() == [
        "exec",
        "3",
        "3-0",
        "5-0",
        "3-0",
        "its",
        "oldest",
        "pending",
        "entry",
    ]
    assert lines[-1] == "MINID set by: exec"
    assert stream_ids(sync_redis, KEYS.events) == [f"{n}-0" for n in range(3, 11)]


def test_dry_run_removes_nothing(config, sync_redis, capsys):
    setup_events(sync_redis)

    code, out, _ = trim(config, capsys, "--dry-run")

    assert code == 0
    assert out.splitlines()[0] == (
        f"would remove 2 entries from {KEYS.events} below MINID 3-0; 8 would be left"
    )
    assert sync_redis.xlen(KEYS.events) == 10


def test_keep(config, sync_redis, capsys):
    setup_events(sync_redis)

    code, out, _ = trim(config, capsys, "--keep", "9")

    assert code == 0
    assert out.splitlines()[0] == f"removed 1 entries from {KEYS.events} below MINID 2-0; 9 left"
    assert "keep 9: the 9 newest entries start at 2-0" in out
    assert out.splitlines()[-1] == "MINID set by: keep"
    assert sync_redis.xlen(KEYS.events) == 9


def test_no_group_removes_nothing_and_says_why(config, sync_redis, capsys):
    sync_redis.xadd(KEYS.events, {"n": 1})

    code, out, _ = trim(config, capsys)

    assert code == 0
    assert out.strip() == (
        f"nothing trimmed: {KEYS.events} (1 entries) has no consumer group,"
        " so no entry is known to be acknowledged"
    )
    assert sync_redis.xlen(KEYS.events) == 1
    assert trim(config, capsys, "--stream", "in")[1].strip() == (
        f"nothing trimmed: there is no stream {KEYS.input}"
    )


def test_the_input_stream(config, sync_redis, capsys):
    for n in range(1, 4):
        sync_redis.xadd(KEYS.input, {"msg": "{}"}, id=f"{n}-0")
    sync_redis.xgroup_create(KEYS.input, "liqwatch", id="0")
    sync_redis.xreadgroup("liqwatch", "host-1", {KEYS.input: ">"}, count=2)
    sync_redis.xack(KEYS.input, "liqwatch", "1-0")

    code, out, _ = trim(config, capsys, "--stream", "in")

    assert code == 0
    assert out.splitlines()[0] == f"removed 1 entries from {KEYS.input} below MINID 2-0; 2 left"
    assert stream_ids(sync_redis, KEYS.input) == ["2-0", "3-0"]


@pytest.mark.parametrize(
    "options", [["--keep", "-1"], ["--keep", "x"], ["--stream", "dead"], ["--nope"]]
)
def test_a_bad_command_line_exits_2(config, capsys, options):
    assert main(["trim", "--config", str(config), *options]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_failures_exit_1_in_one_line(config, sync_redis, tmp_path, capsys):
    sync_redis.set(KEYS.events, "not a stream")
    code, _, err = trim(config, capsys)
    assert code == 1
    assert "WRONGTYPE" in err
    assert len(err.strip().splitlines()) == 1

    unreachable = write_config(tmp_path, f"redis://127.0.0.1:{free_port()}/0", "down.toml")
    code, _, err = trim(unreachable, capsys)
    assert code == 1
    assert err.startswith("liqwatch: cannot reach Redis")
    assert len(err.strip().splitlines()) == 1
