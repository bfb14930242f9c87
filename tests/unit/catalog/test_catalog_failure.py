"""The catalog under failure and at scale: never in the way, truthful, its own rows only.

A real SQLite catalog on the fake node; a server database that is down is a MySQL URL on a
loopback port nothing listens on (127.0.0.1:9, refused at once).
"""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
import sqlalchemy as sa

from cinder_zfs_ocfs2.catalog import Catalog, CatalogUnavailable, Identity, api, models
from cinder_zfs_ocfs2.operations import catalog_sync
from cinder_zfs_ocfs2.operations.catalog_sync import DEGRADED, OK, CatalogSync
from cinder_zfs_ocfs2.operations.volumes import VolumeOperations
from cinder_zfs_ocfs2.zfs.client import ZFSClient
from cinder_zfs_ocfs2.zfs.names import NameSpace
from tests.unit.catalog.helpers import ROOT, snap, uid, volume_ds
from tests.unit.fakezfs import FakeZFS
from tests.unit.operations.test_volumes import NS, PROJECT, SPARSE, new_id

DOWN_URL = "mysql+pymysql://cinder:secret@127.0.0.1:9/catalog"


def operations(catalog, **kwargs):
    fake = FakeZFS(ROOT)
    ops = VolumeOperations(ZFSClient(fake), NameSpace(ROOT), SPARSE, backend="zfs1",
                           catalog=catalog, **kwargs)
    ops.ensure_root(create=True)
    return ops, fake


def whole_root_listings(fake, since):
    return [a for op, a in fake.calls[since:] if op == "list"
            and a.get("name") in (ROOT, [ROOT]) and a.get("depth") is None]


def volume_with_snapshot(ops) -> tuple[str, str, str]:
    """(volume id, zvol, its snapshot)."""
    vid = new_id()
    name = ops.create_volume(PROJECT, vid, 1, SPARSE)
    snapshot = NS.snapshot(name, new_id())
    ops.create_snapshots([snapshot])
    return vid, name, snapshot


def in_sync(ops, catalog) -> bool:
    ops.index.flush()
    report = catalog.verify(ops.zfs.list_snapshots(ROOT), ROOT)
    return report.in_sync or print(report.to_dict())


# -- a database that is down ---------------------------------------------------------------

def test_opening_never_connects_and_a_down_server_is_named():
    started = time.monotonic()
    catalog = Catalog.from_url(DOWN_URL)  # nothing listens there: still fine
    with pytest.raises(CatalogUnavailable) as info:
        catalog.ping()
    assert time.monotonic() - started < api.CONNECT_TIMEOUT_S + 1
    assert "127.0.0.1:9" in str(info.value) and "zfs_catalog_connection" in str(info.value)
    assert "secret" not in str(info.value)


def test_operations_go_on_without_waiting_for_a_down_catalog():
    ops, fake = operations(Catalog.from_url(DOWN_URL))
    started = time.monotonic()
    vid = new_id()
    name = ops.create_volume(PROJECT, vid, 1, SPARSE)
    snaps = [NS.snapshot(name, new_id()) for _ in range(5)]
    for s in snaps:
        ops.create_snapshots([s])
    for s in snaps:
        ops.delete_snapshot(s)
    ops.delete_volume(PROJECT, vid)
    # The first event finds the database down; none after it waits for it.
    assert time.monotonic() - started < catalog_sync.EVENT_WAIT_S + 1.5
    assert fake.tree(ROOT) == [ROOT, f"{ROOT}/.trash", f"{ROOT}/{PROJECT}"]
    assert ops.index.state == DEGRADED and ops.index.count() is None
    assert "127.0.0.1:9" in ops.index.status()["error"]


class Outage:
    """A catalog whose database is down while ``down`` is set (the same error SQLAlchemy
    raises for a refused connection)."""

    def __init__(self, catalog):
        self.catalog, self.down = catalog, False

    def __getattr__(self, name):
        attr = getattr(self.catalog, name)
        if not callable(attr) or name in ("now", "bound"):
            return attr

        def call(*args, **kwargs):
            if self.down:
                raise sa.exc.OperationalError("connect", {}, ConnectionRefusedError(111))
            return attr(*args, **kwargs)
        return call


