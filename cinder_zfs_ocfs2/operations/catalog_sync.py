"""Write-through from the lifecycle operations into the snapshot catalog.

The pool is the truth and the catalog an index over it: a catalog failure is logged and never
fails a Cinder operation (reconciliation repairs the index). An intent row goes in before a
snapshot is made, the pool's values after; a crash in between leaves an intent that the next
reconciliation resolves.

Completing a new snapshot's row needs the pool's values (guid, createtxg, sizes), one `zfs list`
on the node. That listing costs as much as the snapshot itself, so it is deferred: `created`
queues the names and returns; a background worker completes every queued name with ONE listing.
Every other event first drains the queue, so the catalog sees events in the order they
happened (a late completion never resurrects a snapshot deleted meanwhile). A crash loses only
queued completions: their intent rows stay, and reconciliation resolves them.
"""

from __future__ import annotations

import functools
import threading
import time

from oslo_log import log as logging

from cinder_zfs_ocfs2.zfs.client import ZFSClient
from cinder_zfs_ocfs2.zfs.names import TRASH, snapshot_id_of, volume_id_of

LOG = logging.getLogger(__name__)


def _best_effort(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if self.catalog is None:
            return None
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # the index must never fail the operation on the pool
            LOG.warning("Snapshot catalog update %s failed (%s); the next reconciliation "
                        "repairs it", method.__name__, exc)
            return None
    return wrapper


def _after_queued(method):
    """An event that must land after the queued completions (see the module docstring)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._order:
            self._complete_queued()
            return method(self, *args, **kwargs)
    return wrapper


class CatalogSync:
    def __init__(self, catalog, zfs: ZFSClient, root: str, backend: str):
        self.catalog = catalog
        self.zfs = zfs
        self.root = root
        self.backend = backend
        self.last_reconcile = 0.0
        self._queued: list[str] = []
        self._queue_lock = threading.Lock()
        self._order = threading.RLock()  # held while the catalog is written
        self._worker: threading.Thread | None = None

    @_best_effort
    def creating(self, snapshot_names: list[str], group_snapshot_id: str | None) -> None:
        from cinder_zfs_ocfs2.catalog import Intent

        intents = []
        for name in snapshot_names:
            dataset = name.partition("@")[0]
            project = dataset[len(self.root) + 1:].partition("/")[0]
            intents.append(Intent(name, snapshot_id_of(name), volume_id_of(dataset), project,
                                  group_snapshot_id, self.backend))
        self.catalog.begin_snapshots(intents)

    def created(self, snapshot_names: list[str]) -> None:
        """Queue the rows' completion from the pool; returns at once."""
        if self.catalog is None:
            return
        with self._queue_lock:
            self._queued.extend(snapshot_names)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, daemon=True,
                                                name="catalog-completion")
                self._worker.start()

    def _work(self) -> None:
        while True:
            self.flush()
            with self._queue_lock:  # a name queued after the flush gets this worker, not none
                if not self._queued:
                    self._worker = None
                    return

    def flush(self) -> None:
        """Complete every queued row now (the worker runs this; tests call it to wait)."""
        with self._order:
            self._complete_queued()

    @_best_effort
    def _complete_queued(self) -> None:
        while True:
            with self._queue_lock:
                names, self._queued = self._queued, []
            if not names:
                return
            # One listing for every name queued so far; a name deleted meanwhile is not listed.
            self.catalog.snapshots_created(self.zfs.get_snapshots(names), root=self.root,
                                           backend=self.backend)

    @_best_effort
    def failed(self, snapshot_names: list[str]) -> None:
        for name in snapshot_names:
            self.catalog.abandon_snapshot(name)

    @_best_effort
    @_after_queued
    def deleting(self, name: str) -> None:
        self.catalog.begin_delete(name)

    @_best_effort
    @_after_queued
    def deleted(self, name: str) -> None:
        self.catalog.snapshot_deleted(name)

    @_best_effort
    @_after_queued
    def hidden(self, name: str) -> None:
        self.catalog.snapshot_hidden(name)

    @_best_effort
    @_after_queued
    def dataset_destroyed(self, dataset: str) -> None:
        self.catalog.dataset_destroyed(dataset)

    @_best_effort
    @_after_queued
    def dataset_renamed(self, old: str, new: str) -> None:
        project = new[len(self.root) + 1:].partition("/")[0]
        # A hidden volume keeps its project: .trash is a place, not a tenant.
        self.catalog.dataset_renamed(old, new,
                                     project_id=None if project == TRASH else project)

    @_best_effort
    @_after_queued
    def reconcile(self, reason: str):
        """One scoped listing of the root applied as a diff (after promote, at start-up)."""
        listed_at = time.time()
        report = self.catalog.reconcile(self.zfs.list_snapshots(self.root), self.root,
                                        backend=self.backend, listed_at=listed_at)
        self.last_reconcile = time.monotonic()
        LOG.info("Snapshot catalog reconciled (%s): %s", reason, report.to_dict())
        return report

    @_best_effort
    def count(self) -> int:
        return self.catalog.count(backend=self.backend)

    @_best_effort
    def count_cinder_snapshots(self) -> int:
        """Snapshots Cinder knows (stats: total_snapshots): not the driver's internal ones,
        not hidden (Cinder deleted them) nor missing (never made)."""
        from cinder_zfs_ocfs2.catalog import models

        return self.catalog.count(backend=self.backend, kinds=[models.KIND_CINDER],
                                  states=[models.CREATING, models.AVAILABLE, models.DELETING])
