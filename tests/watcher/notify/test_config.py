"""The [notify] table: defaults, overrides, bounds, secrets inline or in files, never quoted."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from watcher.daemon.config import ConfigError, parse_settings
from watcher.notify.config import (
    PAGERDUTY_URL,
    Delivery,
    SinkType,
    load_notify,
    parse_listen,
    parse_notify,
)
from watcher.notify.secret import Secret

HOOK = "https://hooks.example.com/services/T0/B0/TOKEN-never-shown"
KEY = "hmac-key-never-shown"
DAEMON = """\
[[feeds]]
venue = "orderly"
url = "ws://127.0.0.1:9/ws"
symbols = ["PERP_ETH_USDC"]

[markets.PERP_ETH_USDC]
maintenance = { model = "flat", rate = "0.006" }
"""


def parse(text: str):
    return parse_notify(tomllib.loads(text))


def slack(extra: str = "") -> str:
    return f'[notify]\n[[notify.sinks]]\nname = "s"\ntype = "slack"\nurl = "{HOOK}"\n{extra}'


def test_defaults_and_overrides():
    notify = parse(
        "[notify]\nmax_tries = 7\nsummary_window = 2.5\n"
        f'[[notify.sinks]]\nname = "a"\ntype = "slack"\nurl = "{HOOK}"\n'
        f'[[notify.sinks]]\nname = "b"\ntype = "webhook"\nurl = "{HOOK}"\nsecret = "{KEY}"\n'
        "max_tries = 2\nmax_messages_per_window = 10\n"
    )
    a, b = notify.sinks
    assert notify.group == "notify"
    assert notify.consumer.startswith("notify-")
    assert notify.start == "new"
    assert notify.metrics_listen is None
    assert a.delivery == Delivery(max_tries=7, summary_window=2.5)
    assert b.delivery == Delivery(max_tries=2, summary_window=2.5, max_messages_per_window=10)
    assert (a.type, b.type) == (SinkType.SLACK, SinkType.WEBHOOK)
    assert a.url.reveal() == HOOK
    assert b.secret == Secret(KEY)


def test_pagerduty_defaults_to_the_events_v2_endpoint():
    notify = parse(
        '[notify]\n[[notify.sinks]]\nname = "p"\ntype = "pagerduty"\nrouting_key = "R"\n'
    )
    [p] = notify.sinks
    assert p.url.reveal() == PAGERDUTY_URL
    assert (p.routing_key, p.severity, p.source) == (Secret("R"), "critical", "liqwatch")


def test_no_secret_shows_in_the_settings_repr():
    notify = parse(
        f'[notify]\n[[notify.sinks]]\nname = "w"\ntype = "webhook"\nurl = "{HOOK}"\n'
        f'secret = "{KEY}"\n[[notify.sinks]]\nname = "p"\ntype = "pagerduty"\n'
        f'routing_key = "{KEY}-rk"\n'
    )
    text = repr(notify) + str(notify)
    assert HOOK not in text
    assert KEY not in text
    assert "TOKEN" not in text


def test_secrets_are_read_from_files(tmp_path: Path):
    (tmp_path / "url").write_text(HOOK + "\n")
    (tmp_path / "key").write_text(f"  {KEY}\n")
    notify = parse(
        f'[notify]\n[[notify.sinks]]\nname = "w"\ntype = "webhook"\nurl_file = "{tmp_path}/url"\n'
        f'secret_file = "{tmp_path}/key"\n'
    )
    [w] = notify.sinks
    assert (w.url.reveal(), w.secret) == (HOOK, Secret(KEY))


def test_a_pagerduty_url_and_routing_key_may_come_from_files(tmp_path: Path):
    (tmp_path / "url").write_text("https://events.example/v2/enqueue\n")
    (tmp_path / "rk").write_text("R\n")
    notify = parse(
        f'[notify]\n[[notify.sinks]]\nname = "p"\ntype = "pagerduty"\n'
        f'url_file = "{tmp_path}/url"\nrouting_key_file = "{tmp_path}/rk"\n'
    )
    [p] = notify.sinks
    assert (p.url.reveal(), p.routing_key) == ("https://events.example/v2/enqueue", Secret("R"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[notify]\n", "notify.sinks: at least one [[notify.sinks]] table is needed"),
        ("[notify]\nsinks = []\n", "notify.sinks: at least one"),
        (slack("") + "[notify.extra]\n", "notify.extra: unknown key"),
        ("[notify]\nbatch = 0\n" + slack()[9:], "notify.batch: must be at least 1, got 0"),
        (slack("timeout = 0"), "notify.sinks[0].timeout: must be greater than 0, got 0"),
        (slack("timeout = nan"), "notify.sinks[0].timeout: must be a finite number, got nan"),
        (slack("max_tries = 1.5"), "notify.sinks[0].max_tries: must be an integer, got 1.5"),
        (slack("max_tries = 101"), "notify.sinks[0].max_tries: must be at most 100, got 101"),
        (
            slack("summary_window = 1e308"),
            "notify.sinks[0].summary_window: must be at most 3600, got 1e+308",
        ),
        (
            slack("max_messages_per_window = 0"),
            "notify.sinks[0].max_messages_per_window: must be at least 1, got 0",
        ),
        (
            slack("backoff_base = 10.0\nbackoff_cap = 1.0"),
            "notify.sinks[0].backoff_base: must not exceed backoff_cap (1), got 10",
        ),
        (slack('secret = "x"'), "notify.sinks[0].secret: unknown key"),
        (slack('severity = "info"'), "notify.sinks[0].severity: unknown key"),
        (
            '[notify]\n[[notify.sinks]]\nname = "w"\ntype = "webhook"\nurl = "https://h/x"\n',
            "notify.sinks[0].secret: missing (or secret_file)",
        ),
        (
            '[notify]\n[[notify.sinks]]\nname = "p"\ntype = "pagerduty"\n',
            "notify.sinks[0].routing_key: missing (or routing_key_file)",
        ),
        (
            '[notify]\n[[notify.sinks]]\nname = "p"\ntype = "pagerduty"\nrouting_key = "R"\n'
            'severity = "loud"\n',
            "notify.sinks[0].severity: must be one of critical, error, warning, info",
        ),
        (
            '[notify]\n[[notify.sinks]]\nname = "s"\ntype = "teams"\nurl = "https://h/x"\n',
            "notify.sinks[0].type: must be one of webhook, slack, pagerduty, got 'teams'",
        ),
        (
            '[notify]\n[[notify.sinks]]\ntype = "slack"\nurl = "https://h/x"\n',
            "notify.sinks[0].name: missing",
        ),
        (
            '[notify]\n[[notify.sinks]]\nname = "a b"\ntype = "slack"\nurl = "https://h/x"\n',
            "notify.sinks[0].name: must be 1 to 64 of A-Z a-z 0-9 _ . -",
        ),
        (slack() + slack()[9:], "notify.sinks[1].name: 's' names another sink too"),
        ('[notify]\ngroup = "a:b"\n' + slack()[9:], "notify.group: must be 1 to 64"),
        ('[notify]\nstart = "middle"\n' + slack()[9:], "notify.start: must be one of new, all"),
        (
            '[notify]\n[[notify.sinks]]\nname = "s"\ntype = "slack"\nurl = ""\n',
            "notify.sinks[0].url: must not be empty",
        ),
        (
            '[notify]\n[[notify.sinks]]\nname = "s"\ntype = "slack"\nurl = "x"\nurl_file = "y"\n',
            "notify.sinks[0]: give url or url_file, not both",
        ),
        (
            '[notify]\n[[notify.sinks]]\nname = "s"\ntype = "slack"\nurl_file = "/nonexistent/u"\n',
            "notify.sinks[0].url_file: cannot read /nonexistent/u: No such file or directory",
        ),
    ],
)
def test_a_bad_notify_table_is_refused_with_its_key_path(text: str, message: str):
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        f"ftp://{KEY}@example.com/",
        f"https://example.com:{KEY}/",
        f"{KEY}",
        f"https://example.com/{KEY} x",
        f"https:///{KEY}",
    ],
)
def test_a_bad_url_is_refused_without_being_quoted(url: str):
    with pytest.raises(ConfigError) as info:
        parse(f'[notify]\n[[notify.sinks]]\nname = "s"\ntype = "slack"\nurl = "{url}"\n')
    assert "notify.sinks[0].url:" in str(info.value)
    assert KEY not in str(info.value)


def test_a_secret_of_the_wrong_type_is_not_quoted():
    with pytest.raises(ConfigError) as info:
        parse(
            '[notify]\n[[notify.sinks]]\nname = "p"\ntype = "pagerduty"\nrouting_key = 12345678\n'
        )
    assert str(info.value) == "notify.sinks[0].routing_key: must be a string"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("127.0.0.1:9465", ("127.0.0.1", 9465)), ("[::1]:80", ("::1", 80)), ("h:1", ("h", 1))],
)
def test_metrics_listen(value: str, expected: tuple[str, int]):
    assert parse_listen(value, "k") == expected


@pytest.mark.parametrize("value", ["9465", ":9465", "h:0", "h:65536", "h:x", 9465])
def test_a_bad_metrics_listen_is_refused(value: object):
    with pytest.raises(ConfigError, match=r"^k: "):
        parse_listen(value, "k")


def test_load_notify_reads_the_daemon_settings_and_the_notify_table(tmp_path: Path):
    path = tmp_path / "liqwatch.toml"
    path.write_text('[redis]\nprefix = "pp"\n' + DAEMON + slack("timeout = 3.0"))
    settings, notify = load_notify(path)
    assert settings.prefix == "pp"
    assert [s.name for s in notify.sinks] == ["s"]
    assert notify.sinks[0].delivery.timeout == 3.0


def test_the_daemon_accepts_a_config_with_a_notify_table():
    settings = parse_settings(DAEMON + slack(), {})
    assert settings.markets
