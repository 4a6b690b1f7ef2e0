"""The strict price grammar: every invalid price of docs/reliability.md scenario 3 and more."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watcher.feeds.errors import PriceRejected
from watcher.feeds.prices import parse_iso_ts, parse_price, parse_symbol, parse_venue_ts

INVALID: list[tuple[object, str]] = [
    # NaN and infinities, as text and as floats
    ("NaN", "nan"),
    ("nan", "nan"),
    ("-NaN", "nan"),
    ("sNaN", "nan"),
    (float("nan"), "nan"),
    ("Infinity", "infinity"),
    ("-Infinity", "infinity"),
    ("inf", "infinity"),
    (float("inf"), "infinity"),
    (float("-inf"), "infinity"),
    # zero and negatives
    ("0", "zero"),
    ("0.00000000", "zero"),
    (0, "zero"),
    (0.0, "zero"),
    (-0.0, "zero"),
    ("-1", "negative"),
    ("-0", "negative"),
    (-1, "negative"),
    (-2300.5, "negative"),
    # exponents and absurd sizes
    ("1e400", "exponent"),
    ("1E5", "exponent"),
    ("1.5e-3", "exponent"),
    ("5" * 5000, "too_long"),
    ("1" + "0" * 32, "too_long"),
    ("1" * 25, "too_many_digits"),
    (10**30, "too_many_digits"),
    ("1" * 19, "out_of_range"),
    (10**20, "out_of_range"),
    (1e30, "out_of_range"),
    ("0." + "0" * 20 + "1", "out_of_range"),
    (1e-25, "out_of_range"),
    # what permissive parsers accept
    ("1_000", "syntax"),
    ("\u0661\u0662\u0663", "not_ascii"),  # Arabic-Indic 123
    ("\uff11\uff12\uff13", "not_ascii"),  # fullwidth 123
    (" 1", "syntax"),
    ("1 ", "syntax"),
    ("\t2300.1", "syntax"),
    ("2300.1\n", "syntax"),
    ("+1", "syntax"),
    ("1.", "syntax"),
    (".5", "syntax"),
    ("01", "syntax"),
    ("1.2.3", "syntax"),
    ("0x10", "syntax"),
    ("1,000", "syntax"),
    # missing and mistyped
    ("", "empty"),
    (None, "missing"),
    (True, "bad_type"),
    (False, "bad_type"),
    ([], "bad_type"),
    ({"price": "1"}, "bad_type"),
    (b"1", "bad_type"),
    (Decimal("1"), "bad_type"),
]


@pytest.mark.parametrize(("raw", "reason"), INVALID)
def test_invalid_price_is_rejected_with_its_reason(raw: object, reason: str) -> None:
    with pytest.raises(PriceRejected) as caught:
        parse_price(raw)
    assert caught.value.reason == reason


VALID: list[tuple[object, str]] = [
    ("11794.15000000", "11794.15000000"),
    ("86141.00000000", "86141.00000000"),
    ("0.5", "0.5"),
    ("42", "42"),
    ("1" * 18, "1" * 18),
    ("0.000000000000000001", "1E-18"),
    ("123456789012.123456789012", "123456789012.123456789012"),
    (2300.1, "2300.1"),
    (2300.0, "2300.0"),
    (0.01292, "0.01292"),
    (1e-05, "0.00001"),
    (42, "42"),
]


@pytest.mark.parametrize(("raw", "text"), VALID)
def test_valid_price_parses_exactly(raw: object, text: str) -> None:
    price = parse_price(raw)
    assert price == Decimal(text)
    assert price.as_tuple() == Decimal(text).as_tuple()


def test_float_prices_keep_their_shortest_spelling() -> None:
    # The binary value of 2300.1 is not 2300.1; the venue meant 2300.1.
    assert parse_price(2300.1) != Decimal.from_float(2300.1)
    assert parse_price(2300.1) == Decimal("2300.1")


def test_rejection_message_of_a_huge_price_is_bounded() -> None:
    with pytest.raises(PriceRejected) as caught:
        parse_price("9" * 5000)
    assert len(str(caught.value)) < 100


@given(st.one_of(st.text(max_size=60), st.floats(), st.integers(), st.none(), st.booleans()))
def test_only_price_rejected_escapes(raw: object) -> None:
    try:
        price = parse_price(raw)
    except PriceRejected:
        return
    assert price.is_finite()
    assert price > 0


@pytest.mark.parametrize("raw", ["PERP_ETH_USDC", "BTCUSDT", "BTC-USDT-SWAP", "xyz:TSLA"])
def test_plausible_symbols_pass(raw: str) -> None:
    assert parse_symbol(raw) == raw


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "missing"),
        (7, "bad_symbol"),
        ("", "bad_symbol"),
        ("BTC USDT", "bad_symbol"),
        ("A" * 65, "bad_symbol"),
        ("\u0628\u062a\u0643", "bad_symbol"),
        ("_X", "bad_symbol"),
    ],
)
def test_bad_symbols_are_rejected(raw: object, reason: str) -> None:
    with pytest.raises(PriceRejected) as caught:
        parse_symbol(raw)
    assert caught.value.reason == reason


def test_venue_ts_accepts_int_or_digit_text() -> None:
    assert parse_venue_ts(1682242806000) == 1682242806000
    assert parse_venue_ts("1682242806000") == 1682242806000


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "missing"),
        (0, "bad_ts"),
        (-5, "bad_ts"),
        (True, "bad_ts"),
        (1.5e12, "bad_ts"),
        ("12a", "bad_ts"),
        ("0123", "bad_ts"),
        (10**14, "bad_ts"),
        ("", "bad_ts"),
    ],
)
def test_bad_venue_ts_is_rejected(raw: object, reason: str) -> None:
    with pytest.raises(PriceRejected) as caught:
        parse_venue_ts(raw)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("raw", "ms"),
    [
        ("2024-08-17T17:50:25.837Z", 1723917025837),
        ("2024-08-17T17:50:25Z", 1723917025000),
        ("2024-08-17T17:50:25.8Z", 1723917025800),
        ("2024-08-17T17:50:25.837999Z", 1723917025837),
        ("1970-01-01T00:00:00.001Z", 1),
    ],
)
def test_iso_ts_is_utc_milliseconds(raw: str, ms: int) -> None:
    assert parse_iso_ts(raw) == ms


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "missing"),
        ("", "bad_ts"),
        (1723917025837, "bad_ts"),
        ("2024-08-17 17:50:25Z", "bad_ts"),
        ("2024-08-17T17:50:25.837", "bad_ts"),
        ("2024-08-17T17:50:25.837+02:00", "bad_ts"),
        ("2024-02-30T00:00:00Z", "bad_ts"),
        ("2024-08-17T24:00:00Z", "bad_ts"),
        ("1970-01-01T00:00:00Z", "bad_ts"),
        ("\u0662024-08-17T17:50:25Z", "bad_ts"),
        ("2024-08-17T17:50:25.Z", "bad_ts"),
        ("2024-08-17T17:50:25.8370000000Z", "bad_ts"),
    ],
)
def test_bad_iso_ts_is_rejected(raw: object, reason: str) -> None:
    with pytest.raises(PriceRejected) as caught:
        parse_iso_ts(raw, symbol="FTM-USD")
    assert (caught.value.reason, caught.value.symbol) == (reason, "FTM-USD")
