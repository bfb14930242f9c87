"""The decision logic of operations/volumes.py, on a fake node with real ZFS semantics."""

import contextlib
import uuid

import pytest

from cinder_zfs_ocfs2.operations import locks
from cinder_zfs_ocfs2.operations.specs import VolumeSpec
from cinder_zfs_ocfs2.operations.volumes import GiB, VolumeOperations
from cinder_zfs_ocfs2.zfs import errors
from cinder_zfs_ocfs2.zfs.client import ZFSClient
from cinder_zfs_ocfs2.zfs.names import NameSpace
from cinder_zfs_ocfs2.zfs.types import PROP_BACKEND, PROP_HIDDEN, PROP_PROJECT_ID, PROP_VOLUME_ID
from tests.unit.fakezfs import FakeZFS

ROOT = "tank/cinder"
TRASH = f"{ROOT}/.trash"
PROJECT = "p1"
NS = NameSpace(ROOT)
SPARSE = VolumeSpec(sparse=True, compression="lz4", volblocksize=16384, clone_mode="linked")
THICK = VolumeSpec(sparse=False, compression="lz4", volblocksize=16384, clone_mode="linked")
INDEPENDENT = VolumeSpec(sparse=True, compression="lz4", volblocksize=16384,
                         clone_mode="independent")


def new_id() -> str:
    return str(uuid.uuid4())


def make_ops(fake, **kwargs) -> VolumeOperations:
    ops = VolumeOperations(ZFSClient(fake), NameSpace(ROOT), SPARSE, backend="unit", **kwargs)
    ops.ensure_root(create=True)
    return ops


def volume(ops, fake, data=b"", spec=SPARSE, size=1):
    vid = new_id()
    name = ops.create_volume(PROJECT, vid, size, spec)
    if data:
        fake.write(name, data)
    return vid, name


@pytest.fixture(autouse=True)
def whole_block_writes(monkeypatch):
    """Test payloads fill one 64-byte block, so a later write replaces an earlier one."""
    write, read = FakeZFS.write, FakeZFS.read
    monkeypatch.setattr(FakeZFS, "write", lambda self, n, d: write(self, n, d.ljust(64, b"\0")))
    monkeypatch.setattr(FakeZFS, "read", lambda self, n: read(self, n).rstrip(b"\0"))


def snapshot(ops, name):
    sid = new_id()
    ops.create_snapshots([NS.snapshot(name, sid)])
    return NS.snapshot(name, sid)


def clone_of(ops, snap, spec=SPARSE, size=1):
    vid = new_id()
    return vid, ops.create_volume_from_snapshot(snap, PROJECT, vid, size, spec)


def copy_of(ops, source, spec=SPARSE, size=1):
    vid = new_id()
    return vid, ops.create_cloned_volume(source, PROJECT, vid, size, spec)


def leftovers(fake):
    """Everything under the root but the root, the trash and the tenant datasets."""
    return [n for n in fake.tree(ROOT) if n not in (ROOT, TRASH, NS.tenant(PROJECT))]


def hidden_in_trash(fake):
    return [n for n in fake.tree(TRASH) if n != TRASH and "@" not in n]


# -- create ----------------------------------------------------------------------------------

def test_create_sparse_volume(ops, fake):
    vid, name = volume(ops, fake)
    v = ops.zfs.get_volume(name)
    assert name == f"{ROOT}/{PROJECT}/volume-{vid}"
    assert (v.volsize, v.volblocksize, v.origin) == (GiB, 16384, None)
    assert v.user_props == {PROP_VOLUME_ID: vid, PROP_PROJECT_ID: PROJECT, PROP_BACKEND: "unit"}
    props = ops.zfs.get_properties(name, ["refreservation", "compression"])
    assert props == {"refreservation": "0", "compression": "lz4"}


def test_create_thick_volume_reserves_its_size(ops, fake):
    _, name = volume(ops, fake, spec=THICK, size=3)
    assert ops.zfs.get_properties(name, ["refreservation"]) == {"refreservation": str(3 * GiB)}


