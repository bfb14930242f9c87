"""Issue 16 on the fake node: every path keeps what the driver promises.

- the driver's properties (owner, OCFS2 identity, compression, thick) travel to every new
  dataset: clone, copy, group from source, revert by swap, migration;
- a snapshot is internal only when the driver made and marked it (an admin's @clone-anything
  is never destroyed);
- live Cinder volumes (any project's) and the driver's own objects are never managed;
- a failed migration never destroys what it did not make.
"""

import pytest

from cinder_zfs_ocfs2.operations.manage import ManageOperations, NotManageable
from cinder_zfs_ocfs2.operations.specs import VolumeSpec
from cinder_zfs_ocfs2.operations.volumes import GiB
from cinder_zfs_ocfs2.zfs import errors
from cinder_zfs_ocfs2.zfs.names import CLONE_TEMP, NameSpace, is_driver_made, is_internal
from cinder_zfs_ocfs2.zfs.types import (
    PROP_BACKEND,
    PROP_CINDER_SNAPSHOT,
    PROP_FILESYSTEM,
    PROP_HIDDEN,
    PROP_INTERNAL,
    PROP_OCFS2_STACK,
    PROP_PROJECT_ID,
    PROP_VOLUME_ID,
    Snapshot,
)
from tests.unit.fakezfs import FakeZFS
from tests.unit.operations.test_volumes import (
    INDEPENDENT,
    NS,
    PROJECT,
    ROOT,
    SPARSE,
    THICK,
    copy_of,
    hidden_in_trash,
    leftovers,
    make_ops,
    new_id,
    snapshot,
    volume,
    whole_block_writes,  # noqa: F401 - the autouse fixture of test_volumes
)

OCFS2 = {PROP_FILESYSTEM: "ocfs2", PROP_OCFS2_STACK: "o2cb"}
IDENTITY = [PROP_FILESYSTEM, PROP_OCFS2_STACK]
ZSTD_THICK = VolumeSpec(sparse=False, compression="zstd", volblocksize=16384,
                        clone_mode="linked")


def ocfs2_volume(ops, fake, data=b"ocfs2 superblock", spec=SPARSE):
    vid, name = volume(ops, fake, data, spec=spec)
    ops.zfs.set_properties(name, OCFS2)  # what the driver writes after mkfs.ocfs2
    return vid, name


def identity(ops, name):
    return ops.zfs.get_properties(name, IDENTITY)


# -- 1. the driver's properties travel to every new dataset ----------------------------------

def test_revert_by_swap_keeps_the_ocfs2_identity_and_a_later_clone_carries_it(ops, fake):
    vid, name = ocfs2_volume(ops, fake, spec=ZSTD_THICK)
    snap = snapshot(ops, name)
    copy_of(ops, name)  # a newer temp snapshot with a dependent: revert must swap
    ops.revert(PROJECT, vid, snap)
    assert fake.called("promote") and not fake.called("rollback")
    assert identity(ops, name) == OCFS2
    props = ops.zfs.get_properties(name, ["compression", "refreservation", PROP_VOLUME_ID,
                                          PROP_PROJECT_ID, PROP_BACKEND])
    assert props == {"compression": "zstd", "refreservation": str(GiB), PROP_VOLUME_ID: vid,
                     PROP_PROJECT_ID: PROJECT, PROP_BACKEND: "unit"}
    _, clone = copy_of(ops, name)  # the driver runs tunefs --cloned-volume on this one
    assert identity(ops, clone) == OCFS2