def test_events_are_kept_while_the_database_is_down_and_replayed(catalog):
    outage = Outage(catalog)
    ops, fake = operations(outage)
    ops.index.retry_first = ops.index.retry_max = 0.05
    name = ops.create_volume(PROJECT, new_id(), 1, SPARSE)
    first = NS.snapshot(name, new_id())
    ops.create_snapshots([first])
    assert ops.index.flush()
    outage.down = True
    kept = [NS.snapshot(name, new_id()) for _ in range(3)]
    started = time.monotonic()
    ops.create_snapshots(kept[:1])
    ops.delete_snapshot(first)
    for s in kept[1:]:
        ops.create_snapshots([s])
    assert time.monotonic() - started < catalog_sync.EVENT_WAIT_S + 1
    assert ops.index.state == DEGRADED and ops.index.status()["kept_events"] > 0
    outage.down = False
    deadline = time.monotonic() + 10
    while ops.index.database_down and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ops.index.flush()
    assert ops.index.state == OK
    assert catalog.get(first) is None
    assert {catalog.get(s).state for s in kept} == {models.AVAILABLE}
    assert in_sync(ops, catalog)


def test_too_many_kept_events_are_dropped_and_a_reconcile_is_due(catalog, monkeypatch):
    monkeypatch.setattr(catalog_sync, "MAX_KEPT_EVENTS", 3)
    outage = Outage(catalog)
    ops, _ = operations(outage)
    ops.index.retry_first = ops.index.retry_max = 30  # no replay during the test
    ops.index.reconcile("start-up")
    outage.down = True
    name = ops.create_volume(PROJECT, new_id(), 1, SPARSE)
    for _ in range(5):
        ops.create_snapshots([NS.snapshot(name, new_id())])
    assert ops.index.status()["dropped_events"] > 0
    assert ops.index.reconcile_due(3600)   # dropped updates: the pool must be re-read
    outage.down = False
    assert ops.index.reconcile("after drop") is not None
    assert ops.index.status()["dropped_events"] == 0


# -- reconciliation backs off ----------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_failed_reconcile_backs_off_exponentially_capped_and_recovers(catalog, caplog):
    caplog.set_level("INFO")
    fake = FakeZFS(ROOT)
    clock = Clock()
    sync = CatalogSync(catalog, ZFSClient(fake), ROOT, "zfs1", backoff_first=60,
                       backoff_max=300, clock=clock)
    fake.fail("list", RuntimeError("listing timed out"), times=5)
    delays = []
    for _ in range(5):
        assert sync.reconcile_due(3600)
        assert sync.reconcile("periodic") is None
        assert sync.state == DEGRADED and not sync.reconcile_due(3600)
        start = clock.now
        while not sync.reconcile_due(3600):
            clock.now += 10
        delays.append(clock.now - start)
    assert delays == [60, 120, 240, 300, 300]
    assert caplog.text.count("reconciliation (periodic) failed") == 1  # once per state change
    assert sync.reconcile("periodic") is not None and sync.state == OK
    assert "reconciled again after 5 failed passes" in caplog.text
    assert not sync.reconcile_due(3600)


def test_reconcile_in_background_never_runs_two_at_once(catalog):
    fake = FakeZFS(ROOT)
    sync = CatalogSync(catalog, ZFSClient(fake), ROOT, "zfs1")
    gate = threading.Event()
    assert sync.reconcile_in_background("start-up", before=lambda: gate.wait(10))
    assert not sync.reconcile_in_background("periodic")
    gate.set()
    assert sync.wait_for_reconcile(10) and sync.state == OK and sync.last_reconcile


# -- request paths: only the datasets an operation touched ---------------------------------

def test_revert_by_swap_refreshes_only_its_volume_and_stays_in_sync(catalog):
    ops, fake = operations(catalog)
    vid, name, target = volume_with_snapshot(ops)
    ops.create_cloned_volume(name, PROJECT, new_id(), 1, SPARSE)  # a newer temp with a clone
    ops.index.flush()
    before = len(fake.calls)
    ops.revert(PROJECT, vid, target)
    assert whole_root_listings(fake, before) == []
    assert in_sync(ops, catalog)
    assert catalog.get(target).state == models.AVAILABLE


def test_delete_with_promote_refreshes_only_the_two_volumes_and_stays_in_sync(catalog):
    ops, fake = operations(catalog, promote_on_delete=True)
    vid = new_id()
    name = ops.create_volume(PROJECT, vid, 1, SPARSE)
    older, newest = NS.snapshot(name, new_id()), NS.snapshot(name, new_id())
    ops.create_snapshots([older])
    ops.create_snapshots([newest])
    heir = ops.create_volume_from_snapshot(newest, "p2", new_id(), 1, SPARSE)
    ops.delete_snapshot(older)
    ops.delete_snapshot(newest)
    before = len(fake.calls)
    ops.delete_volume(PROJECT, vid)
    assert whole_root_listings(fake, before) == []
    assert in_sync(ops, catalog)
    assert catalog.get(newest) is None and catalog.origin_of(heir) is None


def test_a_linked_clone_writes_its_edge_at_once(catalog):
    ops, _ = operations(catalog)
    _, name, source = volume_with_snapshot(ops)
    clone = ops.create_volume_from_snapshot(source, PROJECT, new_id(), 1, SPARSE)
    assert catalog.dependents(source) == [clone]   # no reconcile needed