@pytest.mark.parametrize("block", [512, 8192, 131072])
def test_size_is_a_multiple_of_volblocksize(ops, fake, block):
    spec = VolumeSpec(sparse=True, compression="off", volblocksize=block, clone_mode="linked")
    _, name = volume(ops, fake, spec=spec, size=2)
    v = ops.zfs.get_volume(name)
    assert v.volblocksize == block and v.volsize == 2 * GiB and v.volsize % block == 0


def test_extend_rounds_up_and_a_thick_volume_stays_thick(ops, fake):
    _, name = volume(ops, fake, spec=THICK)
    ops.extend_volume(name, 5)
    assert ops.zfs.get_volume(name).volsize == 5 * GiB
    assert ops.zfs.get_properties(name, ["refreservation"])["refreservation"] == str(5 * GiB)
    with pytest.raises(errors.InvalidArgument):
        ops.extend_volume(name, 2)


def test_retype_in_place(ops, fake):
    _, name = volume(ops, fake)
    ops.apply_spec(name, SPARSE, THICK)
    assert ops.zfs.get_properties(name, ["refreservation"])["refreservation"] == str(GiB)
    zstd = VolumeSpec(sparse=True, compression="zstd", volblocksize=16384, clone_mode="linked")
    ops.apply_spec(name, THICK, zstd)
    assert ops.zfs.get_properties(name, ["refreservation", "compression"]) == \
        {"refreservation": "0", "compression": "zstd"}
    calls = len(fake.calls)
    ops.apply_spec(name, zstd, zstd)
    assert len(fake.calls) == calls


def test_no_space_for_a_thick_volume_leaves_nothing(fake):
    small = FakeZFS(ROOT, pool_size=GiB)
    ops = make_ops(small)
    with pytest.raises(errors.NoSpace):
        ops.create_volume(PROJECT, new_id(), 2, THICK)
    assert leftovers(small) == []


# -- the lifecycle of issue 4, scenario 1 ----------------------------------------------------

def _snapshot_clone_delete_snapshot_delete_origin(ops, fake):
    vid, name = volume(ops, fake, b"origin data")
    snap = snapshot(ops, name)
    fake.write(name, b"later data")
    cid, clone = clone_of(ops, snap)
    assert ops.zfs.get_volume(clone).origin == snap

    ops.delete_snapshot(snap)  # clones: hidden and deferred, a success for Cinder
    s = ops.zfs.get_snapshot(snap)
    assert s.defer_destroy and s.user_props[PROP_HIDDEN] == "true" and s.clones == (clone,)

    ops.delete_volume(PROJECT, vid)  # its snapshot has a clone: hidden in the trash
    assert not fake.call("exists", name=name)
    (trash,) = hidden_in_trash(fake)
    assert trash.startswith(f"{TRASH}/volume-{vid}.")
    assert ops.zfs.get_volume(trash).user_props[PROP_HIDDEN] == "true"
    assert fake.read(clone) == b"origin data"
    return cid, clone


def test_delete_with_dependents_hides_and_the_clone_keeps_its_data(ops, fake):
    cid, clone = _snapshot_clone_delete_snapshot_delete_origin(ops, fake)
    ops.delete_volume(PROJECT, cid)
    assert clone not in fake.tree(ROOT)
    assert ops.reclaim() in (0, 1)  # at the latest, the periodic/start-up reclaim takes it
    assert leftovers(fake) == []


def test_deleting_the_last_clone_reclaims_the_hidden_origin_at_once(ops, fake):
    cid, _ = _snapshot_clone_delete_snapshot_delete_origin(ops, fake)
    ops.delete_volume(PROJECT, cid)
    assert leftovers(fake) == []


