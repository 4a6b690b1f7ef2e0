"""LiquidationEvent: the events-stream fields, written and read back exactly."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from state.events import EventError, LiquidationEvent
from tests.helpers.events import CROSS_EVENT, FIELD_ORDER, ISOLATED_EVENT, NO_LIQ_PRICE_EVENT

D = Decimal

EVENTS = [
    pytest.param(CROSS_EVENT, id="cross"),
    pytest.param(ISOLATED_EVENT, id="isolated"),
    pytest.param(NO_LIQ_PRICE_EVENT, id="no-liq-price"),
]


@pytest.mark.parametrize("event", EVENTS)
def test_round_trip(event: LiquidationEvent) -> None:
    """Reading back the written fields gives the same event."""
    assert LiquidationEvent.from_fields(event.to_fields()) == event


@pytest.mark.parametrize("event", EVENTS)
def test_round_trip_keeps_decimal_text(event: LiquidationEvent) -> None:
    """Every Decimal keeps the text it was written with, not only its value."""
    back = LiquidationEvent.from_fields(event.to_fields())
    assert str(back.mark_price) == str(event.mark_price)
    assert str(back.equity) == str(event.equity)
    assert str(back.maintenance_margin) == str(event.maintenance_margin)
    assert {s: str(p) for s, p in back.marks.items()} == {s: str(p) for s, p in event.marks.items()}
    assert [leg.to_json() for leg in back.positions] == [leg.to_json() for leg in event.positions]
    assert back.to_fields() == event.to_fields()


@pytest.mark.parametrize("event", EVENTS)
def test_fields_are_the_documented_thirteen_in_order(event: LiquidationEvent) -> None:
    """The entry has exactly the 13 documented fields, in the documented order, all strings."""
    fields = event.to_fields()
    assert list(fields) == FIELD_ORDER
    assert all(isinstance(v, str) for v in fields.values())


def test_field_values_of_a_cross_event() -> None:
    """The cross event's fields hold the documented text."""
    fields = CROSS_EVENT.to_fields()
    assert fields["kind"] == "CROSS"
    assert fields["mark_price"] == "2400"
    assert fields["maintenance_margin"] == "1E+1"
    assert fields["seq"] == str(2**64 + 1)
    assert orjson.loads(fields["marks"]) == {"PERP_BTC_USDC": "990.50", "PERP_ETH_USDC": "2400"}
    assert orjson.loads(fields["positions"]) == [
        {
            "symbol": "PERP_BTC_USDC",
            "margin_mode": "CROSS",
            "qty": "0.000001",
            "entry_price": "1E+3",
            "mark_price": "990.50",
        },
        {
            "symbol": "PERP_ETH_USDC",
            "margin_mode": "CROSS",
            "qty": "-1.5",
            "entry_price": "2300.0",
            "mark_price": "2400",
        },
    ]


def test_field_values_of_an_isolated_event() -> None:
    """The isolated event lists its margin, and an absent seq is an empty string."""
    fields = ISOLATED_EVENT.to_fields()
    assert fields["kind"] == "ISOLATED"
    assert fields["seq"] == ""
    assert fields["mark_ts"] == "0"
    (leg,) = orjson.loads(fields["positions"])
    assert leg["margin"] == "300.00"
    assert fields["liq_price"] == "2716.297786720321931589537223340040241449"


def test_absent_liq_price_is_an_empty_string() -> None:
    """An event without a liquidation price writes an empty liq_price and reads None back."""
    fields = NO_LIQ_PRICE_EVENT.to_fields()
    assert fields["liq_price"] == ""
    assert LiquidationEvent.from_fields(fields).liq_price is None


@pytest.mark.parametrize("event", EVENTS)
def test_bytes_fields(event: LiquidationEvent) -> None:
    """Fields as redis-py returns them (bytes keys and values) read back the same event."""
    raw = {k.encode(): v.encode() for k, v in event.to_fields().items()}
    assert LiquidationEvent.from_fields(raw) == event


def test_mixed_bytes_and_str_fields() -> None:
    """A mapping mixing bytes and str keys and values reads back the same event."""
    raw: dict[bytes | str, bytes | str] = {}
    for i, (k, v) in enumerate(CROSS_EVENT.to_fields().items()):
        raw[k.encode() if i % 2 else k] = v if i % 3 else v.encode()
    assert LiquidationEvent.from_fields(raw) == CROSS_EVENT


