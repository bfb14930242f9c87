"""Adopting zvols and snapshots made outside Cinder, and letting them go again.

A reference names a zvol by its path under the root (`tenant/volume-x`, or the full dataset
name) or by its last component alone (`volume-<uuid>`, what Tempest and `cinder manage` pass);
a snapshot by its short name on the given volume. Adopting renames into the storage model, so
a managed volume is named like any other; nothing is copied.
"""

from __future__ import annotations

from oslo_log import log as logging

from cinder_zfs_ocfs2.operations.volumes import GiB, VolumeOperations
from cinder_zfs_ocfs2.zfs import errors
from cinder_zfs_ocfs2.zfs.names import TRASH, volume_id_of
from cinder_zfs_ocfs2.zfs.types import PROP_BACKEND, PROP_PROJECT_ID, PROP_VOLUME_ID, Volume

LOG = logging.getLogger(__name__)


def size_gb(size_bytes: int) -> int:
    return max(1, -(-size_bytes // GiB))


class ManageOperations:
    def __init__(self, ops: VolumeOperations):
        self.ops = ops
        self.zfs = ops.zfs
        self.names = ops.names

    def candidates(self) -> list[Volume]:
        """zvols under the root that could be Cinder volumes (not hidden, not scratch)."""
        hidden = (self.names.trash_root + "/", )
        return [v for v in self.zfs.list_volumes(self.names.root)
                if not v.name.startswith(hidden)
                and not v.name.rpartition("/")[2].startswith("revert-")]

    def find_volume(self, reference: dict) -> str:
        ref = (reference or {}).get("source-name")
        if not isinstance(ref, str) or not ref or "@" in ref:
            raise errors.InvalidArgument(
                f"manage needs a reference {{'source-name': '<zvol>'}}; got {reference!r}")
        ref = ref.strip("/")
        if "/" not in ref:
            matches = [v.name for v in self.candidates() if v.name.rpartition("/")[2] == ref]
            if len(matches) > 1:
                raise errors.InvalidArgument(f"{ref!r} names several zvols: "
                                             f"{', '.join(matches)}; give the path")
            if not matches:
                raise errors.NotFound(f"no zvol named {ref!r} under {self.names.root}", ref)
            return matches[0]
        name = ref if ref.startswith(self.names.root + "/") else f"{self.names.root}/{ref}"
        self.names.check(name, allow_root=False)
        if name.startswith(f"{self.names.root}/{TRASH}/"):
            raise errors.InvalidArgument(f"{name} is a hidden (deleted) volume")
        self.zfs.get_volume(name)  # NotFound / not a zvol
        return name

    def volume_size(self, reference: dict) -> int:
        return size_gb(self.zfs.get_volume(self.find_volume(reference)).volsize)

    def adopt_volume(self, reference: dict, project_id: str, volume_id: str) -> str:
        """Rename the referenced zvol into the storage model and mark it as this volume's."""
        source = self.find_volume(reference)
        volume = self.zfs.get_volume(source)
        owner = volume.user_props.get(PROP_VOLUME_ID)
        target = self.names.volume(project_id, volume_id)
        if owner and owner != volume_id and source == self.names.volume(
                volume.user_props.get(PROP_PROJECT_ID, ""), owner):
            LOG.info("Adopting %s, which was Cinder volume %s before it was unmanaged", source,
                     owner)
        wanted = size_gb(volume.volsize) * GiB
        if wanted != volume.volsize:  # Cinder counts whole GiB: grow to what it records
            self.zfs.set_properties(source, {"volsize": str(wanted)})
        if source != target:
            self.ops.ensure_tenant(project_id)
            self.zfs.rename(source, target)
            self.ops.index.dataset_renamed(source, target)
        self.zfs.set_properties(target, {PROP_VOLUME_ID: volume_id, PROP_PROJECT_ID: project_id,
                                         PROP_BACKEND: self.ops.backend})
        LOG.info("Managed %s as %s", source, target)
        return target

    def release_volume(self, name: str) -> None:
        """Unmanage: the zvol stays as it is, without the ownership marks."""
        for prop in (PROP_VOLUME_ID, PROP_PROJECT_ID, PROP_BACKEND):
            self.zfs.inherit(name, prop)

    def find_snapshot(self, volume_name: str, reference: dict) -> str:
        ref = (reference or {}).get("source-name")
        if not isinstance(ref, str) or not ref:
            raise errors.InvalidArgument(
                f"manage needs a reference {{'source-name': '<snapshot>'}}; got {reference!r}")
        short = ref.rpartition("@")[2]
        name = f"{volume_name}@{short}"
        self.names.check(name)
        self.zfs.get_snapshot(name)
        return name

    def snapshot_size(self, volume_name: str, reference: dict) -> int:
        name = self.find_snapshot(volume_name, reference)
        return size_gb(int(self.zfs.get_properties(name, ["volsize"])["volsize"]))

    def adopt_snapshot(self, volume_name: str, reference: dict, snapshot_id: str) -> str:
        source = self.find_snapshot(volume_name, reference)
        target = self.names.snapshot(volume_name, snapshot_id)
        if source != target:
            self.zfs.rename(source, target)
            self.ops.index.deleted(source)
            self.ops.index.created([target])
        LOG.info("Managed snapshot %s as %s", source, target)
        return target

    def rename_volume(self, name: str, new_name: str) -> None:
        self.zfs.rename(name, new_name)
        self.ops.index.dataset_renamed(name, new_name)
        volume_id = volume_id_of(new_name)
        if volume_id:
            self.zfs.set_properties(new_name, {PROP_VOLUME_ID: volume_id})

    def transfer(self, name: str, project_id: str, volume_id: str) -> str:
        """Move a volume to another project's dataset (volume transfer)."""
        target = self.names.volume(project_id, volume_id)
        if target != name:
            self.ops.ensure_tenant(project_id)
            self.zfs.rename(name, target)
            self.ops.index.dataset_renamed(name, target)
        self.zfs.set_properties(target, {PROP_PROJECT_ID: project_id})
        return target
