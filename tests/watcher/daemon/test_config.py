"""Config: the shipped examples parse; every error names its key path; secrets stay hidden."""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from state.models import BracketsModel, MarginMode, OrderlyModel
from tests.helpers.config import REPO
from watcher.daemon.config import (
    MAX_CONFIG_BYTES,
    ConfigError,
    Settings,
    load_settings,
    parse_settings,
    redact_url,
)
from watcher.feeds.spec import FeedSpec

BASE = """
[redis]
url = "redis://127.0.0.1:6379/0"
[[feeds]]
venue = "binance"
url = "wss://fstream.binance.com"
symbols = ["BTCUSDT"]
[markets.BTCUSDT]
maintenance = { model = "brackets", brackets = [["0", "0.004", "0"], ["50000", "0.005", "50"]] }
"""


def test_deploy_example_parses() -> None:
    settings = load_settings(REPO / "deploy" / "liqwatch.toml", env={})
    btc = settings.markets["PERP_BTC_USDC"]
    assert isinstance(btc.maintenance, OrderlyModel)
    assert btc.default_margin_mode is MarginMode.CROSS
    assert settings.feeds[0].venue == "orderly"
    assert settings.at_equality is False


def test_contract_example_parses() -> None:
    settings = parse_settings(BASE, {})
    model = settings.markets["BTCUSDT"].maintenance
    assert isinstance(model, BracketsModel)
    assert model.brackets[1].amount == Decimal(50)
    assert settings.keys.input == "liq:{0}:in"


def test_env_overrides_redis_url_and_password_is_redacted() -> None:
    url = "redis://user:s3cret@10.0.0.1:6380/2"
    settings = parse_settings(BASE, {"LIQWATCH_REDIS_URL": url})
    assert settings.redis_url == url
    assert "s3cret" not in settings.redacted_redis_url
    assert "s3cret" not in repr(redact_url(url))


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda t: t.replace('venue = "binance"', 'venue = "kraken"'), "feeds[0].venue"),
        (lambda t: t.replace('"0.004"', '"1.5"'), "markets.BTCUSDT.maintenance"),
        (lambda t: t.replace('"50"]', '"51"]'), "brackets[1].amount"),
        (lambda t: t.replace('symbols = ["BTCUSDT"]', 'symbols = ["ETHUSDT"]'), "feeds[0].symbols"),
        (lambda t: t + "[liquidation]\nat_equality = 1\n", "liquidation.at_equality"),
        (lambda t: t + "[daemon]\nlease_ttl = -1\n", "daemon.lease_ttl"),
        (lambda t: t.replace('model = "brackets"', 'model = "tiered"'), "maintenance.model"),
        (lambda t: t + "[markets.X]\nmaintenance = { model = 'flat' }\n", "markets.X.maintenance"),
        (lambda t: t.replace("redis://", "http://"), "redis.url"),
        (
            lambda t: (
                t + "[markets.Y]\nmaintenance = { model = 'flat', rate = '0.1' }\n"
                "default_margin_mode = 'HEDGE'\n"
            ),
            "markets.Y.default_margin_mode",
        ),
    ],
)
def test_errors_name_the_key_path(edit, path: str) -> None:
    with pytest.raises(ConfigError, match=path.replace("[", r"\[").replace("]", r"\]")):
        parse_settings(edit(BASE), {})


def test_not_toml() -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_settings("[redis\n", {})


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda t: t + "[daemon]\nheartbeat_intervl = 2\n", "heartbeat_intervl: unknown"),
        (lambda t: t.replace("url = ", "urll = ", 1), "redis.urll: unknown key"),
        (lambda t: t + "[liquidation]\nat_equalty = true\n", "liquidation.at_equalty: unknown"),
        (lambda t: t + "[daemon]\nheartbeat_ttl = 1.0\n", "daemon.heartbeat_ttl: must be longer"),
        (lambda t: t + "[daemon]\nbackoff_base = 60.0\n", "daemon.backoff_base: must not exceed"),
        (lambda t: t + "[daemon]\ninstance = ' '\n", "daemon.instance: must not be empty"),
        (
            lambda t: (
                t + "[markets.Z]\nmaintenance = { model = 'flat', rate = '0.1', rte = '1' }\n"
            ),
            "markets.Z.maintenance.rte: unknown key",
        ),
        (
            lambda t: (
                t + "[markets.Z]\nmaintenance = { model = 'brackets', brackets ="
                " [['0', '0.01'], ['10', '0.02', '0.1']] }\n"
            ),
            "not a mix",
        ),
    ],
)
def test_misspelt_and_inconsistent_settings_are_refused(edit, path: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(path)):
        parse_settings(edit(BASE), {})


