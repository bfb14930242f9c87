"""What a request may make the storage node do beyond naming a dataset: the agent's allow-list.

The agent is a security boundary (DESIGN.md section 9): whatever it accepts, a bug in
cinder-volume or a stolen key can do as root on the node. Names are confined to the root
dataset(s) by zfs.names.Confinement; this module confines everything else a request carries:

- which native properties each operation may set, and to which values (SETTABLE, one table);
- user properties: only the driver's own namespace, short printable values;
- hold tags, property names, booleans, timeouts and the argument shapes of every request;
- ZFS's own length limits, checked here because libzfs_core does not check all of them before
  the kernel does: a hold tag of 100,000 characters panics OpenZFS 2.1 in syncing context
  (the kernel builds "<snapshot>@<tag>" as an nvpair name, which cannot exceed 32 KiB) and
  takes every pool of the node down. Nothing longer than ZFS accepts may reach libzfs_core;
- how long each child process may run (DEADLINES).

Nothing a request supplies may start with "-" where it lands on a command line: a tag or a
property name that looks like an option would be parsed as one (`zfs hold -r ...`).
Every refusal is an errors.InvalidArgument naming what was refused. Standard library only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from cinder_zfs_ocfs2.zfs import errors

# -- ZFS's own limits (OpenZFS include/sys/fs/zfs.h, include/sys/zap.h) ----------------------
ZFS_MAX_DATASET_NAME_LEN = 256  # with the NUL: a full name, snapshot part included, <= 255
ZAP_MAXNAMELEN = 256            # property names (and hold tags, which are ZAP keys) <= 255
ZAP_MAXVALUELEN = 8192          # a user property's value, in bytes with the NUL
MAX_TAG_LEN = ZAP_MAXNAMELEN - 1
MAX_PROPERTY_NAME_LEN = ZAP_MAXNAMELEN - 1
# What the driver stores in user properties are ids, backend names and markers: far below
# ZFS's limit, and a listing of thousands of snapshots carries every one of them.
MAX_USER_VALUE_LEN = 1024
MAX_PROPERTIES = 32             # per request; the driver sets at most a handful at once
MAX_SIZE = 2**63 - 1            # ZFS sizes are unsigned 64-bit; `zfs` parses them as int64
MAX_WAIT_FOR_DEVICE = 120.0     # seconds; udev that takes longer is broken, not slow

USER_NAMESPACE = "org.openstack.cinder:"
# After the namespace: what the driver's own property names look like (volume_id, hidden, ...).
_USER_SUFFIX = re.compile(r"[a-z0-9_]{1,64}")
# Readable property names (get/list): native ones, user ones, userquota@... ZFS's characters.
_READABLE = re.compile(r"[a-z][a-z0-9_.:@-]*")
# Hold tags: printable, no separators ZFS or our listings use, never an option.
_TAG = re.compile(r"[A-Za-z0-9_.:][A-Za-z0-9_.:-]*")

# zfs(8) compression values (OpenZFS 2.1 zfs_prop.c compress_table): every one a `zfs get`
# can report, so a volume's current setting can always be carried to a copy of it.
COMPRESSION = frozenset(
    ["on", "off", "lzjb", "gzip", "zle", "lz4", "zstd", "zstd-fast"]
    + [f"gzip-{i}" for i in range(1, 10)]
    + [f"zstd-{i}" for i in range(1, 20)]
    + [f"zstd-fast-{i}" for i in [*range(1, 11), *range(20, 101, 10), 500, 1000]])


def show(value, limit: int = 80) -> str:
    """repr() cut short: a refusal must not echo a megabyte back."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def _one_of(allowed) -> Callable[[str, str], str]:
    allowed = frozenset(allowed)

    def check(prop: str, value: str) -> str:
        if value not in allowed:
            raise errors.InvalidArgument(f"{prop}={show(value)} is refused: expected one of "
                                         f"{', '.join(sorted(allowed))}")
        return value
    return check


