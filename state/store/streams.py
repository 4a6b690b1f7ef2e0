"""Flatten a redis-py XREAD/XREADGROUP reply into (entry id, fields) pairs."""

from __future__ import annotations

from collections.abc import Mapping

Fields = Mapping[bytes | str, bytes | str]
Entry = tuple[bytes | str, Fields | None]


def stream_entries(response: object) -> list[Entry]:
    """Return every entry of a RESP2 (list) or RESP3 (dict) stream-read reply, in order.

    Fields are None for an entry deleted since it was delivered (a pending
    entry read again after XDEL or XTRIM).
    """
    if not response:
        return []
    if isinstance(response, Mapping):
        streams = list(response.values())
    elif isinstance(response, list):
        streams = [stream[1] for stream in response]
    else:
        raise TypeError(f"unexpected stream reply {type(response).__name__}")
    entries: list[Entry] = []
    for stream in streams:
        for item in stream:
            entry_id, fields = item[0], item[1]
            if not isinstance(entry_id, bytes | str):
                raise TypeError(f"unexpected stream entry id {entry_id!r}")
            if fields is not None and not isinstance(fields, Mapping):
                raise TypeError(f"unexpected stream entry fields {fields!r}")
            entries.append((entry_id, fields))
    return entries