@pytest.mark.parametrize("spec", [SPARSE, INDEPENDENT], ids=["linked", "independent"])
def test_clones_of_snapshots_and_volumes_carry_the_identity_from_creation(ops, fake, spec):
    _, name = ocfs2_volume(ops, fake)
    snap = snapshot(ops, name)
    clone_id = new_id()
    clone = ops.create_volume_from_snapshot(snap, PROJECT, clone_id, 1, spec)
    assert identity(ops, clone) == OCFS2
    assert ops.zfs.get_volume(clone).user_props[PROP_VOLUME_ID] == clone_id
    _, copied = copy_of(ops, name, spec=spec)
    assert identity(ops, copied) == OCFS2
    # the identity is in the clone call itself: no window in which the clone lacks it
    made = [c for c in fake.called("clone") + fake.called("send_receive")
            if PROP_FILESYSTEM not in (c["properties"] or {})]
    assert made == []


def test_group_from_source_clones_carry_the_identity(ops, fake):
    _, a = ocfs2_volume(ops, fake)
    _, b = volume(ops, fake, b"plain")
    made = ops.create_cloned_volumes([(a, PROJECT, new_id(), 1, SPARSE),
                                      (b, PROJECT, new_id(), 1, SPARSE)])
    assert identity(ops, made[0]) == OCFS2
    assert identity(ops, made[1]) == {PROP_FILESYSTEM: None, PROP_OCFS2_STACK: None}


def test_the_new_volumes_type_decides_compression_and_thickness_of_a_clone(ops, fake):
    _, name = ocfs2_volume(ops, fake)
    _, clone = copy_of(ops, name, spec=ZSTD_THICK)
    assert ops.zfs.get_properties(clone, ["compression", "refreservation"]) == \
        {"compression": "zstd", "refreservation": str(GiB)}


def migration_env():
    """One fake node holding two backends' roots, as a node with two pools does."""
    fake = FakeZFS("tank")
    src = make_ops(fake)
    dest = NameSpace("tank/other")
    return fake, src, dest


def test_migration_copy_keeps_identity_compression_thickness_and_names_the_destination():
    fake, ops, dest = migration_env()
    vid, name = ocfs2_volume(ops, fake, spec=ZSTD_THICK)
    target = ops.copy_to_root(PROJECT, vid, dest, "zfs-dest")
    props = ops.zfs.get_properties(target, IDENTITY + ["compression", "refreservation",
                                                       PROP_VOLUME_ID, PROP_BACKEND])
    assert props == {**OCFS2, "compression": "zstd", "refreservation": str(GiB),
                     PROP_VOLUME_ID: vid, PROP_BACKEND: "zfs-dest"}
    assert fake.tree(target) == [target] and fake.tree(name) == [name]  # no temp left


# -- 5. a failed migration destroys only what it made ----------------------------------------

def test_migration_onto_an_existing_target_refuses_and_leaves_the_target_alone():
    fake, ops, dest = migration_env()
    vid, name = volume(ops, fake, b"source")
    target = dest.volume(PROJECT, vid)
    fake.create_filesystem(dest.tenant(PROJECT))
    fake.create_volume(target, GiB)
    fake.write(target, b"someone else's")
    ops.zfs.snapshot([f"{target}@keep"])
    with pytest.raises(errors.AlreadyExists) as info:
        ops.copy_to_root(PROJECT, vid, dest, "zfs-dest")
    assert "destroy it before retrying" in str(info.value)
    assert fake.read(target) == b"someone else's" and fake.tree(target) == [target,
                                                                         f"{target}@keep"]
    assert fake.tree(name) == [name]


def test_migration_failing_after_the_receive_removes_its_copy():
    fake, ops, dest = migration_env()
    vid, name = volume(ops, fake, b"source", spec=THICK)
    target = dest.volume(PROJECT, vid)
    fake.fail("set", errors.NoSpace("out of space"), when=lambda a: a["name"] == target)
    with pytest.raises(errors.NoSpace):
        ops.copy_to_root(PROJECT, vid, dest, "zfs-dest")
    assert not ops.zfs.exists(target) and fake.tree(name) == [name]