def _byte_size(prop: str, value: str) -> str:
    """A size in bytes, as the driver sends it (digits, no suffix)."""
    if not re.fullmatch(r"[1-9][0-9]{0,18}", value) or int(value) > MAX_SIZE:
        raise errors.InvalidArgument(f"{prop}={show(value)} is refused: expected a size in "
                                     f"bytes from 1 to {MAX_SIZE}")
    return value


def _block_size(prop: str, value: str) -> str:
    size = int(_byte_size(prop, value))
    if size < 512 or size > 128 * 1024 or size & (size - 1):
        raise errors.InvalidArgument(f"{prop}={show(value)} is refused: expected a power of "
                                     f"two from 512 to 131072")
    return value


# The native properties a request may set: the ones the driver really uses, and nothing that
# mounts, shares, reserves space outside a volume, or weakens integrity (mountpoint, canmount,
# sharenfs, reservation, quota, sync, checksum, copies, ... are all refused).
# create_filesystem always adds canmount=off and mountpoint=none itself.
_CREATE = frozenset({"create_volume", "create_filesystem", "clone", "send_receive"})
SETTABLE: dict[str, tuple[frozenset[str], Callable[[str, str], str]]] = {
    # property        operations that may set it            allowed values
    "compression":    (_CREATE | {"set"},                   _one_of(COMPRESSION)),
    "refreservation": (frozenset({"set"}),                  _one_of({"none", "auto"})),
    "volsize":        (frozenset({"set"}),                  _byte_size),  # only grows: ops.set
    "volblocksize":   (frozenset({"create_volume"}),        _block_size),  # fixed at creation
    "snapdev":        (frozenset({"set"}),                  _one_of({"hidden", "visible"})),
    "readonly":       (frozenset({"set"}),                  _one_of({"on", "off"})),
    # a plain block device: the node never scans a guest's partitions or LVM/MD signatures
    "volmode":        (_CREATE - {"create_filesystem"},     _one_of({"dev"})),
}
# User properties (USER_NAMESPACE only) may be set by these; snapshot takes nothing else.
USER_SETTABLE = _CREATE | {"set", "snapshot", "inherit"}

# -- child processes: the longest each may run before the agent kills it ---------------------
# A `zfs destroy -r` of thousands of snapshots takes many minutes on a slow node; udevadm waits
# with its own --timeout; nothing may run forever (a hung child would hold a worker for good).
DEADLINES = {"udevadm": 60.0, "mkfs.ocfs2": 900.0, "tunefs.ocfs2": 300.0}
DEFAULT_DEADLINE = 3600.0
# send|receive has no total deadline (a copy of any size must complete): it is stopped when no
# data moved for this long.
SEND_RECEIVE_STALL = 600.0


def deadline(argv: list[str]) -> float:
    return DEADLINES.get(argv[0], DEFAULT_DEADLINE) if argv else DEFAULT_DEADLINE


# -- checks ----------------------------------------------------------------------------------

def user_property(name) -> str:
    """A property name in the driver's namespace, or InvalidArgument."""
    if (not isinstance(name, str) or not name.startswith(USER_NAMESPACE)
            or not _USER_SUFFIX.fullmatch(name[len(USER_NAMESPACE):])):
        raise errors.InvalidArgument(
            f"user property {show(name)} is refused: only {USER_NAMESPACE}<1-64 of [a-z0-9_]> "
            f"may be set")
    return name


def user_value(prop: str, value) -> str:
    if not isinstance(value, str) or not value:
        raise errors.InvalidArgument(f"{prop}: the value must be a non-empty string, got "
                                     f"{show(value)} (use inherit to unset)")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_USER_VALUE_LEN:
        raise errors.InvalidArgument(f"{prop}: the value is longer than {MAX_USER_VALUE_LEN} "
                                     f"bytes ({len(value)} characters)")
    if not value.isprintable():  # tab, newline, NUL, other controls, lone surrogates
        raise errors.InvalidArgument(f"{prop}={show(value)} is refused: values may not hold "
                                     f"tabs, newlines, NUL or other control characters")
    return value


