"""The fields added to liquidation events: balance and Orderly's partial liquidation."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import orjson
import pytest

from state.events import EventError, LiquidationEvent, Transfer
from tests.helpers.events import CROSS_EVENT, FIELD_ORDER, ISOLATED_EVENT

D = Decimal
WITH_PARTIAL = dataclasses.replace(
    CROSS_EVENT,
    balance=D("1000.50"),
    transfer={
        "PERP_BTC_USDC": Transfer("low", D("0.0000005"), D("0.003"), D("0.0015")),
        "PERP_ETH_USDC": Transfer("low", D("-0.75"), D("10.8"), D("5.4")),
    },
)
ADDED = ["balance", "tier", "transfer_qty", "liquidation_fee", "liquidator_fee"]


def test_added_fields_follow_the_thirteen_unchanged() -> None:
    fields = WITH_PARTIAL.to_fields()
    assert list(fields) == FIELD_ORDER + ADDED
    base = CROSS_EVENT.to_fields()
    assert {k: fields[k] for k in FIELD_ORDER} == base
    assert fields["balance"] == "1000.50"
    assert orjson.loads(fields["tier"]) == {"PERP_BTC_USDC": "low", "PERP_ETH_USDC": "low"}
    assert orjson.loads(fields["transfer_qty"]) == {
        "PERP_BTC_USDC": "5E-7",
        "PERP_ETH_USDC": "-0.75",
    }


def test_round_trip_with_the_added_fields() -> None:
    back = LiquidationEvent.from_fields(WITH_PARTIAL.to_fields())
    assert back == WITH_PARTIAL
    assert back.to_fields() == WITH_PARTIAL.to_fields()


@pytest.mark.parametrize("event", [CROSS_EVENT, ISOLATED_EVENT])
def test_an_old_event_without_them_reads_back_with_none(event: LiquidationEvent) -> None:
    back = LiquidationEvent.from_fields(event.to_fields())
    assert back.balance is None
    assert back.transfer is None


def test_the_partial_fields_go_together() -> None:
    fields = WITH_PARTIAL.to_fields()
    del fields["liquidator_fee"]
    with pytest.raises(EventError, match="liquidator_fee: missing"):
        LiquidationEvent.from_fields(fields)


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("tier", '{"PERP_BTC_USDC": "mid", "PERP_ETH_USDC": "low"}', "must be low or high"),
        ("transfer_qty", '{"PERP_ETH_USDC": "1", "PERP_BTC_USDC": "1"}', "in its order"),
        ("liquidation_fee", "[]", "JSON object"),
        ("liquidator_fee", '{"PERP_BTC_USDC": "x", "PERP_ETH_USDC": "1"}', "not a decimal"),
        ("balance", "nan", "finite"),
    ],
)
def test_malformed_added_fields_are_named(name: str, value: str, error: str) -> None:
    fields = WITH_PARTIAL.to_fields()
    fields[name] = value
    with pytest.raises(EventError, match=error):
        LiquidationEvent.from_fields(fields)
