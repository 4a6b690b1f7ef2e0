"""The liquidation event: one frozen type, written to and read from the events stream.

The stream entry's fields are flat strings (README, "Output: liquidation
events"); :meth:`LiquidationEvent.to_fields` writes them and
:meth:`LiquidationEvent.from_fields` reads them back, exactly: every Decimal
keeps the text it was written with, so ``from_fields(e.to_fields()) == e``.

The thirteen original fields come first, always, unchanged. After them, only
when set: ``balance`` (a CROSS account's balance at the decision) and
Orderly's partial liquidation (``tier``, ``transfer_qty``,
``liquidation_fee``, ``liquidator_fee``: JSON objects keyed by symbol, for
markets on the orderly model). An entry without them, written before they
existed, reads back with None.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from state.errors import LiqwatchError
from state.models import MarginMode, Position, Seq

# Stream fields as redis-py returns them (bytes) or as views hold them (str).
Fields = Mapping[bytes, bytes] | Mapping[str, str] | Mapping[bytes | str, bytes | str]


class EventError(LiqwatchError, ValueError):
    """An events-stream entry that is not a well-formed liquidation event."""


@dataclass(frozen=True, slots=True)
class EventLeg:
    """One liquidated position as the event lists it, with the mark it was priced at."""

    symbol: str
    margin_mode: MarginMode
    qty: Decimal
    entry_price: Decimal
    margin: Decimal | None
    mark_price: Decimal

    @classmethod
    def of(cls, position: Position, mark: Decimal) -> EventLeg:
        """List ``position`` priced at ``mark``."""
        return cls(
            position.symbol,
            position.margin_mode,
            position.qty,
            position.entry_price,
            position.margin,
            mark,
        )

    def to_json(self) -> dict[str, str]:
        """Return the leg as the ``positions`` array holds it."""
        out = {
            "symbol": self.symbol,
            "margin_mode": self.margin_mode.value,
            "qty": str(self.qty),
            "entry_price": str(self.entry_price),
        }
        if self.margin is not None:
            out["margin"] = str(self.margin)
        out["mark_price"] = str(self.mark_price)
        return out

    @classmethod
    def from_json(cls, item: Any) -> EventLeg:
        """Read one element of ``positions``; EventError if it is not a leg."""
        if not isinstance(item, dict):
            raise EventError(f"positions: must hold objects, got {item!r}")
        try:
            mode = MarginMode(item["margin_mode"])
            margin = item.get("margin")
            return cls(
                symbol=_str(item["symbol"], "positions.symbol"),
                margin_mode=mode,
                qty=decimal_field(item["qty"], "positions.qty"),
                entry_price=decimal_field(item["entry_price"], "positions.entry_price"),
                margin=None if margin is None else decimal_field(margin, "positions.margin"),
                mark_price=decimal_field(item["mark_price"], "positions.mark_price"),
            )
        except KeyError as exc:
            raise EventError(f"positions: a leg lacks {exc}") from None
        except ValueError as exc:
            raise EventError(f"positions: {exc}") from None


TIERS = ("low", "high")
TRANSFER_FIELDS = ("tier", "transfer_qty", "liquidation_fee", "liquidator_fee")


@dataclass(frozen=True, slots=True)
class Transfer:
    """Orderly's partial liquidation of one position: its tier, the quantity, the fees.

    ``qty`` is signed like the position; ``liquidation_fee`` is what the
    account pays on it, ``liquidator_fee`` the liquidator's part of that.
    """

    tier: str
    qty: Decimal
    liquidation_fee: Decimal
    liquidator_fee: Decimal


@dataclass(frozen=True, slots=True)
class LiquidationEvent:
    """One liquidation decision, as committed to the events stream."""

    id: str
    kind: MarginMode
    account: str
    symbol: str
    positions: tuple[EventLeg, ...]
    mark_price: Decimal
    marks: Mapping[str, Decimal]
    liq_price: Decimal | None
    equity: Decimal
    maintenance_margin: Decimal
    mark_ts: int
    detected_ts: int
    seq: Seq | None
    # Added fields (absent from entries written before them): a CROSS account's
    # balance, and per symbol Orderly's partial liquidation.
    balance: Decimal | None = None
    transfer: Mapping[str, Transfer] | None = None

    def to_fields(self) -> dict[str, str]:
        """Return the flat string fields of the stream entry, in the documented order."""
        fields = {
            "id": self.id,
            "kind": self.kind.value,
            "account": self.account,
            "symbol": self.symbol,
            "positions": orjson.dumps([leg.to_json() for leg in self.positions]).decode(),
            "mark_price": str(self.mark_price),
            "marks": orjson.dumps({s: str(p) for s, p in self.marks.items()}).decode(),
            "liq_price": "" if self.liq_price is None else str(self.liq_price),
            "equity": str(self.equity),
            "maintenance_margin": str(self.maintenance_margin),
            "mark_ts": str(self.mark_ts),
            "detected_ts": str(self.detected_ts),
            "seq": "" if self.seq is None else str(self.seq),
        }
        if self.balance is not None:
            fields["balance"] = str(self.balance)
        if self.transfer is not None:
            t = self.transfer
            fields["tier"] = _dumps({s: x.tier for s, x in t.items()})
            fields["transfer_qty"] = _dumps({s: str(x.qty) for s, x in t.items()})
            fields["liquidation_fee"] = _dumps({s: str(x.liquidation_fee) for s, x in t.items()})
            fields["liquidator_fee"] = _dumps({s: str(x.liquidator_fee) for s, x in t.items()})
        return fields

    @classmethod
    def from_fields(cls, fields: Fields) -> LiquidationEvent:
        """Read a stream entry's fields (bytes or str); EventError names what is wrong."""
        f = {text_of(k): text_of(v) for k, v in fields.items()}

        def get(name: str) -> str:
            try:
                return f[name]
            except KeyError:
                raise EventError(f"{name}: missing") from None

        kind_text = get("kind")
        try:
            kind = MarginMode(kind_text)
        except ValueError:
            raise EventError(f"kind: must be CROSS or ISOLATED, got {kind_text!r}") from None
        positions = json_field(get("positions"), "positions")
        if not isinstance(positions, list):
            raise EventError("positions: must be a JSON array")
        marks = json_field(get("marks"), "marks")
        if not isinstance(marks, dict):
            raise EventError("marks: must be a JSON object")
        liq_price, seq = get("liq_price"), get("seq")
        balance = f.get("balance")
        return cls(
            id=get("id"),
            kind=kind,
            account=get("account"),
            symbol=get("symbol"),
            positions=tuple(EventLeg.from_json(item) for item in positions),
            mark_price=decimal_field(get("mark_price"), "mark_price"),
            marks={_str(s, "marks"): decimal_field(p, f"marks.{s}") for s, p in marks.items()},
            liq_price=decimal_field(liq_price, "liq_price") if liq_price else None,
            equity=decimal_field(get("equity"), "equity"),
            maintenance_margin=decimal_field(get("maintenance_margin"), "maintenance_margin"),
            mark_ts=int_field(get("mark_ts"), "mark_ts"),
            detected_ts=int_field(get("detected_ts"), "detected_ts"),
            seq=_seq(seq) if seq else None,
            balance=None if balance is None else decimal_field(balance, "balance"),
            transfer=_transfer(f),
        )