def test_the_revert_fast_path_tells_the_catalog_what_it_destroyed(catalog):
    ops, _ = operations(catalog)
    vid, name, target = volume_with_snapshot(ops)
    temp = NS.clone_snapshot(name, new_id())
    ops.create_clone_temps([temp])          # an internal snapshot without dependents
    ops.index.flush()
    assert catalog.get(temp) is not None
    ops.revert(PROJECT, vid, target)
    assert catalog.get(temp) is None
    assert in_sync(ops, catalog)


# -- identity --------------------------------------------------------------------------------

def test_two_nodes_with_the_same_root_in_one_database_keep_their_own_rows(db_url, clock):
    shared = Catalog.from_url(db_url, clock=clock)
    node1 = shared.bound(Identity("zfs", "node1:22", ROOT))
    node2 = shared.bound(Identity("zfs", "node2:22", ROOT))
    same_name = snap(volume_ds("p1", uid(1)), f"snapshot-{uid(2)}", guid=7)
    node1.reconcile([same_name, snap(volume_ds("p1", uid(3)), "a", guid=8)], ROOT)
    node2.reconcile([same_name], ROOT)
    clock.advance(60)
    for _ in range(2):  # every pass of either keeps the other's rows
        assert node1.reconcile([same_name, snap(volume_ds("p1", uid(3)), "a", guid=8)],
                               ROOT).writes == 0
        assert node2.reconcile([same_name], ROOT).writes == 0
    assert node1.count() == 2 and node2.count() == 1 and shared.count() == 3
    node2.snapshot_deleted(same_name.name)
    assert node1.get(same_name.name) is not None and node2.get(same_name.name) is None
    with pytest.raises(ValueError):
        node1.reconcile([], "tank/other")   # not this backend's root


def test_rows_from_before_scopes_are_adopted_by_their_backend(db_url, clock):
    unbound = Catalog.from_url(db_url, clock=clock)
    unbound.reconcile([snap(volume_ds("p1", uid(1)), "old", guid=1)], ROOT)
    bound = unbound.bound(Identity("zfs", "node1:22", ROOT))
    assert bound.count() == 1
    clock.advance(60)
    assert bound.verify([snap(volume_ds("p1", uid(1)), "old", guid=1)], ROOT).in_sync


def test_the_driver_and_the_cli_name_the_catalog_after_the_section():
    from cinder_zfs_ocfs2.catalog.identity import backend_identity

    class Conf:
        zfs_agent_mode, zfs_ssh_host, zfs_ssh_port = "ssh", "10.0.0.5", 22
        zfs_root_dataset = "tank/cinder/"

    assert backend_identity("zfs-a", Conf) == Identity("zfs-a", "10.0.0.5:22", "tank/cinder")
    assert api.default_url("/var/lib/cinder", "zfs-a").endswith("/zfs_catalog-zfs-a.sqlite")


# -- scale: bounded memory, batches, indexed scope ---------------------------------------------

def test_reconcile_reads_pages_and_writes_batches(catalog, clock, monkeypatch):
    monkeypatch.setattr(api, "RECONCILE_PAGE", 50)
    listing = [snap(volume_ds(f"p{i % 7}", uid(i % 40 + 1)), f"snapshot-{uid(1000 + i)}",
                    guid=i + 1) for i in range(1000)]
    statements = []

    @sa.event.listens_for(catalog.engine, "before_cursor_execute")
    def seen(conn, cursor, statement, params, context, executemany):
        statements.append((statement, executemany))

    assert catalog.reconcile(listing, ROOT).added == 1000
    clock.advance(60)
    statements.clear()
    report = catalog.reconcile(listing, ROOT)
    assert report.writes == 0 and report.catalog_rows == 1000
    selects = [s for s, _ in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) >= 1000 // 50      # read in pages, never all rows at once
    assert not any(" LIKE " in s.upper() for s, _ in statements)
    changed = [dataclasses.replace(s, used=5) for s in listing]
    clock.advance(60)
    statements.clear()
    assert catalog.reconcile(changed, ROOT).updated == 1000
    batches = [s for s, many in statements if many and s.lstrip().upper().startswith("UPDATE")]
    assert len(batches) == 1000 // 50


def test_reconcile_scope_uses_the_index(catalog):
    catalog.ping()
    query = sa.select(models.snapshots.c.id).where(
        models.snapshots.c.scope_id == 1, api._in_root(models.snapshots.c.zfs_name, ROOT))
    with catalog.engine.connect() as conn:
        plan = " ".join(str(r) for r in conn.execute(
            sa.text("EXPLAIN QUERY PLAN " + str(query.compile(
                compile_kwargs={"literal_binds": True})))))
    assert "uq_zfs_snapshots_scope_name" in plan or "sqlite_autoindex" in plan, plan
    assert "SCAN" not in plan.replace("SCAN USING", ""), plan


