"""A value that must never be shown: webhook URLs, HMAC keys, PagerDuty routing keys.

``repr``, ``str`` and formatting all give ``***``, so a Secret that slips
into a log line, an exception message or a dataclass's repr shows nothing.
Only :meth:`Secret.reveal` hands out the value, at the one place that puts
it on the wire.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

REDACTED = "***"


class Secret:
    """Hold a secret string; show it as ``***`` everywhere but :meth:`reveal`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the value: for the request that needs it, never for a message."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling would write the value out in the clear.
        raise TypeError("a Secret cannot be pickled")


def scrub(text: str, secrets: Iterable[Secret]) -> str:
    """Replace every secret's value in ``text`` with ``***`` (for text made by libraries)."""
    for secret in secrets:
        value = secret.reveal()
        if value:
            text = text.replace(value, REDACTED)
    return text
