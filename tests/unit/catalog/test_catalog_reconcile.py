"""Reconciliation: the pool listing applied as a diff; verify reports it without writing."""

from __future__ import annotations

from cinder_zfs_ocfs2.catalog import models
from cinder_zfs_ocfs2.zfs.types import PROP_HIDDEN, PROP_PROJECT_ID
from tests.unit.catalog.helpers import ROOT, T0, snap, uid, volume_ds

V1, V2 = uid(1), uid(2)
DS1, DS2 = volume_ds("p1", V1), volume_ds("p2", V2)


def pool():
    """A small pool: two Cinder snapshots, a clone temp snapshot with a clone, an admin's one."""
    return [
        snap(DS1, f"snapshot-{uid(11)}", guid=101, creation=T0),
        snap(DS1, f"snapshot-{uid(12)}", guid=102, creation=T0 + 60),
        snap(DS1, f"clone-{uid(3)}", guid=103, creation=T0 + 90,
             clones=[volume_ds("p1", uid(3))]),
        snap(DS2, "daily", guid=201, creation=T0 + 120),
    ]


def test_first_reconcile_builds_the_catalog(catalog):
    report = catalog.reconcile(pool(), ROOT)
    assert (report.listed, report.added, report.removed, report.edges_added) == (4, 4, 0, 1)
    assert not report.in_sync and not report.dry_run
    kinds = {r.zfs_name.partition("@")[2].split("-")[0]: r.kind
             for r in catalog.volume_history(V1) + catalog.volume_history(V2)}
    assert kinds == {"snapshot": models.KIND_CINDER, "clone": models.KIND_CLONE_TEMP,
                     "daily": models.KIND_OUT_OF_BAND}
    assert catalog.get(f"{DS2}@daily").project_id == "p2"
    assert catalog.dependents(guid=103) == [volume_ds("p1", uid(3))]
    assert catalog.count() == 4


def test_unchanged_pool_writes_nothing(catalog, writes, clock):
    catalog.reconcile(pool(), ROOT)
    clock.advance(3600)
    before = writes.writes
    report = catalog.reconcile(pool(), ROOT)
    assert report.in_sync and report.writes == 0
    assert writes.writes == before
    assert catalog.verify(pool(), ROOT).in_sync


def test_out_of_band_added_and_vanished_removed(catalog, clock):
    catalog.reconcile(pool(), ROOT)
    clock.advance(60)
    listing = pool()[1:] + [snap(DS1, "admin-made", guid=104, creation=T0 + 200)]
    report = catalog.reconcile(listing, ROOT)
    assert (report.added, report.removed) == (1, 1)
    whats = sorted((d.what, d.zfs_name.partition("@")[2]) for d in report.drift)
    assert whats == [("added", "admin-made"), ("removed", f"snapshot-{uid(11)}")]
    assert catalog.get(f"{DS1}@admin-made").kind == models.KIND_OUT_OF_BAND
    assert catalog.get(f"{DS1}@snapshot-{uid(11)}") is None
    assert catalog.reconcile(listing, ROOT).writes == 0


def test_changed_fields_are_updated(catalog, clock):
    catalog.reconcile(pool(), ROOT)
    clock.advance(60)
    listing = pool()
    listing[0] = snap(DS1, f"snapshot-{uid(11)}", guid=101, creation=T0, used=4096,
                      written=512)
    report = catalog.reconcile(listing, ROOT)
    assert report.updated == 1 and "used" in report.drift[0].detail
    assert catalog.get(listing[0].name).used == 4096


def test_verify_reports_without_writing(catalog, writes, clock):
    catalog.reconcile(pool(), ROOT)
    clock.advance(60)
    before = writes.writes
    report = catalog.verify(pool()[:2], ROOT)
    assert report.dry_run and not report.in_sync
    assert {d.what for d in report.drift} == {"removed", "edge-removed"}
    assert writes.writes == before
    assert catalog.count() == 4


