"""The lifecycle of volumes, snapshots and clones on ZFS, with the dependency rules.

Rules (DESIGN.md section 4):
- Nothing with dependents is ever destroyed: no `destroy -R`, no `rollback -r`.
- A snapshot Cinder deletes while clones depend on it is marked hidden and destroyed deferred
  (`destroy -d`): ZFS removes it when its last clone goes.
- A volume Cinder deletes while clones depend on its snapshots is marked hidden and renamed into
  <root>/.trash; reclaim destroys it when its last dependent goes. The state is in the pool
  (names and user properties), so a restart loses nothing.
- Snapshots the driver did not make (an admin's) are never destroyed: a delete that would need
  to is refused as busy. What the driver made is decided in zfs/names.py (prefix, UUID, marker).
- A dataset or snapshot already gone counts as deleted.
- Every dataset that holds a volume carries the same driver properties, however it was made
  (create, clone, revert by swap, migration): ``VolumeOperations.volume_properties``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets

from oslo_log import log as logging

from cinder_zfs_ocfs2.operations import locks
from cinder_zfs_ocfs2.operations.catalog_sync import CatalogSync
from cinder_zfs_ocfs2.operations.specs import VolumeSpec, round_up
from cinder_zfs_ocfs2.zfs import errors
from cinder_zfs_ocfs2.zfs.client import ZFSClient
from cinder_zfs_ocfs2.zfs.names import (
    CLONE_TEMP,
    TRASH,
    NameSpace,
    clone_temp_id_of,
    is_clone_temp,
    is_driver_made,
    is_internal,
    revert_scratch_id_of,
    volume_id_of,
)
from cinder_zfs_ocfs2.zfs.types import (
    PROP_BACKEND,
    PROP_CINDER_SNAPSHOT,
    PROP_FILESYSTEM,
    PROP_GROUP_SNAPSHOT_ID,
    PROP_HIDDEN,
    PROP_INTERNAL,
    PROP_OCFS2_STACK,
    PROP_PROJECT_ID,
    PROP_VOLUME_ID,
    Snapshot,
)

LOG = logging.getLogger(__name__)
GiB = 1024 ** 3
# Every zvol the driver makes: a plain block device on the node. The node's kernel and udev
# then never scan guest partition tables or LVM/MD signatures (no guest VG auto-activated).
ZVOL_PROPS = {"volmode": "dev"}
MAX_CHAIN = 1000  # guard against a corrupt origin loop while measuring clone depth
# A copy without the OCFS2 identity markers would skip `tunefs.ocfs2 --cloned-volume` on its
# own clones, and two mounts with one UUID in an o2cb cluster corrupt data.
FILESYSTEM_IDENTITY = (PROP_FILESYSTEM, PROP_OCFS2_STACK)
_NO_RESERVATION = (None, "", "-", "0", "none")


@dataclasses.dataclass(frozen=True)
class VolumeProperties:
    """What a dataset holding a volume carries. ``at_creation`` goes into the create, clone or
    receive call itself; ``thick`` asks for refreservation=auto once the size is final."""

    at_creation: dict[str, str]
    thick: bool


class VolumeOperations:
    def __init__(self, client: ZFSClient, names: NameSpace, defaults: VolumeSpec,
                 backend: str, max_clone_depth: int = 5, promote_on_delete: bool = False,
                 catalog=None, volume_locks: locks.Locks = locks.NO_LOCKS,
                 exported=frozenset):
        self.zfs = client
        self.locks = volume_locks  # the caller holds the volume locks a call names
        self.exported = exported  # () -> last name components (volume-<id>) with a target
        self.index = CatalogSync(catalog, client, names.root, backend)
        self.names = names
        self.defaults = defaults
        self.backend = backend
        self.max_clone_depth = max_clone_depth
        self.promote_on_delete = promote_on_delete

    # -- set-up ----------------------------------------------------------------------------

    def ensure_root(self, create: bool) -> None:
        for dataset in (self.names.root, self.names.trash_root):
            if self.zfs.exists(dataset):
                continue
            if not create:
                raise errors.NotFound(
                    f"root dataset {dataset} does not exist: create it (zfs create -p "
                    f"{dataset}) or set zfs_create_root_dataset = true", dataset)
            LOG.info("Creating dataset %s", dataset)
            self._create_parent(dataset)

    def zvols_not_like_new(self) -> list[str]:
        """zvols under the root whose ZVOL_PROPS differ from what new ones get (made by an
        older version, or managed). Reported, never changed here: changing volmode re-creates
        the device node, under any export of it."""
        rows = self.zfs.list_rows(self.names.root, ["volume"], ("name", *ZVOL_PROPS))
        return [row["name"] for row in rows
                if any(row.get(k) != v for k, v in ZVOL_PROPS.items())]

    def ensure_tenant(self, project_id: str) -> None:
        self._create_parent(self.names.tenant(project_id))

    def _create_parent(self, dataset: str) -> None:
        try:
            self.zfs.create_filesystem(dataset)
        except errors.AlreadyExists:
            pass  # another cinder-volume (or a retry) made it first

    def owner_properties(self, project_id: str, volume_id: str,
                         backend: str | None = None) -> dict[str, str]:
        """The ownership marks: whose volume this is, on which backend."""
        return {PROP_VOLUME_ID: volume_id, PROP_PROJECT_ID: project_id,
                PROP_BACKEND: backend or self.backend}

    def volume_properties(self, project_id: str, volume_id: str, *,
                          spec: VolumeSpec | None = None, source: str | None = None,
                          backend: str | None = None) -> VolumeProperties:
        """The one place that decides what a new dataset holding a volume carries.

        - ownership marks, for ``backend`` (default: this one), and ZVOL_PROPS;
        - the OCFS2 identity markers of ``source`` (the dataset or snapshot whose data the new
          dataset holds), so every later clone of it gets a new filesystem UUID;
        - compression and thick/thin: from ``spec`` when the volume type decides (create,
          clone, group from source), else kept from ``source`` (revert by swap, migration).
        """
        props = {**self.owner_properties(project_id, volume_id, backend), **ZVOL_PROPS}
        kept: dict = {}
        if source is not None:
            wanted = [*FILESYSTEM_IDENTITY] + (["compression", "refreservation"]
                                               if spec is None else [])
            kept = self.zfs.get_properties(source.partition("@")[0], wanted)
            props.update({p: kept[p] for p in FILESYSTEM_IDENTITY if kept.get(p)})
        if spec is not None:
            props.update(spec.zfs_properties())
            return VolumeProperties(props, thick=not spec.sparse)
        props["compression"] = kept.get("compression") or self.defaults.compression
        return VolumeProperties(props, thick=kept.get("refreservation") not in _NO_RESERVATION)

    def _reserve_if_thick(self, name: str, props: VolumeProperties) -> None:
        if props.thick:
            self.zfs.set_properties(name, {"refreservation": "auto"})

    # -- volumes ---------------------------------------------------------------------------

    def create_volume(self, project_id: str, volume_id: str, size_gb: int,
                      spec: VolumeSpec) -> str:
        name = self.names.volume(project_id, volume_id)
        self.ensure_tenant(project_id)
        props = self.volume_properties(project_id, volume_id, spec=spec)
        self.zfs.create_volume(name, round_up(size_gb * GiB, spec.volblocksize),
                               sparse=not props.thick, volblocksize=spec.volblocksize,
                               properties=props.at_creation)
        return name

    def extend_volume(self, name: str, new_size_gb: int) -> None:
        volume = self.zfs.get_volume(name)
        size = round_up(new_size_gb * GiB, volume.volblocksize or 1)
        if size < volume.volsize:
            raise errors.InvalidArgument(f"{name}: cannot shrink from {volume.volsize} to {size}")
        self.zfs.set_properties(name, {"volsize": str(size)})

    def apply_spec(self, name: str, old: VolumeSpec, new: VolumeSpec) -> None:
        """Retype in place: what a zvol can change after creation."""
        updates = {}
        if new.compression != old.compression:
            updates["compression"] = new.compression  # applies to data written from now on
        if new.sparse != old.sparse:
            updates["refreservation"] = "none" if new.sparse else "auto"
        if updates:
            self.zfs.set_properties(name, updates)

    def locate(self, project_id: str, volume_id: str) -> str:
        """The volume's dataset: at its computed name, else wherever its identity (the
        volume_id user property) is under the root, e.g. in another project's dataset after
        a transfer whose commit in Cinder failed. The computed name when it is nowhere.

        Callers hold the volume's lock, so no revert of it is in flight: a scratch clone of
        one found here was left by a crash and is settled first (it may hold the snapshots)."""
        name = self.names.volume(project_id, volume_id)
        scratch = self.names.revert_clone(project_id, volume_id)
        if self.zfs.exists(scratch):
            self._repair_revert(scratch)
        if self.zfs.exists(name):
            return name
        owned = [v.name for v in self.zfs.list_volumes(self.names.root)
                 if v.user_props.get(PROP_VOLUME_ID) == volume_id
                 and not v.name.startswith(self.names.trash_root + "/")]
        scratch = [n for n in owned if n.rpartition("/")[2].startswith("revert-")]
        if scratch:
            for clone in scratch:
                self._repair_revert(clone)
            return self.locate(project_id, volume_id)
        if len(owned) > 1:
            raise errors.Busy(f"volume {volume_id} is not at {name} and several datasets "
                              f"claim it: {', '.join(owned)}; keep the right one", name)
        if owned:
            LOG.warning("Volume %s is not at %s but at %s (moved outside this call, e.g. a "
                        "transfer Cinder did not record)", volume_id, name, owned[0])
            return owned[0]
        return name

    def delete_volume(self, project_id: str, volume_id: str) -> None:
        name = self.locate(project_id, volume_id)
        if not self.zfs.exists(name):
            LOG.warning("Volume %s is already gone from the pool; counting it as deleted", name)
            return
        snapshots = self.zfs.list_snapshots(name, depth=1)
        foreign = [s.name for s in snapshots if not is_driver_made(s)]
        if foreign:
            raise errors.Busy(
                f"volume {name} has snapshots the driver did not make: {', '.join(foreign)}. "
                f"They are never destroyed by a volume delete: destroy, rename or keep them "
                f"on the node, then retry the delete", name)
        visible = [s.name for s in snapshots if not is_internal(s)]
        if visible:
            raise errors.Busy(f"volume {name} still has snapshots Cinder knows: "
                              f"{', '.join(visible)}; delete them first", name)
        pinned = [s for s in snapshots if s.clones]
        if pinned and self.promote_on_delete:
            pinned = self._promote_newest_clone(name, pinned)
        if not pinned:
            self._destroy_and_release(name)
            LOG.info("Destroyed volume %s", name)
            return
        self._hide_volume(name, volume_id, snapshots)

    @contextlib.contextmanager
    def _origin_held(self, name: str):
        """Yield (origin of ``name``, whether its owner's lock is held).

        The origin's owner is discovered, so its lock is only tried (operations.locks rule 2);
        a promote under that lock may change the origin, so it is read again once held."""
        origin = self.zfs.get_volume(name).origin
        for _ in range(3):
            owner = locks.owner_of(origin) if origin else None
            with self.locks.hold([owner] if owner else [], locks.DISCOVERED_WAIT) as held:
                if held:
                    current = self.zfs.get_volume(name).origin
                    if current == origin:
                        yield origin, True
                        return
            if not held:
                break
            origin = current
        yield origin, False

    def _destroy_and_release(self, name: str) -> None:
        """Destroy ``name`` (nothing depends on it), then drop its origin if nothing else
        needs that origin. Destroying a clone never harms its origin, so when the origin's
        owner is busy the release is left to the periodic pass."""
        with self._origin_held(name) as (origin, held):
            self.zfs.destroy(name, recursive=True)
            self.index.dataset_destroyed(name)
            if held:
                self._origin_released(origin)
            elif origin:
                LOG.info("Origin %s of destroyed %s is busy; the periodic pass releases it",
                         origin, name)

    def _promote_newest_clone(self, name: str, pinned: list[Snapshot]) -> list[Snapshot]:
        """Move the origin role to the newest clone; returns what still pins ``name``.

        The heir is discovered, so its lock is only tried (operations.locks rule 2), and the
        heir is chosen again once its lock is held: a delete of that clone running beside
        this call (in another service of the cluster) may have destroyed it meanwhile."""
        heir = self._newest_clone(pinned)
        for _ in range(3):
            if heir is None:
                return [s for s in self.zfs.list_snapshots(name, depth=1) if s.clones]
            # The heir's own calls (a clone of it: its temp snapshot) must not see it
            # promoted and pruned under them.
            with self.locks.hold([locks.owner_of(heir)], locks.DISCOVERED_WAIT) as held:
                if not held:
                    LOG.info("Not promoting %s: it is busy; hiding deleted volume %s instead",
                             heir, name)
                    return pinned
                pinned = [s for s in self.zfs.list_snapshots(name, depth=1) if s.clones]
                current = self._newest_clone(pinned)
                if current == heir:
                    LOG.info("Promoting %s so deleted volume %s stops pinning space", heir,
                             name)
                    self.zfs.promote(heir)
                    self.index.refresh([name, heir], "promote")  # it moved snapshots
                    self._prune_internal(heir)
                    return [s for s in self.zfs.list_snapshots(name, depth=1) if s.clones]
            LOG.info("Clone %s of deleted volume %s changed while its lock was awaited; "
                     "choosing the heir again", heir, name)
            heir = current
        LOG.info("The clones of deleted volume %s keep changing; hiding it instead", name)
        return pinned

    def _newest_clone(self, pinned: list[Snapshot]) -> str | None:
        """The newest clone of the newest pinned snapshot (None when there is none left)."""
        if not pinned:
            return None
        newest = max(pinned, key=lambda s: s.createtxg)
        clones = []
        for clone in newest.clones:
            try:
                clones.append(self.zfs.get_volume(clone))
            except errors.NotFound:  # destroyed since the listing
                continue
        return max(clones, key=lambda v: v.creation).name if clones else None

    def _hide_volume(self, name: str, volume_id: str, snapshots: list[Snapshot]) -> None:
        for snapshot in snapshots:
            if not snapshot.clones:
                self._destroy_quietly(snapshot.name)
        trash = self.names.trash(volume_id, secrets.token_hex(4))
        self.zfs.rename(name, trash)
        self._mark_hidden(trash)
        self.index.dataset_renamed(name, trash)
        LOG.info("Volume %s has clones; hidden as %s until they are gone", name, trash)

    def _mark_hidden(self, trash: str) -> None:
        """Only once in .trash: a crash before the rename leaves a live volume looking live
        (its snapshots inherit the marker). The reclaim pass marks one a crash left unmarked."""
        self.zfs.set_properties(trash, {PROP_HIDDEN: "true"})

    def _destroy_quietly(self, snapshot: str) -> bool:
        """Destroy an internal snapshot nothing depends on; False if something still does."""
        try:
            self.zfs.destroy(snapshot)
        except errors.NotFound:
            pass
        except errors.Busy as exc:  # a clone or a hold appeared meanwhile
            LOG.info("Keeping %s: %s", snapshot, exc)
            return False
        self.index.deleted(snapshot)
        return True

    def _prune_internal(self, dataset: str) -> list[Snapshot]:
        """Destroy the dataset's internal snapshots without clones; return the ones left."""
        left = []
        for snapshot in self.zfs.list_snapshots(dataset, depth=1):
            if snapshot.clones or not is_internal(snapshot) or \
                    not self._destroy_quietly(snapshot.name):
                left.append(snapshot)
        return left

    def _origin_released(self, origin: str | None) -> None:
        """A clone of ``origin`` is gone: drop the origin if it only existed for that clone."""
        if not origin:
            return
        try:
            snapshot = self.zfs.get_snapshot(origin)
        except errors.NotFound:
            snapshot = None  # deferred destroy already took it
        if snapshot is not None and not snapshot.clones and is_internal(snapshot):
            self._destroy_quietly(origin)
        dataset = origin.partition("@")[0]
        if dataset.startswith(self.names.trash_root + "/"):
            self._reclaim(dataset)

    def _reclaim(self, dataset: str) -> bool:
        """Destroy a hidden volume whose dependents are all gone. True if it went.

        The caller holds the hidden volume's lock (its owner's, locks.owner_of)."""
        try:
            left = self._prune_internal(dataset)
            if left:
                return False
            self._destroy_and_release(dataset)
        except errors.NotFound:
            self.index.dataset_destroyed(dataset)
            return True
        except errors.Busy as exc:
            LOG.info("Hidden volume %s still pinned: %s", dataset, exc)
            return False
        LOG.info("Reclaimed hidden volume %s", dataset)
        return True

    def reclaim(self) -> int:
        """Reclaim every hidden volume without dependents (start-up and periodic; the caller
        holds ``maintenance``). A volume whose lock is taken is in use: the next pass sees it."""
        try:
            hidden = self.zfs.list_volumes(self.names.trash_root, depth=1)
        except errors.NotFound:
            return 0
        reclaimed = 0
        for volume in hidden:
            with self.locks.hold([locks.owner_of(volume.name)], 0) as held:
                if not held:
                    continue
                if volume.user_props.get(PROP_HIDDEN) != "true":
                    self._mark_hidden(volume.name)
                if self._reclaim(volume.name):
                    reclaimed += 1
        return reclaimed

    def maintenance(self, wait: float | None):
        """The lock of start-up repair and the periodic pass over this root (one process at
        a time; operations.locks rule 3). A context manager yielding whether it is held."""
        return self.locks.hold([locks.maintenance(self.names.root)], wait)

    # -- snapshots -------------------------------------------------------------------------

    def create_snapshots(self, snapshot_names: list[str],
                         group_snapshot_id: str | None = None) -> None:
        """One ZFS call for all: one txg, all-or-nothing; each marked as a live Cinder
        snapshot (manage refuses those)."""
        props = {PROP_CINDER_SNAPSHOT: "true"}
        if group_snapshot_id:
            props[PROP_GROUP_SNAPSHOT_ID] = group_snapshot_id
        self._snapshot(snapshot_names, props, group_snapshot_id)

    def create_clone_temps(self, snapshot_names: list[str]) -> None:
        """Temp snapshots behind clones and copies, marked as the driver's own when taken (a
        clone-<uuid> name alone does not make a snapshot internal: zfs/names.py)."""
        self._snapshot(snapshot_names, {PROP_INTERNAL: CLONE_TEMP})

    def _snapshot(self, snapshot_names: list[str], props: dict | None,
                  group_snapshot_id: str | None = None) -> None:
        self.index.creating(snapshot_names, group_snapshot_id)
        try:
            self.zfs.snapshot(snapshot_names, props)
        except errors.ZFSError:
            self.index.failed(snapshot_names)
            raise
        self.index.created(snapshot_names)

    def delete_snapshot(self, name: str) -> None:
        try:
            snapshot = self.zfs.get_snapshot(name)
        except errors.NotFound:
            snapshot = self._snapshot_by_identity(name)
            if snapshot is None:
                LOG.warning("Snapshot %s is already gone; counting it as deleted", name)
                self.index.deleted(name)
                return
            name = snapshot.name
        self.index.deleting(name)
        if not snapshot.clones:
            try:
                self.zfs.destroy(name)
                self.index.deleted(name)
                return
            except errors.NotFound:
                self.index.deleted(name)
                return
            except errors.HasDependents:
                pass  # a clone appeared since the listing: hide it instead
        self.zfs.set_properties(name, {PROP_HIDDEN: "true"})
        self.zfs.destroy(name, defer=True)
        self.index.hidden(name)
        LOG.info("Snapshot %s has clones; hidden, destroyed by ZFS when the last goes", name)

    def _snapshot_by_identity(self, name: str) -> Snapshot | None:
        """The snapshot ``name`` on its volume wherever that volume is (see ``locate``)."""
        dataset, _, short = name.partition("@")
        volume_id = volume_id_of(dataset)
        project = dataset[len(self.names.root) + 1:].partition("/")[0]
        if volume_id is None or project == TRASH:
            return None
        located = self.locate(project, volume_id)  # may settle a crashed revert
        try:
            return self.zfs.get_snapshot(f"{located}@{short}")
        except errors.NotFound:
            return None

    # -- clones ----------------------------------------------------------------------------

    def clone_depth(self, dataset: str) -> int:
        """How many linked-clone hops lie behind ``dataset``."""
        depth, current = 0, dataset
        while depth < MAX_CHAIN:
            origin = self.zfs.get_volume(current).origin
            if not origin:
                return depth
            depth, current = depth + 1, origin.partition("@")[0]
        raise errors.ZFSError(f"origin chain of {dataset} is longer than {MAX_CHAIN}")

    def create_volume_from_snapshot(self, snapshot: str, project_id: str, volume_id: str,
                                    size_gb: int, spec: VolumeSpec) -> str:
        name = self.names.volume(project_id, volume_id)
        source = self.zfs.get_snapshot(snapshot)  # NotFound before anything is made
        mode = spec.clone_mode
        if mode == "linked":
            depth = self.clone_depth(source.dataset) + 1
            if depth > self.max_clone_depth:
                LOG.info("Clone chain would be %d deep (zfs_max_clone_depth %d): making %s "
                         "independent", depth, self.max_clone_depth, name)
                mode = "independent"
        self.ensure_tenant(project_id)
        props = self.volume_properties(project_id, volume_id, spec=spec, source=snapshot)
        if mode == "linked":
            self.zfs.clone(snapshot, name, props.at_creation)
            self.index.clone_made(snapshot, name)
        else:
            self._copy(snapshot, name, props.at_creation)
        try:
            self._finish_clone(name, size_gb, props)
        except Exception:
            self._destroy_new_volume(name)
            raise
        return name

    def _copy(self, snapshot: str, name: str, props: dict) -> None:
        LOG.info("Copying %s into independent volume %s (send|receive)", snapshot, name)
        result = self.zfs.send_receive(snapshot, name, props)
        LOG.info("Copied %s into %s: %s bytes in %s s", snapshot, name, result.get("bytes"),
                 result.get("seconds"))
        # receive brings the source snapshot along; the new volume starts with none.
        self.zfs.destroy(f"{name}@{snapshot.partition('@')[2]}")

    def _finish_clone(self, name: str, size_gb: int, props: VolumeProperties) -> None:
        volume = self.zfs.get_volume(name)
        wanted = round_up(size_gb * GiB, volume.volblocksize or 1)
        updates = {}
        if wanted > volume.volsize:
            updates["volsize"] = str(wanted)
        if props.thick:
            updates["refreservation"] = "auto"
        if updates:
            self.zfs.set_properties(name, updates)

    def _destroy_new_volume(self, name: str) -> None:
        try:
            origin = self.zfs.get_volume(name).origin
            self.zfs.destroy(name, recursive=True)
            self._origin_released(origin)
        except errors.ZFSError as exc:
            LOG.error("Could not remove half-made volume %s: %s", name, exc)

    def create_cloned_volume(self, source: str, project_id: str, volume_id: str,
                             size_gb: int, spec: VolumeSpec) -> str:
        return self.create_cloned_volumes([(source, project_id, volume_id, size_gb, spec)])[0]

    def create_cloned_volumes(self, requests: list[tuple[str, str, str, int, VolumeSpec]]
                              ) -> list[str]:
        """Clone volumes through temp snapshots named for the new volumes (no collisions),
        all taken in one call so a group's clones are consistent with each other.

        ``requests``: (source dataset, project id, new volume id, size in GiB, spec).
        """
        temps = [self.names.clone_snapshot(src, vid) for src, _, vid, _, _ in requests]
        self.create_clone_temps(temps)
        made: list[str] = []
        try:
            for temp, (_, project_id, volume_id, size_gb, spec) in zip(temps, requests,
                                                                        strict=True):
                made.append(self.create_volume_from_snapshot(temp, project_id, volume_id,
                                                             size_gb, spec))
        except Exception:
            for name in made:
                self._destroy_new_volume(name)
            for temp in temps:
                self._destroy_quietly(temp)
            raise
        for temp, name in zip(temps, made, strict=True):
            if self.zfs.get_volume(name).origin != temp:
                self._destroy_quietly(temp)  # independent copy: the temp snapshot did its job
        return made

    # -- migration -------------------------------------------------------------------------

    def copy_to_root(self, project_id: str, volume_id: str, dest: NameSpace,
                     dest_backend: str) -> str:
        """Copy a volume into another root on the same node (storage-assisted migration):
        send|receive of a temp snapshot; the source is left for the caller to delete. The copy
        belongs to ``dest_backend`` and keeps the source's properties."""
        name = self.names.volume(project_id, volume_id)
        target = dest.volume(project_id, volume_id)
        if self.zfs.exists(target):
            # Never ours to replace or clean up: a leftover of an earlier attempt, or another
            # volume's. The operator decides (compare, then `zfs destroy -r` it, or keep it).
            raise errors.AlreadyExists(
                f"cannot migrate {name}: {target} already exists on the destination; check "
                f"what it holds and destroy it before retrying the migration", target)
        props = self.volume_properties(project_id, volume_id, source=name, backend=dest_backend)
        temp = self.names.clone_snapshot(name, volume_id)
        received = f"{target}@{temp.partition('@')[2]}"  # receive brings the snapshot along
        self.create_clone_temps([temp])
        try:
            self._create_parent(dest.tenant(project_id))
            LOG.info("Migrating %s to %s by send|receive", name, target)
            done = False
            try:
                result = self.zfs.send_receive(temp, target, props.at_creation)
                done = True
                self.zfs.destroy(received)
                self._reserve_if_thick(target, props)
            except Exception:
                self._remove_failed_copy(target, received, done)
                raise
            LOG.info("Migrated %s to %s: %s bytes in %s s", name, target, result.get("bytes"),
                     result.get("seconds"))
        finally:
            self._destroy_quietly(temp)
        return target

    def _remove_failed_copy(self, target: str, received: str, done: bool) -> None:
        """Remove what a failed migration received, and only that: ``target`` is ours when the
        receive finished or when it holds the snapshot we sent (a reply lost on the way)."""
        try:
            if done or self.zfs.exists(received):
                self.zfs.destroy(target, recursive=True)
        except errors.ZFSError as exc:
            LOG.error("Could not remove the partial migration copy %s: %s; destroy it on the "
                      "node before retrying", target, exc)

    # -- revert ----------------------------------------------------------------------------

    def revert(self, project_id: str, volume_id: str, snapshot: str) -> None:
        """Make the volume hold ``snapshot``'s data, keeping every snapshot with dependents."""
        name = self.names.volume(project_id, volume_id)
        scratch = self.names.revert_clone(project_id, volume_id)
        if self.zfs.exists(scratch):
            self._repair_revert(scratch)  # an earlier attempt was cut short: settle it first
        snapshots = self.zfs.list_snapshots(name, depth=1)
        target = next((s for s in snapshots if s.name == snapshot), None)
        if target is None:
            raise errors.NotFound(f"snapshot {snapshot} does not exist", snapshot)
        newer = [s for s in snapshots if s.createtxg > target.createtxg]
        visible = [s.name for s in newer if not is_internal(s) and is_driver_made(s)]
        if visible:
            raise errors.NotLatest(f"{snapshot} is not the latest Cinder snapshot of {name} "
                                   f"(newer: {', '.join(visible)})", snapshot)
        removable = [s for s in newer if is_internal(s) and not s.clones]
        if len(removable) == len(newer):
            for s in removable:
                self.zfs.destroy(s.name)
            self.index.snapshots_destroyed(s.name for s in removable)
            self.zfs.rollback(snapshot)
            LOG.info("Rolled %s back to %s", name, snapshot)
            return
        self._revert_by_swap(project_id, volume_id, name, snapshot)

    def _revert_by_swap(self, project_id: str, volume_id: str, name: str,
                        snapshot: str) -> None:
        """Clone the target, promote the clone, and swap names: newer snapshots and their
        dependents move to a hidden copy instead of being destroyed."""
        scratch = self.names.revert_clone(project_id, volume_id)
        props = self.volume_properties(project_id, volume_id, source=name)
        LOG.info("Reverting %s to %s by clone-and-swap (newer snapshots have dependents)",
                 name, snapshot)
        self.zfs.clone(snapshot, scratch, props.at_creation)
        self._reserve_if_thick(scratch, props)  # a thick volume stays thick
        self.zfs.promote(scratch)
        self._swap_in(name, scratch, volume_id)
        self.index.refresh([name], "revert by clone-and-swap", volume_id=volume_id)

    def _swap_in(self, name: str, scratch: str, volume_id: str) -> None:
        trash = self.names.trash(volume_id, secrets.token_hex(4))
        self.zfs.rename(name, trash)
        self._mark_hidden(trash)
        self.zfs.rename(scratch, name)
        self._reclaim(trash)

    def repair(self) -> None:
        """Finish or undo a clone-and-swap revert cut short by a crash (start-up and the
        periodic pass, under ``maintenance``). A revert holds its volume's lock from start to
        end, so a scratch clone whose lock is free belongs to a revert that died."""
        for volume in self.zfs.list_volumes(self.names.root):
            if revert_scratch_id_of(volume.name):
                with self.locks.hold([locks.owner_of(volume.name)], 0) as held:
                    if held:
                        self._repair_revert(volume.name)

    def drop_orphan_clone_temps(self) -> int:
        """Destroy temp snapshots (@clone-<uuid>) without a clone that a crash left between
        the temp snapshot and the clone, or during a copy (start-up, under ``maintenance``).
        A call in flight holds its source volume's lock, so a temp whose lock is free is an
        orphan. One listing of every snapshot under the root: start-up only."""
        dropped = 0
        for snapshot in self.zfs.list_snapshots(self.names.root):
            if not is_clone_temp(snapshot) or snapshot.clones or \
                    snapshot.dataset.startswith(self.names.trash_root + "/"):
                continue  # in use, or the reclaim of a hidden volume prunes it
            with self.locks.hold([locks.owner_of(snapshot.dataset)], 0) as held:
                if held and self._destroy_quietly(snapshot.name):
                    LOG.warning("Dropped %s: a clone or copy from it was cut short",
                                snapshot.name)
                    dropped += 1
        return dropped

    def mark_legacy_clone_temps(self) -> int:
        """Mark the clone temps made before temps carried PROP_INTERNAL (start-up, once per
        upgrade): a @clone-<X> whose clone is volume-<X> can only be the driver's. An unmarked
        one without that clone stays an admin's as far as the driver knows: never destroyed."""
        marked = 0
        for snapshot in self.zfs.list_snapshots(self.names.root):
            temp_for = clone_temp_id_of(snapshot.name)
            if temp_for is None or PROP_INTERNAL in snapshot.user_props:
                continue
            if any(volume_id_of(clone) == temp_for for clone in snapshot.clones):
                self.zfs.set_properties(snapshot.name, {PROP_INTERNAL: CLONE_TEMP})
                marked += 1
        if marked:
            LOG.info("Marked %d clone temp snapshots made by an earlier version", marked)
        return marked

    def _repair_revert(self, scratch: str) -> None:
        volume_id = revert_scratch_id_of(scratch)
        project = scratch.rpartition("/")[0].rpartition("/")[2]
        name = self.names.volume(project, volume_id)
        if not self.zfs.exists(name):
            LOG.warning("Finishing interrupted revert: %s -> %s", scratch, name)
            self.zfs.rename(scratch, name)
            return
        origin = self.zfs.get_volume(name).origin
        if origin and origin.startswith(scratch + "@"):
            if name.rpartition("/")[2] in self.exported():
                # Reset and attached since the crash: swapping now would change the data
                # under a running guest. The scratch clone waits for a detach.
                LOG.error("Not finishing the interrupted revert of %s: it is exported; detach "
                          "it and the next repair pass finishes the revert", name)
                return
            LOG.warning("Finishing interrupted revert of %s (promoted, not swapped)", name)
            self._swap_in(name, scratch, volume_id)
        else:
            LOG.warning("Dropping unpromoted revert clone %s", scratch)
            self.zfs.destroy(scratch, recursive=True)

    # -- capacity --------------------------------------------------------------------------

    def capacity(self) -> dict:
        """Space from the pool's health and ONE `zfs get` of the root: no listing, so a stats
        poll costs the same at ten volumes and at ten thousand. Provisioned space is Cinder's
        own allocated_capacity_gb (the scheduler's default when a driver reports none)."""
        pool = self.zfs.pool_capacity(self.names.pool)
        # Usable space as ZFS accounts it (after redundancy), not the pool's raw size.
        space = self.zfs.get_properties(self.names.root, ["used", "available"])
        used, available = int(space["used"]), int(space["available"])
        return {"total_bytes": used + available, "free_bytes": available,
                "health": pool.health}
