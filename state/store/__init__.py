"""The Redis store: the only part of ``state`` that does I/O.

Every Lua script is a file under ``lua/``; every key name comes from
:mod:`state.keys`.
"""

from state.store.store import CommitResult, Store, TickRow

__all__ = ["CommitResult", "Store", "TickRow"]
