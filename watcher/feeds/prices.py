"""The strict grammar of a mark's fields, shared by every venue parser.

A price is either text (``"11794.15000000"``, Binance and most venues) or a
JSON number (Orderly). Text must be plain ASCII decimal notation; anything a
permissive ``Decimal(...)`` or ``float(...)`` would also accept (exponents,
underscores, whitespace, NaN, other scripts' digits) is refused with a reason.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from watcher.feeds.errors import PriceRejected, quote

MAX_PRICE_CHARS = 32
MAX_SIGNIFICANT_DIGITS = 24
# Accepted magnitudes are [1e-18, 1e18): anything outside is a unit error or an
# attack, never a market, and would make index scores meaningless.
MIN_ADJUSTED_EXPONENT = -18
MAX_ADJUSTED_EXPONENT = 17
MAX_SYMBOL_CHARS = 64
# Millisecond timestamps below 14 digits run to the year 5138; more is garbage.
MAX_TS_DIGITS = 14

# No leading zeros, no sign, no exponent, digits on both sides of one '.'.
_DECIMAL_TEXT = re.compile(r"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?", re.ASCII)
_SYMBOL_TEXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-./:]*", re.ASCII)
_TS_TEXT = re.compile(r"[1-9][0-9]*", re.ASCII)
# UTC only, as dYdX writes it: 2024-08-17T17:50:25.837Z. No offsets, no local times.
_ISO_TEXT = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?Z",
    re.ASCII,
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def parse_price(raw: object) -> Decimal:
    """Return ``raw`` as a positive, finite, bounded Decimal or raise PriceRejected."""
    if raw is None:
        raise PriceRejected("missing")
    # bool is an int subclass: without this, JSON true would be a price of 1.
    if isinstance(raw, bool):
        raise PriceRejected("bad_type", quote(raw))
    if isinstance(raw, str):
        return _from_text(raw)
    if isinstance(raw, int):
        return _from_text(str(raw))
    if isinstance(raw, float):
        return _from_float(raw)
    raise PriceRejected("bad_type", type(raw).__name__)


def _from_text(text: str) -> Decimal:
    if not text:
        raise PriceRejected("empty")
    if len(text) > MAX_PRICE_CHARS:
        raise PriceRejected("too_long", quote(text))
    # str.isdigit() and Decimal() both accept Arabic-Indic and other digits.
    if not text.isascii():
        raise PriceRejected("not_ascii", quote(text))
    lowered = text.lower()
    if "nan" in lowered:
        raise PriceRejected("nan", quote(text))
    if "inf" in lowered:
        raise PriceRejected("infinity", quote(text))
    if text.startswith("-"):
        raise PriceRejected("negative", quote(text))
    if "e" in lowered:
        raise PriceRejected("exponent", quote(text))
    if _DECIMAL_TEXT.fullmatch(text) is None:
        raise PriceRejected("syntax", quote(text))
    return _check_value(Decimal(text), text)


def _from_float(value: float) -> Decimal:
    if math.isnan(value):
        raise PriceRejected("nan")
    if math.isinf(value):
        raise PriceRejected("infinity", quote(value))
    if value < 0:
        raise PriceRejected("negative", quote(value))
    # repr() is the shortest text that round-trips, so the JSON number 2300.1
    # becomes Decimal("2300.1"), not the binary 2300.09999999999990905052982270717620849609375.
    # It may use an exponent (1e-05): that is the float's spelling, not the venue's.
    return _check_value(Decimal(repr(value)), value)


def _check_value(price: Decimal, raw: object) -> Decimal:
    if price == 0:
        raise PriceRejected("zero", quote(raw))
    if len(price.as_tuple().digits) > MAX_SIGNIFICANT_DIGITS:
        raise PriceRejected("too_many_digits", quote(raw))
    if not MIN_ADJUSTED_EXPONENT <= price.adjusted() <= MAX_ADJUSTED_EXPONENT:
        raise PriceRejected("out_of_range", quote(raw))
    return price


def parse_symbol(raw: object) -> str:
    """Return ``raw`` if it is a plausible ASCII venue symbol, else raise PriceRejected."""
    if raw is None:
        raise PriceRejected("missing", "symbol")
    if not isinstance(raw, str):
        raise PriceRejected("bad_symbol", quote(raw))
    if len(raw) > MAX_SYMBOL_CHARS or _SYMBOL_TEXT.fullmatch(raw) is None:
        raise PriceRejected("bad_symbol", quote(raw))
    return raw


def parse_venue_ts(raw: object, *, symbol: str | None = None) -> int:
    """Return ``raw`` as positive integer milliseconds (int or digit text), else raise."""
    if raw is None:
        raise PriceRejected("missing", "ts", symbol=symbol)
    if isinstance(raw, int) and not isinstance(raw, bool):
        if 0 < raw < 10**MAX_TS_DIGITS:
            return raw
    elif isinstance(raw, str) and len(raw) <= MAX_TS_DIGITS and _TS_TEXT.fullmatch(raw) is not None:
        return int(raw)
    raise PriceRejected("bad_ts", quote(raw), symbol=symbol)


def parse_iso_ts(raw: object, *, symbol: str | None = None) -> int:
    """Return a UTC ISO 8601 time (``2024-08-17T17:50:25.837Z``) as milliseconds, else raise."""
    if raw is None:
        raise PriceRejected("missing", "ts", symbol=symbol)
    match = _ISO_TEXT.fullmatch(raw) if isinstance(raw, str) else None
    if match is None:
        raise PriceRejected("bad_ts", quote(raw), symbol=symbol)
    year, month, day, hour, minute, second, fraction = match.groups()
    try:
        when = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError:
        raise PriceRejected("bad_ts", quote(raw), symbol=symbol) from None
    # Whole milliseconds: the digits past the third are below the resolution of venue_ts.
    ms = (when - _EPOCH) // _MS + int((fraction or "0")[:3].ljust(3, "0"))
    if not 0 < ms < 10**MAX_TS_DIGITS:
        raise PriceRejected("bad_ts", quote(raw), symbol=symbol)
    return ms