def test_a_chain_of_hidden_volumes_is_reclaimed_in_one_pass(ops, fake):
    v0, n0 = volume(ops, fake, b"zero")
    s0 = snapshot(ops, n0)
    v1, n1 = clone_of(ops, s0)
    s1 = snapshot(ops, n1)
    v2, n2 = clone_of(ops, s1)
    ops.delete_snapshot(s0)
    ops.delete_volume(PROJECT, v0)
    ops.delete_snapshot(s1)
    ops.delete_volume(PROJECT, v1)
    assert len(hidden_in_trash(fake)) == 2 and fake.read(n2) == b"zero"
    ops.delete_volume(PROJECT, v2)
    assert leftovers(fake) == []


def test_delete_snapshot_without_clones_destroys_it(ops, fake):
    _, name = volume(ops, fake)
    snap = snapshot(ops, name)
    ops.delete_snapshot(snap)
    assert fake.tree(name) == [name]
    ops.delete_snapshot(snap)  # already gone: deleted


def test_delete_held_snapshot_is_busy(ops, fake):
    _, name = volume(ops, fake)
    snap = snapshot(ops, name)
    ops.zfs.hold(snap, "backup")
    with pytest.raises(errors.Busy):
        ops.delete_snapshot(snap)
    assert ops.zfs.exists(snap)


def test_delete_clone_of_a_live_cinder_snapshot_keeps_the_snapshot(ops, fake):
    _, name = volume(ops, fake)
    snap = snapshot(ops, name)
    cid, clone = clone_of(ops, snap)
    ops.delete_volume(PROJECT, cid)
    assert fake.tree(name) == [name, snap]


# -- clone depth -----------------------------------------------------------------------------

def test_clone_chain_deeper_than_max_is_flattened(fake):
    ops = make_ops(fake, max_clone_depth=2)
    _, name = volume(ops, fake, b"generation 0")
    chain = [name]
    for generation in range(1, 4):
        _, name = copy_of(ops, name)
        fake.write(name, f"generation {generation}".encode())
        chain.append(name)
    origins = [ops.zfs.get_volume(n).origin for n in chain]
    assert origins[0] is None and origins[1] and origins[2] and origins[3] is None
    assert [ops.clone_depth(n) for n in chain] == [0, 1, 2, 0]
    assert fake.tree(chain[3]) == [chain[3]]  # the received snapshot is not kept
    assert fake.tree(chain[2]) == [chain[2]]  # nor the temp snapshot behind the copy
    _, copied = copy_of(ops, chain[2])  # flattened copies carry the latest data
    assert fake.read(copied) == b"generation 2" and ops.zfs.get_volume(copied).origin is None


def test_max_clone_depth_zero_makes_every_clone_independent(fake):
    ops = make_ops(fake, max_clone_depth=0)
    _, name = volume(ops, fake, b"data")
    snap = snapshot(ops, name)
    _, clone = clone_of(ops, snap)
    assert ops.zfs.get_volume(clone).origin is None and fake.read(clone) == b"data"
    assert ops.zfs.get_snapshot(snap).clones == ()


def test_independent_clone_mode_by_spec(ops, fake):
    _, name = volume(ops, fake, b"data")
    snap = snapshot(ops, name)
    _, clone = clone_of(ops, snap, spec=INDEPENDENT)
    v = ops.zfs.get_volume(clone)
    assert v.origin is None and fake.read(clone) == b"data" and fake.tree(clone) == [clone]
    assert v.user_props[PROP_VOLUME_ID] == clone.rpartition("volume-")[2]
    ops.delete_snapshot(snap)
    assert fake.tree(name) == [name]  # nothing depended on it


# -- clones of volumes -----------------------------------------------------------------------