# -- the driver ------------------------------------------------------------------------------

from tests.unit import test_driver as driver_tests  # noqa: E402 - its fixtures, below

overrides = driver_tests.overrides
make_driver = driver_tests.make_driver
volume_obj, snapshot_obj = driver_tests.volume_obj, driver_tests.snapshot_obj


def test_the_backend_starts_and_serves_while_the_catalog_database_is_down(make_driver):
    started = time.monotonic()
    drv, fake = make_driver(zfs_catalog_connection=DOWN_URL)   # do_setup + setup check
    vol = volume_obj()
    drv.create_volume(vol)
    drv.create_snapshot(snapshot_obj(vol))
    stats = drv.get_volume_stats(refresh=True)
    assert time.monotonic() - started < 10
    assert stats["catalog_state"] == "degraded" and stats["total_snapshots"] is None
    assert stats["free_capacity_gb"] > 0


def test_manageable_snapshots_come_from_the_catalog(make_driver, tmp_path):
    drv, fake = make_driver(zfs_catalog_connection=f"sqlite:///{tmp_path}/c.sqlite")
    vol = volume_obj()
    drv.create_volume(vol)
    managed = snapshot_obj(vol)
    drv.create_snapshot(managed)
    drv.ops.index.flush()
    before = len(fake.calls)
    found = drv.get_manageable_snapshots([managed], None, 100, 0, ["size"], ["asc"])
    assert whole_root_listings(fake, before) == []
    assert [(e["cinder_id"], e["safe_to_manage"]) for e in found] == [(managed.id, False)]


def test_a_managed_snapshot_is_in_the_catalog_at_once(make_driver, tmp_path):
    """Managing renames an admin's snapshot to snapshot-<id>: the catalog has the new row
    without waiting for a reconciliation (completion only fills rows an intent made)."""
    drv, fake = make_driver(zfs_catalog_connection=f"sqlite:///{tmp_path}/c.sqlite")
    vol = volume_obj()
    drv.create_volume(vol)
    zvol = drv._volume_name(vol)
    fake.snapshot([f"{zvol}@nightly"])
    snapshot = snapshot_obj(vol)
    drv.manage_existing_snapshot(snapshot, {"source-name": "nightly"})
    assert drv.ops.index.flush()
    row = drv.ops.index.catalog.get(drv._snapshot_name(snapshot))
    assert row is not None and row.state == "available" and row.kind == "cinder"
    found = drv.get_manageable_snapshots([snapshot], None, 100, 0, ["size"], ["asc"])
    assert [e["cinder_id"] for e in found] == [snapshot.id]


def test_the_cli_says_the_catalog_database_is_down(capsys):
    from cinder_zfs_ocfs2.cmd import catalog as cli

    assert cli.main(["search", "--project", "p1", "--connection", DOWN_URL]) == 3
    err = capsys.readouterr().err
    assert "unreachable" in err and "zfs_catalog_connection" in err


def test_the_memory_catalog_takes_writers_from_many_threads():
    """sqlite:// (the unit tests' catalog): the driver's catalog worker, a reconciliation
    thread and a caller write at once; none may see another's transaction (one shared
    connection did: "cannot start a transaction within a transaction")."""
    import threading

    from cinder_zfs_ocfs2.catalog import Catalog
    from tests.unit.catalog.helpers import snap, uid, volume_ds

    cat = Catalog.from_url("sqlite://")
    failures: list[BaseException] = []
    start = threading.Barrier(4)

    def writer(n: int):
        start.wait()
        try:
            for i in range(25):
                cat.snapshot_created(snap(volume_ds("p1", uid(n)), f"s{i}",
                                          guid=n * 1000 + i + 1))
        except BaseException as exc:  # noqa: B036 - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures
    assert cat.count() == 100
    cat.close()


def test_a_first_call_that_writes_does_not_wait_for_its_own_migration(tmp_path):
    """The first call on a new SQLite file may be a write (a volume's delete replayed at
    start-up): the schema is made before its transaction, not inside it, where the migration's
    connection waited busy_timeout (30 s) for the caller's own lock."""
    import time as _time

    from cinder_zfs_ocfs2.catalog import Catalog
    from tests.unit.catalog.helpers import volume_ds

    cat = Catalog.from_url(f"sqlite:///{tmp_path}/first.sqlite")
    started = _time.monotonic()
    assert cat.dataset_destroyed(volume_ds("p1", "v1")) == 0
    assert _time.monotonic() - started < 10
    cat.close()
