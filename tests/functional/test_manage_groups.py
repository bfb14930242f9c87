"""Manage/unmanage and consistent group snapshots on the real node (issue 7)."""

from __future__ import annotations

import uuid

import pytest
from cinder import exception

from tests.functional.driver_env import BackgroundJob, attach, snapshot_obj, volume_obj
from tests.functional.test_driver import read_hash, settle, write_random


@pytest.fixture
def consistent_groups(monkeypatch):
    """Groups of a type with consistent_group_snapshot_enabled (no Cinder DB to read it from)."""
    from cinder.volume import volume_utils
    monkeypatch.setattr(volume_utils, "is_group_a_cg_snapshot_type", lambda group: True)


def test_group_snapshot_of_three_volumes_under_write_shares_one_txg(
        node, make_driver, consistent_groups):
    from cinder import objects
    drv = make_driver()
    volumes = [volume_obj() for _ in range(3)]
    for volume in volumes:
        drv.create_volume(volume)
    devices = " ".join(settle(node, drv, v) for v in volumes)
    # a writer loop on all three while the group snapshot is taken
    with BackgroundJob(node, f"for i in $(seq 60); do for d in {devices}; do "
                             f"dd if=/dev/urandom of=$d bs=64k count=1 seek=$((i % 64)) "
                             f"conv=notrunc status=none; done; done") as writer:
        group_snapshot = objects.GroupSnapshot(id=str(uuid.uuid4()),
                                               group_type_id=str(uuid.uuid4()))
        snapshots = [snapshot_obj(v) for v in volumes]
        update, snapshot_updates = drv.create_group_snapshot(None, group_snapshot, snapshots)
        assert update["status"] == "available"
        assert {u["status"] for u in snapshot_updates} == {"available"}
        names = " ".join(drv._snapshot_name(s) for s in snapshots)
        out = node.run(f"zfs get -Hp -o value createtxg {names}").stdout.split()
        assert len(out) == 3 and len(set(out)) == 1, out
        group_props = node.run(f"zfs get -H -o value org.openstack.cinder:group_snapshot_id "
                               f"{names}").stdout.split()
        assert set(group_props) == {group_snapshot.id}
        writer.wait()
    drv.delete_group_snapshot(None, group_snapshot, snapshots)
    for volume in volumes:
        drv.delete_volume(volume)


def test_manage_out_of_band_zvol_and_snapshot_then_unmanage(node, make_driver):
    drv = make_driver()
    root = drv.ops.names.root
    node.run(f"zfs create -p -o canmount=off {root}/legacy && "
             f"zfs create -s -V 1536M {root}/legacy/db-disk")
    data = write_random(node, drv.zfs.wait_for_device(f"{root}/legacy/db-disk"))
    node.run(f"zfs snapshot {root}/legacy/db-disk@nightly")

    listing = drv.get_manageable_volumes([], None, 100, 0, ["size"], ["asc"])
    entry = next(e for e in listing if e["reference"]["source-name"] == "legacy/db-disk")
    assert entry["safe_to_manage"] and entry["size"] == 2   # 1.5 GiB counts as 2

    volume = volume_obj(project_id="proj-m", size=2)
    assert drv.manage_existing_get_size(volume, {"source-name": "db-disk"}) == 2
    drv.manage_existing(volume, {"source-name": "db-disk"})  # found by its last component
    name = drv.ops.names.volume("proj-m", volume.id)
    assert node.run(f"zfs get -Hp -o value volsize {name}").stdout.strip() == str(2 * 1024**3)
    assert read_hash(node, settle(node, drv, volume)) == data

    snapshot = snapshot_obj(volume)
    assert drv.manage_existing_snapshot_get_size(snapshot, {"source-name": "nightly"}) == 2
    drv.manage_existing_snapshot(snapshot, {"source-name": "nightly"})
    assert node.run(f"zfs list -H -o name {drv._snapshot_name(snapshot)}").returncode == 0

    # a live Cinder volume (exported too) is not safe to manage: its ownership marks say why
    other = volume_obj(project_id="proj-m")
    drv.create_volume(other)
    attach(drv, node, other)
    try:
        listing = drv.get_manageable_volumes([volume], None, 100, 0, ["size"], ["asc"])
        by_name = {e["reference"]["source-name"].rpartition("/")[2]: e for e in listing}
        assert by_name[f"volume-{other.id}"]["safe_to_manage"] is False
        assert by_name[f"volume-{other.id}"]["reason_not_safe"].startswith(
            f"Cinder volume {other.id} of project proj-m")
        assert by_name[f"volume-{volume.id}"]["cinder_id"] == volume.id
        snaps = drv.get_manageable_snapshots([snapshot], None, 100, 0, ["size"], ["asc"])
        assert any(s["cinder_id"] == snapshot.id for s in snaps)
    finally:
        drv.remove_export(None, other)
    drv.delete_volume(other)

    drv.unmanage_snapshot(snapshot)
    drv.unmanage(volume)                 # stays on the pool, without ownership marks
    assert node.run(f"zfs get -H -o value org.openstack.cinder:volume_id {name}").stdout \
        .strip() == "-"
    # the unmanaged snapshot is still there: deleting would have to destroy it -> refused
    with pytest.raises(exception.VolumeIsBusy):
        drv.delete_volume(volume)
    node.run(f"zfs destroy -r {name}")