def test_two_clones_of_one_volume_in_a_row(ops, fake):
    _, name = volume(ops, fake, b"first")
    a, clone_a = copy_of(ops, name)
    fake.write(name, b"second")
    b, clone_b = copy_of(ops, name)
    temp_a, temp_b = NS.clone_snapshot(name, a), NS.clone_snapshot(name, b)
    assert temp_a != temp_b
    assert set(fake.tree(name)) == {name, temp_a, temp_b}
    assert ops.zfs.get_volume(clone_a).origin == temp_a
    assert ops.zfs.get_volume(clone_b).origin == temp_b
    assert (fake.read(clone_a), fake.read(clone_b)) == (b"first", b"second")
    ops.delete_volume(PROJECT, a)
    assert fake.tree(name) == [name, temp_b]  # its temp snapshot went with it
    ops.delete_volume(PROJECT, b)
    assert fake.tree(name) == [name]


def test_volume_with_only_internal_unpinned_snapshots_is_destroyed(ops, fake):
    vid, name = volume(ops, fake)
    ops.create_clone_temps([NS.clone_snapshot(name, new_id())])  # a leftover temp snapshot
    ops.delete_volume(PROJECT, vid)
    assert leftovers(fake) == []


def test_create_volume_from_snapshot_with_larger_size_extends(ops, fake):
    _, name = volume(ops, fake, b"data")
    snap = snapshot(ops, name)
    _, clone = clone_of(ops, snap, spec=THICK, size=3)
    assert ops.zfs.get_volume(clone).volsize == 3 * GiB
    assert ops.zfs.get_properties(clone, ["refreservation"])["refreservation"] == str(3 * GiB)
    assert fake.read(clone) == b"data"


def test_create_volume_from_missing_snapshot_makes_nothing(ops, fake):
    _, name = volume(ops, fake)
    before = fake.tree(ROOT)
    with pytest.raises(errors.NotFound):
        clone_of(ops, NS.snapshot(name, new_id()))
    assert fake.tree(ROOT) == before


@pytest.mark.parametrize("spec", [SPARSE, INDEPENDENT], ids=["linked", "independent"])
def test_failure_inside_finish_clone_leaves_nothing_behind(ops, fake, spec):
    _, name = volume(ops, fake, b"data")
    snap = snapshot(ops, name)
    before = fake.tree(ROOT)
    fake.fail("set", errors.NoSpace("out of space"), when=lambda a: "volsize" in a["properties"])
    with pytest.raises(errors.NoSpace):
        clone_of(ops, snap, spec=spec, size=2)
    assert fake.tree(ROOT) == before
    fake.fail("set", errors.NoSpace("out of space"))
    with pytest.raises(errors.NoSpace):
        copy_of(ops, name, spec=spec, size=2)  # the temp snapshot goes too
    assert fake.tree(ROOT) == before


# -- delete refusals and missing objects -----------------------------------------------------

def test_delete_of_a_volume_already_gone_succeeds(ops, fake):
    vid, name = volume(ops, fake)
    ops.zfs.destroy(name)  # out of band
    calls = len(fake.calls)
    ops.delete_volume(PROJECT, vid)
    ops.delete_volume(PROJECT, new_id())  # never existed
    # Looked for at its name, then by identity (a listing), and nothing destroyed.
    assert {op for op, _ in fake.calls[calls:]} == {"exists", "list"}


def test_out_of_band_snapshot_makes_delete_busy_and_changes_nothing(ops, fake):
    vid, name = volume(ops, fake)
    ops.zfs.snapshot([f"{name}@admin-backup"])
    before, calls = fake.tree(ROOT), len(fake.calls)
    with pytest.raises(errors.Busy) as info:
        ops.delete_volume(PROJECT, vid)
    assert "admin-backup" in str(info.value)
    assert fake.tree(ROOT) == before
    assert {op for op, _ in fake.calls[calls:]} <= {"exists", "list", "get"}


def test_visible_cinder_snapshot_makes_delete_busy(ops, fake):
    vid, name = volume(ops, fake)
    snap = snapshot(ops, name)
    before = fake.tree(ROOT)
    with pytest.raises(errors.Busy):
        ops.delete_volume(PROJECT, vid)
    assert fake.tree(ROOT) == before
    ops.delete_snapshot(snap)
    ops.delete_volume(PROJECT, vid)
    assert leftovers(fake) == []


