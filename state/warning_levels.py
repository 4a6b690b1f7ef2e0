"""Near-liquidation warning levels: the multiples of maintenance, and the models scaled by them.

What :class:`state.rules.Rules` carries for warnings; :mod:`state.warnings`
plans with it. Pure values, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from state.errors import MarginError
from state.models import Bracket, BracketsModel, FlatModel, MaintenanceModel, OrderlyModel


def scaled(model: MaintenanceModel, factor: Decimal) -> MaintenanceModel:
    """The same maintenance model with every requirement multiplied by ``factor``.

    MarginError when the scaled rates leave what the model allows (a rate of
    1 or more, or an orderly base rate above 0.5).
    """
    if isinstance(model, FlatModel):
        return FlatModel(model.rate * factor)
    if isinstance(model, BracketsModel):
        return BracketsModel(
            tuple(Bracket(b.floor, b.rate * factor, b.amount * factor) for b in model.brackets)
        )
    # n * max(f*mmr, f*mmr / (f*imr) * (f*factor) * n**0.8) = f * MM(n).
    return OrderlyModel(model.base_imr * factor, model.base_mmr * factor, model.imr_factor * factor)


@dataclass(frozen=True, slots=True)
class WarningRules:
    """The levels and the scaled models the warning triggers are computed with."""

    level: Decimal
    rearm: Decimal
    max_len: int
    warn_models: Mapping[str, MaintenanceModel]
    rearm_models: Mapping[str, MaintenanceModel]

    @classmethod
    def build(
        cls,
        models: Mapping[str, MaintenanceModel],
        level: Decimal,
        rearm: Decimal,
        max_len: int = 100_000,
    ) -> WarningRules:
        """Check the levels and scale every market's model; MarginError names what is wrong."""
        if not (level.is_finite() and level > 1):
            raise MarginError(f"level must be > 1 (a multiple of maintenance), got {level}")
        if not (rearm.is_finite() and rearm >= level):
            raise MarginError(f"rearm must be >= level ({level}), got {rearm}")
        if max_len < 1:
            raise MarginError(f"max_len must be >= 1, got {max_len}")
        scaled_models = {}
        for name, factor in (("level", level), ("rearm", rearm)):
            out = {}
            for symbol, model in models.items():
                try:
                    out[symbol] = scaled(model, factor)
                except MarginError as exc:
                    raise MarginError(
                        f"{name} {factor}: {symbol} maintenance scaled by it is invalid: {exc}"
                    ) from None
            scaled_models[name] = out
        return cls(level, rearm, max_len, scaled_models["level"], scaled_models["rearm"])