def _with(**changes: str) -> dict[str, str]:
    fields = CROSS_EVENT.to_fields()
    fields.update(changes)
    return fields


def _without(name: str) -> dict[str, str]:
    fields = CROSS_EVENT.to_fields()
    del fields[name]
    return fields


def _legs(*legs: dict[str, object]) -> str:
    return orjson.dumps(list(legs)).decode()


LEG: dict[str, object] = {
    "symbol": "X",
    "margin_mode": "CROSS",
    "qty": "1",
    "entry_price": "10",
    "mark_price": "9",
}

MALFORMED = [
    pytest.param(_without("id"), "id", id="missing-id"),
    pytest.param(_without("positions"), "positions", id="missing-positions"),
    pytest.param(_without("equity"), "equity", id="missing-equity"),
    pytest.param(_without("seq"), "seq", id="missing-seq"),
    pytest.param(_with(kind="SPOT"), "kind", id="bad-kind"),
    pytest.param(_with(kind=""), "kind", id="empty-kind"),
    pytest.param(_with(positions="[{"), "positions", id="positions-not-json"),
    pytest.param(_with(positions='{"a": 1}'), "positions", id="positions-not-array"),
    pytest.param(_with(positions="[1]"), "positions", id="positions-not-objects"),
    pytest.param(_with(marks="nope"), "marks", id="marks-not-json"),
    pytest.param(_with(marks="[]"), "marks", id="marks-not-object"),
    pytest.param(_with(marks='{"X": "abc"}'), "marks", id="mark-not-decimal"),
    pytest.param(_with(equity="abc"), "equity", id="equity-not-decimal"),
    pytest.param(_with(equity="NaN"), "equity", id="equity-nan"),
    pytest.param(_with(equity="Infinity"), "equity", id="equity-infinite"),
    pytest.param(_with(mark_price=""), "mark_price", id="mark-price-empty"),
    pytest.param(_with(maintenance_margin="1,5"), "maintenance_margin", id="mm-not-decimal"),
    pytest.param(_with(liq_price="x"), "liq_price", id="liq-price-not-decimal"),
    pytest.param(
        _with(positions=_legs({k: v for k, v in LEG.items() if k != "entry_price"})),
        "entry_price",
        id="leg-without-entry-price",
    ),
    pytest.param(_with(positions=_legs({**LEG, "qty": "one"})), "qty", id="leg-bad-qty"),
    pytest.param(_with(positions=_legs({**LEG, "qty": 1})), "qty", id="leg-qty-number"),
    pytest.param(
        _with(positions=_legs({**LEG, "margin_mode": "SPOT"})), "positions", id="leg-bad-mode"
    ),
    pytest.param(_with(seq="12a"), "seq", id="seq-not-digits"),
    pytest.param(_with(seq="-1"), "seq", id="seq-negative"),
    pytest.param(_with(seq="1.0"), "seq", id="seq-decimal"),
    pytest.param(_with(seq="\u0663"), "seq", id="seq-non-ascii-digit"),
    pytest.param(_with(mark_ts="now"), "mark_ts", id="mark-ts-not-digits"),
    pytest.param(_with(detected_ts=""), "detected_ts", id="detected-ts-empty"),
]


@pytest.mark.parametrize(("fields", "name"), MALFORMED)
def test_malformed_fields_raise_event_error(fields: dict[str, str], name: str) -> None:
    """A malformed entry raises EventError with a message naming the bad field."""
    with pytest.raises(EventError, match=name):
        LiquidationEvent.from_fields(fields)


def test_missing_kind_raises_event_error() -> None:
    """An entry without a kind raises EventError naming the kind field, like every other field."""
    with pytest.raises(EventError, match="kind"):
        LiquidationEvent.from_fields(_without("kind"))


def test_event_error_is_a_value_error() -> None:
    """EventError is a ValueError, so callers catching ValueError see malformed events too."""
    with pytest.raises(ValueError, match="equity"):
        LiquidationEvent.from_fields(_with(equity="abc"))
