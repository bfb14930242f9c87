"""Markers: the catalog's keyset positions, signed and bound to the query that made them.

A marker names a position (creation, row id) in one query: the endpoint, its filters and the
caller's scope. It is HMAC-signed over that query, so a marker from another project's page, or
from another query, is refused (400) instead of being reinterpreted; the queries re-scope in
SQL as well, so even a forged position could only move within the caller's own rows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from cinder_zfs_ocfs2.api.queries import Position

_SIG_BYTES = 16


class InvalidMarker(ValueError):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class MarkerCodec:
    def __init__(self, key: bytes):
        if len(key) < 16:
            raise ValueError("marker key must be at least 16 bytes")
        self._key = key

    def _sign(self, query: str, payload: str) -> str:
        mac = hmac.new(self._key, f"{query}\n{payload}".encode(), hashlib.sha256)
        return _b64(mac.digest()[:_SIG_BYTES])

    def encode(self, query: str, position: Position) -> str:
        payload = _b64(json.dumps(list(position), separators=(",", ":")).encode())
        return f"{payload}.{self._sign(query, payload)}"

    def decode(self, query: str, marker: str) -> Position:
        payload, _, signature = marker.partition(".")
        if not payload or not hmac.compare_digest(signature.encode(),
                                                  self._sign(query, payload).encode()):
            raise InvalidMarker("invalid marker: it does not belong to this query")
        try:
            creation, row_id = json.loads(_unb64(payload))
            return int(creation), int(row_id)
        except (ValueError, TypeError):
            raise InvalidMarker("invalid marker") from None
