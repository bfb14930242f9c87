"""The fake storage node itself: same operations as the agent, and ZFS's own semantics."""

import inspect

import pytest

from cinder_zfs_ocfs2.agent.ops import NodeOperations
from cinder_zfs_ocfs2.zfs import errors
from cinder_zfs_ocfs2.zfs.client import ZFSClient
from tests.unit.fakezfs import OPERATIONS, FakeZFS, GiB

R = "tank/cinder"


@pytest.fixture
def fake():
    return FakeZFS(R)


@pytest.fixture
def zfs(fake):
    return ZFSClient(fake)


def vol(fake, name, data=b"", sparse=True):
    if "/" in name:
        fake.call("create_filesystem", name=f"{R}/{name.rpartition('/')[0]}")
    fake.call("create_volume", name=f"{R}/{name}", size=GiB, sparse=sparse)
    if data:
        fake.write(f"{R}/{name}", data)
    return f"{R}/{name}"


def test_same_operations_and_arguments_as_the_agent():
    agent = NodeOperations(R, pyzfs=None)
    assert set(OPERATIONS) <= set(agent.operations)
    for op in OPERATIONS:
        theirs = inspect.signature(getattr(NodeOperations, op)).parameters
        ours = inspect.signature(getattr(FakeZFS, op)).parameters
        assert [(p.name, p.default) for p in theirs.values()] == \
            [(p.name, p.default) for p in ours.values()], op


def test_requests_are_checked_like_the_agent(fake):
    with pytest.raises(errors.InvalidArgument):
        fake.call("frobnicate")
    with pytest.raises(errors.InvalidArgument):
        fake.call("exists", nam=f"{R}/x")
    for name in ("tank/other", "tank", f"{R}/../x", f"{R}/a@b@c"):
        with pytest.raises(errors.InvalidArgument):
            fake.call("exists", name=name)
    with pytest.raises(errors.InvalidArgument):
        fake.call("destroy", name=R)  # the root itself is never destroyed
    with pytest.raises(errors.InvalidArgument):
        fake.call("snapshot", names=[f"{R}/v"], properties={"compression": "off"})
    assert fake.call("exists", name=R) is True


