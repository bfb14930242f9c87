"""Snapshot coalescing: snapshots of different volumes requested close together become ONE
ZFS call (one txg, crash-consistent with each other).

Nova snapshots every volume of a volume-backed server in a burst of create_snapshot calls; with
a window of a few milliseconds they land in one lzc_snapshot, so the volumes of one instance
are consistent with each other, and the burst costs one ZFS transaction instead of N. Each
request still gets its own answer: when the combined call fails, the batch is retried one
snapshot at a time so one bad request does not fail the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from oslo_log import log as logging

from cinder_zfs_ocfs2.zfs import errors

LOG = logging.getLogger(__name__)


class _Batch:
    def __init__(self):
        self.names: list[str] = []
        self.datasets: set[str] = set()
        self.errors: dict[str, Exception] = {}
        self.done = threading.Event()

    def add(self, name: str) -> None:
        self.names.append(name)
        self.datasets.add(name.partition("@")[0])


class SnapshotBatcher:
    def __init__(self, snapshot: Callable[[list[str]], None], window_ms: int):
        self._snapshot = snapshot
        self._window = window_ms / 1000.0
        self._lock = threading.Lock()
        self._open: _Batch | None = None

    def snapshot(self, name: str) -> None:
        """Take snapshot ``name``, possibly together with others; raise its own error."""
        if self._window <= 0:
            self._snapshot([name])
            return
        with self._lock:
            batch = self._open
            # ZFS takes one snapshot per dataset per call: a second one waits for a new batch.
            leader = batch is None or name.partition("@")[0] in batch.datasets
            if leader:
                batch = self._open = _Batch()
            batch.add(name)
        if leader:
            time.sleep(self._window)
            with self._lock:
                if self._open is batch:
                    self._open = None
            self._run(batch)
        else:
            batch.done.wait()
        error = batch.errors.get(name)
        if error is not None:
            raise error

    def _run(self, batch: _Batch) -> None:
        try:
            try:
                self._snapshot(batch.names)
                if len(batch.names) > 1:
                    LOG.info("Took %d snapshots in one ZFS call", len(batch.names))
                return
            except errors.TransportError as exc:
                # The outcome is unknown for all of them: no retry that could double up.
                batch.errors = dict.fromkeys(batch.names, exc)
                return
            except errors.ZFSError as exc:
                if len(batch.names) == 1:
                    batch.errors[batch.names[0]] = exc
                    return
                LOG.warning("Combined snapshot of %d volumes failed (%s); retrying one by one",
                            len(batch.names), exc)
            for name in batch.names:
                try:
                    self._snapshot([name])
                except errors.ZFSError as exc:
                    batch.errors[name] = exc
        finally:
            batch.done.set()