def test_migration_whose_reply_was_lost_removes_the_received_copy():
    fake, ops, dest = migration_env()
    vid, name = volume(ops, fake, b"source")
    target = dest.volume(PROJECT, vid)
    receive = fake.send_receive

    def received_then_lost(*args, **kwargs):
        receive(*args, **kwargs)
        raise errors.TransportError("session lost")

    fake.send_receive = received_then_lost
    with pytest.raises(errors.TransportError):
        ops.copy_to_root(PROJECT, vid, dest, "zfs-dest")
    assert not ops.zfs.exists(target) and fake.tree(name) == [name]


# -- 2. driver-made means prefix + UUID + marker ---------------------------------------------

def snap_record(short, **props):
    return Snapshot(name=f"{ROOT}/{PROJECT}/volume-{new_id()}@{short}", guid=1, createtxg=1,
                    creation=1, used=0, referenced=0, written=0, user_props=props)


@pytest.mark.parametrize("short,props,made,internal", [
    (f"clone-{'1' * 8}-1111-1111-1111-{'1' * 12}", {PROP_INTERNAL: CLONE_TEMP}, True, True),
    (f"clone-{'1' * 8}-1111-1111-1111-{'1' * 12}", {}, False, False),   # unmarked: an admin's
    ("clone-before-upgrade", {PROP_INTERNAL: CLONE_TEMP}, False, False),
    ("clone-before-upgrade", {}, False, False),
    (f"snapshot-{'2' * 8}-2222-2222-2222-{'2' * 12}", {}, True, False),
    (f"snapshot-{'2' * 8}-2222-2222-2222-{'2' * 12}", {PROP_HIDDEN: "true"}, True, True),
    ("snapshot-nightly", {PROP_HIDDEN: "true"}, False, False),
    ("admin-backup", {PROP_HIDDEN: "true"}, False, False),
])
def test_what_the_driver_made(short, props, made, internal):
    record = snap_record(short, **props)
    assert (is_driver_made(record), is_internal(record)) == (made, internal)


@pytest.mark.parametrize("short", ["clone-before-upgrade", f"clone-{new_id()}"])
def test_volume_delete_never_destroys_an_admins_clone_named_snapshot(ops, fake, short):
    vid, name = volume(ops, fake)
    ops.zfs.snapshot([f"{name}@{short}"])
    with pytest.raises(errors.Busy) as info:
        ops.delete_volume(PROJECT, vid)
    assert short in str(info.value)
    assert ops.zfs.exists(f"{name}@{short}")


def test_revert_never_destroys_a_newer_admin_clone_named_snapshot(ops, fake):
    vid, name = volume(ops, fake, b"target")
    snap = snapshot(ops, name)
    fake.write(name, b"later")
    admin = f"{name}@clone-before-upgrade"
    ops.zfs.snapshot([admin])
    ops.revert(PROJECT, vid, snap)
    assert fake.read(name) == b"target"
    (trash,) = hidden_in_trash(fake)  # the swap kept it, on the volume's former self
    assert ops.zfs.exists(f"{trash}@clone-before-upgrade")


def test_promote_on_delete_never_prunes_an_admins_clone_named_snapshot_on_the_heir(fake):
    ops = make_ops(fake, promote_on_delete=True)
    vid, name = volume(ops, fake, b"data")
    snap = snapshot(ops, name)
    heir = ops.create_volume_from_snapshot(snap, PROJECT, new_id(), 1, SPARSE)
    admin = f"{heir}@clone-before-upgrade"   # an admin's, on the clone
    ops.zfs.snapshot([admin])
    ops.delete_snapshot(snap)
    ops.delete_volume(PROJECT, vid)          # promotes the heir, then prunes its internals
    assert ops.zfs.get_volume(heir).origin is None
    assert ops.zfs.exists(admin)


def test_clone_temps_are_marked_and_still_cleaned_up(ops, fake):
    _, name = volume(ops, fake)
    cid, clone = copy_of(ops, name)
    temp = NS.clone_snapshot(name, cid)
    assert ops.zfs.get_snapshot(temp).user_props[PROP_INTERNAL] == CLONE_TEMP
    ops.delete_volume(PROJECT, cid)
    assert fake.tree(name) == [name]