def test_create_volume_checks(fake, zfs):
    with pytest.raises(errors.NotFound):
        fake.call("create_volume", name=f"{R}/nope/v", size=GiB)
    with pytest.raises(errors.InvalidArgument):
        fake.call("create_volume", name=f"{R}/v", size=GiB + 512)
    with pytest.raises(errors.InvalidArgument):
        fake.call("create_volume", name=f"{R}/v", size=GiB, volblocksize=3072)
    with pytest.raises(errors.InvalidArgument):
        fake.call("create_volume", name=f"{R}/v", size=GiB, properties={"compression": "xz"})
    vol(fake, "v")
    with pytest.raises(errors.AlreadyExists):
        vol(fake, "v")
    v = zfs.get_volume(f"{R}/v")
    assert (v.volsize, v.volblocksize, v.origin) == (GiB, 16384, None)
    assert zfs.get_properties(f"{R}/v", ["refreservation"]) == {"refreservation": "0"}
    vol(fake, "thick", sparse=False)
    assert zfs.get_properties(f"{R}/thick", ["refreservation"]) == {"refreservation": str(GiB)}
    small = FakeZFS(R, pool_size=GiB // 2)
    with pytest.raises(errors.NoSpace):
        small.call("create_volume", name=f"{R}/v", size=GiB, sparse=False)
    small.call("create_volume", name=f"{R}/v", size=GiB, sparse=True)  # thin: fine


def test_create_filesystem_is_idempotent_like_create_p(fake):
    fake.call("create_filesystem", name=f"{R}/a/b")
    fake.call("create_filesystem", name=f"{R}/a/b")
    assert fake.tree(R) == [R, f"{R}/a", f"{R}/a/b"]


def test_snapshots_one_txg_all_or_nothing_and_inherit_user_props(fake, zfs):
    a, b = vol(fake, "a"), vol(fake, "b")
    owner, batch, unset = (f"org.openstack.cinder:{p}" for p in ("owner", "batch", "unset"))
    zfs.set_properties(a, {owner: "me"})
    with pytest.raises(errors.NotFound):
        zfs.snapshot([f"{a}@s", f"{R}/missing@s"])
    with pytest.raises(errors.InvalidArgument):
        zfs.snapshot([f"{a}@s", f"{a}@t"])
    assert fake.tree(a) == [a]
    zfs.snapshot([f"{a}@s", f"{b}@s"], {batch: "1"})
    sa, sb = zfs.get_snapshot(f"{a}@s"), zfs.get_snapshot(f"{b}@s")
    assert sa.createtxg == sb.createtxg and sa.guid != sb.guid
    with pytest.raises(errors.AlreadyExists):
        zfs.snapshot([f"{a}@s"])
    props = [owner, batch, unset]
    assert zfs.get_properties(f"{a}@s", props) == {owner: "me", batch: "1",
                                                   unset: None}
    zfs.set_properties(a, {owner: "you"})  # inheritance is live
    assert zfs.get_properties(f"{a}@s", [owner])[owner] == "you"
    zfs.set_properties(f"{a}@s", {owner: "snap"})
    assert zfs.get_properties(f"{a}@s", [owner])[owner] == "snap"
    zfs.inherit(f"{a}@s", owner)
    assert zfs.get_properties(f"{a}@s", [owner])[owner] == "you"
    row = zfs.list_rows(f"{b}@s", ["snapshot"], ("name", owner, "clones"), depth=0)
    assert row == [{"name": f"{b}@s", owner: "-", "clones": ""}]
    with pytest.raises(errors.InvalidArgument):
        zfs.set_properties(f"{a}@s", {"compression": "off"})


def test_list_order_depth_and_types(fake, zfs):
    a = vol(fake, "p/a")
    vol(fake, "p/a-b")
    zfs.snapshot([f"{a}@2"])
    zfs.snapshot([f"{a}@1"])
    names = [r["name"] for r in zfs.list_rows(R, ["filesystem", "volume", "snapshot"],
                                              ("name",))]
    assert names == [R, f"{R}/p", a, f"{a}@2", f"{a}@1", f"{R}/p/a-b"]
    assert [r["name"] for r in zfs.list_rows(f"{R}/p", ["volume"], ("name",), depth=1)] == \
        [a, f"{R}/p/a-b"]
    assert zfs.list_rows(a, ["snapshot"], ("name",), depth=0) == []
    with pytest.raises(errors.NotFound):
        zfs.list_rows(f"{R}/gone", ["volume"], ("name",))
    with pytest.raises(errors.NotFound):
        zfs.get_volume(f"{R}/p")  # a filesystem is not a volume


def test_clone_deferred_destroy_and_holds(fake, zfs):
    a = vol(fake, "a", b"origin")
    zfs.snapshot([f"{a}@s"])
    fake.write(a, b"ORIGIN")
    with pytest.raises(errors.NotFound):
        zfs.clone(f"{a}@nope", f"{R}/c")
    with pytest.raises(errors.NotFound):
        zfs.clone(f"{a}@s", f"{R}/nope/c")
    zfs.clone(f"{a}@s", f"{R}/c")
    with pytest.raises(errors.AlreadyExists):
        zfs.clone(f"{a}@s", f"{R}/c")
    assert fake.read(f"{R}/c") == b"origin" and fake.read(a) == b"ORIGIN"
    assert zfs.get_volume(f"{R}/c").origin == f"{a}@s"
    assert zfs.get_snapshot(f"{a}@s").clones == (f"{R}/c",)
    with pytest.raises(errors.HasDependents):
        zfs.destroy(f"{a}@s")
    with pytest.raises(errors.HasDependents):
        zfs.destroy(a)
    with pytest.raises(errors.HasDependents):
        zfs.destroy(a, recursive=True)
    assert fake.tree(R) == [R, a, f"{a}@s", f"{R}/c"]  # refused as a whole
    zfs.hold(f"{a}@s", "keep")
    zfs.destroy(f"{a}@s", defer=True)
    snap = zfs.get_snapshot(f"{a}@s")
    assert snap.defer_destroy and snap.userrefs == 1
    zfs.destroy(f"{R}/c")
    assert zfs.exists(f"{a}@s")  # still held
    with pytest.raises(errors.Busy):
        zfs.destroy(a, recursive=True)
    zfs.release(f"{a}@s", "keep")
    assert not zfs.exists(f"{a}@s")  # the last hold went: the deferred destroy happened
    with pytest.raises(errors.NotFound):
        zfs.release(f"{a}@s", "keep")
    zfs.snapshot([f"{a}@t"])
    zfs.hold(f"{a}@t", "x")
    with pytest.raises(errors.Busy):
        zfs.destroy(f"{a}@t")
    with pytest.raises(errors.AlreadyExists):
        zfs.hold(f"{a}@t", "x")
    assert zfs.holds(f"{a}@t") == ["x"]
    zfs.release(f"{a}@t", "x")
    zfs.destroy(f"{a}@t", defer=True)  # nothing holds it: gone at once
    assert fake.tree(a) == [a]


def test_deferred_snapshot_goes_with_its_last_clone(fake, zfs):
    a = vol(fake, "a")
    zfs.snapshot([f"{a}@s"])
    zfs.clone(f"{a}@s", f"{R}/c1")
    zfs.clone(f"{a}@s", f"{R}/c2")
    zfs.destroy(f"{a}@s", defer=True)
    zfs.destroy(f"{R}/c1")
    assert zfs.exists(f"{a}@s")
    zfs.destroy(f"{R}/c2", recursive=True)
    assert not zfs.exists(f"{a}@s")


def test_recursive_destroy_takes_snapshots_and_children_never_clones(fake, zfs):
    a = vol(fake, "t/a")
    zfs.snapshot([f"{a}@s"])
    zfs.clone(f"{a}@s", f"{R}/t/inner")
    zfs.snapshot([f"{a}@u"])
    fake.open_devices.add(f"{R}/t/inner")
    with pytest.raises(errors.Busy):
        zfs.destroy(f"{R}/t", recursive=True)
    fake.open_devices.clear()
    zfs.destroy(f"{R}/t", recursive=True)  # the clone is inside the tree
    assert fake.tree(R) == [R]


def test_promote_moves_older_snapshots_and_reverses_the_dependency(fake, zfs):
    a = vol(fake, "a", b"v1")
    zfs.snapshot([f"{a}@s1"])
    fake.write(a, b"v2")
    zfs.snapshot([f"{a}@s2"])
    fake.write(a, b"v3")
    zfs.snapshot([f"{a}@s3"])
    zfs.clone(f"{a}@s1", f"{R}/other")
    zfs.clone(f"{a}@s2", f"{R}/c")
    zfs.clone(f"{a}@s3", f"{R}/late")
    with pytest.raises(errors.ZFSError):
        zfs.promote(a)  # not a clone
    zfs.promote(f"{R}/c")
    assert fake.tree(R) == sorted([R, a, f"{a}@s3", f"{R}/c", f"{R}/c@s1", f"{R}/c@s2",
                                   f"{R}/late", f"{R}/other"])
    assert zfs.get_volume(f"{R}/c").origin is None
    assert zfs.get_volume(a).origin == f"{R}/c@s2"
    assert zfs.get_volume(f"{R}/other").origin == f"{R}/c@s1"
    assert zfs.get_volume(f"{R}/late").origin == f"{a}@s3"
    assert zfs.get_snapshot(f"{R}/c@s2").clones == (a,)
    assert [fake.read(n) for n in (a, f"{R}/c", f"{R}/c@s1", f"{R}/other")] == \
        [b"v3", b"v2", b"v1", b"v1"]
    zfs.destroy(f"{R}/late")
    zfs.destroy(a, recursive=True)  # the former origin is an ordinary clone now
    zfs.destroy(f"{R}/c@s2")


def test_promote_of_a_clone_of_a_clone_takes_over_the_grand_origin(fake, zfs):
    a = vol(fake, "a")
    zfs.snapshot([f"{a}@s"])
    zfs.clone(f"{a}@s", f"{R}/b")
    zfs.snapshot([f"{R}/b@t"])
    zfs.clone(f"{R}/b@t", f"{R}/c")
    zfs.promote(f"{R}/c")
    assert zfs.get_volume(f"{R}/c").origin == f"{a}@s"
    assert zfs.get_volume(f"{R}/b").origin == f"{R}/c@t"
    assert zfs.get_snapshot(f"{a}@s").clones == (f"{R}/c",)


def test_promote_refuses_conflicting_snapshot_names(fake, zfs):
    a = vol(fake, "a")
    zfs.snapshot([f"{a}@s"])
    zfs.clone(f"{a}@s", f"{R}/c")
    zfs.snapshot([f"{R}/c@s"])
    with pytest.raises(errors.AlreadyExists):
        zfs.promote(f"{R}/c")


def test_rollback_only_to_the_latest(fake, zfs):
    a = vol(fake, "a", b"one")
    zfs.snapshot([f"{a}@1"])
    fake.write(a, b"two")
    zfs.snapshot([f"{a}@2"])
    fake.write(a, b"three")
    with pytest.raises(errors.NotLatest):
        zfs.rollback(f"{a}@1")
    zfs.rollback(f"{a}@2")
    assert fake.read(a) == b"two"
    zfs.set_properties(a, {"volsize": str(2 * GiB)})
    zfs.destroy(f"{a}@2")
    zfs.rollback(f"{a}@1")
    assert fake.read(a) == b"one" and zfs.get_volume(a).volsize == GiB


def test_rename_with_parents_snapshots_and_clone_origins(fake, zfs):
    a = vol(fake, "a")
    zfs.snapshot([f"{a}@s"])
    zfs.clone(f"{a}@s", f"{R}/c")
    zfs.rename(a, f"{R}/x/y/a2")
    assert zfs.get_volume(f"{R}/c").origin == f"{R}/x/y/a2@s"
    assert zfs.exists(f"{R}/x/y/a2@s") and not zfs.exists(a)
    with pytest.raises(errors.AlreadyExists):
        zfs.rename(f"{R}/c", f"{R}/x/y/a2")
    with pytest.raises(errors.NotFound):
        zfs.rename(a, f"{R}/b")
    with pytest.raises(errors.InvalidArgument):
        zfs.rename(f"{R}/x/y/a2@s", f"{R}/c@s")
    zfs.rename(f"{R}/x/y/a2@s", f"{R}/x/y/a2@t")
    assert zfs.get_volume(f"{R}/c").origin == f"{R}/x/y/a2@t"


def test_volsize_keeps_a_thick_volume_thick(fake, zfs):
    a = vol(fake, "a", sparse=False)
    zfs.set_properties(a, {"volsize": str(2 * GiB)})
    assert zfs.get_properties(a, ["refreservation"])["refreservation"] == str(2 * GiB)
    with pytest.raises(errors.InvalidArgument):
        zfs.set_properties(a, {"volsize": str(GiB + 1)})
    with pytest.raises(errors.InvalidArgument):
        zfs.set_properties(a, {"volblocksize": "8192"})
    with pytest.raises(errors.InvalidArgument):
        zfs.inherit(a, "volsize")
    with pytest.raises(errors.ZFSError, match="greater than available space"):
        zfs.set_properties(a, {"volsize": str(4096 * GiB)})
    assert zfs.get_volume(a).volsize == 2 * GiB
    zfs.set_properties(a, {"refreservation": "none"})
    zfs.set_properties(a, {"volsize": str(4096 * GiB)})  # sparse: nothing to reserve


def test_send_receive_is_an_independent_copy_with_the_snapshot(fake, zfs):
    a = vol(fake, "a", b"data")
    zfs.set_properties(a, {"org.openstack.cinder:owner": "me"})
    zfs.snapshot([f"{a}@s"])
    result = zfs.send_receive(f"{a}@s", f"{R}/copy", {"compression": "zstd"})
    assert result["bytes"] == 4
    copy = zfs.get_volume(f"{R}/copy")
    assert copy.origin is None and copy.user_props == {} and fake.read(copy.name) == b"data"
    assert zfs.get_snapshot(f"{R}/copy@s").guid == zfs.get_snapshot(f"{a}@s").guid
    assert zfs.get_properties(f"{R}/copy", ["compression"]) == {"compression": "zstd"}
    zfs.destroy(a, recursive=True)  # nothing links them
    with pytest.raises(errors.ZFSError, match="destination .* exists"):
        zfs.send_receive(f"{R}/copy@s", f"{R}/copy")


def test_failure_injection_changes_nothing(fake, zfs):
    fake.fail("create_volume", errors.TransportError("link down"))
    with pytest.raises(errors.TransportError):
        vol(fake, "a")
    assert fake.tree(R) == [R]
    vol(fake, "a")
    assert fake.called("create_volume")[-1]["name"] == f"{R}/a"


def test_node_information(fake, zfs):
    assert zfs.version()["root"] == R
    assert zfs.pool_capacity().health == "ONLINE"
    vol(fake, "a", sparse=False)
    cap = zfs.pool_capacity()
    assert cap.allocated == GiB and cap.free == cap.size - GiB
    assert zfs.wait_for_device(f"{R}/a") == f"/dev/zvol/{R}/a"
    with pytest.raises(errors.Busy):
        zfs.wait_for_device(f"{R}/b")
