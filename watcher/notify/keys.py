"""The notifier's own Redis keys, in the shard of the events stream they follow.

Both carry the shard's tag, so an acknowledgement and the progress it
clears, or a dead letter and the progress it records, are one transaction:

- ``P:{s}:notify:dead`` stream: entries a sink could not take, with fields
  ``entry_id``, ``id`` (the event id), ``symbol``, ``sink``, ``group``,
  ``reason``, ``tries`` and ``summary`` (``1`` when the entry was folded
  into a summary message).
- ``P:{s}:notify:<group>:sent`` hash: ``<entry_id>|<sink>`` -> ``1`` for each
  sink that already has an entry that other sinks still owe; cleared with
  the entry's XACK. A redelivered entry skips the sinks named here.
"""

from __future__ import annotations

from state.keys import Keys


def dead_letters(keys: Keys) -> str:
    """Stream of the entries a sink gave up on, with the sink and the reason."""
    return f"{keys.base}:notify:dead"


def sent(keys: Keys, group: str) -> str:
    """Hash of the sinks that already have an entry not yet acknowledged."""
    return f"{keys.base}:notify:{group}:sent"


def sent_field(entry_id: str, sink: str) -> str:
    """Name one (entry, sink) pair in the sent hash."""
    return f"{entry_id}|{sink}"
