"""Every dataset and snapshot name the driver uses, built from validated ids.

The storage model (DESIGN.md section 3)::

    <root>/<project_id>/volume-<volume uuid>             a Cinder volume (zvol)
    <root>/<project_id>/volume-<uuid>@snapshot-<uuid>    a Cinder snapshot
    <root>/<project_id>/volume-<uuid>@clone-<new uuid>   temp snapshot behind create_cloned_volume
    <root>/<project_id>/revert-<uuid>                    scratch clone of a clone-and-swap revert
    <root>/.trash/volume-<uuid>.<tag>                    deleted by Cinder, still has dependents

Tenant-supplied text never becomes a name: only UUIDs and project ids that pass validation.

What the driver made is decided here and nowhere else (``is_driver_made``, ``is_internal``):
a prefix followed by a valid UUID, and for internal objects the marker property the driver
writes on them. A name alone never makes an admin's snapshot the driver's to destroy.
``NameSpace.check`` refuses anything outside the root; the agent runs it on every argument.
Standard library only (the agent imports this module).
"""

from __future__ import annotations

import re
import uuid

from cinder_zfs_ocfs2.zfs.errors import InvalidArgument
from cinder_zfs_ocfs2.zfs.types import PROP_HIDDEN, PROP_INTERNAL, Snapshot

MAX_NAME_LEN = 255  # ZFS_MAX_DATASET_NAME_LEN - 1
_COMPONENT = re.compile(r"^[A-Za-z0-9_.:-]+$")
_PROJECT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TRASH = ".trash"
VOLUME_PREFIX = "volume-"
SNAPSHOT_PREFIX = "snapshot-"
CLONE_PREFIX = "clone-"
REVERT_PREFIX = "revert-"
# PROP_INTERNAL's value on the temp snapshot behind a clone (the catalog's kind of the same).
CLONE_TEMP = "clone-temp"


def canonical_uuid(value: str) -> str:
    """The lower-case hyphenated form of a UUID, or InvalidArgument."""
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument(f"not a UUID: {value!r}") from None


def project_component(project_id: str) -> str:
    if not isinstance(project_id, str) or not _PROJECT.fullmatch(project_id):
        raise InvalidArgument(
            f"project id {project_id!r} cannot name a dataset: expected 1-64 of [A-Za-z0-9_-]")
    return project_id


def _check_components(path: str, what: str) -> None:
    for part in path.split("/"):
        if not part or part in (".", "..") or not _COMPONENT.fullmatch(part):
            raise InvalidArgument(f"invalid {what} {path!r}: bad component {part!r}")


def validate_dataset(name: str) -> str:
    """A well-formed dataset name (no snapshot part)."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LEN:
        raise InvalidArgument(f"invalid dataset name {name!r}")
    _check_components(name, "dataset name")
    return name


def split_snapshot(name: str) -> tuple[str, str]:
    """'pool/a@s' -> ('pool/a', 's'); InvalidArgument for anything else."""
    if not isinstance(name, str) or name.count("@") != 1:
        raise InvalidArgument(f"invalid snapshot name {name!r}")
    dataset, short = name.split("@")
    validate_dataset(dataset)
    if len(name) > MAX_NAME_LEN:
        raise InvalidArgument(f"snapshot name too long: {name!r}")
    _check_components(short, "snapshot name")
    return dataset, short


def _uuid_after(text: str, prefix: str) -> str | None:
    """The UUID of '<prefix><uuid>', else None."""
    if not text.startswith(prefix):
        return None
    try:
        return canonical_uuid(text[len(prefix):])
    except InvalidArgument:
        return None


def snapshot_id_of(name: str) -> str | None:
    """The Cinder snapshot UUID of '...@snapshot-<uuid>', else None."""
    return _uuid_after(name.rpartition("@")[2], SNAPSHOT_PREFIX)


def clone_temp_id_of(name: str) -> str | None:
    """The new volume's UUID in '...@clone-<uuid>' (the name of a clone temp), else None."""
    return _uuid_after(name.rpartition("@")[2], CLONE_PREFIX)


def volume_id_of(dataset: str) -> str | None:
    """The Cinder volume UUID of '.../volume-<uuid>[.tag][@...]', else None."""
    last = dataset.partition("@")[0].rpartition("/")[2]
    return _uuid_after(last.partition(".")[0], VOLUME_PREFIX)


def revert_scratch_id_of(dataset: str) -> str | None:
    """The volume UUID of a clone-and-swap scratch dataset '.../revert-<uuid>', else None."""
    return _uuid_after(dataset.rpartition("/")[2], REVERT_PREFIX)


# -- what the driver made (the one place that decides) ----------------------------------------

