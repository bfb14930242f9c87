"""The agent's wire format: JSON lines, one request and one reply each, matched by id.

    agent  -> {"type": "hello", "protocol": 1, "root": ..., "operations": [...], ...}
    client -> {"id": 7, "op": "snapshot", "args": {"names": [...]}}
    agent  -> {"id": 7, "ok": true, "result": null}
           |  {"id": 7, "ok": false, "error": {"code": "not_found", "message": ..., "name": ...}}

Replies may come out of order (the agent serves requests concurrently). A frame the agent cannot
take (not JSON, invalid UTF-8, NaN or Infinity, a number beyond MAX_NUMBER_DIGITS digits,
duplicate keys, nesting deeper than Python parses, longer than MAX_FRAME) gets an "invalid" reply
with the frame's id when one can be read from its start (``{"id": 7, ...``), else "id": null.

A request with "progress": true asks for progress frames while a long operation runs (only
send_receive reports any); a client that did not ask never gets one:

    agent  -> {"id": 7, "progress": {"bytes": 1073741824, "seconds": 35}}   (zero or more)
    agent  -> {"id": 7, "ok": true, "result": {...}}                       (then the reply)

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
import math
import re

PROTOCOL_VERSION = 1
MAX_FRAME = 1024 * 1024  # bytes per request line
MAX_NUMBER_DIGITS = 20   # any size or count fits in 20 digits; 10**4000 is not a request
MAX_ID = 2**63
MAX_MESSAGE = 4096       # characters of an error message
_LEADING_ID = re.compile(rb'\s*\{\s*"id"\s*:\s*(-?[0-9]{1,19}|"[A-Za-z0-9_.:-]{1,64}")\s*[,}]')
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
    """One line, keys in the order given: requests and replies put "id" first, so that a frame
    too long to parse can still be answered by its id (peek_id)."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def _no_constants(name: str):
    raise ValueError(f"{name} is not a number the agent takes")


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise ValueError(f"a number of {len(text)} digits")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is out of range")
    return value


def _unique_keys(pairs: list) -> dict:
    message = dict(pairs)
    if len(message) != len(pairs):
        seen = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"duplicate key {dup[:40]!r}")
    return message


def decode(line: bytes) -> dict:
    """Parse one frame; ValueError saying why when it is not a JSON object the agent takes."""
    try:
        text = line.decode("utf-8") if isinstance(line, bytes) else line
        message = json.loads(text, parse_constant=_no_constants, parse_int=_int,
                             parse_float=_float, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(message, dict):
        raise ValueError("a frame must be a JSON object")
    return message


def peek_id(line: bytes):
    """The id at the start of a frame that cannot be parsed whole (oversized, malformed), so
    its caller fails at once instead of at its timeout; None when there is none to read."""
    match = _LEADING_ID.match(line)
    if match is None:
        return None
    try:
        return json.loads(match.group(1))
    except ValueError:
        return None


def valid_id(request_id) -> bool:
    if isinstance(request_id, bool):
        return False
    if isinstance(request_id, int):
        return abs(request_id) <= MAX_ID
    return isinstance(request_id, str) and 0 < len(request_id) <= 64


def progress(request_id, info: dict) -> dict:
    return {"id": request_id, "progress": info}


def ok(request_id, result) -> dict:
    return {"id": request_id, "ok": True, "result": result}


def error(request_id, code: str, message: str, name: str | None = None) -> dict:
    if len(message) > MAX_MESSAGE:  # an error never echoes a whole hostile frame back
        message = message[:MAX_MESSAGE] + f"... ({len(message)} characters)"
    return {"id": request_id, "ok": False,
            "error": {"code": code, "message": message, "name": name}}
