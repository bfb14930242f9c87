"""The Cinder volume driver: maps each driver call to an operation on ZFS.

    volume_driver = cinder_zfs_ocfs2.driver.ZFSOCFS2Driver

No ZFS details here: names come from zfs.names, decisions from operations.volumes, iSCSI export
from Cinder's target helpers (export/). Errors are mapped to the exceptions the volume manager
expects at this boundary and nowhere else.
"""

from __future__ import annotations

import contextlib
import dataclasses

from cinder import coordination, exception, interface
from cinder.image import image_utils
from cinder.objects import fields
from cinder.volume import driver, volume_utils
from oslo_config import cfg
from oslo_log import log as logging

from cinder_zfs_ocfs2 import export, options, transport
from cinder_zfs_ocfs2.export.ocfs2 import PROP_FILESYSTEM, PROP_STACK, OCFS2Volumes, ocfs2_spec
from cinder_zfs_ocfs2.locking import CoordinationLocks, synchronized
from cinder_zfs_ocfs2.operations import locks, specs
from cinder_zfs_ocfs2.operations.batching import SnapshotBatcher
from cinder_zfs_ocfs2.operations.manage import ManageOperations
from cinder_zfs_ocfs2.operations.manage import size_gb as manage_size_gb
from cinder_zfs_ocfs2.operations.volumes import GiB, VolumeOperations
from cinder_zfs_ocfs2.zfs import errors
from cinder_zfs_ocfs2.zfs.client import ZFSClient
from cinder_zfs_ocfs2.zfs.names import NameSpace, is_internal, snapshot_id_of
from cinder_zfs_ocfs2.zfs.types import PROP_VOLUME_ID

LOG = logging.getLogger(__name__)
CONF = cfg.CONF


@contextlib.contextmanager
def cinder_errors(what: str, busy=None):
    """Turn ZFS errors into the Cinder exceptions the volume manager acts on.

    ``busy`` builds the exception for a dependency refusal (VolumeIsBusy/SnapshotIsBusy).
    """
    try:
        yield
    except errors.Busy as exc:
        if busy is not None:
            raise busy(exc.message) from exc
        raise exception.VolumeBackendAPIException(data=f"{what}: busy: {exc.message}") from exc
    except errors.InvalidArgument as exc:
        raise exception.InvalidInput(reason=f"{what}: {exc.message}") from exc
    except errors.NoSpace as exc:
        raise exception.VolumeBackendAPIException(
            data=f"{what}: the ZFS pool is out of space ({exc.message}); free space or add "
                 f"disks to the pool") from exc
    except errors.TransportError as exc:
        raise exception.VolumeBackendAPIException(
            data=f"{what}: storage node unreachable: {exc.message}") from exc
    except errors.ZFSError as exc:
        raise exception.VolumeBackendAPIException(data=f"{what}: {exc.message}") from exc


@contextlib.contextmanager
def manage_errors(existing_ref):
    """A reference that names nothing manageable is ManageExistingInvalidReference (the manager
    shows the reason to the user); anything else maps as in cinder_errors."""
    with cinder_errors(f"manage {existing_ref}"):
        try:
            yield
        except (errors.InvalidArgument, errors.NotFound) as exc:
            raise exception.ManageExistingInvalidReference(
                existing_ref=existing_ref, reason=exc.message) from exc


