"""One error hierarchy for every way of reaching ZFS.

pyzfs (libzfs_core) exceptions, `zfs`/`zpool` CLI failures and agent error replies all map to
these types, so callers decide on the kind of failure, never on a message text.
Standard library only: the agent on the storage node raises and serialises these.
"""

from __future__ import annotations

import re


class ZFSError(Exception):
    """A ZFS operation failed. ``code`` is stable and travels over the agent protocol."""

    code = "failed"

    def __init__(self, message: str, name: str | None = None):
        super().__init__(message)
        self.message = message
        self.name = name

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "name": self.name}


class NotFound(ZFSError):
    code = "not_found"


class AlreadyExists(ZFSError):
    code = "exists"


class Busy(ZFSError):
    """In use: mounted, exported, open, held."""

    code = "busy"


class HasDependents(Busy):
    """Snapshot with clones, or dataset with snapshots/children that a plain destroy refuses."""

    code = "has_dependents"


class NoSpace(ZFSError):
    code = "no_space"


class NotLatest(ZFSError):
    """Rollback target is not the most recent snapshot."""

    code = "not_latest"


class InvalidArgument(ZFSError):
    """Bad name, property, size or request; nothing was changed."""

    code = "invalid"


class TransportError(ZFSError):
    """The storage node could not be reached or the session broke; the outcome is unknown."""

    code = "transport"


_BY_CODE = {
    cls.code: cls
    for cls in (ZFSError, NotFound, AlreadyExists, Busy, HasDependents, NoSpace, NotLatest,
                InvalidArgument, TransportError)
}


def from_dict(data: dict) -> ZFSError:
    """Rebuild an error from an agent reply; an unknown code becomes a plain ZFSError."""
    cls = _BY_CODE.get(str(data.get("code")), ZFSError)
    return cls(str(data.get("message", "unknown ZFS error")), data.get("name"))


# Ordered: the first pattern that matches a CLI stderr decides the type.
_CLI_PATTERNS: list[tuple[re.Pattern, type[ZFSError]]] = [
    (re.compile(p, re.I), cls)
    for p, cls in [
        (r"has dependent clones|has children|filesystem has dependent", HasDependents),
        (r"more recent snapshots|not the most recent", NotLatest),
        (r"does not exist|no such (pool|dataset)|could not find any snapshots", NotFound),
        (r"already exists", AlreadyExists),
        (r"out of space|not enough space|no space left|exceeds quota|quota exceeded"
         r"|greater than available space", NoSpace),
        (r"is busy|dataset is busy|device busy|tag already exists|has holds|is held", Busy),
        (r"invalid|bad (property|value|name)|cannot be|must be|unsupported|too long"
         r"|permission denied|operation not (permitted|supported)|usage:", InvalidArgument),
    ]
]


def from_cli(stderr: str, name: str | None = None) -> ZFSError:
    """Classify a failed `zfs`/`zpool` command by its message."""
    text = (stderr or "").strip() or "zfs command failed with no message"
    for pattern, cls in _CLI_PATTERNS:
        if pattern.search(text):
            return cls(text, name)
    return ZFSError(text, name)


# libzfs_core.exceptions class name -> our type. By name, so nothing here imports pyzfs.
_PYZFS_NAMES: dict[str, type[ZFSError]] = {
    "DatasetNotFound": NotFound,
    "FilesystemNotFound": NotFound,
    "SnapshotNotFound": NotFound,
    "ParentNotFound": NotFound,
    "PoolNotFound": NotFound,
    "HoldNotFound": NotFound,
    "BookmarkNotFound": NotFound,
    "DatasetExists": AlreadyExists,
    "FilesystemExists": AlreadyExists,
    "SnapshotExists": AlreadyExists,
    "HoldExists": AlreadyExists,
    "DatasetBusy": Busy,
    "SnapshotIsHeld": Busy,
    "SnapshotIsCloned": HasDependents,
    "SnapshotNotLatest": NotLatest,
    "NoSpace": NoSpace,
    "QuotaExceeded": NoSpace,
    "NameInvalid": InvalidArgument,
    "NameTooLong": InvalidArgument,
    "PropertyInvalid": InvalidArgument,
    "PoolsDiffer": InvalidArgument,
    "DuplicateSnapshots": InvalidArgument,
    "ReadOnlyPool": InvalidArgument,
    "FeatureNotSupported": InvalidArgument,
}


def from_pyzfs(exc: BaseException, name: str | None = None) -> ZFSError:
    """Classify a libzfs_core exception; a multi-error failure takes its first cause's type."""
    causes = getattr(exc, "errors", None)
    if causes:
        first = causes[0]
        mapped = from_pyzfs(first, name)
        return type(mapped)(f"{exc}: {first}", name)
    for klass in type(exc).__mro__:
        cls = _PYZFS_NAMES.get(klass.__name__)
        if cls is not None:
            return cls(str(exc) or klass.__name__, name or getattr(exc, "name", None))
    return ZFSError(f"{type(exc).__name__}: {exc}", name)
