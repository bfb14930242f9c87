"""What a pool listing says about one snapshot, as catalog column values.

Snapshots inherit their zvol's user properties, so Cinder ids come from ``user_props`` first and
from the dataset path (``<root>/<project>/volume-<uuid>@snapshot-<uuid>``) as a fallback.
Pure functions: no database, no pool.
"""

from __future__ import annotations

import functools
import re

from cinder_zfs_ocfs2.catalog import models
from cinder_zfs_ocfs2.zfs import names
from cinder_zfs_ocfs2.zfs.types import (
    PROP_BACKEND,
    PROP_GROUP_SNAPSHOT_ID,
    PROP_HIDDEN,
    PROP_PROJECT_ID,
    PROP_SNAPSHOT_ID,
    PROP_VOLUME_ID,
    Snapshot,
)

_FALSE = ("", "-", "0", "off", "false", "no")
# The canonical form names.canonical_uuid returns: most names are already in it, and parsing
# every one with uuid.UUID dominates a reconciliation of thousands of snapshots.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# The columns a listing determines; reconciliation compares exactly these.
POOL_COLUMNS = ("dataset", "guid", "createtxg", "creation", "used", "referenced", "written",
                "defer_destroy", "kind")
# Cinder ids: the pool's value wins when it has one, else the catalog keeps what the driver wrote.
ID_COLUMNS = ("snapshot_id", "volume_id", "project_id", "group_snapshot_id", "backend")


def _uuid(value: str) -> str | None:
    if _CANONICAL_UUID.fullmatch(value):
        return value
    try:
        return names.canonical_uuid(value)
    except names.InvalidArgument:
        return None


def _suffix_uuid(text: str, prefix: str) -> str | None:
    return _uuid(text[len(prefix):]) if text.startswith(prefix) else None


@functools.lru_cache(maxsize=65536)
def volume_id_of(dataset: str) -> str | None:
    """names.volume_id_of, cached: a listing repeats each zvol once per snapshot."""
    return _suffix_uuid(dataset.rpartition("/")[2], names.VOLUME_PREFIX)


def snapshot_id_of(zfs_name: str) -> str | None:
    return _suffix_uuid(zfs_name.rpartition("@")[2], names.SNAPSHOT_PREFIX)


def kind_of(zfs_name: str) -> str:
    """'cinder' / 'clone-temp' for names the driver makes, 'out-of-band' for anything else."""
    dataset, _, short = zfs_name.partition("@")
    if volume_id_of(dataset) is None:
        return models.KIND_OUT_OF_BAND
    if _suffix_uuid(short, names.SNAPSHOT_PREFIX) is not None:
        return models.KIND_CINDER
    if _suffix_uuid(short, names.CLONE_PREFIX) is not None:
        return models.KIND_CLONE_TEMP
    return models.KIND_OUT_OF_BAND


@functools.lru_cache(maxsize=65536)
def project_of_path(dataset: str, root: str | None = None) -> str | None:
    """Project id from ``<root>/<project>[/volume-<uuid>]``; None for trash and unknown shapes.

    ``root`` is where the listing started; it may be the backend root or, for a scoped
    reconciliation, one volume.
    """
    dataset = dataset.partition("@")[0]
    if root is not None:
        root = root.strip("/")
        if dataset == root:
            # A reconciliation scoped to one volume or tenant: the shape alone decides.
            return project_of_path(dataset)
        if not dataset.startswith(root + "/"):
            return None
        parts = dataset[len(root) + 1:].split("/")
        candidate = parts[0] if len(parts) <= 2 else None
        if len(parts) == 2 and volume_id_of(parts[1]) is None:
            candidate = None
    else:
        # Without the root only the volume shape is recognisable: the parent of volume-<uuid>.
        head, _, last = dataset.rpartition("/")
        if volume_id_of(last) is None or not head:
            return None
        candidate = head.rpartition("/")[2]
    if not candidate or candidate == names.TRASH:
        return None
    try:
        return names.project_component(candidate)
    except names.InvalidArgument:
        return None


def _prop(props: dict, key: str) -> str | None:
    value = props.get(key)
    if value is None or str(value) in ("", "-"):
        return None
    return str(value)


def _uuid_or_none(value: str | None) -> str | None:
    return None if value is None else _uuid(value)


def is_hidden(record: Snapshot, root: str | None = None) -> bool:
    """Hidden on the pool: the hidden property, a deferred destroy, or living in the trash."""
    if str(record.user_props.get(PROP_HIDDEN, "")).strip().lower() not in _FALSE:
        return True
    if record.defer_destroy:
        return True
    dataset = record.dataset
    if root is not None:
        return dataset.startswith(root.strip("/") + "/" + names.TRASH + "/")
    return ("/" + names.TRASH + "/") in dataset


def describe(record: Snapshot, root: str | None = None, backend: str | None = None) -> dict:
    """Column values for ``record``: POOL_COLUMNS, ID_COLUMNS, zfs_name and 'hidden'."""
    props = record.user_props or {}
    dataset = record.dataset
    return {
        "zfs_name": record.name,
        "dataset": dataset,
        "guid": int(record.guid) if record.guid else None,
        "createtxg": int(record.createtxg) if record.createtxg else None,
        "creation": int(record.creation),
        "used": int(record.used),
        "referenced": int(record.referenced),
        "written": int(record.written),
        "defer_destroy": bool(record.defer_destroy),
        "kind": kind_of(record.name),
        "snapshot_id": (snapshot_id_of(record.name)
                        or _uuid_or_none(_prop(props, PROP_SNAPSHOT_ID))),
        "volume_id": (_uuid_or_none(_prop(props, PROP_VOLUME_ID))
                      or volume_id_of(dataset)),
        "project_id": _prop(props, PROP_PROJECT_ID) or project_of_path(dataset, root),
        "group_snapshot_id": _uuid_or_none(_prop(props, PROP_GROUP_SNAPSHOT_ID)),
        "backend": _prop(props, PROP_BACKEND) or backend,
        "hidden": is_hidden(record, root),
    }


def in_root(name: str, root: str) -> bool:
    """``name`` (dataset or snapshot) is the root, or a snapshot of it, or below it."""
    root = root.strip("/")
    dataset = name.partition("@")[0]
    return dataset == root or dataset.startswith(root + "/")
