"""Queries: keyset pages, volume history, nearest-before-T, time range, guid, usage."""

from __future__ import annotations

import datetime

import pytest

from cinder_zfs_ocfs2.catalog import models
from tests.unit.catalog.helpers import ROOT, T0, snap, uid, volume_ds


@pytest.fixture
def filled(catalog):
    """p1: 3 volumes x 5 snapshots, 60 s apart, two volumes sharing each timestamp; p2: 3."""
    listing, guid = [], 1
    for v in range(3):
        for i in range(5):
            listing.append(snap(volume_ds("p1", uid(v)), f"snapshot-{uid(1000 + guid)}",
                                guid=guid, creation=T0 + 60 * i + (60 * 5 if v == 2 else 0),
                                createtxg=guid, used=100, referenced=10, written=1))
            guid += 1
    for i in range(3):
        listing.append(snap(volume_ds("p2", uid(9)), f"snapshot-{uid(2000 + i)}",
                            guid=500 + i, creation=T0 + 30 * i, used=7))
    catalog.reconcile(listing, ROOT)
    return listing


def test_project_pages_newest_first_without_gaps(catalog, filled):
    seen, after, pages = [], None, 0
    while True:
        page = catalog.list_by_project("p1", limit=4, after=after)
        seen.extend(page.rows)
        pages += 1
        if page.next is None:
            break
        after = page.next
    assert pages == 4
    assert len(seen) == 15 and len({r.id for r in seen}) == 15
    keys = [(r.creation, r.id) for r in seen]
    assert keys == sorted(keys, reverse=True)
    assert {r.project_id for r in seen} == {"p1"}


def test_last_full_page_has_no_next(catalog, filled):
    page = catalog.list_by_project("p2", limit=3)
    assert len(page.rows) == 3 and page.next is None
    assert catalog.list_by_project("nobody").rows == []


def test_bad_cursor_and_limit(catalog, filled):
    with pytest.raises(ValueError):
        catalog.list_by_project("p1", after="garbage")
    with pytest.raises(ValueError):
        catalog.list_by_project("p1", limit=0)


def test_volume_history(catalog, filled):
    history = catalog.volume_history(uid(0))
    assert [r.creation for r in history] == [T0 + 60 * i for i in range(5)]
    newest = catalog.volume_history(uid(0), newest_first=True, limit=2)
    assert [r.creation for r in newest] == [T0 + 240, T0 + 180]
    assert catalog.volume_history(uid(0), project_id="p2") == []


def test_nearest_before(catalog, filled):
    v = uid(0)
    assert catalog.nearest_before(v, T0 + 130).creation == T0 + 120
    assert catalog.nearest_before(v, T0 + 120).creation == T0 + 120   # at counts
    assert catalog.nearest_before(v, T0 - 1) is None
    assert catalog.nearest_before(v, T0 + 10**6).creation == T0 + 240
    at = datetime.datetime.fromtimestamp(T0 + 61, datetime.timezone.utc)
    assert catalog.nearest_before(v, at).creation == T0 + 60
    assert catalog.nearest_before(v, at.replace(tzinfo=None)).creation == T0 + 60
    assert catalog.nearest_before(v, T0 + 130, project_id="p2") is None


def test_nearest_before_breaks_ties_by_txg(catalog):
    ds = volume_ds("p1", uid(1))
    catalog.reconcile([snap(ds, "a", guid=1, creation=T0, createtxg=10),
                       snap(ds, "b", guid=2, creation=T0, createtxg=11)], ROOT)
    assert catalog.nearest_before(uid(1), T0).zfs_name.endswith("@b")


def test_nearest_before_filters(catalog, filled):
    v = uid(0)
    newest = catalog.nearest_before(v, T0 + 240)
    catalog.snapshot_hidden(newest.zfs_name)
    assert catalog.nearest_before(v, T0 + 240, states=[models.AVAILABLE]).creation == T0 + 180
    assert catalog.nearest_before(v, T0 + 240, kinds=[models.KIND_OUT_OF_BAND]) is None


def test_time_range_across_tenants(catalog, filled):
    page = catalog.in_time_range(T0, T0 + 61, limit=100)
    got = sorted((r.project_id, r.creation) for r in page.rows)
    assert got == sorted([("p1", T0)] * 2 + [("p1", T0 + 60)] * 2
                         + [("p2", T0), ("p2", T0 + 30), ("p2", T0 + 60)])
    rows, after = [], None
    while True:
        page = catalog.in_time_range(T0, T0 + 10**6, limit=4, after=after)
        rows.extend(page.rows)
        if not page.next:
            break
        after = page.next
    assert len(rows) == 18 and len({r.id for r in rows}) == 18
    assert [(r.creation, r.id) for r in rows] == sorted((r.creation, r.id) for r in rows)


def test_by_guid_and_get(catalog, filled):
    row = catalog.by_guid(3)[0]
    assert catalog.get(row.zfs_name) == row
    assert catalog.by_guid(99999) == []
    assert catalog.get("tank/none@x") is None


def test_usage(catalog, filled):
    p1 = catalog.project_usage("p1")
    assert (p1.snapshots, p1.used, p1.referenced, p1.written) == (15, 1500, 150, 15)
    assert catalog.project_usage("nobody").snapshots == 0
    assert [(u.project_id, u.snapshots, u.used) for u in catalog.usage_by_project()] == [
        ("p1", 15, 1500), ("p2", 3, 21)]
    assert catalog.count() == 18
    assert catalog.count(states=[models.HIDDEN]) == 0


def test_entry_json_shape(catalog, filled):
    entry = catalog.by_guid(1)[0].to_dict()
    assert entry["guid"] == "1"
    assert entry["created_at"].startswith("2023-11-14T22:13:20")
