"""The input grammar: seqs of any size, and nothing but InputError out of any bytes at all."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal

import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from state.errors import InputError
from state.inputs import BalanceUpdate, LoadError, parse_input, validate_lines
from state.models import FlatModel, Market, Seq

ETH = "PERP_ETH_USDC"
MARKETS = {ETH: Market(ETH, FlatModel(Decimal("0.006")))}
FIELDS = ["type", "account", "symbol", "margin_mode", "qty", "entry_price", "margin", "seq"]
FIELDS += ["balance", "leverage"]


def balance(seq: object) -> bytes:
    return json.dumps({"type": "balance", "account": "A", "balance": "1", "seq": seq}).encode()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(balance("9" * 5000), "9" * 5000, id="5000-digit-string"),
        pytest.param(
            b'{"type":"balance","account":"A","balance":"1","seq":' + b"9" * 5000 + b"}",
            "9" * 5000,
            id="5000-digit-number",
        ),
        pytest.param(balance("007"), "7", id="leading-zeros"),
        pytest.param(balance(0), "0", id="zero"),
        pytest.param(balance(2**70), str(2**70), id="past-64-bits"),
    ],
)
def test_a_seq_of_any_size_is_kept_exactly(raw: bytes, expected: str) -> None:
    """A seq is its digits, whatever their number: no int() conversion, no limit."""
    update = parse_input(raw, MARKETS)
    assert isinstance(update, BalanceUpdate)
    assert update.seq == Seq(expected)


@pytest.mark.parametrize(
    "value", ["-1", "1.0", "1e3", "", " 1", "\u0663", True, None, [1], 1.5, -1, "0x10"]
)
def test_a_seq_that_is_not_a_non_negative_integer_is_refused(value: object) -> None:
    """Only ASCII digits or a JSON integer make a seq."""
    with pytest.raises(InputError, match="seq"):
        parse_input(balance(value), MARKETS)


@settings(max_examples=300, deadline=None)
@seed(20261127)
@given(st.integers(min_value=0, max_value=10**40), st.integers(min_value=0, max_value=10**40))
def test_seqs_order_as_the_integers_they_spell(a: int, b: int) -> None:
    """Comparing two seqs' digits gives the order of their integers."""
    assert (Seq.of(a) < Seq.of(b)) == (a < b)
    assert (Seq.of(a) == Seq.of(b)) == (a == b)


def test_a_byte_order_mark_is_refused() -> None:
    """JSON's decoder would skip a UTF-8 BOM; the input grammar does not."""
    with pytest.raises(InputError, match="byte order mark"):
        parse_input(b"\xef\xbb\xbf" + balance(1), MARKETS)
    with pytest.raises(InputError, match="byte order mark"):
        parse_input("\ufeff" + balance(1).decode(), MARKETS)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(["CROSS", "ISOLATED", "balance", "position", "leverage", ETH, "1e9999"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
MESSAGES = st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=len(FIELDS))


@settings(max_examples=1500, deadline=None)
@seed(20261127)
@given(st.binary(max_size=300) | MESSAGES.map(lambda m: json.dumps(m).encode()))
def test_fuzz_only_input_error_escapes(raw: bytes) -> None:
    """Whatever a message holds, the answer is an update or an InputError (scenario 14)."""
    with contextlib.suppress(InputError):
        parse_input(raw, MARKETS)


def test_validate_lines_numbers_every_hostile_line() -> None:
    """A file of messages: each bad line named by its number, with its reason."""
    lines = [balance(1), b"\xef\xbb\xbf{}", b"[" * 5000, b"\xff", balance("9" * 5000)]
    with pytest.raises(LoadError) as info:
        validate_lines(lines, MARKETS, source="f")
    assert [e.split(": ")[0] for e in info.value.errors] == ["f:2", "f:3", "f:4"]
