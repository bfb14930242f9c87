"""Adopting zvols and snapshots made outside Cinder, and letting them go again.

A reference names a zvol by its path under the root (`tenant/volume-x`, or the full dataset
name) or by its last component alone (`volume-<uuid>`, what Tempest and `cinder manage` pass);
a snapshot by its short name on the given volume. Adopting renames into the storage model, so
a managed volume is named like any other; nothing is copied.

What may be managed is decided in one place, ``refusal``/``snapshot_refusal``: never a live
Cinder volume (a zvol still carrying ownership marks: unmanage removes them), whichever project
it belongs to, and never the driver's own objects (hidden or deferred-destroy ones, clone temps,
revert scratch clones, anything in the trash). Taking one over would hand one tenant's data to
another, or let ZFS destroy a managed snapshot when its last clone goes.
"""

from __future__ import annotations

from oslo_log import log as logging

from cinder_zfs_ocfs2.operations.volumes import GiB, VolumeOperations
from cinder_zfs_ocfs2.zfs import errors
from cinder_zfs_ocfs2.zfs.names import (
    is_clone_temp,
    is_hidden,
    revert_scratch_id_of,
    volume_id_of,
)
from cinder_zfs_ocfs2.zfs.types import (
    PROP_BACKEND,
    PROP_CINDER_SNAPSHOT,
    PROP_HIDDEN,
    PROP_PROJECT_ID,
    PROP_VOLUME_ID,
    Snapshot,
    Volume,
)

LOG = logging.getLogger(__name__)
OWNERSHIP = (PROP_VOLUME_ID, PROP_PROJECT_ID, PROP_BACKEND)


class NotManageable(errors.InvalidArgument):
    """The reference names something the driver must not adopt; nothing was changed."""


def size_gb(size_bytes: int) -> int:
    return max(1, -(-size_bytes // GiB))


class ManageOperations:
    def __init__(self, ops: VolumeOperations):
        self.ops = ops
        self.zfs = ops.zfs
        self.names = ops.names

    # -- what may be managed (the one place that decides) ----------------------------------

    def refusal(self, volume: Volume) -> str | None:
        """Why ``volume`` must not be managed, or None when it may be."""
        if volume.name.startswith(self.names.trash_root + "/") or \
                volume.user_props.get(PROP_HIDDEN) == "true":
            return "a hidden volume (deleted by Cinder, kept for its clones)"
        if revert_scratch_id_of(volume.name):
            return "the scratch clone of a revert in progress"
        owner = volume.user_props.get(PROP_VOLUME_ID)
        if owner:
            project = volume.user_props.get(PROP_PROJECT_ID, "?")
            return (f"Cinder volume {owner} of project {project} (it carries the ownership "
                    f"marks, which unmanage removes); unmanage that volume first, or, if no "
                    f"such volume exists in Cinder, clear the marks with `zfs inherit "
                    f"{PROP_VOLUME_ID} {volume.name}` (and {PROP_PROJECT_ID}, {PROP_BACKEND})")
        return None

    @staticmethod
    def internal_refusal(snapshot: Snapshot) -> str | None:
        """Why ``snapshot`` is the driver's own and never offered for managing, or None."""
        if is_hidden(snapshot):
            return ("a hidden snapshot (deleted by Cinder or destroyed deferred): ZFS "
                    "destroys it when its last clone goes")
        if is_clone_temp(snapshot):
            return "the driver's temp snapshot behind a clone"
        return None

    @staticmethod
    def live_refusal(snapshot: Snapshot) -> str | None:
        """Why ``snapshot`` belongs to Cinder already (listed as not safe), or None."""
        if snapshot.user_props.get(PROP_CINDER_SNAPSHOT) == "true":
            return (f"a live Cinder snapshot (it carries {PROP_CINDER_SNAPSHOT}, which "
                    f"unmanage removes); unmanage it first, or, if Cinder has no such "
                    f"snapshot, clear the mark with `zfs inherit {PROP_CINDER_SNAPSHOT} "
                    f"{snapshot.name}`")
        return None

    def snapshot_refusal(self, snapshot: Snapshot) -> str | None:
        """Why ``snapshot`` must not be managed, or None when it may be."""
        return self.internal_refusal(snapshot) or self.live_refusal(snapshot)

    def _check_manageable(self, volume: Volume) -> None:
        reason = self.refusal(volume)
        if reason:
            raise NotManageable(f"{volume.name} cannot be managed: it is {reason}", volume.name)

    def candidates(self) -> list[Volume]:
        """zvols under the root that might be managed, with the driver's own objects left out
        (hidden, scratch). Live Cinder volumes are listed: get_manageable_volumes shows them
        as not safe, with the reason."""
        return [v for v in self.zfs.list_volumes(self.names.root)
                if not v.name.startswith(self.names.trash_root + "/")
                and not revert_scratch_id_of(v.name)]

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
        self.zfs.get_volume(name)  # NotFound / not a zvol
        return name

    def manageable_volume(self, reference: dict) -> Volume:
        """The zvol the reference names, if it may be managed; NotManageable otherwise."""
        volume = self.zfs.get_volume(self.find_volume(reference))
        self._check_manageable(volume)
        return volume

    def volume_size(self, reference: dict) -> int:
        return size_gb(self.manageable_volume(reference).volsize)

    def adopt_volume(self, reference: dict, project_id: str, volume_id: str) -> str:
        """Rename the referenced zvol into the storage model and mark it as this volume's."""
        volume = self.manageable_volume(reference)
        source = volume.name
        target = self.names.volume(project_id, volume_id)
        if volume_id_of(source) and source != target:
            LOG.info("Adopting %s, which looks like an unmanaged Cinder volume", source)
        wanted = size_gb(volume.volsize) * GiB
        if wanted != volume.volsize:  # Cinder counts whole GiB: grow to what it records
            self.zfs.set_properties(source, {"volsize": str(wanted)})
        if source != target:
            self.ops.ensure_tenant(project_id)
            self.zfs.rename(source, target)
            self.ops.index.dataset_renamed(source, target)
        self.zfs.set_properties(target, self.ops.owner_properties(project_id, volume_id))
        LOG.info("Managed %s as %s", source, target)
        return target

    def release_volume(self, name: str) -> None:
        """Unmanage: the zvol stays as it is, without the ownership marks."""
        for prop in OWNERSHIP:
            self.zfs.inherit(name, prop)

    def find_snapshot(self, volume_name: str, reference: dict) -> str:
        ref = (reference or {}).get("source-name")
        if not isinstance(ref, str) or not ref:
            raise errors.InvalidArgument(
                f"manage needs a reference {{'source-name': '<snapshot>'}}; got {reference!r}")
        short = ref.rpartition("@")[2]
        name = f"{volume_name}@{short}"
        self.names.check(name)
        reason = self.snapshot_refusal(self.zfs.get_snapshot(name))
        if reason:
            raise NotManageable(f"{name} cannot be managed: it is {reason}", name)
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
            # a row to complete: completion only fills rows an intent made
            self.ops.index.creating([target], None)
            self.ops.index.created([target])
        self.zfs.set_properties(target, {PROP_CINDER_SNAPSHOT: "true"})
        LOG.info("Managed snapshot %s as %s", source, target)
        return target

    def release_snapshot(self, name: str) -> None:
        """Unmanage: the snapshot stays under its name, without the live-snapshot mark (a
        later volume delete still refuses to destroy it: it is not hidden)."""
        self.zfs.inherit(name, PROP_CINDER_SNAPSHOT)

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
        self.zfs.set_properties(target, self.ops.owner_properties(project_id, volume_id))
        return target
