import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cinder_zfs_ocfs2.zfs import errors
from cinder_zfs_ocfs2.zfs.names import NameSpace, snapshot_id_of, volume_id_of

VOL = "0b8e5b4c-7d0c-4a8c-9c1e-0a5a0b0e6f01"
SNAP = "5f1f0c1a-2b3c-4d5e-8f90-a1b2c3d4e5f6"


def test_storage_model_names():
    ns = NameSpace("tank/cinder")
    vol = ns.volume("proj1", VOL.upper())
    assert vol == f"tank/cinder/proj1/volume-{VOL}"
    assert ns.snapshot(vol, SNAP) == f"{vol}@snapshot-{SNAP}"
    assert ns.clone_snapshot(vol, SNAP) == f"{vol}@clone-{SNAP}"
    assert ns.trash(VOL, "ab12") == f"tank/cinder/.trash/volume-{VOL}.ab12"
    assert volume_id_of(ns.trash(VOL, "ab12")) == VOL
    assert ns.pool == "tank"
    assert volume_id_of(ns.snapshot(vol, SNAP)) == VOL
    assert snapshot_id_of(ns.snapshot(vol, SNAP)) == SNAP
    assert snapshot_id_of(ns.clone_snapshot(vol, SNAP)) is None


@pytest.mark.parametrize("bad", ["not-a-uuid", "", "../x", None, 12])
def test_bad_volume_ids_refused(bad):
    with pytest.raises(errors.InvalidArgument):
        NameSpace("tank/cinder").volume("proj1", bad)


@pytest.mark.parametrize("bad", ["", "a/b", "..", ".trash", "x" * 65, "a b", "é"])
def test_bad_project_ids_refused(bad):
    with pytest.raises(errors.InvalidArgument):
        NameSpace("tank/cinder").tenant(bad)


@pytest.mark.parametrize("name", [
    "tank", "tank/cinderx/vol", "other/cinder/x", "tank/cinder/../x", "tank/cinder/a@b@c",
    "tank/cinder//x", "tank/cinder/x y", "tank/cinder/x;rm", "/tank/cinder/x", "tank/cinder@s",
])
def test_outside_or_malformed_refused(name):
    with pytest.raises(errors.InvalidArgument):
        NameSpace("tank/cinder").check(name, allow_root=False)


def test_inside_accepted():
    ns = NameSpace("tank/cinder")
    assert ns.check("tank/cinder", allow_root=True) == "tank/cinder"
    assert ns.check("tank/cinder/p/volume-x@snapshot-y")


@given(st.text(max_size=300))
def test_no_generated_name_escapes_the_root(text):
    ns = NameSpace("tank/cinder")
    try:
        name = ns.check(text)
    except errors.InvalidArgument:
        return
    dataset = name.partition("@")[0]
    assert dataset == "tank/cinder" or dataset.startswith("tank/cinder/")
    assert ".." not in dataset.split("/") and "" not in dataset.split("/")
    assert all(c.isascii() and (c.isalnum() or c in "_.:-/@") for c in name)


@given(st.uuids(), st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True))
def test_built_names_always_pass_the_check(vol, project):
    ns = NameSpace("tank/cinder")
    name = ns.snapshot(ns.volume(project, str(vol)), str(uuid.uuid4()))
    assert ns.check(name) == name