def test_start_up_marks_the_clone_temps_of_an_earlier_version(ops, fake):
    vid, name = volume(ops, fake)
    cid = new_id()
    legacy = NS.clone_snapshot(name, cid)
    ops.zfs.snapshot([legacy])           # as the driver made them before the marker
    ops.zfs.clone(legacy, NS.volume(PROJECT, cid))
    stray = NS.clone_snapshot(name, new_id())
    ops.zfs.snapshot([stray])            # no clone of that name: cannot be told from an admin's
    assert make_ops(fake).mark_legacy_clone_temps() == 1
    ops.delete_volume(PROJECT, cid)      # the legacy temp goes with its clone
    assert fake.tree(name) == [name, stray]
    with pytest.raises(errors.Busy):
        ops.delete_volume(PROJECT, vid)


# -- 3. what may be managed ------------------------------------------------------------------

def manage(ops):
    return ManageOperations(ops)


def assert_refused(fake, action, *words):
    before, calls = fake.tree(), len(fake.calls)
    with pytest.raises(NotManageable) as info:
        action()
    for word in words:
        assert word in str(info.value)
    assert fake.tree() == before
    assert {op for op, _ in fake.calls[calls:]} <= {"exists", "list", "get"}


@pytest.mark.parametrize("project", ["palice", PROJECT], ids=["another project", "same"])
def test_a_live_cinder_volume_is_never_managed(ops, fake, project):
    alice = new_id()
    name = ops.create_volume(project, alice, 1, SPARSE)
    for ref in (f"volume-{alice}", f"{project}/volume-{alice}", name):
        assert_refused(fake, lambda r=ref: manage(ops).adopt_volume(
            {"source-name": r}, "pbob", new_id()), alice, "unmanage")
        assert_refused(fake, lambda r=ref: manage(ops).volume_size({"source-name": r}))
    assert ops.zfs.get_volume(name).user_props[PROP_PROJECT_ID] == project


def test_an_unmanaged_volume_can_be_managed_again(ops, fake):
    vid, name = volume(ops, fake, b"kept")
    manage(ops).release_volume(name)
    new = new_id()
    target = manage(ops).adopt_volume({"source-name": f"volume-{vid}"}, "pbob", new)
    assert target == NS.volume("pbob", new) and fake.read(target) == b"kept"
    assert ops.zfs.get_volume(target).user_props == {
        PROP_VOLUME_ID: new, PROP_PROJECT_ID: "pbob", PROP_BACKEND: "unit"}


def test_hidden_volumes_and_revert_scratch_clones_are_never_managed(ops, fake):
    vid, name = volume(ops, fake)
    snap = snapshot(ops, name)
    cid, clone = copy_of(ops, name)
    ops.delete_snapshot(snap)
    ops.delete_volume(PROJECT, vid)            # hidden in the trash: its clone needs it
    (trash,) = hidden_in_trash(fake)
    manage(ops).release_volume(trash)          # even without ownership marks
    assert_refused(fake, lambda: manage(ops).adopt_volume({"source-name": trash}, PROJECT,
                                                          new_id()), "hidden")
    scratch = NS.revert_clone(PROJECT, cid)
    ops.zfs.snapshot([f"{clone}@s"])
    ops.zfs.clone(f"{clone}@s", scratch)       # a revert cut short
    assert_refused(fake, lambda: manage(ops).adopt_volume({"source-name": scratch}, PROJECT,
                                                          new_id()), "revert")
    names = [v.name for v in manage(ops).candidates()]
    assert trash not in names and scratch not in names


