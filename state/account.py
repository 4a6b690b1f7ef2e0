"""An account as Redis holds it: balance, seq, version, status, leverage settings, positions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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
        try:
            f = {k.decode(): v.decode() for k, v in fields.items()}
            leverage: dict[PositionKey, Decimal] = {}
            for name, value in f.items():
                if name.startswith("lev|"):
                    mode, _, symbol = name[4:].partition("|")
                    leverage[(MarginMode(mode), symbol)] = Decimal(value)
            stored: dict[PositionKey, StoredPosition] = {}
            for raw_name, raw in positions.items():
                mode, symbol = split_position_field(raw_name.decode())
                stored[(mode, symbol)] = _position(account, mode, symbol, raw)
            seq = f.get("seq")
            return cls(
                account=account,
                balance=Decimal(f.get("balance", "0")),
                seq=Seq(seq) if seq is not None else None,
                version=int(f.get("version", "0")),
                status=Status(f.get("status", Status.OPEN.value)),
                positions=stored,
                leverage=leverage,
            )
        except (ValueError, KeyError, InvalidOperation, MarginError, orjson.JSONDecodeError) as exc:
            raise StoreError(f"account {account!r} is unreadable in Redis: {exc}") from exc


def _position(account: str, mode: MarginMode, symbol: str, raw: bytes) -> StoredPosition:
    d = orjson.loads(raw)
    margin = d.get("margin")
    leverage = d.get("leverage")
    position = Position(
        account=account,
        symbol=symbol,
        margin_mode=mode,
        qty=Decimal(d["qty"]),
        entry_price=Decimal(d["entry_price"]),
        margin=Decimal(margin) if margin is not None else None,
        leverage=Decimal(leverage) if leverage is not None else None,
    )
    return StoredPosition(position, Status(d.get("status", "OPEN")), d.get("liq_id"))
