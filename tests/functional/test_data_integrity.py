"""Issue 16 on the real node: every path keeps what the driver promises.

1. an OCFS2 volume reverted by clone-and-swap keeps its filesystem identity: a later clone of
   it gets a new UUID and mounts beside it;
2. an admin's @clone-* snapshot is never destroyed by a volume delete;
3. managing another project's live volume, a live snapshot, or any of the driver's own
   objects, is refused with ManageExistingInvalidReference and changes nothing; an unmanaged
   snapshot is managed back by its name (Tempest's round trip);
4. an attached volume migrated between the node's two pools (Cinder's generic migration: a
   new volume on the other pool, the data copied under the attachment, as Nova's swap does)
   keeps working through its export, detaches cleanly and deletes.

Mounts go through driver_env.GuestMount, which stops writers and checks the unmount before it
logs out (a logout under a mounted OCFS2 panics the node).
"""

from __future__ import annotations

import uuid

import pytest
from cinder import exception

from tests.functional.driver_env import (
    GuestMount,
    attach,
    iscsi_login,
    iscsi_logout,
    snapshot_obj,
    volume_obj,
)
from tests.functional.test_driver import read_hash, write_random
from tests.functional.test_migrate_retype import second_pool  # noqa: F401 - a fixture
from tests.functional.test_ocfs2 import OCFS2, o2cb_cluster, uuid_of  # noqa: F401 - a fixture

MiB = 1024 * 1024


def zfs_get(node, prop: str, name: str) -> str:
    return node.run(f"zfs get -H -o value {prop} {name}").stdout.strip()


def pool_state(node, root: str) -> str:
    """Every object under ``root`` with its ownership marks: what 'changes nothing' compares."""
    return node.run(f"zfs list -H -t all -r -o name,org.openstack.cinder:volume_id,"
                    f"org.openstack.cinder:project_id,defer_destroy {root}").stdout


# -- 1 ---------------------------------------------------------------------------------------

@pytest.mark.usefixtures("o2cb_cluster")
def test_ocfs2_volume_reverted_by_swap_then_cloned_mounts_beside_its_clone(node, make_driver):
    drv = make_driver()
    origin = volume_obj(extra_specs=OCFS2)
    facts = drv.create_volume(origin)["metadata"]
    name = drv.ops.names.volume(origin.project_id, origin.id)
    with GuestMount(node, drv, origin, "/mnt/ft-di-origin"):
        node.run("for i in $(seq 8); do head -c 65536 /dev/urandom > /mnt/ft-di-origin/f$i; "
                 "done; sync; (cd /mnt/ft-di-origin && sha256sum f*) > /tmp/ft-di-sums")
    snap = snapshot_obj(origin)
    drv.create_snapshot(snap)
    first = volume_obj(extra_specs=OCFS2)
    drv.create_cloned_volume(first, origin)  # a temp snapshot newer than snap, with a clone
    with GuestMount(node, drv, origin, "/mnt/ft-di-origin"):
        node.run("echo after-the-snapshot > /mnt/ft-di-origin/later && sync")

    drv.revert_to_snapshot(None, origin, snap)
    assert zfs_get(node, "origin", name) == "-"  # swapped in: the promoted clone of snap
    trash = node.run(f"zfs list -H -o name -r {drv.ops.names.trash_root}").stdout
    assert f"volume-{origin.id}." in trash
    assert zfs_get(node, "org.openstack.cinder:filesystem", name) == "ocfs2"
    assert zfs_get(node, "org.openstack.cinder:ocfs2_cluster_stack", name) == "o2cb"

    later = volume_obj(extra_specs=OCFS2)
    with GuestMount(node, drv, origin, "/mnt/ft-di-origin") as origin_mount:
        node.run("cd /mnt/ft-di-origin && sha256sum -c /tmp/ft-di-sums >/dev/null")
        assert node.run("test -e /mnt/ft-di-origin/later", check=False).returncode != 0
        clone_facts = drv.create_cloned_volume(later, origin)["metadata"]
        assert clone_facts["ocfs2_uuid"] != facts["ocfs2_uuid"]
        with GuestMount(node, drv, later, "/mnt/ft-di-clone") as clone_mount:
            assert uuid_of(node, origin_mount.disk) == facts["ocfs2_uuid"]
            assert uuid_of(node, clone_mount.disk) == clone_facts["ocfs2_uuid"]
            mounts = node.run("grep ocfs2 /proc/mounts").stdout
            assert "/mnt/ft-di-origin" in mounts and "/mnt/ft-di-clone" in mounts
            node.run("cd /mnt/ft-di-clone && sha256sum -c /tmp/ft-di-sums >/dev/null")
    assert "/mnt/ft-di-" not in node.run("cat /proc/mounts").stdout
    for volume in (later, first):
        drv.delete_volume(volume)
    drv.delete_snapshot(snap)
    drv.delete_volume(origin)
    assert node.run(f"zfs list -H -o name -t volume -r {drv.ops.names.root}").stdout == ""


