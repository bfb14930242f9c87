"""What a listing entry means as catalog columns."""

from __future__ import annotations

from cinder_zfs_ocfs2.catalog import derive, models
from cinder_zfs_ocfs2.zfs.types import (
    PROP_BACKEND,
    PROP_GROUP_SNAPSHOT_ID,
    PROP_HIDDEN,
    PROP_PROJECT_ID,
    PROP_SNAPSHOT_ID,
    PROP_VOLUME_ID,
)
from tests.unit.catalog.helpers import ROOT, snap, uid, volume_ds

V, S, G = uid(1), uid(2), uid(3)


def test_kind_of():
    ds = volume_ds("p", V)
    assert derive.kind_of(f"{ds}@snapshot-{S}") == models.KIND_CINDER
    assert derive.kind_of(f"{ds}@clone-{S}") == models.KIND_CLONE_TEMP
    assert derive.kind_of(f"{ds}@clone-nope") == models.KIND_OUT_OF_BAND
    assert derive.kind_of(f"{ds}@daily-2024") == models.KIND_OUT_OF_BAND
    # A driver-looking snapshot of something that is not a driver volume is not the driver's.
    assert derive.kind_of(f"{ROOT}/p@snapshot-{S}") == models.KIND_OUT_OF_BAND


def test_project_of_path():
    assert derive.project_of_path(volume_ds("p1", V), ROOT) == "p1"
    assert derive.project_of_path(f"{ROOT}/p1", ROOT) == "p1"
    assert derive.project_of_path(f"{ROOT}/.trash/volume-{V}", ROOT) is None
    assert derive.project_of_path(ROOT, ROOT) is None
    assert derive.project_of_path(f"{ROOT}/p1/other", ROOT) is None
    assert derive.project_of_path("elsewhere/p1/volume-" + V, ROOT) is None
    assert derive.project_of_path(volume_ds("p1", V)) == "p1"
    assert derive.project_of_path(f"{ROOT}/.trash/volume-{V}") is None


def test_describe_falls_back_to_the_path():
    d = derive.describe(snap(volume_ds("p1", V), f"snapshot-{S}", guid=7), ROOT)
    assert (d["project_id"], d["volume_id"], d["snapshot_id"], d["kind"]) == (
        "p1", V, S, models.KIND_CINDER)
    assert d["hidden"] is False


def test_describe_prefers_user_props():
    # A trashed volume keeps its inherited ids though its path no longer says them.
    props = {PROP_PROJECT_ID: "p9", PROP_VOLUME_ID: V, PROP_BACKEND: "zfs1",
             PROP_GROUP_SNAPSHOT_ID: G}
    d = derive.describe(snap(f"{ROOT}/.trash/volume-{V}", f"snapshot-{S}", guid=7,
                             props=props), ROOT, backend="fallback")
    assert (d["project_id"], d["volume_id"], d["backend"], d["group_snapshot_id"]) == (
        "p9", V, "zfs1", G)
    assert d["hidden"] is True   # in the trash


def test_snapshot_id_from_prop_when_the_name_has_none():
    d = derive.describe(snap(volume_ds("p", V), "manual", guid=1,
                             props={PROP_SNAPSHOT_ID: S}), ROOT)
    assert d["snapshot_id"] == S


def test_hidden_markers():
    ds = volume_ds("p", V)
    assert derive.describe(snap(ds, "a", guid=1, props={PROP_HIDDEN: "true"}))["hidden"]
    assert not derive.describe(snap(ds, "a", guid=1, props={PROP_HIDDEN: "off"}))["hidden"]
    assert derive.describe(snap(ds, "a", guid=1, defer_destroy=True))["hidden"]


def test_in_root():
    assert derive.in_root(f"{ROOT}@x", ROOT)
    assert derive.in_root(f"{ROOT}/p/v@x", ROOT)
    assert not derive.in_root("tank/cinder2/p/v@x", ROOT)
    assert not derive.in_root("tank@x", ROOT)


def test_project_of_path_scoped_to_one_volume():
    ds = volume_ds("p1", V)
    assert derive.project_of_path(ds, ds) == "p1"
    assert derive.project_of_path(f"{ROOT}/.trash/volume-{V}", f"{ROOT}/.trash/volume-{V}") \
        is None
