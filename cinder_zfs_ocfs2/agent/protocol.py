"""The agent's wire format: JSON lines, one request and one reply each, matched by id.

    agent  -> {"type": "hello", "protocol": 1, "root": ..., "operations": [...], ...}
    client -> {"id": 7, "op": "snapshot", "args": {"names": [...]}}
    agent  -> {"id": 7, "ok": true, "result": null}
           |  {"id": 7, "ok": false, "error": {"code": "not_found", "message": ..., "name": ...}}

Replies may come out of order (the agent serves requests concurrently). A frame that cannot be
parsed gets a reply with "id": null.

Volume data (images into and out of volumes) does not go through JSON: a stream operation takes
a channel of its own and must be its first request. The agent answers the request with a
go-ahead carrying the volume's size, then raw bytes flow, then the channel ends:

    write_volume {"name", "size"} -> go-ahead {"size": volsize}; client sends `size` raw bytes;
                                     agent -> {"ok": true, "result": {"bytes": n}} (after fsync)
    read_volume  {"name"}         -> go-ahead {"size": volsize}; agent sends `volsize` raw bytes

A refused request gets an error reply instead of the go-ahead. Standard library only.
"""

from __future__ import annotations

import json

PROTOCOL_VERSION = 1
MAX_FRAME = 1024 * 1024  # bytes per line, either direction
STREAM_OPS = frozenset({"write_volume", "read_volume"})
STREAM_CHUNK = 1024 * 1024


def copy_exact(source, sink, size: int) -> int:
    """Copy ``size`` bytes from ``source.read`` to ``sink.write``; returns what was copied
    (less than ``size`` only when the source ended early)."""
    copied = 0
    while copied < size:
        chunk = source.read(min(STREAM_CHUNK, size - copied))
        if not chunk:
            break
        sink.write(chunk)
        copied += len(chunk)
    return copied


def encode(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":"), sort_keys=True).encode() + b"\n"


def decode(line: bytes) -> dict:
    """Parse one frame; ValueError when it is not a JSON object."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("a frame must be a JSON object")
    return message


def ok(request_id, result) -> dict:
    return {"id": request_id, "ok": True, "result": result}


def error(request_id, code: str, message: str, name: str | None = None) -> dict:
    return {"id": request_id, "ok": False,
            "error": {"code": code, "message": message, "name": name}}