# -- 2 ---------------------------------------------------------------------------------------

def test_an_admins_clone_named_snapshots_survive_a_volume_delete(node, make_driver):
    drv = make_driver()
    vol = volume_obj()
    drv.create_volume(vol)
    name = drv.ops.names.volume(vol.project_id, vol.id)
    admin = [f"{name}@clone-before-upgrade", f"{name}@clone-{uuid.uuid4()}"]
    node.run(f"zfs snapshot {admin[0]} && zfs snapshot {admin[1]}")
    with pytest.raises(exception.VolumeIsBusy) as info:
        drv.delete_volume(vol)
    assert "clone-before-upgrade" in str(info.value)
    listed = node.run(f"zfs list -H -o name -t snapshot -r {name}").stdout.split()
    assert sorted(listed) == sorted(admin)
    node.run(f"zfs destroy -r {name}")


# -- 3 ---------------------------------------------------------------------------------------

def test_manage_refuses_live_volumes_and_the_drivers_own_objects(node, make_driver):
    drv = make_driver()
    root = drv.ops.names.root
    alice = volume_obj(project_id="proj-alice")
    drv.create_volume(alice)
    alice_name = drv.ops.names.volume("proj-alice", alice.id)
    cloned = volume_obj(project_id="proj-alice")
    drv.create_cloned_volume(cloned, alice)          # leaves a clone temp on alice's zvol
    temp = drv.ops.names.clone_snapshot(alice_name, cloned.id)
    hidden_snap = snapshot_obj(alice)
    drv.create_snapshot(hidden_snap)
    from_hidden = volume_obj(project_id="proj-alice")
    drv.create_volume_from_snapshot(from_hidden, hidden_snap)
    drv.delete_snapshot(hidden_snap)                 # hidden, destroyed deferred
    gone = volume_obj(project_id="proj-alice")
    drv.create_volume(gone)
    gone_snap = snapshot_obj(gone)
    drv.create_snapshot(gone_snap)
    keeps_it = volume_obj(project_id="proj-alice")
    drv.create_volume_from_snapshot(keeps_it, gone_snap)
    drv.delete_snapshot(gone_snap)
    drv.delete_volume(gone)                          # hidden in the trash
    trash = node.run(f"zfs list -H -o name -t volume -r {drv.ops.names.trash_root}").stdout
    (trashed,) = trash.split()
    scratch = drv.ops.names.revert_clone("proj-alice", cloned.id)
    cloned_name = drv.ops.names.volume("proj-alice", cloned.id)
    node.run(f"zfs snapshot {cloned_name}@s && zfs clone {cloned_name}@s {scratch}")

    live_snap = snapshot_obj(alice)
    drv.create_snapshot(live_snap)                   # marked live when taken (lzc props)
    live = drv._snapshot_name(live_snap)
    assert zfs_get(node, "org.openstack.cinder:cinder_snapshot", live) == "true"
    bob = volume_obj(project_id="proj-bob")
    before = pool_state(node, root)
    for ref in (f"volume-{alice.id}", alice_name, f"proj-alice/volume-{alice.id}",
                trashed, scratch):
        with pytest.raises(exception.ManageExistingInvalidReference):
            drv.manage_existing_get_size(bob, {"source-name": ref})
        with pytest.raises(exception.ManageExistingInvalidReference) as info:
            drv.manage_existing(bob, {"source-name": ref})
        assert "cannot be managed" in str(info.value)
    bob_snapshot = snapshot_obj(alice)
    for short in (drv._snapshot_name(hidden_snap).partition("@")[2],
                  temp.partition("@")[2], live.partition("@")[2]):
        with pytest.raises(exception.ManageExistingInvalidReference):
            drv.manage_existing_snapshot(bob_snapshot, {"source-name": short})
    assert pool_state(node, root) == before
    drv.unmanage_snapshot(live_snap)                 # Tempest's round trip: back by its name
    assert zfs_get(node, "org.openstack.cinder:cinder_snapshot", live) == "-"
    drv.manage_existing_snapshot(bob_snapshot, {"source-name": live.partition("@")[2]})
    assert zfs_get(node, "org.openstack.cinder:cinder_snapshot",
                   drv._snapshot_name(bob_snapshot)) == "true"
    drv.delete_snapshot(bob_snapshot)

    node.run(f"zfs destroy {scratch} && zfs destroy {cloned_name}@s")
    for volume in (keeps_it, from_hidden, cloned, alice):
        drv.delete_volume(volume)
    assert node.run(f"zfs list -H -o name -t volume -r {root}").stdout == ""


