"""Write-through: intent before the ZFS call, final state after."""

from __future__ import annotations

import threading

import pytest

from cinder_zfs_ocfs2.catalog import Intent, models
from cinder_zfs_ocfs2.zfs.errors import InvalidArgument
from cinder_zfs_ocfs2.zfs.types import PROP_BACKEND
from tests.unit.catalog.helpers import ROOT, T0, snap, uid, volume_ds

V, S = uid(1), uid(2)
DS = volume_ds("p1", V)
NAME = f"{DS}@snapshot-{S}"


def test_create_lifecycle(catalog, clock):
    row = catalog.begin_snapshot(NAME, snapshot_id=S, volume_id=V, project_id="p1",
                                 backend="zfs1")
    assert (row.state, row.kind, row.guid, row.creation) == (
        models.CREATING, models.KIND_CINDER, None, int(clock.now))
    assert (row.snapshot_id, row.volume_id, row.project_id, row.backend) == (S, V, "p1", "zfs1")

    clock.advance(1)
    row = catalog.snapshot_created(snap(DS, f"snapshot-{S}", guid=42, creation=T0,
                                        createtxg=900, used=1, referenced=2, written=3))
    assert (row.state, row.guid, row.createtxg, row.creation) == (
        models.AVAILABLE, 42, 900, T0)
    assert (row.used, row.referenced, row.written) == (1, 2, 3)
    # The pool had no backend property: what the driver wrote stays.
    assert row.backend == "zfs1"
    assert row.updated_at == clock.now

    assert catalog.snapshot_hidden(NAME)
    assert catalog.get(NAME).state == models.HIDDEN
    assert catalog.begin_delete(NAME)
    assert catalog.get(NAME).state == models.DELETING
    assert catalog.snapshot_deleted(NAME)
    assert catalog.get(NAME) is None
    assert not catalog.snapshot_deleted(NAME)
    assert catalog.count() == 0


def test_created_without_intent_inserts(catalog):
    row = catalog.snapshot_created(snap(DS, "manual", guid=5, props={PROP_BACKEND: "b"}))
    assert (row.kind, row.state, row.project_id, row.volume_id, row.backend) == (
        models.KIND_OUT_OF_BAND, models.AVAILABLE, "p1", V, "b")


def test_created_deferred_is_hidden(catalog):
    row = catalog.snapshot_created(snap(DS, f"snapshot-{S}", guid=5, defer_destroy=True))
    assert row.state == models.HIDDEN and row.defer_destroy


def test_abandon_only_drops_intents(catalog):
    catalog.begin_snapshot(NAME, snapshot_id=S, volume_id=V, project_id="p1")
    assert catalog.abandon_snapshot(NAME)
    assert catalog.get(NAME) is None
    catalog.snapshot_created(snap(DS, f"snapshot-{S}", guid=5))
    assert not catalog.abandon_snapshot(NAME)
    assert catalog.get(NAME) is not None


def test_begin_again_resets_to_creating(catalog):
    catalog.begin_snapshot(NAME, snapshot_id=S, volume_id=V, project_id="p1")
    catalog.abandon_snapshot(NAME)
    catalog.begin_snapshot(NAME, snapshot_id=S, volume_id=V, project_id="p1")
    row = catalog.begin_snapshot(NAME, snapshot_id=S, volume_id=V, project_id="p1",
                                 group_snapshot_id=uid(9))
    assert row.state == models.CREATING and row.group_snapshot_id == uid(9)
    assert catalog.count() == 1


def test_batch_intents_and_creation(catalog):
    vols = [uid(100 + i) for i in range(3)]
    group = uid(50)
    names = [f"{volume_ds('p1', v)}@snapshot-{uid(200 + i)}" for i, v in enumerate(vols)]
    catalog.begin_snapshots(Intent(n, uid(200 + i), v, "p1", group)
                            for i, (n, v) in enumerate(zip(names, vols, strict=True)))
    assert catalog.count(states=[models.CREATING]) == 3
    catalog.snapshots_created([snap(volume_ds("p1", v), f"snapshot-{uid(200 + i)}",
                                    guid=300 + i) for i, v in enumerate(vols)])
    rows = [catalog.get(n) for n in names]
    assert {r.state for r in rows} == {models.AVAILABLE}
    assert {r.group_snapshot_id for r in rows} == {group}


def test_invalid_names_are_refused(catalog):
    with pytest.raises(InvalidArgument):
        catalog.begin_snapshot("tank/cinder/p1/volume-x", snapshot_id=None, volume_id=None,
                               project_id="p1")


