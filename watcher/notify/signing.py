"""The generic webhook's signature: HMAC-SHA256 over the timestamp and the body.

Each request carries ``X-Liqwatch-Timestamp`` (Unix seconds, the moment of
that attempt) and ``X-Liqwatch-Signature: sha256=<hex>``, the HMAC-SHA256,
keyed by the sink's ``secret``, of ``<timestamp>.`` followed by the raw
body bytes. Signing the timestamp with the body lets a receiver refuse a
replayed request: it recomputes the HMAC over the bytes it received,
compares in constant time and rejects a timestamp too far from its clock.
"""

from __future__ import annotations

import hashlib
import hmac

from watcher.notify.secret import Secret

SIGNATURE_HEADER = "X-Liqwatch-Signature"
TIMESTAMP_HEADER = "X-Liqwatch-Timestamp"
SCHEME = "sha256="


def sign(secret: Secret, timestamp: int, body: bytes) -> str:
    """Return the signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.reveal().encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return SCHEME + mac.hexdigest()


def verify(
    secret: Secret, timestamp: str, signature: str, body: bytes, *, now: int, tolerance: int = 300
) -> bool:
    """Whether a received request is signed with ``secret`` within ``tolerance`` s of ``now``."""
    if not (timestamp.isascii() and timestamp.isdigit()):
        return False
    if abs(now - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)
