"""``[markets.X] partial``: Orderly's defaults on the orderly model, overrides, refusals."""

from __future__ import annotations

from decimal import Decimal

import pytest

from state.models import PartialRule, Tier
from watcher.daemon.config import ConfigError, parse_settings

D = Decimal
HEAD = """
[[feeds]]
venue = "orderly"
url = "ws://127.0.0.1:9/ws"
symbols = ["PERP_BTC_USDC"]
[markets.PERP_BTC_USDC.maintenance]
model = "orderly"
base_imr = "0.01"
base_mmr = "0.006"
imr_factor = "0.000000091"
[markets.PERP_BTC_USDC]
"""
ALT = """
[markets.PERP_NEAR_USDC]
maintenance = { model = "orderly", base_imr = "0.1", base_mmr = "0.05", imr_factor = "0.0000021" }
"""


def markets(extra: str = "", btc: str = ""):
    return parse_settings(HEAD + btc + ALT + extra, {}).markets


def test_orderly_markets_get_orderlys_numbers_by_default() -> None:
    m = markets()
    assert m["PERP_BTC_USDC"].partial == PartialRule(Tier.LOW, D(10_000), D("0.006"), D("0.003"))
    assert m["PERP_NEAR_USDC"].partial == PartialRule(Tier.HIGH, D(5_000), D("0.012"), D("0.006"))


def test_other_models_have_none() -> None:
    m = markets('[markets.DOGE]\nmaintenance = { model = "flat", rate = "0.05" }\n')
    assert m["DOGE"].partial is None


def test_partial_false_turns_it_off_and_a_table_overrides() -> None:
    m = markets(btc='partial = { tier = "high", liquidation_fee = "0.01" }\n')
    assert m["PERP_BTC_USDC"].partial == PartialRule(Tier.HIGH, D(5_000), D("0.01"), D("0.003"))
    m = markets(btc="partial = false\n")
    assert m["PERP_BTC_USDC"].partial is None
    m = markets(btc='partial = { min_takeover = "2500", liquidator_fee = 0.002 }\n')
    assert m["PERP_BTC_USDC"].partial == PartialRule(Tier.LOW, D(2_500), D("0.006"), D("0.002"))


@pytest.mark.parametrize(
    ("btc", "extra", "error"),
    [
        ('partial = { tier = "mid" }\n', "", "markets.PERP_BTC_USDC.partial.tier: must be one of"),
        ('partial = { fee = "0.1" }\n', "", "markets.PERP_BTC_USDC.partial.fee: unknown key"),
        (
            'partial = { liquidator_fee = "0.01" }\n',
            "",
            "markets.PERP_BTC_USDC.partial: liquidator_fee must be in",
        ),
        ('partial = { liquidation_fee = "1" }\n', "", "liquidation_fee must be in"),
        ('partial = { min_takeover = "-1" }\n', "", "min_takeover must be >= 0"),
        ("partial = true\n", "", "must be a table"),
        (
            "",
            '[markets.DOGE]\nmaintenance = { model = "flat", rate = "0.05" }\npartial = {}\n',
            "markets.DOGE.partial: only a market on the orderly model",
        ),
    ],
)
def test_bad_partial_rules_are_refused_with_their_path(btc: str, extra: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error.replace(".", r"\.")):
        markets(extra, btc)
