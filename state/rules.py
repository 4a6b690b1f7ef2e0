"""The rules a decision is taken under: keys, markets, the equality rule, id lifetime, warnings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from state.keys import Keys
from state.models import MaintenanceModel, Market
from state.warning_levels import WarningRules


@dataclass(frozen=True, slots=True)
class Rules:
    """What planning and deciding need besides the account."""

    keys: Keys
    markets: Mapping[str, Market]
    at_equality: bool = False
    liq_id_ttl: int = 7 * 24 * 3600
    # Near-liquidation warnings (None: off, and no warning key is written).
    warnings: WarningRules | None = None
    models: Mapping[str, MaintenanceModel] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", {s: m.maintenance for s, m in self.markets.items()})
