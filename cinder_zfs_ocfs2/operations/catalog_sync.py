"""Write-through from the lifecycle operations into the snapshot catalog.

The pool is the truth and the catalog an index over it: the catalog never fails an operation,
never delays one beyond a small bound, and never walks the pool on a request path.

- Events (intent, deleting, deleted, hidden, renamed, clone made, ...) go to ONE worker thread
  in the order they happen. While the catalog is healthy an operation waits for its event up to
  ``wait`` seconds (read-your-writes); while it is degraded it does not wait at all. A database
  that is down keeps the events (up to MAX_KEPT_EVENTS) and the worker replays them, backing off,
  when it returns; beyond that bound they are dropped and the next reconciliation repairs the
  index from the pool.
- A new snapshot's row needs the pool's values (guid, createtxg, sizes): a completion worker
  lists just the queued names, outside everything, and queues their completion. A completion
  only touches rows still 'creating', so one listed before a later delete changes nothing.
- Reconciliation (start-up, periodic) lists the root in a background thread, never under a lock,
  diffs off the eventlet hub (a native thread) and is applied with the listing's ``listed_at``
  cut-off; a failed pass backs off exponentially (capped) instead of restarting at every stats
  poll, and the failure shows as ``state`` DEGRADED (driver stats: catalog_state).
- Operations that move snapshots (revert by swap, promote) refresh just the datasets they touched
  with one listing of those datasets.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable

from oslo_log import log as logging

from cinder_zfs_ocfs2.zfs import errors
from cinder_zfs_ocfs2.zfs.client import ZFSClient
from cinder_zfs_ocfs2.zfs.names import TRASH, VOLUME_PREFIX, snapshot_id_of, volume_id_of

LOG = logging.getLogger(__name__)

OK = "ok"                # events applied, last reconciliation succeeded (or not due yet)
DEGRADED = "degraded"    # the database is unreachable or the last reconciliation failed
DISABLED = "disabled"    # no catalog configured

EVENT_WAIT_S = 2.0          # longest an operation waits for its catalog event
MAX_KEPT_EVENTS = 10000     # events kept while the database is down
RETRY_FIRST_S, RETRY_MAX_S = 1.0, 60.0             # replay of kept events
BACKOFF_FIRST_S, BACKOFF_MAX_S = 60.0, 3600.0      # a failed reconciliation's next try


def backoff(failures: int, first: float, cap: float) -> float:
    """Seconds before the next try after ``failures`` consecutive failures (>= 1)."""
    return min(cap, first * 2 ** max(0, failures - 1))


def off_the_hub(func: Callable, *args, **kwargs):
    """Run CPU-bound catalog work in a native thread when eventlet patched threads.

    cinder-volume runs under eventlet: a diff of a million rows in a green thread would freeze
    every other request until it ends; tpool runs it in a real thread and yields meanwhile.
    """
    try:
        from eventlet import patcher, tpool
    except ImportError:
        return func(*args, **kwargs)
    if patcher.is_monkey_patched("thread"):
        return tpool.execute(func, *args, **kwargs)
    return func(*args, **kwargs)


class _Event:
    """One catalog update. `done`: nobody need wait any longer (applied, or kept for a database
    that is down, or dropped); `applied`: the worker has run it."""

    __slots__ = ("what", "func", "args", "done", "applied", "result")

    def __init__(self, what: str, func: Callable, args: tuple):
        self.what, self.func, self.args = what, func, args
        self.done = threading.Event()
        self.applied = threading.Event()
        self.result = None


class CatalogSync:
    def __init__(self, catalog, zfs: ZFSClient, root: str, backend: str, *,
                 wait: float = EVENT_WAIT_S, retry_first: float = RETRY_FIRST_S,
                 retry_max: float = RETRY_MAX_S, backoff_first: float = BACKOFF_FIRST_S,
                 backoff_max: float = BACKOFF_MAX_S, clock: Callable[[], float] = time.monotonic):
        self.catalog = catalog
        self.zfs = zfs
        self.root = root
        self.backend = backend
        self.wait = wait
        self.retry_first, self.retry_max = retry_first, retry_max
        self.backoff_first, self.backoff_max = backoff_first, backoff_max
        self._clock = clock
        self.last_reconcile = 0.0          # monotonic time of the last successful pass
        self.reconcile_failures = 0
        self._reconcile_not_before = 0.0
        self._reconciler: threading.Thread | None = None
        self.last_error: str | None = None  # what the operator should know, when degraded
        # Events, applied in order by one worker.
        self._events: collections.deque[_Event] = collections.deque()
        self._events_cv = threading.Condition()
        self._event_worker: threading.Thread | None = None
        self._db_failures = 0
        self._retry_at = 0.0
        self._dropped = 0
        # Names whose rows wait for the pool's values.
        self._queued: list[str] = []
        self._queue_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._idle = threading.Condition(self._queue_lock)

    # -- state ------------------------------------------------------------------------------

    @property
    def database_down(self) -> bool:
        return self._db_failures > 0

    @property
    def state(self) -> str:
        if self.catalog is None:
            return DISABLED
        if self.database_down or self.reconcile_failures or self._dropped:
            return DEGRADED
        return OK

    def status(self) -> dict:
        """For stats and logs: the state and why."""
        with self._events_cv:
            kept = len(self._events)
        return {"state": self.state, "kept_events": kept, "dropped_events": self._dropped,
                "reconcile_failures": self.reconcile_failures, "error": self.last_error}

    # -- the event worker -------------------------------------------------------------------

    def _submit(self, what: str, func: Callable, *args, wait: bool = True):
        """Queue ``func(*args)``; wait for it (bounded) unless the catalog is degraded."""
        if self.catalog is None:
            return None
        event = _Event(what, func, args)
        with self._events_cv:
            if len(self._events) >= MAX_KEPT_EVENTS:
                self._drop_kept()
            self._enqueue(event)
        if wait and not self.database_down:
            event.done.wait(self.wait)
        return event.result

    def _enqueue(self, event: _Event) -> None:
        """Append under _events_cv; starts the worker when none runs."""
        self._events.append(event)
        if self._event_worker is None:
            self._event_worker = threading.Thread(target=self._apply_events, daemon=True,
                                                  name="catalog-events")
            self._event_worker.start()
        self._events_cv.notify_all()

    def _drop_kept(self) -> None:
        """Too many events kept for a database that is down: the pool will be re-read."""
        dropped = list(self._events)
        self._events.clear()
        self._dropped += len(dropped)
        self._reconcile_not_before = 0.0
        for event in dropped:
            event.done.set()
        LOG.warning("Snapshot catalog database still unreachable: dropped %d kept catalog "
                    "updates; the next reconciliation restores the index from the pool",
                    len(dropped))

    def _apply_events(self) -> None:
        while True:
            with self._events_cv:
                while not self._events or self._clock() < self._retry_at:
                    if not self._events:
                        self._event_worker = None
                        return
                    self._events_cv.wait(max(0.0, self._retry_at - self._clock()))
                event = self._events[0]
            try:
                event.result = event.func(*event.args)
            except Exception as exc:
                if self._unavailable(exc):
                    self._database_failed(exc)
                    continue  # kept at the head: replayed after the backoff
                LOG.warning("Snapshot catalog update %s failed (%s); the next reconciliation "
                            "repairs it", event.what, exc)
            self._database_answered()
            with self._events_cv:
                if self._events and self._events[0] is event:
                    self._events.popleft()
            event.applied.set()
            event.done.set()

    @staticmethod
    def _unavailable(exc: BaseException) -> bool:
        from cinder_zfs_ocfs2.catalog import is_unavailable

        return is_unavailable(exc)

    def _database_failed(self, exc: BaseException) -> None:
        with self._events_cv:
            self._db_failures += 1
            delay = backoff(self._db_failures, self.retry_first, self.retry_max)
            self._retry_at = self._clock() + delay
            waiting = list(self._events)
            kept = len(waiting)
        for event in waiting:  # nobody waits for a database that is down
            event.done.set()
        self.last_error = str(exc).splitlines()[0]
        if self._db_failures == 1:  # logged once per state change
            LOG.warning("Snapshot catalog is degraded: %s. Volume operations go on without "
                        "waiting for it; %d catalog updates are kept and replayed when the "
                        "database answers again (retrying every %d s at most).",
                        self.last_error, kept, self.retry_max)
        else:
            LOG.debug("Snapshot catalog database still unreachable (try %d, next in %.0f s)",
                      self._db_failures, delay)

    def _database_answered(self) -> None:
        if not self._db_failures:
            return
        with self._events_cv:
            failures, self._db_failures, self._retry_at = self._db_failures, 0, 0.0
            kept = len(self._events)
        if not self.reconcile_failures:
            self.last_error = None
        LOG.info("Snapshot catalog database answers again after %d failed tries; replaying "
                 "%d kept updates", failures, kept)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until queued completions and events are applied (tests; shutdown); False when
        they are not within `timeout` (kept for a database that is down, or dropped)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._queued or self._worker is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.05))
        if self.catalog is None:
            return True
        marker = _Event("flush", lambda: None, ())
        with self._events_cv:
            if not self._events and self._event_worker is None:
                return True
            self._enqueue(marker)
        # `applied`, not `done`: a database that failed for a moment (SQLite busy under a
        # background reconcile) marks kept events done, and they are applied only on replay.
        return marker.applied.wait(max(0.0, deadline - time.monotonic()))

    # -- events -----------------------------------------------------------------------------

    def creating(self, snapshot_names: list[str], group_snapshot_id: str | None) -> None:
        from cinder_zfs_ocfs2.catalog import Intent

        intents = []
        for name in snapshot_names:
            dataset = name.partition("@")[0]
            project = dataset[len(self.root) + 1:].partition("/")[0]
            intents.append(Intent(name, snapshot_id_of(name), volume_id_of(dataset), project,
                                  group_snapshot_id, self.backend))
        if self.catalog is not None:
            self._submit("creating", self.catalog.begin_snapshots, intents)

    def created(self, snapshot_names: list[str]) -> None:
        """Queue the rows' completion from the pool; returns at once."""
        if self.catalog is None:
            return
        with self._queue_lock:
            self._queued.extend(snapshot_names)
            if self._worker is None:
                self._worker = threading.Thread(target=self._complete, daemon=True,
                                                name="catalog-completion")
                self._worker.start()

    def _complete(self) -> None:
        while True:
            with self._queue_lock:
                names, self._queued = self._queued, []
                if not names:  # a name queued after this check gets a new worker
                    self._worker = None
                    self._idle.notify_all()
                    return
            try:
                # One listing for every name queued so far; a name deleted meanwhile is
                # not listed, and one deleted after the listing is left alone (intents_only).
                records = self.zfs.get_snapshots(names)
            except Exception as exc:
                LOG.warning("Snapshot catalog update created failed (listing %d new snapshots: "
                            "%s); the next reconciliation repairs it", len(names), exc)
                continue
            self._submit("created", self._completed, records, wait=False)

    def _completed(self, records) -> int:
        return self.catalog.snapshots_created(records, root=self.root, backend=self.backend,
                                              intents_only=True)

    def failed(self, snapshot_names: list[str]) -> None:
        for name in snapshot_names:
            self._event("failed", "abandon_snapshot", name)

    def _event(self, what: str, method: str, *args):
        if self.catalog is None:
            return None
        return self._submit(what, getattr(self.catalog, method), *args)

    def deleting(self, name: str) -> None:
        self._event("deleting", "begin_delete", name)

    def deleted(self, name: str) -> None:
        self._event("deleted", "snapshot_deleted", name)

    def snapshots_destroyed(self, names: Iterable[str]) -> None:
        """Snapshots an operation destroyed together (a revert's newer internal ones)."""
        names = list(names)
        if names:
            self._event("destroyed", "snapshots_deleted", names)

    def hidden(self, name: str) -> None:
        self._event("hidden", "snapshot_hidden", name)

    def dataset_destroyed(self, dataset: str) -> None:
        self._event("dataset destroyed", "dataset_destroyed", dataset)

    def dataset_renamed(self, old: str, new: str) -> None:
        project = new[len(self.root) + 1:].partition("/")[0]
        # A hidden volume keeps its project: .trash is a place, not a tenant.
        if self.catalog is not None:
            self._submit("dataset renamed",
                         lambda: self.catalog.dataset_renamed(
                             old, new, project_id=None if project == TRASH else project))

    def clone_made(self, origin: str, dependent: str) -> None:
        """``dependent`` was cloned from snapshot ``origin``: the edge, at once."""
        if self.catalog is not None:
            self._submit("clone made",
                         lambda: self.catalog.add_clone_edge(origin, dependent))

    def refresh(self, datasets: Iterable[str], reason: str, *,
                volume_id: str | None = None) -> None:
        """Re-read just ``datasets`` (and, with ``volume_id``, that volume's hidden copies in
        the trash) after an operation moved snapshots between them (promote, swap).

        One listing of those datasets at depth 1, taken outside everything, then applied in
        event order with its ``listed_at`` cut-off.
        """
        if self.catalog is None:
            return
        datasets = set(datasets)
        try:
            if volume_id:
                prefix = f"{self.root}/{TRASH}/{VOLUME_PREFIX}{volume_id}."
                datasets.update(v.name for v in self.zfs.list_volumes(f"{self.root}/{TRASH}",
                                                                      depth=1)
                                if v.name.startswith(prefix))
            listed_at = self.catalog.now()
            present = [d for d in sorted(datasets) if self.zfs.exists(d)]
            records = self.zfs.list_snapshots(present, depth=1) if present else []
        except errors.ZFSError as exc:
            LOG.warning("Snapshot catalog refresh after %s failed (%s); the next "
                        "reconciliation repairs it", reason, exc)
            return
        self._submit(f"refresh after {reason}",
                     lambda: self.catalog.refresh_datasets(
                         records, datasets, listed_at=listed_at, root=self.root,
                         backend=self.backend))

    # -- reconciliation ---------------------------------------------------------------------

    def reconcile(self, reason: str):
        """One full pass now, in the caller's thread: listing, then the diff off the hub.

        Returns the report, or None when the pass failed (then backed off, state DEGRADED).
        """
        if self.catalog is None:
            return None
        try:
            listed_at = self.catalog.now()
            listing = self.zfs.list_snapshots(self.root)
            report = off_the_hub(self.catalog.reconcile, listing, self.root,
                                 backend=self.backend, listed_at=listed_at)
        except Exception as exc:
            self._reconcile_failed(reason, exc)
            return None
        self._reconciled(reason, report)
        return report

    def _reconcile_failed(self, reason: str, exc: BaseException) -> None:
        self.reconcile_failures += 1
        delay = backoff(self.reconcile_failures, self.backoff_first, self.backoff_max)
        self._reconcile_not_before = self._clock() + delay
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        self.last_error = f"reconciliation failed: {detail}"
        if self.reconcile_failures == 1:
            LOG.warning("Snapshot catalog reconciliation (%s) failed: %s. The catalog is "
                        "degraded; volume operations are not affected. Next try in %.0f s, "
                        "backing off up to %.0f s.", reason, exc, delay, self.backoff_max)
        else:
            LOG.debug("Snapshot catalog reconciliation failed again (%d in a row): %s; next "
                      "try in %.0f s", self.reconcile_failures, exc, delay)

    def _reconciled(self, reason: str, report) -> None:
        if self.reconcile_failures:
            LOG.info("Snapshot catalog reconciled again after %d failed passes",
                     self.reconcile_failures)
        self.reconcile_failures = 0
        self._dropped = 0
        if not self.database_down:
            self.last_error = None
        self.last_reconcile = self._clock()
        self._reconcile_not_before = 0.0
        LOG.info("Snapshot catalog reconciled (%s): %s", reason, {
            k: v for k, v in report.to_dict().items() if k != "drift"})

    def reconcile_due(self, interval: float) -> bool:
        """A pass is due: never run yet, ``interval`` elapsed, or updates were dropped; and
        not inside a failed pass's backoff."""
        if self.catalog is None or self._clock() < self._reconcile_not_before:
            return False
        if self._dropped or not self.last_reconcile:
            return True
        return bool(interval) and self._clock() - self.last_reconcile >= interval

    def reconcile_in_background(self, reason: str, before: Callable[[], None] | None = None
                                ) -> bool:
        """Start a pass in a thread of its own unless one runs; True if started."""
        if self.catalog is None or (self._reconciler is not None
                                    and self._reconciler.is_alive()):
            return False

        def run():
            if before is not None:
                try:
                    before()
                except Exception as exc:  # e.g. reclaim: its failure must not stop the pass
                    LOG.warning("Before the catalog reconciliation (%s): %s", reason, exc)
            self.reconcile(reason)

        self._reconciler = threading.Thread(target=run, daemon=True,
                                            name=f"catalog-reconcile-{reason}")
        self._reconciler.start()
        return True

    def wait_for_reconcile(self, timeout: float = 60.0) -> bool:
        thread = self._reconciler
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    # -- stats ------------------------------------------------------------------------------

    def count(self) -> int | None:
        """Snapshots of this backend in the catalog; None when it cannot say right now."""
        if self.catalog is None or self.database_down:
            return None
        return self._submit("count", lambda: self.catalog.count())

    def count_cinder_snapshots(self) -> int | None:
        """Snapshots Cinder knows (stats: total_snapshots): not the driver's internal ones,
        not hidden (Cinder deleted them) nor missing (never made); None when it cannot say."""
        from cinder_zfs_ocfs2.catalog import models

        if self.catalog is None or self.database_down:
            return None
        return self._submit("count", lambda: self.catalog.count(
            kinds=[models.KIND_CINDER],
            states=[models.CREATING, models.AVAILABLE, models.DELETING]))