@interface.volumedriver
class ZFSOCFS2Driver(driver.VolumeDriver):
    """ZFS zvols with chain-free snapshots and O(1) clones, exported over iSCSI."""

    VERSION = "1.0.0"
    CI_WIKI_NAME = "cinder-zfs-ocfs2_CI"
    VENDOR = "cinder-zfs-ocfs2"
    # Every mutating call holds its volumes' locks (operations/locks.py), Cinder's tooz locks:
    # a distributed backend ([coordination] backend_url) makes them hold across a cluster.
    SUPPORTS_ACTIVE_ACTIVE = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.configuration.append_config_values(options.ALL_OPTS)
        self.backend_name = self.configuration.safe_get("volume_backend_name") or "ZFS"
        self.transport = None
        self.zfs: ZFSClient | None = None
        self.ops: VolumeOperations | None = None
        self.target_driver = None
        self.protocol = "iSCSI"
        self._start_up_pending = False  # the node was unreachable at check_for_setup_error

    @classmethod
    def get_driver_options(cls):
        return options.ALL_OPTS + cls._get_oslo_driver_opts(
            "target_ip_address", "target_helper", "target_protocol", "target_port",
            "target_prefix", "reserved_percentage", "max_over_subscription_ratio",
            "volume_backend_name")

    # -- set-up ----------------------------------------------------------------------------

    def _defaults(self) -> specs.VolumeSpec:
        conf = self.configuration
        return specs.VolumeSpec(
            sparse=conf.zfs_sparse_volumes,
            compression=specs.parse_compression("zfs_compression", conf.zfs_compression),
            volblocksize=specs.parse_blocksize("zfs_volblocksize", conf.zfs_volblocksize),
            clone_mode=conf.zfs_clone_mode)

    def do_setup(self, context):
        conf = self.configuration
        with cinder_errors("configuration"):
            names = NameSpace(conf.zfs_root_dataset)
            defaults = self._defaults()
        self.transport = transport.from_config(conf)
        self.zfs = ZFSClient(self.transport)
        coordination.COORDINATOR.start()  # the service started it already; tools and tests not
        self.ops = VolumeOperations(
            self.zfs, names, defaults, backend=self.backend_name,
            max_clone_depth=conf.zfs_max_clone_depth,
            promote_on_delete=conf.zfs_promote_newest_clone_on_delete,
            catalog=self._open_catalog(), volume_locks=CoordinationLocks(),
            exported=lambda: self._exported_names())
        self.manage = ManageOperations(self.ops)
        self.ocfs2 = OCFS2Volumes(self.transport)
        self.batcher = SnapshotBatcher(self.ops.create_snapshots,
                                       conf.zfs_snapshot_batch_window_ms)
        self.target_driver = export.target_driver_for(
            conf, self._execute, self.transport, conf.zfs_agent_mode, self.target_mapping)
        self.protocol = (self.target_driver.storage_protocol or self.target_driver.protocol)

    def _open_catalog(self):
        """The catalog of this backend: (config section, node, root), as the CLI opens it.

        Nothing connects here: a database that is down degrades the catalog (catalog_state in
        the stats), never this backend. Only a URL that cannot be a database fails."""
        from cinder_zfs_ocfs2.catalog import Catalog, default_url
        from cinder_zfs_ocfs2.catalog.identity import backend_identity

        section = self.configuration.config_group or self.backend_name
        url = self.configuration.zfs_catalog_connection or default_url(CONF.state_path,
                                                                       section)
        identity = backend_identity(section, self.configuration)
        try:
            return Catalog.from_url(url, identity=identity)
        except Exception as exc:
            raise exception.VolumeBackendAPIException(
                data=f"zfs_catalog_connection is not a usable SQLAlchemy URL ({exc}); fix it, "
                     f"or unset it for the embedded SQLite catalog") from exc

    def check_for_setup_error(self):
        """The node's checks, repair and reclaim. A node that cannot be reached now (rebooting
        while cinder-volume starts) does not fail the backend: Cinder gives up on a driver
        after a few init attempts and it would stay uninitialized until someone restarts
        the service. It starts with backend_state 'down' instead and finishes these steps
        in the first stats report that reaches the node."""
        try:
            with cinder_errors("storage node check"):
                self._start_up()
        except exception.VolumeBackendAPIException as exc:
            if not isinstance(exc.__cause__, errors.TransportError):
                raise
            self._start_up_pending = True
            LOG.warning("Backend %s starts without its storage node (%s); it reports "
                        "backend_state down and finishes its start-up checks when the node "
                        "answers. Check that the node is running and reachable.",
                        self.backend_name, exc.__cause__.message)

    def _start_up(self) -> None:
        version = self.zfs.version()
        pool = self.zfs.pool_capacity(self.ops.names.pool)
        if pool.health not in ("ONLINE", "DEGRADED"):
            raise exception.VolumeBackendAPIException(
                data=f"pool {pool.name} is {pool.health}: repair it (zpool status -x) "
                     f"before starting this backend")
        self.ops.ensure_root(self.configuration.zfs_create_root_dataset)
        # Another service of the cluster may be repairing right now: wait for it.
        with self.ops.maintenance(wait=None):
            self.ops.repair()
            reclaimed = self.ops.reclaim()
        self._report_zvols_not_like_new()
        self._start_up_pending = False
        # In the background: whole-root listings must not hold up the backend's start. Until
        # the legacy clone temps are marked they count as an admin's: kept, never destroyed.
        self.ops.index.reconcile_in_background("start-up", before=self._start_up_pool_pass)
        LOG.info("ZFS backend %s ready: OpenZFS %s, root %s, pool %s %s, %d hidden volumes "
                 "reclaimed", self.backend_name, version.get("zfs"), self.ops.names.root,
                 pool.name, pool.health, reclaimed)

    def _start_up_pool_pass(self) -> None:
        """Mark clone temps made before they carried a marker, then drop those a crash left
        without their clone."""
        self.ops.mark_legacy_clone_temps()
        self.ops.drop_orphan_clone_temps()

    def _periodic_repair(self) -> None:
        """Repair and reclaim in one service of a cluster at a time; the others skip. A failure
        is logged and retried at the next interval: it must never fail the stats report."""
        try:
            with self.ops.maintenance(wait=0) as ours:
                if ours:
                    self.ops.repair()
                    self.ops.reclaim()
        except errors.ZFSError as exc:
            LOG.warning("Periodic repair and reclaim of hidden volumes on %s failed (%s); "
                        "retried at the next interval", self.backend_name, exc.message)

    def _report_zvols_not_like_new(self) -> None:
        names = self.ops.zvols_not_like_new()
        if names:
            LOG.warning("%d zvols under %s lack %s (the node's udev scans their guest "
                        "partitions and LVM/MD signatures): %s. When a zvol is not attached, "
                        "`zfs set volmode=dev <zvol>` changes it.", len(names),
                        self.ops.names.root, "volmode=dev", ", ".join(names))

    # -- naming ----------------------------------------------------------------------------

    @staticmethod
    def _extra_specs(volume) -> dict:
        if volume.volume_type_id and volume.volume_type:
            return volume.volume_type.extra_specs or {}
        return {}

    def _spec(self, volume) -> specs.VolumeSpec:
        with cinder_errors(f"volume type of {volume.id}"):
            return specs.volume_spec(self._extra_specs(volume), self.ops.defaults)

    def _ocfs2_spec(self, volume):
        conf = self.configuration
        with cinder_errors(f"OCFS2 extra specs of volume {volume.id}"):
            return ocfs2_spec(self._extra_specs(volume), conf.ocfs2_default_slots,
                              conf.ocfs2_default_cluster_stack)

    def _volume_name(self, volume) -> str:
        # name_id: after a migration the backend object may carry the other volume's id.
        return self.ops.names.volume(volume.project_id, volume.name_id)

    def _snapshot_name(self, snapshot) -> str:
        # The dataset lives under the volume's project, whoever took the snapshot.
        volume_name = self._volume_name(snapshot.volume)
        return self.ops.names.snapshot(volume_name, snapshot.id)

    def _device_path(self, volume) -> str:
        return f"/dev/zvol/{self._volume_name(volume)}"

    # -- volumes ---------------------------------------------------------------------------

    @synchronized(locks.VOLUME)
    def create_volume(self, volume):
        spec = self._spec(volume)
        filesystem = self._ocfs2_spec(volume)  # bad specs refused before anything exists
        with cinder_errors(f"create volume {volume.id}"):
            name = self.ops.create_volume(volume.project_id, volume.name_id, volume.size, spec)
        if filesystem is not None:
            with self._undo_on_failure(volume), \
                    cinder_errors(f"format volume {volume.id} with OCFS2"):
                info = self.ocfs2.format(name, filesystem, volume.id)
                self.zfs.set_properties(name, OCFS2Volumes.properties(info))
            return self._metadata_update(volume, info)
        return None

    @contextlib.contextmanager
    def _undo_on_failure(self, volume):
        """A volume that failed half-way is removed: nothing is left behind on the pool."""
        try:
            yield
        except Exception:
            try:
                self.ops.delete_volume(volume.project_id, volume.name_id)
            except errors.ZFSError as exc:
                LOG.error("Could not remove half-made volume %s: %s", volume.id, exc)
            raise

    @staticmethod
    def _metadata_update(volume, info: dict) -> dict:
        metadata = dict(volume.metadata) if volume.obj_attr_is_set("metadata") else {}
        metadata.update(OCFS2Volumes.metadata(info))
        return {"metadata": metadata}

    def _new_filesystem_identity(self, volume, filesystem):
        """A clone of an OCFS2 volume gets a new UUID before anyone can mount it.

        The clone carries its origin's identity markers (operations.volumes copies them to
        every new dataset); ``filesystem`` is the new volume's type, validated beforehand."""
        name = self._volume_name(volume)
        with self._undo_on_failure(volume), \
                cinder_errors(f"check filesystem of volume {volume.id}"):
            props = self.zfs.get_properties(name, [PROP_FILESYSTEM, PROP_STACK])
        if props.get(PROP_FILESYSTEM) != "ocfs2":
            return None
        label = (filesystem.label if filesystem and filesystem.label
                 else f"vol-{volume.id[:8]}")
        stack = props.get(PROP_STACK) or self.configuration.ocfs2_default_cluster_stack
        with self._undo_on_failure(volume), \
                cinder_errors(f"new OCFS2 identity for volume {volume.id}"):
            info = self.ocfs2.new_identity(name, label, stack)
            self.zfs.set_properties(name, OCFS2Volumes.properties(info))
        return self._metadata_update(volume, info)

    @synchronized(locks.VOLUME)
    def delete_volume(self, volume):
        with cinder_errors(f"delete volume {volume.id}",
                           busy=lambda m: exception.VolumeIsBusy(volume_name=f"{volume.id} "
                                                                 f"({m})")):
            self.ops.delete_volume(volume.project_id, volume.name_id)

    @synchronized(locks.VOLUME)
    def extend_volume(self, volume, new_size):
        with cinder_errors(f"extend volume {volume.id}"):
            self.ops.extend_volume(self._volume_name(volume), new_size)
        self.target_driver.extend_target(volume)

    @synchronized(locks.VOLUME, locks.SNAPSHOT_VOLUME)
    def create_volume_from_snapshot(self, volume, snapshot):
        spec = self._spec(volume)
        filesystem = self._ocfs2_spec(volume)  # bad specs refused before the clone exists
        source = self._snapshot_name(snapshot)
        with cinder_errors(f"create volume {volume.id} from snapshot {snapshot.id}"):
            self.ops.create_volume_from_snapshot(source, volume.project_id, volume.name_id,
                                                 volume.size, spec)
        return self._new_filesystem_identity(volume, filesystem)

    @synchronized(locks.VOLUME, locks.SOURCE_VOLUME)
    def create_cloned_volume(self, volume, src_vref):
        spec = self._spec(volume)
        filesystem = self._ocfs2_spec(volume)  # bad specs refused before the clone exists
        if self._is_image_cache_entry(volume) and spec.clone_mode == "linked":
            # Cinder caches an image by cloning the user's first volume from it: a linked
            # clone would pin that user's volume (hidden, not freed) for as long as the cache
            # entry lives. Volumes made later from the cache entry are O(1) linked clones.
            spec = dataclasses.replace(spec, clone_mode="independent")
        source = self._volume_name(src_vref)
        with cinder_errors(f"clone volume {src_vref.id} into {volume.id}"):
            self.ops.create_cloned_volume(source, volume.project_id, volume.name_id,
                                          volume.size, spec)
        return self._new_filesystem_identity(volume, filesystem)

    @synchronized(locks.VOLUME)
    def revert_to_snapshot(self, context, volume, snapshot):
        with cinder_errors(f"revert volume {volume.id} to snapshot {snapshot.id}"):
            self.ops.revert(volume.project_id, volume.name_id, self._snapshot_name(snapshot))

    @staticmethod
    def _is_image_cache_entry(volume) -> bool:
        internal = getattr(CONF, "cinder_internal_tenant_project_id", None)
        return bool(internal) and volume.project_id == internal

    def backup_use_temp_snapshot(self):
        # Backing up from a snapshot attaches the snapshot itself (read-only, no clone),
        # which needs the agent's LIO: Cinder's rtstool opens devices read-write.
        wanted = bool(self.configuration.safe_get("backup_use_temp_snapshot"))
        if wanted and self.configuration.zfs_agent_mode != "ssh":
            LOG.warning("backup_use_temp_snapshot needs zfs_agent_mode = ssh; backups of %s "
                        "use a temporary clone instead", self.backend_name)
            return False
        return wanted

    def snapshot_revert_use_temp_snapshot(self):
        # A ZFS revert loses nothing with dependents, and a temp snapshot would be one more
        # snapshot newer than the target.
        return False

    # -- images: streamed through the agent, so cinder-volume needs no iSCSI initiator -----

    @synchronized(locks.VOLUME)
    def copy_image_to_volume(self, context, volume, image_service, image_id,
                             disable_sparse=False):
        # qemu-img converts into a scratch file in image_conversion_dir (this host needs room
        # for the image's virtual size); the agent writes it to the zvol and fsyncs.
        with image_utils.temporary_file(prefix="zfs-image-") as raw:
            image_utils.fetch_to_raw(context, image_service, image_id, raw,
                                     self.configuration.volume_dd_blocksize, size=volume.size,
                                     run_as_root=False, disable_sparse=disable_sparse)
            with cinder_errors(f"write image {image_id} to volume {volume.id}"):
                written = self.zfs.write_volume_from_file(self._volume_name(volume), raw)
        LOG.info("Wrote image %s to volume %s (%d bytes)", image_id, volume.id, written)

    def copy_volume_to_image(self, context, volume, image_service, image_meta):
        with image_utils.temporary_file(prefix="zfs-volume-") as raw:
            with cinder_errors(f"read volume {volume.id} for image {image_meta['id']}"):
                self.zfs.read_volume_to_file(self._volume_name(volume), raw)
            volume_utils.upload_volume(context, image_service, image_meta, raw, volume,
                                       run_as_root=False)

    # -- snapshots -------------------------------------------------------------------------

    @synchronized(locks.SNAPSHOT_VOLUME)
    def create_snapshot(self, snapshot):
        with cinder_errors(f"create snapshot {snapshot.id}"):
            self.batcher.snapshot(self._snapshot_name(snapshot))

    @synchronized(locks.SNAPSHOT_VOLUME)
    def delete_snapshot(self, snapshot):
        with cinder_errors(f"delete snapshot {snapshot.id}",
                           busy=lambda m: exception.SnapshotIsBusy(snapshot_name=f"{snapshot.id} "
                                                                   f"({m})")):
            self.ops.delete_snapshot(self._snapshot_name(snapshot))

    # -- manage / unmanage / transfer / retype / migration ------------------------------------

    def manage_existing_get_size(self, volume, existing_ref):
        with manage_errors(existing_ref):
            return self.manage.volume_size(existing_ref)

    @synchronized(locks.VOLUME)
    def manage_existing(self, volume, existing_ref):
        self._spec(volume)  # a bad volume type fails before anything is renamed
        with manage_errors(existing_ref):
            self.manage.adopt_volume(existing_ref, volume.project_id, volume.name_id)

    @synchronized(locks.VOLUME)
    def unmanage(self, volume):
        with cinder_errors(f"unmanage volume {volume.id}"):
            self.manage.release_volume(self._volume_name(volume))

    def manage_existing_snapshot_get_size(self, snapshot, existing_ref):
        with manage_errors(existing_ref):
            return self.manage.snapshot_size(self._volume_name(snapshot.volume), existing_ref)

    @synchronized(locks.SNAPSHOT_VOLUME)
    def manage_existing_snapshot(self, snapshot, existing_ref):
        with manage_errors(existing_ref):
            self.manage.adopt_snapshot(self._volume_name(snapshot.volume), existing_ref,
                                       snapshot.id)

    @synchronized(locks.SNAPSHOT_VOLUME)
    def unmanage_snapshot(self, snapshot):
        name = self._snapshot_name(snapshot)
        with cinder_errors(f"unmanage snapshot {snapshot.id}"):
            self.manage.release_snapshot(name)
        LOG.info("Unmanaged snapshot %s; it stays on the pool as %s", snapshot.id, name)

    def get_manageable_volumes(self, cinder_volumes, marker, limit, offset, sort_keys,
                               sort_dirs):
        managed = {v.name_id: v.id for v in cinder_volumes}
        exported = self._exported_names()
        entries = []
        with cinder_errors("list manageable volumes"):
            candidates = self.manage.candidates()
        for zvol in candidates:
            owner = zvol.user_props.get(PROP_VOLUME_ID)
            cinder_id = managed.get(owner) if owner else None
            reason = None
            if cinder_id:
                reason = "already managed"
            elif self.manage.refusal(zvol):
                reason = self.manage.refusal(zvol)
            elif zvol.name.rpartition("/")[2] in exported:
                reason = "exported (in use)"
            entries.append({
                "reference": {"source-name": zvol.name[len(self.ops.names.root) + 1:]},
                "size": manage_size_gb(zvol.volsize),
                "safe_to_manage": reason is None, "reason_not_safe": reason,
                "cinder_id": cinder_id, "extra_info": None})
        return volume_utils.paginate_entries_list(entries, marker, limit, offset, sort_keys,
                                                  sort_dirs)

    def get_manageable_snapshots(self, cinder_snapshots, marker, limit, offset, sort_keys,
                                 sort_dirs):
        managed = {s.id for s in cinder_snapshots}
        entries = []
        with cinder_errors("list manageable snapshots"):
            found = self._manageable_snapshots()
        for snap, volume in found:
            sid = snapshot_id_of(snap.name)
            cinder_id = sid if sid in managed else None
            live = self.manage.live_refusal(snap)
            entries.append({
                "reference": {"source-name": snap.short_name},
                "size": manage_size_gb(volume.volsize),
                "safe_to_manage": cinder_id is None and live is None,
                "reason_not_safe": "already managed" if cinder_id else live,
                "cinder_id": cinder_id, "extra_info": None,
                "source_reference": {"source-name": volume.name.rpartition("/")[2]}})
        return volume_utils.paginate_entries_list(entries, marker, limit, offset, sort_keys,
                                                  sort_dirs)

    def _manageable_snapshots(self) -> list:
        """(snapshot, its volume) pairs: from the catalog, each checked on the pool by one
        listing of just the datasets it names; a listing of every snapshot only when the
        catalog cannot answer."""
        from cinder_zfs_ocfs2.catalog import models

        index = self.ops.index
        if index.catalog is not None and index.state == "ok":
            try:
                rows = list(index.catalog.snapshots_of_scope(
                    states=[models.AVAILABLE],
                    kinds=[models.KIND_CINDER, models.KIND_OUT_OF_BAND]))
                datasets = sorted({r.dataset for r in rows})
                volumes = {v.name: v for v in self.zfs.get_volumes(datasets)} if datasets \
                    else {}
                snapshots = {s.name: s for s in self.zfs.get_snapshots(
                    [r.zfs_name for r in rows if r.dataset in volumes])} if volumes else {}
                return [(s, volumes[s.dataset]) for s in snapshots.values()
                        if self._manageable(s, volumes)]
            except Exception as exc:  # the pool answers what the catalog cannot
                LOG.warning("Manageable snapshots from the catalog failed (%s); listing the "
                            "pool instead", exc)
        volumes = {v.name: v for v in self.manage.candidates()}
        return [(s, volumes[s.dataset]) for s in self.zfs.list_snapshots(self.ops.names.root)
                if self._manageable(s, volumes)]

    def _manageable(self, snap, volumes: dict) -> bool:
        volume = volumes.get(snap.dataset)
        return volume is not None and not is_internal(snap) and \
            not self.manage.internal_refusal(snap) and \
            not volume.name.startswith(self.ops.names.trash_root + "/") and \
            not volume.name.rpartition("/")[2].startswith("revert-")

    def _exported_names(self) -> set[str]:
        """Last name components (volume-<id>) of zvols with an iSCSI target."""
        prefix = self.configuration.safe_get("target_prefix") or ""
        list_targets = getattr(self.target_driver, "_get_targets", None)  # LIO helpers
        if list_targets is None:
            return set()
        try:
            out = list_targets()
        except Exception as exc:  # listing must not fail because the target tool did
            LOG.warning("Cannot list iSCSI targets to mark exported zvols: %s", exc)
            return set()
        return {line.strip()[len(prefix):] for line in (out or "").splitlines()
                if line.strip().startswith(prefix)}

    @synchronized(locks.VOLUME)
    def accept_transfer(self, context, volume, new_user, new_project):
        # The zvol lives under its project's dataset: move it with the volume.
        with cinder_errors(f"transfer volume {volume.id} to project {new_project}"):
            # located: a retry finds it where an earlier attempt Cinder did not record left it
            self.manage.transfer(self.ops.locate(volume.project_id, volume.name_id),
                                 new_project, volume.name_id)

    @synchronized(locks.VOLUME)
    def retype(self, context, volume, new_type, diff, host):
        if volume_utils.extract_host(host["host"], "backend") != \
                volume_utils.extract_host(volume.host, "backend"):
            return False, None  # another backend: Cinder migrates
        old = self._spec(volume)
        old_filesystem = self._ocfs2_spec(volume)
        conf = self.configuration
        new_specs = new_type.get("extra_specs") or {}
        with cinder_errors(f"retype volume {volume.id}"):
            new = specs.volume_spec(new_specs, self.ops.defaults)
            new_filesystem = ocfs2_spec(new_specs, conf.ocfs2_default_slots,
                                        conf.ocfs2_default_cluster_stack)
            if new.volblocksize != old.volblocksize:
                return False, None  # fixed at creation: needs a migration (a new zvol)
            if new_filesystem != old_filesystem:
                # ocfs2:* say how a volume is formatted when it is made; a volume holding data
                # is never reformatted or re-stacked in place.
                LOG.info("Retype of volume %s changes its ocfs2: extra specs; not done in "
                         "place (Cinder migrates it, if the retype's migration policy allows)",
                         volume.id)
                return False, None
            self.ops.apply_spec(self._volume_name(volume), old, new)
        return True, None

    def _node_id(self) -> str:
        """Which storage node this backend talks to (backends on one node can migrate)."""
        from cinder_zfs_ocfs2.catalog.identity import node_of

        return node_of(self.configuration)

    @synchronized(locks.VOLUME)
    def migrate_volume(self, ctxt, volume, host):
        """Storage-assisted migration to another root (pool) of the same node."""
        location = (host.get("capabilities") or {}).get("location_info") or ""
        kind, _, rest = location.partition(":")
        node, _, dest_root = rest.rpartition(":")
        if kind != "ZFSOCFS2Driver" or node != self._node_id() or \
                dest_root == self.ops.names.root or volume.status != "available":
            return False, None  # Cinder's generic (host-assisted) migration does it
        # The copy belongs to the destination backend: its stats name it.
        dest_backend = host["capabilities"].get("volume_backend_name") or \
            volume_utils.extract_host(host["host"], "backend").partition("@")[2]
        with cinder_errors(f"migrate volume {volume.id} to {dest_root}"):
            dest = NameSpace(dest_root)
            self.ops.copy_to_root(volume.project_id, volume.name_id, dest, dest_backend)
            self.ops.delete_volume(volume.project_id, volume.name_id)
        return True, None

    @synchronized(locks.VOLUME, locks.NEW_VOLUME)
    def update_migrated_volume(self, ctxt, volume, new_volume, original_volume_status):
        """Give the migrated dataset its original name back, as Cinder's LVM driver does: only
        when the volume was 'available'. An in-use volume's export (IQN, LIO backstore path)
        was built from the current name; renaming under it would leak the real target, keep
        the zvol open (delete busy forever) and leave a stale path after a node reboot."""
        keep = {"_name_id": new_volume.name_id,
                "provider_location": new_volume.get("provider_location")}
        if original_volume_status != "available":
            return keep
        original = self.ops.names.volume(volume.project_id, volume.id)
        current = self._volume_name(new_volume)
        try:
            if self.zfs.exists(original):
                LOG.info("Keeping migrated volume %s as %s: %s is still taken", volume.id,
                         current, original)
                return keep
            self.manage.rename_volume(current, original)
        except errors.ZFSError as exc:
            LOG.warning("Keeping migrated volume %s as %s: %s", volume.id, current, exc)
            return keep
        return {"_name_id": None, "provider_location": None}

    # -- groups: consistent group snapshots are one ZFS call ---------------------------------

    def create_group(self, context, group):
        if not volume_utils.is_group_a_cg_snapshot_type(group):
            raise NotImplementedError()  # the manager's generic groups handle the rest
        return {"status": fields.GroupStatus.AVAILABLE}

    def update_group(self, context, group, add_volumes=None, remove_volumes=None):
        if not volume_utils.is_group_a_cg_snapshot_type(group):
            raise NotImplementedError()
        return None, None, None  # membership lives in Cinder's DB; nothing on the pool

    def delete_group(self, context, group, volumes):
        if not volume_utils.is_group_a_cg_snapshot_type(group):
            raise NotImplementedError()
        updates, status = [], fields.GroupStatus.DELETED
        for volume in volumes:
            try:
                self.delete_volume(volume)
                updates.append({"id": volume.id, "status": "deleted"})
            except exception.CinderException as exc:
                LOG.error("Group %s: deleting volume %s failed: %s", group.id, volume.id, exc)
                updates.append({"id": volume.id, "status": "error_deleting"})
                status = fields.GroupStatus.ERROR_DELETING
        return {"status": status}, updates

    def create_group_snapshot(self, context, group_snapshot, snapshots):
        if not volume_utils.is_group_a_cg_snapshot_type(group_snapshot):
            raise NotImplementedError()
        with self._all_locked([s.volume for s in snapshots]), \
                cinder_errors(f"create group snapshot {group_snapshot.id}"):
            self.ops.create_snapshots([self._snapshot_name(s) for s in snapshots],
                                      group_snapshot_id=group_snapshot.id)
        return ({"status": fields.GroupSnapshotStatus.AVAILABLE},
                [{"id": s.id, "status": fields.SnapshotStatus.AVAILABLE} for s in snapshots])

    def delete_group_snapshot(self, context, group_snapshot, snapshots):
        if not volume_utils.is_group_a_cg_snapshot_type(group_snapshot):
            raise NotImplementedError()
        for snapshot in snapshots:
            self.delete_snapshot(snapshot)
        return ({"status": fields.GroupSnapshotStatus.DELETED},
                [{"id": s.id, "status": fields.SnapshotStatus.DELETED} for s in snapshots])

    def create_group_from_src(self, context, group, volumes, group_snapshot=None,
                              snapshots=None, source_group=None, source_vols=None):
        if not volume_utils.is_group_a_cg_snapshot_type(group):
            raise NotImplementedError()
        updates = []
        if group_snapshot is not None:
            # The manager orders snapshots to match volumes.
            for volume, snapshot in zip(volumes, snapshots, strict=True):
                updates.append((volume, self.create_volume_from_snapshot(volume, snapshot)))
        else:
            by_id = {v.id: v for v in source_vols}
            requests = [(self._volume_name(by_id[v.source_volid]), v.project_id, v.name_id,
                         v.size, self._spec(v)) for v in volumes]
            filesystems = [self._ocfs2_spec(v) for v in volumes]  # all checked before any clone
            with self._all_locked([*volumes, *source_vols]), \
                    cinder_errors(f"create group {group.id} from group {source_group.id}"):
                self.ops.create_cloned_volumes(requests)
            for volume, filesystem in zip(volumes, filesystems, strict=True):
                updates.append((volume, self._new_filesystem_identity(volume, filesystem)))
        return None, [{"id": v.id, **u} for v, u in updates if u]

    def _all_locked(self, volumes):
        """The locks of a list of volumes, taken in one step like the decorator's
        (operations/locks.py rule 1)."""
        return self.ops.locks.hold([locks.volume(v.name_id) for v in volumes], None)

    # -- export (Cinder's target helpers, as the LVM driver plugs them in) -----------------

    def _wait_for_device(self, volume) -> str:
        with cinder_errors(f"export volume {volume.id}"):
            self.zfs.wait_for_device(self._volume_name(volume))
        return self._device_path(volume)

    def ensure_export(self, context, volume):
        return self.target_driver.ensure_export(context, volume, self._wait_for_device(volume))

    def create_export(self, context, volume, connector):
        info = self.target_driver.create_export(context, volume, self._wait_for_device(volume))
        return {"provider_location": info["location"], "provider_auth": info["auth"]}

    def remove_export(self, context, volume):
        self.target_driver.remove_export(context, volume)

    # A snapshot exported as it is, read-only, for backups: no clone. ZFS shows a zvol's
    # snapshots as (read-only) block devices while the zvol's snapdev property is visible.

    def create_export_snapshot(self, context, snapshot, connector):
        if self.configuration.zfs_agent_mode != "ssh":
            raise NotImplementedError("snapshot export needs the agent (zfs_agent_mode=ssh): "
                                      "Cinder's rtstool opens devices read-write")
        name = self._snapshot_name(snapshot)
        with cinder_errors(f"export snapshot {snapshot.id}"):
            self.zfs.set_properties(name.partition("@")[0], {"snapdev": "visible"})
            path = self.zfs.wait_for_device(name)
        info = self.target_driver.create_export(context, snapshot, path)
        return {"provider_location": info["location"], "provider_auth": info["auth"]}

    def remove_export_snapshot(self, context, snapshot):
        self.target_driver.remove_export(context, snapshot)
        # snapdev stays visible: another snapshot of the volume may be exported right now,
        # and hiding it would pull the device from under that export.

    def initialize_connection_snapshot(self, snapshot, connector, **kwargs):
        return self.target_driver.initialize_connection(snapshot, connector)

    def terminate_connection_snapshot(self, snapshot, connector, **kwargs):
        self.target_driver.terminate_connection(snapshot, connector, **kwargs)

    def initialize_connection(self, volume, connector, **kwargs):
        return self.target_driver.initialize_connection(volume, connector)

    def validate_connector(self, connector):
        return self.target_driver.validate_connector(connector)

    def terminate_connection(self, volume, connector, **kwargs):
        # One export per volume: with several attachments from the same host (multiattach),
        # the host's ACL must stay until the last of them goes.
        def same_host(attachment):
            return attachment.connector and self.target_driver.are_same_connector(
                attachment.connector, connector)

        attachments = volume.volume_attachment
        if volume.multiattach and sum(1 for a in attachments if same_host(a)) > 1:
            return True
        self.target_driver.terminate_connection(volume, connector, **kwargs)
        return len(attachments) > 1

    # -- stats -----------------------------------------------------------------------------

    def _update_volume_stats(self):
        """The backend's capabilities. A node that cannot be reached (or a pool that cannot be
        read) is reported as backend_state 'down' with no free space, so the scheduler places
        nothing here and the service stays up; the next report after the node answers again
        is 'up' (the transport reconnects by itself)."""
        conf = self.configuration
        stats = {
            "volume_backend_name": self.backend_name,
            "vendor_name": self.VENDOR,
            "driver_version": self.VERSION,
            "storage_protocol": self.protocol,
            "reserved_percentage": conf.reserved_percentage,
            "max_over_subscription_ratio": conf.max_over_subscription_ratio,
            "thin_provisioning_support": True,
            "thick_provisioning_support": True,
            "multiattach": True,
            "online_extend_support": True,
            "catalog_state": self.ops.index.state,
            "location_info": f"ZFSOCFS2Driver:{self._node_id()}:{self.ops.names.root}",
            "sparse_copy_volume": True,
            "QoS_support": False,
            "consistent_group_snapshot_enabled": True,
        }
        try:
            if self._start_up_pending:
                with cinder_errors("storage node check"):
                    self._start_up()
            capacity = self.ops.capacity()
        except exception.VolumeBackendAPIException as exc:
            LOG.warning("Backend %s stays down: %s", self.backend_name, exc.msg)
            self._stats = {**stats, "backend_state": "down", "backend_state_reason": exc.msg,
                           "total_capacity_gb": 0, "free_capacity_gb": 0,
                           "pool_health": "UNKNOWN"}
            return
        except errors.ZFSError as exc:
            LOG.warning("Backend %s is down: cannot read the capacity of %s (%s). Check that "
                        "the storage node is running and reachable; the backend comes back "
                        "by itself when it is.", self.backend_name, self.ops.names.root,
                        exc.message)
            self._stats = {**stats, "backend_state": "down", "backend_state_reason":
                           exc.message, "total_capacity_gb": 0, "free_capacity_gb": 0,
                           "pool_health": "UNKNOWN"}
            return
        # Due after the interval, or at once after a start-up pass that failed, but never
        # inside a failed pass's backoff; the pass runs in the background, not in this poll.
        if self.ops.index.reconcile_due(conf.zfs_catalog_reconcile_interval):
            self.ops.index.reconcile_in_background("periodic", before=self._periodic_repair)
        self._stats = {
            **stats,
            "backend_state": "up",
            "total_capacity_gb": round(capacity["total_bytes"] / GiB, 2),
            "free_capacity_gb": round(capacity["free_bytes"] / GiB, 2),
            # Cinder's snapshots only; None while the catalog cannot say
            "total_snapshots": self.ops.index.count_cinder_snapshots(),
            "pool_health": capacity["health"],
        }
