"""Config: the shipped examples parse; every error names its key path; secrets stay hidden."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from state.models import BracketsModel, MarginMode, OrderlyModel
from tests.helpers.config import REPO
from watcher.daemon.config import ConfigError, load_settings, parse_settings, redact_url

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