def test_delete_of_an_exported_volume_is_busy(ops, fake):
    vid, name = volume(ops, fake)
    fake.open_devices.add(name)
    with pytest.raises(errors.Busy):
        ops.delete_volume(PROJECT, vid)
    assert ops.zfs.exists(name)


# -- promote on delete -----------------------------------------------------------------------

def test_promote_on_delete_moves_the_origin_role_to_the_newest_clone(fake):
    ops = make_ops(fake, promote_on_delete=True)
    vid, name = volume(ops, fake, b"v1")
    s1 = snapshot(ops, name)
    fake.write(name, b"v2")
    s2 = snapshot(ops, name)
    _, old = clone_of(ops, s1)
    _, new = clone_of(ops, s2)
    ops.delete_snapshot(s1)
    ops.delete_snapshot(s2)
    ops.delete_volume(PROJECT, vid)
    assert hidden_in_trash(fake) == [] and not ops.zfs.exists(name)
    assert ops.zfs.get_volume(new).origin is None
    short1 = s1.partition("@")[2]
    assert ops.zfs.get_volume(old).origin == f"{new}@{short1}"
    assert (fake.read(old), fake.read(new)) == (b"v1", b"v2")
    ops.delete_volume(PROJECT, old.rpartition("volume-")[2])
    ops.delete_volume(PROJECT, new.rpartition("volume-")[2])
    assert leftovers(fake) == []


def test_promote_on_delete_leaves_no_internal_snapshot_on_the_heir(fake):
    ops = make_ops(fake, promote_on_delete=True)
    vid, name = volume(ops, fake, b"data")
    _, heir = copy_of(ops, name)
    ops.delete_volume(PROJECT, vid)
    assert ops.zfs.get_volume(heir).origin is None
    assert fake.tree(heir) == [heir]


def test_promote_on_delete_picks_the_newest_clone(fake):
    ops = make_ops(fake, promote_on_delete=True)
    fake.seconds_per_txg = 0  # clones made within the same second
    vid, name = volume(ops, fake)
    snap = snapshot(ops, name)
    clones = [clone_of(ops, snap)[1] for _ in range(3)]
    ops.delete_snapshot(snap)
    ops.delete_volume(PROJECT, vid)
    promoted = [c for c in clones if ops.zfs.get_volume(c).origin is None]
    assert len(promoted) == 1 and hidden_in_trash(fake) == []


class DestroyWhileAwaited:
    """Locks under which a clone's delete in another service finishes while this call waits
    for that clone's lock: the clone is gone when the lock is granted."""

    def __init__(self, fake, victim: str):
        self.fake, self.victim = fake, victim

    @contextlib.contextmanager
    def hold(self, names, wait):
        if wait is not None and self.fake.exists(self.victim) and \
                locks.owner_of(self.victim) in names:
            self.fake.call("destroy", name=self.victim, defer=False, recursive=True)
        yield True


def test_promote_on_delete_chooses_again_when_the_heir_went_while_its_lock_was_awaited(fake):
    ops = make_ops(fake, promote_on_delete=True)
    vid, name = volume(ops, fake, b"v1")
    snap = snapshot(ops, name)
    _, older = clone_of(ops, snap)
    _, newer = clone_of(ops, snap)
    ops.delete_snapshot(snap)
    ops.locks = DestroyWhileAwaited(fake, newer)   # newer is the heir ops picks first
    ops.delete_volume(PROJECT, vid)                 # no NotFound from promoting a gone heir
    assert not fake.exists(newer) and not ops.zfs.exists(name)
    assert ops.zfs.get_volume(older).origin is None and fake.read(older) == b"v1"
    assert hidden_in_trash(fake) == []


# -- revert ----------------------------------------------------------------------------------