def test_intents_confirmed_kept_or_marked_missing(catalog, clock):
    s_ok, s_flight, s_lost = uid(21), uid(22), uid(23)
    for s in (s_ok, s_lost):
        catalog.begin_snapshot(f"{DS1}@snapshot-{s}", snapshot_id=s, volume_id=V1,
                               project_id="p1")
    clock.advance(3600)
    catalog.begin_snapshot(f"{DS1}@snapshot-{s_flight}", snapshot_id=s_flight, volume_id=V1,
                           project_id="p1")
    clock.advance(5)
    listing = [snap(DS1, f"snapshot-{s_ok}", guid=9, creation=T0)]
    report = catalog.reconcile(listing, ROOT, stale_after=600)
    assert catalog.get(f"{DS1}@snapshot-{s_ok}").state == models.AVAILABLE
    assert catalog.get(f"{DS1}@snapshot-{s_flight}").state == models.CREATING
    lost = catalog.get(f"{DS1}@snapshot-{s_lost}")
    assert lost.state == models.MISSING and lost.snapshot_id == s_lost
    assert (report.marked_missing, report.pending) == (1, 1)
    # 'missing' is consistent with a pool that lacks it: no drift, no writes.
    clock.advance(5)
    again = catalog.reconcile(listing, ROOT, stale_after=600)
    assert again.writes == 0 and again.missing == 1 and again.in_sync
    # If it turns up after all (a pool imported late), it becomes available.
    listing.append(snap(DS1, f"snapshot-{s_lost}", guid=10, creation=T0))
    catalog.reconcile(listing, ROOT, stale_after=600)
    assert catalog.get(f"{DS1}@snapshot-{s_lost}").state == models.AVAILABLE


def test_deleting_kept_while_fresh(catalog, clock):
    catalog.reconcile(pool(), ROOT)
    name = pool()[0].name
    catalog.begin_delete(name)
    clock.advance(10)
    catalog.reconcile(pool(), ROOT, stale_after=600)
    assert catalog.get(name).state == models.DELETING
    clock.advance(3600)
    catalog.reconcile(pool(), ROOT, stale_after=600)
    assert catalog.get(name).state == models.AVAILABLE


def test_hidden_follows_the_pool(catalog, clock):
    listing = pool()
    listing[0] = snap(DS1, f"snapshot-{uid(11)}", guid=101, creation=T0,
                      props={PROP_HIDDEN: "true"})
    listing[1] = snap(DS1, f"snapshot-{uid(12)}", guid=102, creation=T0 + 60,
                      defer_destroy=True)
    listing.append(snap(f"{ROOT}/.trash/volume-{uid(5)}", f"snapshot-{uid(13)}", guid=105,
                        props={PROP_PROJECT_ID: "p1"}))
    catalog.reconcile(listing, ROOT)
    assert catalog.get(listing[0].name).state == models.HIDDEN
    assert catalog.get(listing[1].name).state == models.HIDDEN
    trashed = catalog.get(listing[-1].name)
    assert (trashed.state, trashed.project_id, trashed.volume_id) == (
        models.HIDDEN, "p1", uid(5))


def test_rows_newer_than_the_listing_are_left_alone(catalog, clock):
    catalog.reconcile(pool(), ROOT)
    clock.advance(60)
    listed_at = clock.now
    listing = pool()
    clock.advance(1)
    # Written through after the listing started: the listing cannot know about it.
    s = uid(30)
    catalog.begin_snapshot(f"{DS1}@snapshot-{s}", snapshot_id=s, volume_id=V1, project_id="p1")
    catalog.snapshot_created(snap(DS1, f"snapshot-{s}", guid=300))
    report = catalog.reconcile(listing, ROOT, listed_at=listed_at)
    assert catalog.get(f"{DS1}@snapshot-{s}").state == models.AVAILABLE
    assert report.removed == 0 and report.pending == 1


def test_rename_found_by_guid(catalog, clock):
    catalog.reconcile(pool(), ROOT)
    clock.advance(60)
    listing = pool()
    moved = volume_ds("p1", uid(3))
    # A promote of the clone moved the origin's older snapshots onto it.
    listing[0] = snap(moved, f"snapshot-{uid(11)}", guid=101, creation=T0)
    report = catalog.reconcile(listing, ROOT)
    assert (report.renamed, report.added, report.removed) == (1, 0, 0)
    row = catalog.by_guid(101)[0]
    assert (row.zfs_name, row.volume_id) == (listing[0].name, uid(3))