def text_of(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise EventError(f"{name}: must be a string, got {value!r}")
    return value


def decimal_field(value: Any, name: str) -> Decimal:
    try:
        result = Decimal(_str(value, name))
    except InvalidOperation:
        raise EventError(f"{name}: not a decimal: {value!r}") from None
    if not result.is_finite():
        raise EventError(f"{name}: must be finite, got {value!r}")
    return result


def int_field(text: str, name: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise EventError(f"{name}: not a non-negative integer: {text[:80]!r}")
    return int(text)


def _seq(text: str) -> Seq:
    try:
        return Seq(text)
    except ValueError:
        raise EventError(f"seq: not canonical decimal digits: {text[:80]!r}") from None


def _dumps(value: dict[str, str]) -> str:
    return orjson.dumps(value).decode()


def _transfer(f: Mapping[str, str]) -> dict[str, Transfer] | None:
    """Read the partial-liquidation fields: all four or none."""
    present = [name for name in TRANSFER_FIELDS if name in f]
    if not present:
        return None
    if len(present) != len(TRANSFER_FIELDS):
        missing = [name for name in TRANSFER_FIELDS if name not in f]
        raise EventError(f"{missing[0]}: missing (the partial-liquidation fields go together)")
    objects = {}
    for name in TRANSFER_FIELDS:
        value = json_field(f[name], name)
        if not isinstance(value, dict):
            raise EventError(f"{name}: must be a JSON object")
        objects[name] = value
    symbols = list(objects["tier"])
    for name, value in objects.items():
        if list(value) != symbols:
            raise EventError(f"{name}: must name the symbols of tier, in its order")
    out = {}
    for symbol in symbols:
        tier = objects["tier"][symbol]
        if tier not in TIERS:
            raise EventError(f"tier.{symbol}: must be low or high, got {tier!r}")
        out[_str(symbol, "tier")] = Transfer(
            tier,
            decimal_field(objects["transfer_qty"][symbol], f"transfer_qty.{symbol}"),
            decimal_field(objects["liquidation_fee"][symbol], f"liquidation_fee.{symbol}"),
            decimal_field(objects["liquidator_fee"][symbol], f"liquidator_fee.{symbol}"),
        )
    return out


def json_field(text: str, name: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise EventError(f"{name}: not JSON: {exc}") from None
