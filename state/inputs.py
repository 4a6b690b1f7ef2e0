"""Parse and validate input-stream messages (README, "Input"). Pure: no I/O.

Every rejection is an :class:`InputError` whose ``reason`` goes to the
dead-letter stream; nothing of a rejected message is ever applied.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from state.errors import InputError, LiqwatchError
from state.models import MarginMode, Market, Seq

ACCOUNT_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
MAX_MESSAGE_BYTES = 64 * 1024
MAX_DECIMAL_CHARS = 64
# Magnitudes money and sizes can take: from 1e-18 up to below 1e19.
MIN_EXPONENT = -18
MAX_EXPONENT = 18
# ``validate_lines`` lists this many bad lines, then counts the rest.
MAX_ERRORS = 20


@dataclass(frozen=True, slots=True)
class BalanceUpdate:
    """Set the account's cross collateral."""

    account: str
    seq: Seq
    balance: Decimal


@dataclass(frozen=True, slots=True)
class PositionUpdate:
    """Open, change or (qty 0) close one position."""

    account: str
    seq: Seq
    symbol: str
    margin_mode: MarginMode
    qty: Decimal
    entry_price: Decimal | None
    margin: Decimal | None
    leverage: Decimal | None


@dataclass(frozen=True, slots=True)
class LeverageUpdate:
    """Set the leverage of (symbol, margin mode) for later isolated margins."""

    account: str
    seq: Seq
    symbol: str
    margin_mode: MarginMode
    leverage: Decimal


InputMessage = BalanceUpdate | PositionUpdate | LeverageUpdate


def parse_input(raw: bytes | str, markets: Mapping[str, Market]) -> InputMessage:
    """Parse one ``msg`` field into a validated update, or raise InputError with the reason.

    Nothing else escapes: whatever a message holds, the answer is an update
    or an InputError (README, "Input").
    """
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InputError(f"message larger than {MAX_MESSAGE_BYTES} bytes")
    if raw[:3] == b"\xef\xbb\xbf" or raw[:1] == "\ufeff":
        # json.loads would skip it; a producer that sends one sends something else too.
        raise InputError("not JSON: starts with a byte order mark")
    try:
        # JSON numbers become Decimal exactly (ints too: a seq may have any
        # number of digits, past what int() converts); floats would lose digits.
        data = _loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"not JSON: {_short(exc)}") from None
    except RecursionError:
        raise InputError("not JSON: nested too deeply") from None
    try:
        return _update(data, markets)
    except InputError:
        raise
    except (ArithmeticError, ValueError, TypeError, RecursionError) as exc:
        # A value our checks let through and the conversion then refused.
        raise InputError(f"cannot be read: {_short(exc)}") from None