def test_the_drivers_own_snapshots_are_never_managed(ops, fake):
    vid, name = volume(ops, fake)
    manage(ops).release_volume(name)
    target = manage(ops).adopt_volume({"source-name": f"volume-{vid}"}, PROJECT, vid)
    hidden = snapshot(ops, target)
    copy_of(ops, target)                       # leaves a clone temp with its clone
    clone_of_hidden = ops.create_volume_from_snapshot(hidden, PROJECT, new_id(), 1, SPARSE)
    ops.delete_snapshot(hidden)                # hidden and deferred: its clone needs it
    admin_deferred = f"{target}@admin"
    ops.zfs.snapshot([admin_deferred])
    ops.zfs.clone(admin_deferred, f"{ROOT}/{PROJECT}/admin-clone")
    ops.zfs.destroy(admin_deferred, defer=True)
    temps = [s.name for s in ops.zfs.list_snapshots(target, depth=1)
             if s.short_name.startswith("clone-")]
    for ref, word in [(hidden, "hidden"), (admin_deferred, "hidden"), (temps[0], "temp")]:
        assert_refused(fake, lambda r=ref: manage(ops).adopt_snapshot(
            target, {"source-name": r}, new_id()), word)
    assert clone_of_hidden in fake.tree()


def test_an_admins_snapshot_is_managed(ops, fake):
    _, name = volume(ops, fake)
    ops.zfs.snapshot([f"{name}@nightly"])
    sid = new_id()
    assert manage(ops).adopt_snapshot(name, {"source-name": "nightly"}, sid) == \
        NS.snapshot(name, sid)


def test_a_live_cinder_snapshot_is_never_managed_and_an_unmanaged_one_is(ops, fake):
    _, name = volume(ops, fake)
    live = snapshot(ops, name)
    short = live.partition("@")[2]
    assert ops.zfs.get_snapshot(live).user_props[PROP_CINDER_SNAPSHOT] == "true"
    # under its own id too: an unmanaged snapshot keeps its name, so the name cannot tell
    for sid in (new_id(), short[len("snapshot-"):]):
        assert_refused(fake, lambda s=sid: manage(ops).adopt_snapshot(
            name, {"source-name": short}, s), "live Cinder snapshot", "unmanage")
    assert_refused(fake, lambda: manage(ops).snapshot_size(name, {"source-name": short}))
    manage(ops).release_snapshot(live)         # unmanage: the snapshot stays, unmarked
    assert PROP_CINDER_SNAPSHOT not in ops.zfs.get_snapshot(live).user_props
    sid = new_id()
    target = manage(ops).adopt_snapshot(name, {"source-name": short}, sid)
    assert target == NS.snapshot(name, sid)
    assert ops.zfs.get_snapshot(target).user_props[PROP_CINDER_SNAPSHOT] == "true"


def test_snapshots_of_a_group_are_marked_live_in_one_call(ops, fake):
    names = [NS.snapshot(volume(ops, fake)[1], new_id()) for _ in range(3)]
    calls = len(fake.calls)
    ops.create_snapshots(names, group_snapshot_id=new_id())
    assert [op for op, _ in fake.calls[calls:]].count("snapshot") == 1
    assert all(ops.zfs.get_snapshot(n).user_props[PROP_CINDER_SNAPSHOT] == "true"
               for n in names)


def test_clone_temps_are_not_marked_live(ops, fake):
    _, name = volume(ops, fake)
    copy_of(ops, name)
    (temp,) = [s for s in ops.zfs.list_snapshots(name, depth=1)
               if s.short_name.startswith("clone-")]
    assert PROP_CINDER_SNAPSHOT not in temp.user_props


def test_transfer_moves_the_ownership_marks_with_the_volume(ops, fake):
    vid, name = ocfs2_volume(ops, fake)
    target = manage(ops).transfer(name, "pbob", vid)
    assert ops.zfs.get_properties(target, IDENTITY + [PROP_PROJECT_ID, PROP_VOLUME_ID]) == \
        {**OCFS2, PROP_PROJECT_ID: "pbob", PROP_VOLUME_ID: vid}
    assert leftovers(fake) == [NS.tenant("pbob"), target]