def properties(op: str, props) -> dict[str, str]:
    """The properties ``op`` may set, checked against SETTABLE; InvalidArgument names the first
    one refused. ``None`` is no properties."""
    if props is None:
        return {}
    if not isinstance(props, dict):
        raise errors.InvalidArgument(f"{op}: properties must be an object, got {show(props)}")
    if len(props) > MAX_PROPERTIES:
        raise errors.InvalidArgument(f"{op}: at most {MAX_PROPERTIES} properties per request")
    out = {}
    for key, value in props.items():
        rule = SETTABLE.get(key)
        if rule is not None:
            ops, check = rule
            if op not in ops:
                raise errors.InvalidArgument(
                    f"{op} may not set property {key!r} (it may be set by: "
                    f"{', '.join(sorted(ops))})")
            if not isinstance(value, str):
                raise errors.InvalidArgument(f"{key}: the value must be a string, got "
                                             f"{show(value)}")
            out[key] = check(key, value)
        elif isinstance(key, str) and key.startswith(USER_NAMESPACE) and op in USER_SETTABLE:
            out[user_property(key)] = user_value(key, value)
        else:
            allowed = sorted(p for p, (ops, _) in SETTABLE.items() if op in ops)
            raise errors.InvalidArgument(
                f"{op} may not set property {show(key)}: the agent allows "
                f"{', '.join(allowed + [USER_NAMESPACE + '*']) if op in USER_SETTABLE else 'none'}"
                f" here")
    return out


def inheritable(prop) -> str:
    """Only the driver's user properties may be inherited (unset): inheriting a native one
    (mountpoint, canmount, sharenfs, ...) can mount or share a dataset."""
    return user_property(prop)


def readable(props, what: str = "properties") -> list[str]:
    """Property names to read (get, list): any ZFS-shaped name, never an option."""
    if not isinstance(props, list) or not props or len(props) > 64:
        raise errors.InvalidArgument(f"{what} must be a list of 1-64 property names")
    for prop in props:
        if (not isinstance(prop, str) or len(prop) > MAX_PROPERTY_NAME_LEN
                or not _READABLE.fullmatch(prop)):
            raise errors.InvalidArgument(f"invalid property name {show(prop)}")
    return props


def tag(value) -> str:
    """A hold tag: 1-255 of [A-Za-z0-9_.:-], not starting with "-" (ZFS's limit is checked
    here, never by the kernel: see the module docstring)."""
    if (not isinstance(value, str) or not 0 < len(value) <= MAX_TAG_LEN
            or not _TAG.fullmatch(value)):
        raise errors.InvalidArgument(
            f"hold tag {show(value)} is refused: expected 1-{MAX_TAG_LEN} of [A-Za-z0-9_.:-], "
            f"not starting with '-'")
    return value


def boolean(value, what: str) -> bool:
    if not isinstance(value, bool):
        raise errors.InvalidArgument(f"{what} must be true or false, got {show(value)}")
    return value


def size(value, what: str = "size") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_SIZE:
        raise errors.InvalidArgument(f"invalid {what} {show(value)}: expected bytes from 1 to "
                                     f"{MAX_SIZE}")
    return value


def timeout(value, maximum: float = MAX_WAIT_FOR_DEVICE) -> float:
    """A wait in seconds: finite, from 0 to ``maximum`` (NaN would never time out)."""
    if (not isinstance(value, (int, float)) or isinstance(value, bool)
            or not math.isfinite(value) or not 0 <= value <= maximum):
        raise errors.InvalidArgument(f"timeout {show(value)} is refused: expected seconds from "
                                     f"0 to {maximum:g}")
    return float(value)


def option_safe(value: str, what: str) -> str:
    """Anything that lands on a command line as a positional argument."""
    if not isinstance(value, str) or not value or value.startswith("-"):
        raise errors.InvalidArgument(f"{what} {show(value)} is refused: it must not start "
                                     f"with '-'")
    return value