def _loads(raw: bytes | str) -> Any:
    """Parse JSON with every number exact: orjson first, the standard library when it must.

    orjson is five times faster, and exact for strings and integers up to
    64 bits, what producers send; a message holding a float (orjson would
    round it), an integer past 64 bits, or anything orjson refuses is parsed
    again with numbers as Decimal, so both parsers accept the same messages.
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    else:
        if not isinstance(data, dict) or not any(type(v) is float for v in data.values()):
            return data
    return json.loads(raw, parse_float=Decimal, parse_int=Decimal, parse_constant=_no_constant)


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."


def _update(data: Any, markets: Mapping[str, Market]) -> InputMessage:
    if not isinstance(data, dict):
        raise InputError("not a JSON object")
    kind = data.get("type")
    account = _account(data)
    seq = _seq(data)
    if kind == "balance":
        return BalanceUpdate(account, seq, _decimal(data, "balance"))
    if kind == "position":
        return _position(data, account, seq, markets)
    if kind == "leverage":
        symbol, mode = _symbol_and_mode(data, markets)
        return LeverageUpdate(account, seq, symbol, mode, _leverage(data))
    raise InputError(f"type: must be balance, position or leverage, got {_clip(kind)}")


def _position(
    data: dict[str, Any], account: str, seq: Seq, markets: Mapping[str, Market]
) -> PositionUpdate:
    symbol, mode = _symbol_and_mode(data, markets)
    qty = _decimal(data, "qty")
    entry = margin = leverage = None
    if qty != 0:
        entry = _decimal(data, "entry_price")
        if entry <= 0:
            raise InputError(f"entry_price: must be > 0, got {entry}")
        leverage = _optional_leverage(data)
        if "margin" in data and data["margin"] is not None:
            if mode is not MarginMode.ISOLATED:
                raise InputError("margin: only an ISOLATED position has a margin of its own")
            margin = _decimal(data, "margin")
            if margin < 0:
                raise InputError(f"margin: must be >= 0, got {margin}")
    return PositionUpdate(account, seq, symbol, mode, qty, entry, margin, leverage)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def _account(data: dict[str, Any]) -> str:
    account = data.get("account")
    if not isinstance(account, str) or not ACCOUNT_RE.fullmatch(account):
        raise InputError(
            f"account: must be 1-128 characters of A-Z a-z 0-9 _ . : -, got {_clip(account)}"
        )
    return account


def _seq(data: dict[str, Any]) -> Seq:
    seq = data.get("seq")
    # Any size (Orderly's pass 2^53): a string of digits, or a JSON integer
    # (an int, or past 64 bits a Decimal with exponent 0; 5.0 or 1e3 are not).
    if type(seq) is int:
        if seq >= 0:
            return Seq.of(seq)
    elif isinstance(seq, Decimal) and seq.is_finite() and seq.as_tuple().exponent == 0:
        if not seq.is_signed():
            return Seq.of(format(seq, "f"))
    elif isinstance(seq, str) and seq.isascii() and seq.isdigit():
        return Seq.of(seq)
    raise InputError(f"seq: must be a non-negative integer, got {_clip(seq)}")


def _clip(value: Any) -> str:
    # A JSON number is a Decimal here: show it as it was written.
    text = str(value) if isinstance(value, Decimal) else repr(value)
    return text if len(text) <= 80 else text[:80] + "..."


def _decimal(data: dict[str, Any], name: str) -> Decimal:
    if name not in data:
        raise InputError(f"{name}: missing")
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise InputError(f"{name}: must be a decimal string or number, got {_clip(value)}")
    text = str(value)
    if len(text) > MAX_DECIMAL_CHARS or not text.isascii():
        raise InputError(f"{name}: not a plain decimal: {text[:80]!r}")
    try:
        result = Decimal(text.strip()) if text == text.strip() else None
    except InvalidOperation:
        result = None
    if result is None or not result.is_finite() or "_" in text:
        raise InputError(f"{name}: not a finite decimal: {_clip(text)}")
    if result and not MIN_EXPONENT <= result.adjusted() <= MAX_EXPONENT:
        # 1e999999999 is a finite Decimal, and poison for the margin math.
        raise InputError(
            f"{name}: out of range (1e{MIN_EXPONENT} to 1e{MAX_EXPONENT}): {_clip(text)}"
        )
    return result


def _optional_leverage(data: dict[str, Any]) -> Decimal | None:
    return None if data.get("leverage") is None else _leverage(data)


def _leverage(data: dict[str, Any]) -> Decimal:
    leverage = _decimal(data, "leverage")
    if not 1 <= leverage <= 1000:
        raise InputError(f"leverage: must be in [1, 1000], got {leverage}")
    return leverage


def _symbol_and_mode(data: dict[str, Any], markets: Mapping[str, Market]) -> tuple[str, MarginMode]:
    symbol = data.get("symbol")
    if not isinstance(symbol, str) or symbol not in markets:
        raise InputError(f"symbol: not a configured market: {_clip(symbol)}")
    mode = data.get("margin_mode")
    if mode is None:
        return symbol, markets[symbol].default_margin_mode
    try:
        return symbol, MarginMode(mode)
    except ValueError:
        raise InputError(f"margin_mode: must be CROSS or ISOLATED, got {_clip(mode)}") from None


# --- files of messages -------------------------------------------------------------


class LoadError(LiqwatchError):
    """Some lines are not valid input; ``errors`` lists the first ones, ``count`` all of them."""

    def __init__(self, errors: list[str], count: int | None = None) -> None:
        self.errors = errors
        self.count = len(errors) if count is None else count
        super().__init__(f"{self.count} bad line(s); first: {errors[0] if errors else '-'}")


def validate_lines(
    lines: Iterable[bytes | str],
    markets: Mapping[str, Market],
    *,
    source: str = "<input>",
    max_errors: int = MAX_ERRORS,
) -> list[bytes]:
    """Return every non-blank line as a message, or raise LoadError naming the bad ones.

    Lines are numbered from 1, blank ones included; their line terminator is
    dropped and nothing else is changed.
    """
    messages: list[bytes] = []
    errors: list[str] = []
    count = 0
    for number, line in enumerate(lines, start=1):
        raw = line.encode() if isinstance(line, str) else line
        raw = raw.removesuffix(b"\n").removesuffix(b"\r")
        if not raw.strip():
            continue
        try:
            parse_input(raw, markets)
        except InputError as exc:
            reason = exc.reason
        except RecursionError:
            # json.loads gives up on deep nesting; the line is bad, not the loader.
            reason = "not JSON: nested too deeply"
        else:
            messages.append(raw)
            continue
        count += 1
        if len(errors) < max_errors:
            errors.append(f"{source}:{number}: {reason}")
    if count:
        raise LoadError(errors, count)
    return messages