# -- 4 ---------------------------------------------------------------------------------------

def lio_targets(node) -> str:
    return node.run("ls /sys/kernel/config/target/iscsi 2>/dev/null", check=False).stdout


@pytest.mark.usefixtures("second_pool")
def test_attached_volume_migrated_between_pools_keeps_working_and_deletes(node, make_driver):
    src = make_driver()
    dest_root = f"ftmig/ft-{uuid.uuid4().hex[:8]}/cinder"
    dest = make_driver(root=dest_root, volume_backend_name="zfs-ft-dest")
    sessions = []
    try:
        vol = volume_obj(size=1)
        src.create_volume(vol)
        old_data, old_connector = attach(src, node, vol)
        sessions.append(old_data)
        old_disk = iscsi_login(node, old_data)
        data = write_random(node, old_disk, mib=8)

        # Cinder's generic migration of an in-use volume: a new volume on the destination,
        # attached, the data copied under the attachment (Nova's swap-volume), the old one
        # detached; then the destination driver finishes the migration.
        new = volume_obj(id=str(uuid.uuid4()), project_id=vol.project_id, size=1)
        dest.create_volume(new)
        new_data, new_connector = attach(dest, node, new)
        sessions.append(new_data)
        new_disk = iscsi_login(node, new_data)
        node.run(f"dd if={old_disk} of={new_disk} bs=1M count=8 iflag=direct conv=fsync "
                 f"status=none")
        iscsi_logout(node, old_data)
        sessions.remove(old_data)
        src.terminate_connection(vol, old_connector)
        src.remove_export(None, vol)

        update = dest.update_migrated_volume(None, vol, new, "in-use")
        assert update == {"_name_id": new.id, "provider_location": new.provider_location}
        src.delete_volume(vol)                          # the manager deletes the source
        # The volume now lives on as <vol.id> with new's name id and export.
        vol._name_id, vol.provider_location = update["_name_id"], update["provider_location"]
        vol.provider_auth = new.provider_auth
        moved = dest.ops.names.volume(vol.project_id, new.id)
        assert zfs_get(node, "org.openstack.cinder:backend", moved) == "zfs-ft-dest"

        assert read_hash(node, new_disk, mib=8) == data  # still working through its export
        more = write_random(node, new_disk, mib=2, offset_mib=16)
        assert read_hash(node, new_disk, mib=2, offset_mib=16) == more

        iscsi_logout(node, new_data)                    # detach
        sessions.remove(new_data)
        dest.terminate_connection(vol, new_connector)
        dest.remove_export(None, vol)
        assert new_data["target_iqn"].rpartition(":")[2] not in lio_targets(node)
        dest.delete_volume(vol)                         # not busy: nothing holds it open
        assert node.run(f"zfs list -H -o name {moved}", check=False).returncode != 0
    finally:
        for data in sessions:
            iscsi_logout(node, data)
        node.run(f"zfs destroy -r {dest_root.rpartition('/')[0]}", check=False)