def is_hidden(snapshot: Snapshot) -> bool:
    """Deleted by Cinder while clones depend on it (marked hidden, or destroyed deferred)."""
    return snapshot.user_props.get(PROP_HIDDEN) == "true" or snapshot.defer_destroy


def is_clone_temp(snapshot: Snapshot) -> bool:
    """The driver's temp snapshot behind a clone: named clone-<uuid> AND marked as one when it
    was taken. An admin's @clone-before-upgrade, or an unmarked @clone-<uuid>, is not."""
    return clone_temp_id_of(snapshot.name) is not None and \
        snapshot.user_props.get(PROP_INTERNAL) == CLONE_TEMP


def is_cinder_snapshot(snapshot: Snapshot) -> bool:
    """Named snapshot-<uuid>: a Cinder snapshot, live or hidden."""
    return snapshot_id_of(snapshot.name) is not None


def is_internal(snapshot: Snapshot) -> bool:
    """Made by the driver and invisible to Cinder: a clone temp, or a Cinder snapshot that
    Cinder deleted while clones still depend on it. Only these may be destroyed unasked."""
    return is_clone_temp(snapshot) or (is_cinder_snapshot(snapshot) and is_hidden(snapshot))


def is_driver_made(snapshot: Snapshot) -> bool:
    """A Cinder snapshot or a clone temp; anything else is an admin's and is never destroyed."""
    return is_cinder_snapshot(snapshot) or is_clone_temp(snapshot)


class NameSpace:
    """Names under one root dataset, and the check that keeps every name inside it."""

    def __init__(self, root: str):
        root = (root or "").strip("/")
        validate_dataset(root)
        self.root = root
        self.pool = root.split("/")[0]
        self.trash_root = f"{root}/{TRASH}"

    def tenant(self, project_id: str) -> str:
        return f"{self.root}/{project_component(project_id)}"

    def volume(self, project_id: str, volume_id: str) -> str:
        return f"{self.tenant(project_id)}/{VOLUME_PREFIX}{canonical_uuid(volume_id)}"

    def trash(self, volume_id: str, tag: str) -> str:
        """Where a hidden volume waits for its dependents; ``tag`` keeps several apart."""
        if not re.fullmatch(r"[a-z0-9]{1,16}", tag or ""):
            raise InvalidArgument(f"invalid trash tag {tag!r}")
        return f"{self.trash_root}/{VOLUME_PREFIX}{canonical_uuid(volume_id)}.{tag}"

    def revert_clone(self, project_id: str, volume_id: str) -> str:
        """Scratch dataset of a clone-and-swap revert."""
        return f"{self.tenant(project_id)}/{REVERT_PREFIX}{canonical_uuid(volume_id)}"

    @staticmethod
    def snapshot(volume_dataset: str, snapshot_id: str) -> str:
        return f"{volume_dataset}@{SNAPSHOT_PREFIX}{canonical_uuid(snapshot_id)}"

    @staticmethod
    def clone_snapshot(volume_dataset: str, new_volume_id: str) -> str:
        """Temp snapshot behind a clone of a volume: one per new volume, so clones never collide."""
        return f"{volume_dataset}@{CLONE_PREFIX}{canonical_uuid(new_volume_id)}"

    def contains(self, name: str) -> bool:
        try:
            self.check(name)
        except InvalidArgument:
            return False
        return True

    def check(self, name: str, allow_root: bool = True) -> str:
        """Return ``name`` if it is a well-formed dataset or snapshot inside the root."""
        if isinstance(name, str) and "@" in name:
            dataset, _ = split_snapshot(name)
        else:
            dataset = validate_dataset(name)
        if dataset == self.root:
            if not allow_root:
                raise InvalidArgument(f"{name!r} is the root dataset itself")
        elif not dataset.startswith(self.root + "/"):
            raise InvalidArgument(f"{name!r} is outside the root dataset {self.root!r}")
        return name


class Confinement:
    """The roots one storage-node agent may touch (a node can serve several backends, e.g.
    one per pool, and a migration between them needs both). Checks like NameSpace.check."""

    def __init__(self, roots: list[str]):
        if not roots:
            raise InvalidArgument("at least one root dataset is needed")
        self.spaces = [NameSpace(r) for r in roots]
        self.root = self.spaces[0].root
        self.roots = [ns.root for ns in self.spaces]
        self.pools = sorted({ns.pool for ns in self.spaces})

    def check(self, name: str, allow_root: bool = True) -> str:
        errors = []
        for space in self.spaces:
            try:
                return space.check(name, allow_root=allow_root)
            except InvalidArgument as exc:
                errors.append(exc)
        raise errors[0] if len(errors) == 1 else InvalidArgument(
            f"{name!r} is outside the root datasets {', '.join(self.roots)}")