def test_guid_beyond_int64(catalog):
    big = (1 << 64) - 1
    catalog.snapshot_created(snap(DS, f"snapshot-{S}", guid=big))
    assert catalog.get(NAME).guid == big
    assert [r.zfs_name for r in catalog.by_guid(big)] == [NAME]
    assert catalog.by_guid(big - 1) == []


def test_promote_moves_snapshot_found_by_guid(catalog):
    clone_vol = uid(7)
    catalog.snapshot_created(snap(DS, f"snapshot-{S}", guid=77, clones=[volume_ds("p1", uid(8))]))
    new_name = f"{volume_ds('p1', clone_vol)}@snapshot-{S}"
    assert catalog.snapshot_renamed(77, new_name)
    assert catalog.get(NAME) is None
    row = catalog.by_guid(77)[0]
    assert (row.zfs_name, row.volume_id, row.project_id, row.snapshot_id) == (
        new_name, clone_vol, "p1", S)
    # Edges follow the snapshot.
    assert catalog.dependents(new_name) == [volume_ds("p1", uid(8))]
    assert catalog.dependents(NAME) == []
    assert not catalog.snapshot_renamed(12345, new_name)


def test_dataset_renamed_moves_all_snapshots(catalog):
    catalog.snapshot_created(snap(DS, f"snapshot-{S}", guid=1, clones=[volume_ds("p1", uid(8))]))
    catalog.snapshot_created(snap(DS, "manual", guid=2))
    catalog.add_clone_edge(f"{DS}@snapshot-{S}", volume_ds("p1", uid(8)))
    catalog.add_clone_edge("tank/cinder/p0/volume-o@x", DS)   # DS is itself a clone
    new = volume_ds("p2", V)
    assert catalog.dataset_renamed(DS, new) == 2
    assert {r.project_id for r in catalog.volume_history(V)} == {"p2"}
    assert catalog.get(f"{new}@snapshot-{S}").kind == models.KIND_CINDER
    assert catalog.dependents(f"{new}@snapshot-{S}") == [volume_ds("p1", uid(8))]
    assert catalog.origin_of(new) == "tank/cinder/p0/volume-o@x"
    assert catalog.origin_of(DS) is None

    trash = f"{ROOT}/.trash/volume-{V}"
    catalog.dataset_renamed(new, trash)
    assert {r.project_id for r in catalog.volume_history(V)} == {"p2"}   # kept


def test_dataset_destroyed(catalog):
    catalog.snapshot_created(snap(DS, "a", guid=1, clones=[volume_ds("p1", uid(8))]))
    catalog.snapshot_created(snap(DS, "b", guid=2))
    catalog.add_clone_edge("tank/cinder/p0/volume-o@x", DS)
    assert catalog.dataset_destroyed(DS) == 2
    assert catalog.count() == 0
    assert catalog.dependents(f"{DS}@a") == []
    assert catalog.origin_of(DS) is None


def test_clone_edges(catalog):
    origin = f"{DS}@snapshot-{S}"
    catalog.snapshot_created(snap(DS, f"snapshot-{S}", guid=11))
    catalog.add_clone_edge(origin, "tank/cinder/p1/volume-a")
    catalog.add_clone_edge(origin, "tank/cinder/p1/volume-b")
    assert catalog.dependents(origin) == ["tank/cinder/p1/volume-a", "tank/cinder/p1/volume-b"]
    assert catalog.dependents(guid=11) == catalog.dependents(origin)
    assert catalog.origin_of("tank/cinder/p1/volume-a") == origin
    assert catalog.remove_clone_edge("tank/cinder/p1/volume-a")
    assert not catalog.remove_clone_edge("tank/cinder/p1/volume-a")
    catalog.set_clone_edges(origin, ["tank/cinder/p1/volume-c"])
    assert catalog.dependents(origin) == ["tank/cinder/p1/volume-c"]
    catalog.set_clone_edges(origin, [])
    assert catalog.dependents(origin) == []
    with pytest.raises(ValueError):
        catalog.dependents()


def test_threads_share_one_catalog(catalog):
    errors = []

    def worker(n: int) -> None:
        try:
            for i in range(25):
                v, s = uid(n * 1000 + i), uid(n * 1000 + i + 500)
                name = f"{volume_ds(f'p{n}', v)}@snapshot-{s}"
                catalog.begin_snapshot(name, snapshot_id=s, volume_id=v, project_id=f"p{n}")
                catalog.snapshot_created(snap(volume_ds(f"p{n}", v), f"snapshot-{s}",
                                              guid=n * 1000 + i + 1))
                catalog.list_by_project(f"p{n}", limit=5)
        except Exception as exc:   # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert catalog.count(states=[models.AVAILABLE]) == 100
