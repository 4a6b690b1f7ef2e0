"""``liqwatch health``, config and command-line errors, and the lazily imported commands."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers.config import KEYS, write_config
from watcher.cli.health import heartbeat_verdict
from watcher.cli.main import main
from watcher.demo.redis_server import free_port


def beat(r, age_ms: int) -> str:
    body = json.dumps({"ts": time.time_ns() // 1_000_000 - age_ms, "instance": "host-42"})
    r.set(KEYS.health, body, px=60_000)
    return body


def test_fresh_heartbeat_exits_0_and_prints_it(config, sync_redis, capsys):
    body = beat(sync_redis, 500)
    assert main(["health", "--config", str(config)]) == 0
    assert capsys.readouterr().out == body + "\n"


def test_stale_heartbeat_exits_1_with_the_reason(config, sync_redis, capsys):
    beat(sync_redis, 30_000)
    assert main(["health", "--config", str(config)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("liqwatch: stale heartbeat: host-42 last beat 30.")
    assert captured.err.endswith("s ago (max 10 s)\n")
    assert main(["health", "--config", str(config), "--max-age", "60"]) == 0


def test_missing_heartbeat_exits_1(config, sync_redis, capsys):
    assert main(["health", "--config", str(config)]) == 1
    assert capsys.readouterr().err.startswith("liqwatch: no heartbeat")


def test_unreachable_redis_exits_1_in_one_line(tmp_path, capsys):
    config = write_config(tmp_path, f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    assert main(["health", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("liqwatch: cannot reach Redis at redis://:***@127.0.0.1:")
    assert "hunter2" not in err


def test_heartbeat_verdicts():
    assert heartbeat_verdict(b'{"ts": 1000}', 11_000, 10.0) == (True, '{"ts": 1000}')
    assert heartbeat_verdict(b'{"ts": 1000}', 11_001, 10.0)[0] is False
    assert heartbeat_verdict(b"garbage", 0, 10.0) == (False, "unreadable heartbeat: 'garbage'")
    assert heartbeat_verdict(b'{"instance": "x"}', 0, 10.0)[0] is False
    assert heartbeat_verdict(None, 0, 10.0)[0] is False


@pytest.mark.parametrize("command", ["run", "load", "health", "inspect"])
@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[redis\n", "not valid TOML"),
        ('[redis]\nurl = "redis://x"\n', "markets: missing table [markets]"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(tmp_path, capsys, command, text, reason):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    extra = {"load": ["in.jsonl"], "inspect": ["marks"]}.get(command, [])
    assert main([command, "--config", str(path), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("liqwatch: ")
    assert reason in err


def test_missing_config_file_is_exit_2(tmp_path, capsys):
    assert main(["health", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: cannot read" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["inspect", "--config", "x.toml"],
        ["load"],
        ["inspect", "--config", "x", "symbol", "S", "--limit", "0"],
        ["frobnicate"],
    ],
)
def test_usage_errors_are_one_line_and_exit_2(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.endswith("(see --help)\n")


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "inspect" in capsys.readouterr().out


def test_the_cli_imports_without_the_daemon_or_the_demo():
    # run and demo import their modules only when they run.
    probe = (
        "import sys, watcher.cli;"
        "print('watcher.daemon.app' in sys.modules, 'watcher.demo.runner' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_run_beats_until_sigterm_then_exits_0(tmp_path, config, sync_redis, capsys):
    log = tmp_path / "daemon.log"
    with log.open("wb") as sink:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "watcher.cli", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        deadline = time.monotonic() + 10
        while main(["health", "--config", str(config)]) != 0:
            assert daemon.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no heartbeat within 10 s"
            time.sleep(0.05)
        assert json.loads(capsys.readouterr().out)["ts"] > 0
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert main(["health", "--config", str(config)]) == 1
    assert capsys.readouterr().err.startswith("liqwatch: no heartbeat")


def test_demo_runs_for_a_duration_and_exits_0():
    # In a child process: the demo configures logging for the whole process.
    argv = ["demo", "--accounts", "10", "--seed", "3", "--duration", "0.3"]
    done = subprocess.run(
        [sys.executable, "-m", "watcher.cli", *argv], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert "loaded" in done.stdout


def test_demo_shows_liquidations_happening():
    """What ``make demo`` runs: within seconds, liquidations of both kinds are committed."""
    argv = ["demo", "--seed", "7", "--duration", "10"]
    done = subprocess.run(
        [sys.executable, "-m", "watcher.cli", *argv], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(" CROSS " in line for line in lines), done.stdout[-2000:]
    assert any(" ISOLATED " in line for line in lines), done.stdout[-2000:]
    assert "Traceback" not in done.stderr


def test_two_instances_one_stopping_leaves_the_others_heartbeat(sync_redis):
    import asyncio

    import redis.asyncio as aioredis

    from state.keys import Keys
    from state.store import Store

    keys = Keys("liq")
    url = sync_redis.connection_pool.connection_kwargs
    sync_redis.set(keys.health, json.dumps({"instance": "other", "ts": 1}))

    async def stop_as(instance: str) -> None:
        client = aioredis.Redis(host=url["host"], port=url["port"])
        await Store(client, keys).drop_heartbeat(instance)
        await client.aclose()

    asyncio.run(stop_as("me"))
    assert sync_redis.get(keys.health) is not None
    asyncio.run(stop_as("other"))
    assert sync_redis.get(keys.health) is None