def test_revert_fast_path_rolls_back(ops, fake):
    vid, name = volume(ops, fake, b"target")
    snap = snapshot(ops, name)
    fake.write(name, b"changed")
    ops.create_clone_temps([NS.clone_snapshot(name, new_id())])  # internal, nothing depends on it
    fake.write(name, b"changed again")
    ops.revert(PROJECT, vid, snap)
    assert fake.read(name) == b"target" and fake.tree(name) == [name, snap]
    assert fake.called("rollback") == [{"snapshot": snap}] and not fake.called("promote")


def test_revert_to_a_snapshot_that_is_not_the_latest_cinder_one(ops, fake):
    vid, name = volume(ops, fake)
    old = snapshot(ops, name)
    snapshot(ops, name)
    with pytest.raises(errors.NotLatest):
        ops.revert(PROJECT, vid, old)
    with pytest.raises(errors.NotFound):
        ops.revert(PROJECT, vid, NS.snapshot(name, new_id()))


def _revert_with_a_dependent_newer_snapshot(ops, fake, spec=SPARSE):
    vid, name = volume(ops, fake, b"target", spec=spec)
    snap = snapshot(ops, name)
    fake.write(name, b"clone source")
    cid, clone = copy_of(ops, name)  # temp snapshot newer than the target, with a dependent
    fake.write(name, b"latest")
    return vid, name, snap, cid, clone


def test_revert_by_clone_and_swap_keeps_dependents(ops, fake):
    vid, name, snap, cid, clone = _revert_with_a_dependent_newer_snapshot(ops, fake)
    guid = ops.zfs.get_snapshot(snap).guid
    ops.revert(PROJECT, vid, snap)
    assert fake.read(name) == b"target"
    assert fake.read(clone) == b"clone source"
    assert fake.tree(name) == [name, snap] and ops.zfs.get_snapshot(snap).guid == guid
    v = ops.zfs.get_volume(name)
    assert v.origin is None and v.user_props[PROP_VOLUME_ID] == vid and PROP_HIDDEN not in \
        v.user_props
    (trash,) = hidden_in_trash(fake)
    assert ops.zfs.get_volume(clone).origin == NS.clone_snapshot(trash, cid)
    assert not fake.called("rollback")
    assert ops.zfs.get_properties(name, ["compression"]) == {"compression": "lz4"}
    # Cinder still sees its snapshot, and everything goes in the end
    ops.delete_volume(PROJECT, cid)
    assert hidden_in_trash(fake) == []
    ops.delete_snapshot(snap)
    ops.delete_volume(PROJECT, vid)
    assert leftovers(fake) == []


def test_revert_by_clone_and_swap_keeps_a_thick_volume_thick(ops, fake):
    vid, name, snap, _, _ = _revert_with_a_dependent_newer_snapshot(ops, fake, spec=THICK)
    ops.revert(PROJECT, vid, snap)
    assert ops.zfs.get_properties(name, ["refreservation"])["refreservation"] == str(GiB)


# -- crash repair of a clone-and-swap revert -------------------------------------------------

@pytest.mark.parametrize("crash_at,reverted", [
    ("promote", False),   # clone made, not promoted: dropped, the volume is as it was
    ("hide", True),       # promoted, not swapped: the swap is finished
    ("swap", True),       # volume already in the trash, revert clone not renamed yet
])
def test_repair_finishes_an_interrupted_revert(ops, fake, crash_at, reverted):
    vid, name, snap, cid, clone = _revert_with_a_dependent_newer_snapshot(ops, fake)
    scratch = NS.revert_clone(PROJECT, vid)
    crash = errors.TransportError("session lost")
    if crash_at == "promote":
        fake.fail("promote", crash)
    elif crash_at == "hide":
        fake.fail("set", crash, when=lambda a: PROP_HIDDEN in a["properties"])
    else:
        fake.fail("rename", crash, when=lambda a: a["name"] == scratch)
    with pytest.raises(errors.TransportError):
        ops.revert(PROJECT, vid, snap)
    assert ops.zfs.exists(scratch)

    restarted = make_ops(fake)
    restarted.repair()
    restarted.reclaim()
    assert not ops.zfs.exists(scratch)
    assert fake.read(name) == (b"target" if reverted else b"latest")
    assert fake.read(clone) == b"clone source"
    assert snap in fake.tree(name)
    v = ops.zfs.get_volume(name)
    assert PROP_HIDDEN not in v.user_props and v.user_props[PROP_VOLUME_ID] == vid
    restarted.delete_volume(PROJECT, cid)
    restarted.reclaim()
    restarted.delete_snapshot(snap)
    restarted.delete_volume(PROJECT, vid)
    assert leftovers(fake) == []


