"""Plain records the ZFS client returns. Sizes in bytes, times in seconds since the epoch."""

from __future__ import annotations

import dataclasses

USER_PROP_PREFIX = "org.openstack.cinder:"
PROP_VOLUME_ID = USER_PROP_PREFIX + "volume_id"
PROP_PROJECT_ID = USER_PROP_PREFIX + "project_id"
PROP_BACKEND = USER_PROP_PREFIX + "backend"
PROP_SNAPSHOT_ID = USER_PROP_PREFIX + "snapshot_id"
PROP_GROUP_SNAPSHOT_ID = USER_PROP_PREFIX + "group_snapshot_id"
# Set on a dataset/snapshot Cinder deleted while clones still depend on it.
PROP_HIDDEN = USER_PROP_PREFIX + "hidden"
# The filesystem on a volume formatted by the driver ("ocfs2") and its cluster stack: the
# identity that must travel to every copy (export/ocfs2.py writes them).
PROP_FILESYSTEM = USER_PROP_PREFIX + "filesystem"
PROP_OCFS2_STACK = USER_PROP_PREFIX + "ocfs2_cluster_stack"
# Set when taken on snapshots the driver makes for itself (value: names.CLONE_TEMP), so that
# the name alone never makes a snapshot internal (an admin may call one @clone-anything).
PROP_INTERNAL = USER_PROP_PREFIX + "internal"
# Set when taken (or managed) on every snapshot Cinder holds; unmanage removes it. A snapshot
# carrying it is a live Cinder snapshot, and manage never adopts it (its name cannot tell: an
# unmanaged snapshot keeps its snapshot-<uuid> name). One value for all, so a batch of snapshots
# stays one ZFS call.
PROP_CINDER_SNAPSHOT = USER_PROP_PREFIX + "cinder_snapshot"
# Set on a volume while a clone-and-swap or promote is in flight (crash repair marker).
PROP_OPERATION = USER_PROP_PREFIX + "operation"


@dataclasses.dataclass(frozen=True)
class Snapshot:
    name: str                 # pool/.../volume-x@snapshot-y
    guid: int
    createtxg: int
    creation: int
    used: int
    referenced: int
    written: int
    clones: tuple[str, ...] = ()       # datasets cloned from this snapshot
    defer_destroy: bool = False
    userrefs: int = 0
    user_props: dict = dataclasses.field(default_factory=dict, compare=False)

    @property
    def dataset(self) -> str:
        return self.name.partition("@")[0]

    @property
    def short_name(self) -> str:
        return self.name.partition("@")[2]


@dataclasses.dataclass(frozen=True)
class Volume:
    name: str
    guid: int
    volsize: int
    volblocksize: int
    used: int
    referenced: int
    origin: str | None         # snapshot this zvol was cloned from, None for an original
    creation: int = 0
    user_props: dict = dataclasses.field(default_factory=dict, compare=False)


@dataclasses.dataclass(frozen=True)
class PoolCapacity:
    name: str
    size: int
    allocated: int
    free: int
    health: str