def config_with(table: str, lines: str) -> str:
    """BASE with ``lines`` added to ``table`` (``feeds``: the one feed)."""
    if table == "feeds":
        return BASE.replace('symbols = ["BTCUSDT"]', f'symbols = ["BTCUSDT"]\n{lines}')
    if table == "redis":  # BASE has one already
        return BASE.replace("[redis]\n", f"[redis]\n{lines}\n")
    return f"{BASE}[{table}]\n{lines}\n"


# (table, lines, the error after "<key path>: "): each names the bound it broke.
BAD_VALUES = [
    # The issue's own example: both at 1e308, so base <= cap holds.
    ("daemon", "backoff_base = 1e308\nbackoff_cap = 1e308", "must be at most 3600, got 1e+308"),
    ("daemon", "backoff_cap = 1e308", "must be at most 3600, got 1e+308"),
    ("daemon", "backoff_base = 0", "must be greater than 0, got 0"),
    ("daemon", "backoff_reset_after = 3601", "must be at most 3600, got 3601"),
    ("daemon", "heartbeat_interval = 61.0", "must be at most 60, got 61"),
    ("daemon", "heartbeat_interval = true", "must be a number, got True"),
    ("daemon", "heartbeat_interval = '1'", "must be a number, got '1'"),
    ("daemon", "heartbeat_ttl = 601", "must be at most 600, got 601"),
    ("daemon", "lease_ttl = inf", "must be a finite number, got inf"),
    ("daemon", "lease_ttl = -inf", "must be a finite number, got -inf"),
    ("daemon", "lease_ttl = nan", "must be a finite number, got nan"),
    ("daemon", "lease_ttl = 0", "must be greater than 0, got 0"),
    ("daemon", "lease_ttl = 600.5", "must be at most 600, got 600.5"),
    ("daemon", "input_batch = 2001", "must be at most 2000, got 2001"),
    ("daemon", "input_batch = 0", "must be at least 1, got 0"),
    ("daemon", "input_batch = 10.0", "must be an integer, got 10.0"),
    ("daemon", "max_frame_bytes = 67108865", "must be at most 67108864, got 67108865"),
    (
        "daemon",
        "max_frame_bytes = 1" + "0" * 400,
        "must be at most 67108864, got 100000000000...(401 digits)",
    ),
    ("daemon", "max_deliveries = 1", "must be at least 2, got 1"),
    ("daemon", "max_deliveries = 1001", "must be at most 1000, got 1001"),
    ("daemon", "max_deliveries = 5.5", "must be an integer, got 5.5"),
    ("liquidation", "liq_id_ttl = 31536001", "must be at most 31536000, got 31536001"),
    ("liquidation", "liq_id_ttl = 0", "must be at least 1, got 0"),
    ("liquidation", "stuck_after = 604801", "must be at most 604800, got 604801"),
    ("liquidation", "stuck_after = -1", "must be greater than 0, got -1"),
    ("redis", "timeout = 0.01", "must be at least 0.05, got 0.01"),
    ("redis", "timeout = 301", "must be at most 300, got 301"),
    ("redis", "timeout = nan", "must be a finite number, got nan"),
    ("redis", "backoff_cap = 0.001", "must be at least 0.01, got 0.001"),
    ("redis", "backoff_cap = 61", "must be at most 60, got 61"),
    ("audit", "enabled = 1", "must be true or false, got 1"),
    ("audit", "interval = 0.001", "must be at least 0.01, got 0.001"),
    ("audit", "interval = 3601", "must be at most 3600, got 3601"),
    ("audit", "batch = 0", "must be at least 1, got 0"),
    ("audit", "batch = 10001", "must be at most 10000, got 10001"),
    ("audit", "batch = 1e3", "must be an integer, got 1000.0"),
    ("executors", "warn_after = 0.5", "must be at least 1, got 0.5"),
    ("executors", "warn_after = 86401", "must be at most 86400, got 86401"),
    ("feeds", "stale_after = 3601", "must be at most 3600, got 3601"),
    ("feeds", "stale_after = 0", "must be greater than 0, got 0"),
    ("feeds", "stale_after = nan", "must be a finite number, got nan"),
    ("feeds", "silence_timeout = 10801", "must be at most 10800, got 10801"),
    ("feeds", "max_ahead = 86401", "must be at most 86400, got 86401"),
    ("feeds", "max_ahead = 0", "must be greater than 0, got 0"),
    ("feeds", "max_ahead = inf", "must be a finite number, got inf"),
    ("feeds", "jump_band = 1.5", "must be 0 (off) or between 0 and 1, got 1.5"),
    ("feeds", "jump_band = nan", "must be 0 (off) or between 0 and 1, got nan"),
    ("feeds", "jump_band = -0.1", "must be 0 (off) or between 0 and 1, got -0.1"),
    # Unknown keys of the new tables are refused with their path, too.
    ("audit", "enabeld = true", "unknown key (known: batch, enabled, interval)"),
    ("executors", "warn_afer = 5", "unknown key (known: warn_after)"),
    ("feeds", "max_ahaed = 5", "unknown key (known: jump_band, max_ahead, silence_timeout,"),
    ("warnings", 'interval = 0.001\nlevel = "1.5"', "must be at least 0.01, got 0.001"),
    ("warnings", 'max_len = 10\nlevel = "1.5"', "must be at least 1000, got 10"),
    (
        "warnings",
        'levle = 2\nlevel = "1.5"',
        "unknown key (known: interval, level, max_len, rearm)",
    ),
]


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        ('rearm = "2"', "warnings.level: missing"),
        ('level = "1"', "warnings: level must be > 1"),
        ('level = "abc"', "warnings.level: not a decimal"),
        ('level = "1.5"\nrearm = "1.4"', "warnings: rearm must be >= level (1.5), got 1.4"),
        ('level = "300"', "warnings: level 300: BTCUSDT maintenance scaled by it is invalid"),
    ],
)
def test_warning_levels_are_checked_against_every_market(lines: str, error: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(error)):
        parse_settings(config_with("warnings", lines), {})


