"""``liqwatch notify`` as a real process: kill -9 loses nothing; no secret in its output."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.helpers.notify import (
    HMAC_KEY,
    KEYS,
    PREFIX,
    append,
    event,
    group_pending,
    has_group,
    wait_for,
)
from tests.helpers.processes import cli
from tests.helpers.sinks import event_ids

CONFIG = """\
[redis]
url = "{url}"
prefix = "{prefix}"

[[feeds]]
venue = "orderly"
url = "ws://127.0.0.1:9/ws"
symbols = ["PERP_ETH_USDC"]

[markets.PERP_ETH_USDC]
maintenance = {{ model = "flat", rate = "0.006" }}

[notify]
consumer = "notify-test"
start = "all"
timeout = 2.0
backoff_base = 0.01
backoff_cap = 0.05
max_messages_per_window = 1000

[[notify.sinks]]
name = "hook"
type = "webhook"
url = "{hook}"
secret_file = "{secret_file}"
"""


def write_config(tmp_path: Path, redis_url: str, hook: str) -> Path:
    secret = tmp_path / "hmac.key"
    secret.write_text(HMAC_KEY + "\n")
    path = tmp_path / "liqwatch.toml"
    path.write_text(CONFIG.format(url=redis_url, prefix=PREFIX, hook=hook, secret_file=secret))
    return path


class NotifyProcess:
    """``python -m watcher.cli notify``, its stderr (JSON log lines) in a file."""

    def __init__(self, config: Path, log: Path) -> None:
        with log.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "watcher.cli", "notify", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15)


async def test_kill_9_loses_no_event(tmp_path, redis_server, redis_client, sink):
    # A sink slow enough that the kill lands mid-way through the events.
    hook = await sink(secret=HMAC_KEY, delay=0.05)
    config = write_config(tmp_path, redis_server.url, hook.url)
    log = tmp_path / "notify.log"
    events = [event(n) for n in range(60)]
    await append(redis_client, events)
    first = NotifyProcess(config, log)
    try:
        await wait_for(lambda: len(hook.delivered) >= 10, timeout=20, what="deliveries")
        first.kill()
    finally:
        first.terminate()
    assert first.proc.returncode == -signal.SIGKILL
    assert await group_pending(redis_client) > 0, "the kill must leave entries pending"
    before = len(hook.delivered)
    assert before < 60
    second = NotifyProcess(config, log)
    try:
        await wait_for(
            lambda: set(event_ids(hook.bodies())) >= {e.id for e in events},
            timeout=30,
            what="every event delivered",
        )
        await wait_for(lambda: _no_pending(redis_client), what="all acknowledged")
    finally:
        assert second.terminate() == 0
    assert hook.bad_signatures == 0
    text = log.read_text()
    assert HMAC_KEY not in text
    assert "secret-path-token" not in text  # the URL's secret part
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert {"notify.starting", "notify.sent", "notify.stopped"} <= {x["event"] for x in lines}
    recovered = [x["own_pending"] for x in lines if x["event"] == "notify.recovered"]
    # The second run took back what the first had read and not acknowledged.
    assert recovered[0] == 0
    assert recovered[1] > 0


async def _no_pending(redis) -> bool:
    return await group_pending(redis) == 0


async def test_inspect_shows_the_notify_group_but_no_secret(
    tmp_path, redis_server, redis_client, sink
):
    hook = await sink(secret=HMAC_KEY)
    config = write_config(tmp_path, redis_server.url, hook.url)
    await append(redis_client, [event(1)])
    proc = NotifyProcess(config, tmp_path / "notify.log")
    try:
        await wait_for(lambda: len(hook.delivered) == 1, timeout=20, what="a delivery")
        await wait_for(lambda: has_group(redis_client), what="the group")
    finally:
        assert proc.terminate() == 0
    done = cli("inspect", "--config", str(config), "executors", "--json")
    assert done.returncode == 0, done.stderr
    groups = json.loads(done.stdout)["groups"]
    assert [g["name"] for g in groups] == ["notify"]
    assert HMAC_KEY not in done.stdout + done.stderr
    assert "secret-path-token" not in done.stdout + done.stderr
    assert KEYS.events in done.stdout


def test_a_bad_notify_config_is_one_line_without_the_secret(tmp_path, redis_server):
    config = write_config(tmp_path, redis_server.url, "ftp://secret-path-token@example")
    done = cli("notify", "--config", str(config))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "notify.sinks[0].url: must be an http:// or https:// URL" in done.stderr
    assert "secret-path-token" not in done.stderr


def test_no_notify_table_is_a_config_error(tmp_path, redis_server):
    config = write_config(tmp_path, redis_server.url, "http://127.0.0.1:9/")
    text = config.read_text()
    config.write_text(text[: text.index("[notify]")])
    done = cli("notify", "--config", str(config))
    assert done.returncode == 2
    assert "notify: missing table [notify]" in done.stderr


def test_a_metrics_port_in_use_is_one_line_and_exit_1(tmp_path, redis_server):
    config = write_config(tmp_path, redis_server.url, "http://127.0.0.1:9/")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        text = config.read_text().replace(
            "[notify]\n", f'[notify]\nmetrics_listen = "127.0.0.1:{port}"\n'
        )
        config.write_text(text)
        done = cli("notify", "--config", str(config))
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        f"liqwatch: notify.metrics_listen: cannot listen on 127.0.0.1:{port}:"
        " Address already in use"
    )