@pytest.mark.parametrize("crash_at", ["promote", "hide", "swap"])
def test_revert_retried_after_an_interrupted_one_succeeds(ops, fake, crash_at):
    vid, name, snap, cid, clone = _revert_with_a_dependent_newer_snapshot(ops, fake)
    scratch = NS.revert_clone(PROJECT, vid)
    when = {"promote": None, "hide": lambda a: PROP_HIDDEN in a["properties"],
            "swap": lambda a: a["name"] == scratch}[crash_at]
    fake.fail({"hide": "set", "swap": "rename"}.get(crash_at, crash_at),
              errors.TransportError("session lost"), when=when)
    with pytest.raises(errors.TransportError):
        ops.revert(PROJECT, vid, snap)
    ops.revert(PROJECT, vid, snap)  # Cinder's retry, same process
    assert fake.read(name) == b"target" and fake.read(clone) == b"clone source"
    assert not ops.zfs.exists(scratch)


def test_repair_with_nothing_to_do(ops, fake):
    volume(ops, fake)
    before = fake.tree(ROOT)
    ops.repair()
    assert fake.tree(ROOT) == before


# -- reclaim after a restart -----------------------------------------------------------------

def test_reclaim_after_restart(ops, fake):
    cid, clone = _snapshot_clone_delete_snapshot_delete_origin(ops, fake)
    restarted = make_ops(fake)
    assert restarted.reclaim() == 0  # the clone still depends on it
    assert len(hidden_in_trash(fake)) == 1
    ops.zfs.destroy(clone)  # the driver died right after destroying the clone
    again = make_ops(fake)
    assert again.reclaim() == 1
    assert leftovers(fake) == []
    assert again.reclaim() == 0


def test_reclaim_without_trash(fake):
    ops = VolumeOperations(ZFSClient(fake), NameSpace(ROOT), SPARSE, backend="unit")
    assert ops.reclaim() == 0


# -- set-up and capacity ---------------------------------------------------------------------

def test_ensure_root(fake):
    bare = FakeZFS(ROOT, create_root=False)
    ops = VolumeOperations(ZFSClient(bare), NameSpace(ROOT), SPARSE, backend="unit")
    with pytest.raises(errors.NotFound) as info:
        ops.ensure_root(create=False)
    assert "zfs_create_root_dataset" in str(info.value)
    assert bare.tree() == ["tank"]
    ops.ensure_root(create=True)
    assert bare.tree() == ["tank", ROOT, TRASH]
    ops.ensure_root(create=False)


def test_capacity_is_one_get_of_the_root(ops, fake):
    volume(ops, fake, spec=THICK, size=2)
    _snapshot_clone_delete_snapshot_delete_origin(ops, fake)  # one live clone, one hidden
    before = len(fake.calls)
    cap = ops.capacity()
    assert [op for op, _ in fake.calls[before:]] == ["pool_capacity", "get"]  # no listing
    written = 2 * 64  # one block in the hidden volume, one in the clone
    assert cap["free_bytes"] == fake.pool_size - 2 * GiB - written
    assert cap["total_bytes"] == fake.pool_size and cap["health"] == "ONLINE"


