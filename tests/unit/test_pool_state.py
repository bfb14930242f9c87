"""What the pool says after driver calls: a moved volume is found by identity (gone means
gone), markers only where a crash leaves live data looking live, volmode=dev on new zvols."""

import pytest
from cinder import exception

from cinder_zfs_ocfs2.zfs import errors
from cinder_zfs_ocfs2.zfs.types import PROP_HIDDEN
from tests.unit.test_driver import CTX, NS, leftovers, snapshot_obj, volume_obj, zvol


def volume_with_snapshot(drv):
    vol = volume_obj()
    drv.create_volume(vol)
    snap = snapshot_obj(vol)
    drv.create_snapshot(snap)
    return vol, snap


def transferred_without_commit(drv):
    """accept_transfer moved the zvol, then Cinder's commit failed: the volume still records
    the old project."""
    vol, snap = volume_with_snapshot(drv)
    drv.accept_transfer(CTX, vol, "user2", "p2")
    assert drv.zfs.exists(NS.volume("p2", vol.id))
    return vol, snap


def test_a_transfer_retried_after_a_failed_commit_finds_the_volume(make_driver):
    drv, fake = make_driver()
    vol, _ = transferred_without_commit(drv)
    drv.accept_transfer(CTX, vol, "user2", "p2")  # Cinder retries: same project as before
    assert drv.zfs.exists(NS.volume("p2", vol.id))


def test_deleting_a_volume_whose_transfer_was_not_recorded_orphans_nothing(make_driver):
    drv, fake = make_driver()
    vol, snap = transferred_without_commit(drv)
    drv.delete_snapshot(snap)
    drv.delete_volume(vol)
    assert not drv.zfs.exists(NS.volume("p2", vol.id))
    assert [n for n in leftovers(fake) if n != NS.tenant("p2")] == []


def test_a_failed_rename_into_trash_leaves_the_volume_looking_live(make_driver):
    drv, fake = make_driver()
    vol, snap = volume_with_snapshot(drv)
    drv.create_volume_from_snapshot(volume_obj(), snap)
    drv.delete_snapshot(snap)  # hidden: a clone depends on it
    fake.fail("rename", errors.TransportError("node gone"))
    with pytest.raises(exception.VolumeBackendAPIException):
        drv.delete_volume(vol)
    assert drv.zfs.get_properties(zvol(vol), [PROP_HIDDEN]).get(PROP_HIDDEN) in (None, "-", "")


def test_new_zvols_are_plain_block_devices_and_older_ones_are_reported(make_driver, caplog):
    drv, fake = make_driver()
    vol, snap = volume_with_snapshot(drv)
    clone = volume_obj()
    drv.create_volume_from_snapshot(clone, snap)
    for made in (vol, clone):
        assert drv.zfs.get_properties(zvol(made), ["volmode"]) == {"volmode": "dev"}
    fake.call("create_volume", name=NS.volume("p1", volume_obj().id), size=1 << 30)  # older
    make_driver(fake)
    assert "1 zvols under tank/cinder lack volmode=dev" in caplog.text


@pytest.mark.parametrize("crash_at", ["clone", "send_receive"])
def test_start_up_drops_the_temp_snapshot_of_a_clone_cut_short(make_driver, crash_at):
    drv, fake = make_driver()
    vol, snap = volume_with_snapshot(drv)
    spec = {"zfs:clone_mode": "independent" if crash_at == "send_receive" else "linked"}
    clone = volume_obj(extra_specs=spec)
    fake.fail(crash_at, errors.TransportError("cinder-volume killed"))
    fake.fail("destroy", errors.TransportError("cinder-volume killed"))  # no clean-up either
    with pytest.raises(exception.VolumeBackendAPIException):
        drv.create_cloned_volume(clone, vol)
    assert drv.zfs.exists(f"{zvol(vol)}@clone-{clone.id}")
    restarted, _ = make_driver(fake)
    assert restarted.ops.index.wait_for_reconcile()  # the sweep runs before that pass
    assert fake.tree(zvol(vol)) == [zvol(vol), f"{zvol(vol)}@snapshot-{snap.id}"]
