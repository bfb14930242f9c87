"""CatalogSync: rows are completed from the pool off the request path, in event order."""

from __future__ import annotations

import threading

from cinder_zfs_ocfs2.catalog import models
from cinder_zfs_ocfs2.operations.catalog_sync import CatalogSync
from tests.unit.catalog.helpers import ROOT, snap, uid, volume_ds


class Pool:
    """The ZFS client's listing, which a test can hold back."""

    def __init__(self):
        self.snapshots: dict[str, object] = {}
        self.listings: list[list[str]] = []
        self.release = threading.Event()
        self.release.set()
        self.asked = threading.Event()

    def add(self, project: str) -> str:
        dataset, short = volume_ds(project, uid()), f"snapshot-{uid()}"
        record = snap(dataset, short, guid=len(self.snapshots) + 1)
        self.snapshots[record.name] = record
        return record.name

    def get_snapshots(self, names):
        self.asked.set()
        self.release.wait(10)
        self.listings.append(list(names))
        return [self.snapshots[n] for n in names if n in self.snapshots]


def make_sync(catalog, pool):
    return CatalogSync(catalog, pool, ROOT, "zfs1")


def test_created_returns_before_the_listing_and_one_listing_completes_a_burst(catalog):
    pool = Pool()
    sync = make_sync(catalog, pool)
    pool.release.clear()                      # the node is slow to answer
    names = [pool.add("p1") for _ in range(5)]
    sync.creating(names[:1], None)
    sync.created(names[:1])                   # returns at once: the worker waits, not us
    assert catalog.get(names[0]).state == models.CREATING
    assert pool.asked.wait(10)
    sync.creating(names[1:], None)
    for name in names[1:]:
        sync.created([name])
    pool.release.set()
    sync.flush()
    assert {catalog.get(n).state for n in names} == {models.AVAILABLE}
    assert [len(x) for x in pool.listings] == [1, 4]   # the four queued meanwhile: one listing


def test_a_later_event_waits_for_queued_completions(catalog):
    pool = Pool()
    sync = make_sync(catalog, pool)
    name = pool.add("p1")
    pool.release.clear()
    sync.creating([name], None)
    sync.created([name])
    # The snapshot is deleted before its completion ran; the deletion lands last.
    del pool.snapshots[name]
    done = threading.Thread(target=sync.deleted, args=(name,))
    done.start()
    pool.release.set()
    done.join(10)
    assert catalog.get(name) is None and catalog.count() == 0


def test_a_failing_completion_is_logged_and_the_next_one_works(catalog, caplog):
    pool = Pool()
    sync = make_sync(catalog, pool)
    first, second = pool.add("p1"), pool.add("p1")
    broken = pool.get_snapshots
    pool.get_snapshots = lambda names: (_ for _ in ()).throw(RuntimeError("node gone"))
    sync.creating([first], None)
    sync.created([first])
    sync.flush()
    assert "reconciliation repairs it" in caplog.text
    assert catalog.get(first).state == models.CREATING   # the intent stays for reconcile
    pool.get_snapshots = broken
    sync.creating([second], None)
    sync.created([second])
    sync.flush()
    assert catalog.get(second).state == models.AVAILABLE


def test_no_catalog_no_worker():
    sync = CatalogSync(None, Pool(), ROOT, "zfs1")
    sync.created(["tank/cinder/p1/volume-x@snapshot-y"])
    assert sync._worker is None
    sync.flush()
