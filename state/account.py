"""An account as Redis holds it: balance, seq, version, status, leverage settings, positions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum

import orjson

from state.errors import MarginError, StoreError
from state.keys import split_position_field
from state.models import ZERO, MarginMode, Position, Seq

PositionKey = tuple[MarginMode, str]


class Status(StrEnum):
    """OPEN: watched and indexed. LIQUIDATING: claimed, out of the index, awaiting input."""

    OPEN = "OPEN"
    LIQUIDATING = "LIQUIDATING"


@dataclass(frozen=True, slots=True)
class StoredPosition:
    """A position with its watch status and, once claimed, its liquidation id."""

    position: Position
    status: Status = Status.OPEN
    liq_id: str | None = None

    def to_json(self) -> str:
        """Serialize for the positions hash."""
        p = self.position
        data: dict[str, str] = {"qty": str(p.qty), "entry_price": str(p.entry_price)}
        if p.margin is not None:
            data["margin"] = str(p.margin)
        if p.leverage is not None:
            data["leverage"] = str(p.leverage)
        data["status"] = self.status.value
        if self.liq_id is not None:
            data["liq_id"] = self.liq_id
        return orjson.dumps(data).decode()


@dataclass(frozen=True, slots=True)
class AccountState:
    """Everything liqwatch keeps of one account, read in one round trip."""

    account: str
    balance: Decimal
    seq: Seq | None
    version: int
    status: Status
    positions: Mapping[PositionKey, StoredPosition]
    leverage: Mapping[PositionKey, Decimal]
    # Near-liquidation warning state per part: ``warn|C`` (the cross account)
    # or ``warn|I|<symbol>`` -> the stored text (state.warnings reads it).
    warnings: Mapping[str, str] = field(default_factory=dict)

    @property
    def cross_legs(self) -> list[Position]:
        """The account's cross positions, in a stable order."""
        return [
            sp.position
            for (mode, _), sp in sorted(self.positions.items())
            if mode is MarginMode.CROSS
        ]

    @property
    def open_isolated(self) -> list[Position]:
        """The account's ISOLATED positions still watched (OPEN), in a stable order."""
        return [
            sp.position
            for (mode, _), sp in sorted(self.positions.items())
            if mode is MarginMode.ISOLATED and sp.status is Status.OPEN
        ]

    @classmethod
    def empty(cls, account: str) -> AccountState:
        """An account that Redis does not hold yet."""
        return cls(account, ZERO, None, 0, Status.OPEN, {}, {})

    @classmethod
    def from_redis(
        cls, account: str, fields: Mapping[bytes, bytes], positions: Mapping[bytes, bytes]
    ) -> AccountState:
        """Rebuild an account from its two hashes; StoreError if they are unreadable."""
        flat_fields = [x for pair in fields.items() for x in pair]
        flat_positions = [x for pair in positions.items() for x in pair]
        return cls.from_flat(account, flat_fields, flat_positions)

    @classmethod
    def from_flat(
        cls, account: str, fields: Sequence[bytes], positions: Sequence[bytes]
    ) -> AccountState:
        """Rebuild an account from its two hashes as HGETALL's flat arrays; StoreError if bad."""
        try:
            f = {fields[i].decode(): fields[i + 1].decode() for i in range(0, len(fields), 2)}
            leverage: dict[PositionKey, Decimal] = {}
            warnings: dict[str, str] = {}
            for name, value in f.items():
                if name.startswith("lev|"):
                    mode, _, symbol = name[4:].partition("|")
                    leverage[(MarginMode(mode), symbol)] = Decimal(value)
                elif name.startswith("warn|"):
                    warnings[name] = value
            stored: dict[PositionKey, StoredPosition] = {}
            for i in range(0, len(positions), 2):
                mode, symbol = split_position_field(positions[i].decode())
                stored[(mode, symbol)] = _position(account, mode, symbol, positions[i + 1])
            seq = f.get("seq")
            return cls(
                account=account,
                balance=Decimal(f.get("balance", "0")),
                seq=Seq(seq) if seq is not None else None,
                version=int(f.get("version", "0")),
                status=Status(f.get("status", Status.OPEN.value)),
                positions=stored,
                leverage=leverage,
                warnings=warnings,
            )
        except (ValueError, KeyError, InvalidOperation, MarginError, orjson.JSONDecodeError) as exc:
            raise StoreError(f"account {account!r} is unreadable in Redis: {exc}") from exc


_STATUS = {s.value: s for s in Status}


def _position(account: str, mode: MarginMode, symbol: str, raw: bytes) -> StoredPosition:
    # The hot path of reading a cascade's candidates: the checks Position's
    # constructor makes, inline, on what the store wrote.
    d = orjson.loads(raw)
    qty, entry = Decimal(d["qty"]), Decimal(d["entry_price"])
    margin, leverage = d.get("margin"), d.get("leverage")
    m = None if margin is None else Decimal(margin)
    lev = None if leverage is None else Decimal(leverage)
    if not (qty.is_finite() and entry.is_finite() and entry > 0):
        raise MarginError(f"{symbol}: qty {qty} and entry_price {entry} must be finite, entry > 0")
    if (m is None) is (mode is MarginMode.ISOLATED) or (m is not None and not m >= 0):
        raise MarginError(f"{symbol}: margin {m} does not fit a {mode.value} position")
    if lev is not None and not (lev.is_finite() and lev > 0):
        raise MarginError(f"{symbol}: leverage must be > 0, got {lev}")
    position = Position.trusted(account, symbol, mode, qty, entry, m, lev)
    return StoredPosition(position, _STATUS[d.get("status", "OPEN")], d.get("liq_id"))