def test_warnings_default_to_off_and_rearm_to_level_plus_a_tenth() -> None:
    assert parse_settings(BASE, {}).warnings is None
    rules = parse_settings(config_with("warnings", 'level = "1.5"'), {}).warnings
    assert rules is not None
    assert (rules.level, rules.rearm, rules.max_len) == (Decimal("1.5"), Decimal("1.6"), 100_000)


@pytest.mark.parametrize(("table", "lines", "error"), BAD_VALUES)
def test_a_bad_value_is_one_line_naming_the_key_and_the_bound(
    table: str, lines: str, error: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(config_with(table, lines), {})
    path = "feeds[0]" if table == "feeds" else table
    key = lines.split(" = ", 1)[0]
    message = str(info.value)
    assert message.startswith(f"{path}.{key}: {error}")
    assert "\n" not in message


def test_the_bounds_themselves_are_accepted() -> None:
    text = BASE.replace(
        'symbols = ["BTCUSDT"]',
        'symbols = ["BTCUSDT"]\nstale_after = 3600\nsilence_timeout = 10800\nmax_ahead = 86400',
    )
    text = text.replace(
        'url = "redis://127.0.0.1:6379/0"',
        'url = "redis://127.0.0.1:6379/0"\ntimeout = 300\nbackoff_cap = 0.01',
    )
    text += (
        "[daemon]\nheartbeat_interval = 60\nheartbeat_ttl = 600\nlease_ttl = 600\n"
        "input_batch = 2000\nmax_frame_bytes = 67108864\nbackoff_base = 3600\n"
        "backoff_cap = 3600\nbackoff_reset_after = 3600\nmax_deliveries = 1000\n"
        "[liquidation]\nliq_id_ttl = 31536000\nstuck_after = 604800\n"
        "[audit]\nenabled = false\ninterval = 0.01\nbatch = 10000\n"
        "[executors]\nwarn_after = 86400\n"
    )
    s = parse_settings(text, {})
    feed = s.feeds[0]
    assert (feed.stale_after, feed.silence_timeout, feed.max_ahead) == (3600.0, 10800.0, 86400.0)
    assert (s.redis_timeout, s.redis_backoff_cap) == (300.0, 0.01)
    assert (s.heartbeat_interval, s.heartbeat_ttl, s.lease_ttl) == (60.0, 600.0, 600.0)
    assert (s.input_batch, s.max_frame_bytes, s.max_deliveries) == (2000, 64 * 2**20, 1000)
    assert (s.backoff_base, s.backoff_cap, s.backoff_reset_after) == (3600.0, 3600.0, 3600.0)
    assert (s.liq_id_ttl, s.stuck_after) == (365 * 86400, 604800.0)
    assert (s.audit_enabled, s.audit_interval, s.audit_batch) == (False, 0.01, 10000)
    assert s.executors_warn_after == 86400.0
    # Whole numbers are taken for float keys, and kept as floats.
    assert isinstance(s.redis_timeout, float)
    assert isinstance(s.input_batch, int)
    # The floors that are not just "above 0".
    low = parse_settings(
        config_with("redis", "timeout = 0.05\nbackoff_cap = 60")
        + "[daemon]\nmax_deliveries = 2\ninput_batch = 1\n"
        + "[audit]\ninterval = 3600\nbatch = 1\n[executors]\nwarn_after = 1\n",
        {},
    )
    assert (low.redis_timeout, low.redis_backoff_cap, low.max_deliveries) == (0.05, 60.0, 2)
    assert (low.input_batch, low.audit_interval, low.audit_batch) == (1, 3600.0, 1)
    assert low.executors_warn_after == 1.0


def test_new_keys_have_their_defaults() -> None:
    s = parse_settings(BASE, {})
    assert s.redis_timeout == 2.0
    assert s.redis_backoff_cap == 2.0
    assert s.max_deliveries == 10
    assert (s.audit_enabled, s.audit_interval, s.audit_batch) == (True, 1.0, 200)
    assert s.executors_warn_after == 60.0
    assert s.feeds[0].max_ahead == 60.0
    # A FeedSpec built in code has the defaults of a config file.
    assert FeedSpec("binance", "ws://x", ("BTCUSDT",), stale_after=5.0).max_ahead == 60.0
    # Settings built in code too.
    built = Settings("redis://x", "liq", s.feeds, s.markets)
    assert (built.redis_timeout, built.max_deliveries, built.audit_batch) == (2.0, 10, 200)


def test_cross_checks_name_both_values() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(config_with("daemon", "backoff_base = 31"), {})
    assert str(info.value) == "daemon.backoff_base: must not exceed daemon.backoff_cap (30), got 31"
    with pytest.raises(ConfigError) as info:
        parse_settings(config_with("daemon", "heartbeat_ttl = 1"), {})
    assert str(info.value) == (
        "daemon.heartbeat_ttl: must be longer than daemon.heartbeat_interval (1), got 1"
    )


def test_deploy_example_parses_with_its_commented_keys_uncommented() -> None:
    text = (REPO / "deploy" / "liqwatch.toml").read_text()
    # "# key = value" and "# [table]": the keys shown commented, with their defaults.
    uncommented = re.sub(r"^# (?=\[\w+\]$|\w+ = )", "", text, flags=re.MULTILINE)
    assert uncommented.count("\n") == text.count("\n")
    assert "\ntimeout = 2.0" in uncommented
    assert "\n[audit]" in uncommented
    commented, shown = parse_settings(text, {}), parse_settings(uncommented, {})
    assert commented == replace(shown, instance=commented.instance)


def test_load_settings_reads_only_utf_8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(BASE.encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = str(info.value)
    offset = len(BASE.encode()) + len(b"# caf")
    assert message == f"{path}: not UTF-8: byte 0xe9 at offset {offset}"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: d / "missing.toml", "cannot read: No such file or directory"),
        (lambda d: d, "cannot read: Is a directory"),
    ],
)
def test_load_settings_unreadable_paths_are_one_line(tmp_path: Path, make, reason: str) -> None:
    path = make(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert str(info.value) == f"{path}: {reason}"


def test_load_settings_refuses_a_file_far_too_big_for_a_config(tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    path.write_bytes(b"#" * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than"):
        load_settings(path, env={})
