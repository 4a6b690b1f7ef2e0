"""The running liqwatch's version, as installed (``liqwatch --version``, the heartbeat, metrics)."""

from __future__ import annotations

import functools
from importlib import metadata


@functools.cache
def version() -> str:
    """The installed liqwatch version ("unknown" when run from a bare checkout)."""
    try:
        return metadata.version("liqwatch")
    except metadata.PackageNotFoundError:
        return "unknown"