def test_group_of_clones_takes_its_temp_snapshots_in_one_call(ops, fake):
    _, a = volume(ops, fake, b"a")
    _, b = volume(ops, fake, b"b")
    ids = [new_id(), new_id()]
    made = ops.create_cloned_volumes([(a, PROJECT, ids[0], 1, SPARSE),
                                      (b, PROJECT, ids[1], 1, SPARSE)])
    temps = [ops.zfs.get_snapshot(ops.zfs.get_volume(m).origin) for m in made]
    assert temps[0].createtxg == temps[1].createtxg
    assert [fake.read(m) for m in made] == [b"a", b"b"]
    before = fake.tree(ROOT)
    ids2 = [new_id(), new_id()]
    second = NS.volume(PROJECT, ids2[1])  # the first clone is made, the second fails
    fake.fail("set", errors.NoSpace("out of space"), when=lambda args: args["name"] == second)
    with pytest.raises(errors.NoSpace):
        ops.create_cloned_volumes([(a, PROJECT, ids2[0], 2, SPARSE),
                                   (b, PROJECT, ids2[1], 2, SPARSE)])
    assert fake.tree(ROOT) == before


# -- gone means gone: a moved volume is found by identity ---------------------------------------

def moved_to_another_project(ops, fake):
    """A volume and its snapshot, renamed into project p2 behind Cinder's back (a transfer
    whose commit failed): Cinder still computes the p1 names."""
    vid, name = volume(ops, fake, b"kept")
    snap = NS.snapshot(name, new_id())
    ops.create_snapshots([snap])
    ops.ensure_tenant("p2")
    fake.call("rename", name=name, new_name=NS.volume("p2", vid))
    return vid, snap


def test_delete_snapshot_of_a_moved_volume_deletes_it_where_it_is(ops, fake):
    vid, snap = moved_to_another_project(ops, fake)
    ops.delete_snapshot(snap)
    assert fake.tree(NS.volume("p2", vid)) == [NS.volume("p2", vid)]


def test_delete_of_a_moved_volume_deletes_it_where_it_is(ops, fake):
    vid, snap = moved_to_another_project(ops, fake)
    with pytest.raises(errors.Busy):  # its Cinder snapshot is still there
        ops.delete_volume(PROJECT, vid)
    ops.delete_snapshot(snap)
    ops.delete_volume(PROJECT, vid)
    assert not fake.exists(NS.volume("p2", vid))


def test_delete_snapshot_during_a_crashed_revert_settles_the_revert_first(ops, fake):
    vid, name = volume(ops, fake, b"v1")
    older, target = NS.snapshot(name, new_id()), NS.snapshot(name, new_id())
    ops.create_snapshots([older])
    ops.create_snapshots([target])
    ops.create_cloned_volume(name, PROJECT, new_id(), 1, SPARSE)  # the revert must swap
    fake.fail("rename", errors.TransportError("cinder-volume died"))
    with pytest.raises(errors.TransportError):
        ops.revert(PROJECT, vid, target)
    ops.delete_snapshot(older)  # the snapshots sit on the scratch clone now
    assert not fake.exists(older) and fake.exists(target)
    assert not fake.exists(NS.revert_clone(PROJECT, vid))


def test_repair_never_swaps_a_revert_into_an_exported_volume(ops, fake):
    vid, name, snap, _, _ = _revert_with_a_dependent_newer_snapshot(ops, fake)
    scratch = NS.revert_clone(PROJECT, vid)
    fake.fail("rename", errors.TransportError("session lost"), when=lambda a: a["name"] == name)
    with pytest.raises(errors.TransportError):
        ops.revert(PROJECT, vid, snap)  # promoted, not swapped
    attached = make_ops(fake, exported=lambda: {name.rpartition("/")[2]})
    attached.repair()
    assert fake.read(name) == b"latest" and fake.exists(scratch)
    assert PROP_HIDDEN not in ops.zfs.get_volume(name).user_props  # still looks live
    make_ops(fake).repair()  # detached
    assert fake.read(name) == b"target" and not fake.exists(scratch)