def test_ids_from_the_driver_survive_when_the_pool_has_none(catalog, clock):
    s, group = uid(40), uid(41)
    name = f"{DS1}@snapshot-{s}"
    catalog.begin_snapshot(name, snapshot_id=s, volume_id=V1, project_id="p1",
                           group_snapshot_id=group, backend="zfs1")
    clock.advance(1)
    catalog.reconcile([snap(DS1, f"snapshot-{s}", guid=400)], ROOT, backend="other")
    row = catalog.get(name)
    assert (row.group_snapshot_id, row.backend, row.state) == (group, "zfs1", models.AVAILABLE)


def test_edges_replaced(catalog, clock):
    catalog.reconcile(pool(), ROOT)
    clock.advance(60)
    listing = pool()
    origin = listing[2]
    listing[2] = snap(DS1, origin.short_name, guid=103, creation=origin.creation,
                      clones=[volume_ds("p1", uid(4))])
    listing[0] = snap(DS1, listing[0].short_name, guid=101, creation=T0,
                      clones=[volume_ds("p1", uid(3))])
    report = catalog.reconcile(listing, ROOT)
    assert (report.edges_added, report.edges_updated, report.edges_removed) == (1, 1, 0)
    assert catalog.dependents(listing[2].name) == [volume_ds("p1", uid(4))]
    assert catalog.dependents(listing[0].name) == [volume_ds("p1", uid(3))]
    clock.advance(60)
    listing[0] = snap(DS1, listing[0].short_name, guid=101, creation=T0)
    report = catalog.reconcile(listing, ROOT)
    assert report.edges_removed == 1
    assert catalog.dependents(listing[0].name) == []


def test_scoped_to_its_root(catalog, clock):
    other = "tank/cinder2"
    catalog.reconcile([snap(volume_ds("p1", V1, other), "x", guid=900)], other)
    catalog.reconcile(pool(), ROOT)
    clock.advance(60)
    # A listing of ROOT never deletes rows of another root, nor records outside names.
    report = catalog.reconcile(pool() + [snap("tank/elsewhere", "y", guid=901)], ROOT)
    assert report.ignored == 1 and report.writes == 0
    assert catalog.get(f"{volume_ds('p1', V1, other)}@x") is not None
    report = catalog.reconcile([], other)
    assert report.removed == 1 and catalog.count() == 4


def test_snapshots_of_the_root_and_tenant_datasets(catalog):
    catalog.reconcile([snap(ROOT, "before-upgrade", guid=1),
                       snap(f"{ROOT}/p7", "nightly", guid=2)], ROOT)
    assert catalog.get(f"{ROOT}@before-upgrade").project_id is None
    assert catalog.get(f"{ROOT}/p7@nightly").project_id == "p7"
    assert catalog.list_by_project("p7").rows[0].kind == models.KIND_OUT_OF_BAND


def test_backend_default_for_new_rows(catalog):
    catalog.reconcile(pool(), ROOT, backend="zfs1")
    assert catalog.count(backend="zfs1") == 4


def test_reconcile_scoped_to_one_volume(catalog, clock):
    """A listing of one zvol (e.g. after snapshots_changed moved) touches only its rows."""
    catalog.reconcile(pool(), ROOT)
    clock.advance(60)
    only = [s for s in pool() if s.dataset == DS2] + [snap(DS2, "weekly", guid=202)]
    report = catalog.reconcile(only, DS2)
    assert (report.added, report.removed, report.catalog_rows) == (1, 0, 1)
    assert catalog.get(f"{DS2}@weekly").project_id == "p2"
    assert catalog.count() == 5
    clock.advance(60)
    assert catalog.reconcile([], DS2).removed == 2
    assert catalog.count() == 3


def test_neighbouring_roots_never_overlap(catalog, clock):
    # '-' and '.' sort before '/', '0' right after it, 'A' right after '@'.
    roots = [ROOT, "tank/cinder-b", "tank/cinder0", "tank/cinderA", "tank/cinder.x"]

    def listing(i, root):
        return [snap(f"{root}/p1/volume-{uid(i)}", "s", guid=i + 1),
                snap(root, "top", guid=100 + i)]

    for i, root in enumerate(roots):
        catalog.reconcile(listing(i, root), root)
    assert catalog.count() == 10
    clock.advance(60)
    for i, root in enumerate(roots):
        report = catalog.verify(listing(i, root), root)
        assert report.in_sync and report.catalog_rows == 2, (root, report.to_dict())
