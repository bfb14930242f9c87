"""OCFS2-ready volumes on the real node (issue 8): formatted at creation, a new UUID on every
clone, origin and clone mounted side by side through their own iSCSI exports."""

from __future__ import annotations

import pytest
from cinder import exception

from tests.functional.driver_env import GuestMount, snapshot_obj, volume_obj

OCFS2 = {"ocfs2:format": "true", "ocfs2:slots": "4", "ocfs2:cluster_stack": "o2cb"}


@pytest.fixture
def o2cb_cluster(node):
    """A single-node o2cb cluster in the guest, which plays the compute host here.

    Per test, not per module: a node restarted after a failure has lost the registration (the
    check makes it cheap when it is there). `o2cb list-cluster NAME` exits 0 even for an unknown
    cluster, so membership is tested with list-clusters."""
    node.run("o2cb cluster-status ocfs2 2>/dev/null | grep -q online || ("
             "modprobe ocfs2_dlmfs && modprobe ocfs2_stack_o2cb && mkdir -p /dlm && "
             "(mountpoint -q /dlm || mount -t ocfs2_dlmfs ocfs2_dlmfs /dlm) && "
             "(o2cb list-clusters | grep -qx ocfs2 || o2cb add-cluster ocfs2) && "
             "(o2cb list-nodes ocfs2 2>/dev/null | grep -q $(hostname) || "
             " o2cb add-node ocfs2 $(hostname) --ip 127.0.0.1 --number 0) && "
             "o2cb register-cluster ocfs2)")
    return "ocfs2"


def uuid_of(node, device: str) -> str:
    return node.run(f"tunefs.ocfs2 -Q '%U' {device}").stdout.strip().lower()


def test_clone_of_mounted_ocfs2_volume_gets_new_uuid_and_mounts_beside_it(
        node, make_driver, o2cb_cluster):
    drv = make_driver()
    origin = volume_obj(extra_specs=OCFS2)
    update = drv.create_volume(origin)
    facts = update["metadata"]
    assert facts["ocfs2_slots"] == "4" and facts["ocfs2_cluster_stack"] == "o2cb"
    snap = snapshot_obj(origin)
    clone = volume_obj(extra_specs=OCFS2)
    with GuestMount(node, drv, origin, "/mnt/ft-origin") as origin_mount:
        node.run("for i in $(seq 20); do head -c 65536 /dev/urandom > /mnt/ft-origin/f$i; "
                 "done; sync; (cd /mnt/ft-origin && sha256sum f*) > /tmp/ft-sums")
        # A writer keeps going while the snapshot is taken: the clone is crash-consistent.
        # The mount stops it (and waits for it) before it unmounts.
        origin_mount.start_writer("i=0; while :; do head -c 65536 /dev/urandom > "
                                  "/mnt/ft-origin/busy$((i % 8)); i=$((i+1)); done")
        drv.create_snapshot(snap)
        clone_update = drv.create_volume_from_snapshot(clone, snap)
        assert clone_update["metadata"]["ocfs2_uuid"] != facts["ocfs2_uuid"]

        with GuestMount(node, drv, clone, "/mnt/ft-clone") as clone_mount:  # journal replay
            assert uuid_of(node, origin_mount.disk) == facts["ocfs2_uuid"]
            assert uuid_of(node, clone_mount.disk) == clone_update["metadata"]["ocfs2_uuid"]
            mounts = node.run("grep ocfs2 /proc/mounts").stdout
            assert "/mnt/ft-origin" in mounts and "/mnt/ft-clone" in mounts
            node.run("cd /mnt/ft-clone && sha256sum -c /tmp/ft-sums >/dev/null")
            node.run("echo clone-only > /mnt/ft-clone/new && sync")
            assert node.run("test -e /mnt/ft-origin/new", check=False).returncode != 0
    assert "/mnt/ft-" not in node.run("cat /proc/mounts").stdout
    drv.delete_volume(clone)
    drv.delete_snapshot(snap)
    drv.delete_volume(origin)


def test_clone_of_a_volume_gets_a_new_uuid_too(node, make_driver):
    drv = make_driver()
    origin = volume_obj(extra_specs={**OCFS2, "ocfs2:cluster_stack": "local"})
    first = drv.create_volume(origin)["metadata"]["ocfs2_uuid"]
    clone = volume_obj()
    second = drv.create_cloned_volume(clone, origin)["metadata"]
    assert second["ocfs2_uuid"] != first and second["ocfs2_cluster_stack"] == "local"
    drv.delete_volume(clone)
    drv.delete_volume(origin)


@pytest.mark.parametrize("specs,size", [
    ({"ocfs2:slots": "0"}, 1),
    ({"ocfs2:slots": "300"}, 1),
    ({"ocfs2:cluster_stack": "pacemaker"}, 1),
    ({"ocfs2:lable": "typo"}, 1),
    ({"ocfs2:slots": "255"}, 1),   # 255 journals do not fit in 1 GiB: mkfs fails
])
def test_bad_specs_fail_clearly_and_leave_nothing(node, make_driver, specs, size):
    drv = make_driver()
    volume = volume_obj(size=size, extra_specs={"ocfs2:format": "true", **specs})
    with pytest.raises(exception.InvalidInput) as failure:
        drv.create_volume(volume)
    assert "ocfs2" in str(failure.value).lower()
    zvols = node.run(f"zfs list -H -o name -t volume -r {drv.ops.names.root}").stdout
    assert volume.id not in zvols


def test_format_of_a_tiny_zvol_is_refused(node, make_driver):
    drv = make_driver()
    name = f"{drv.ops.names.root}/tiny"
    drv.zfs.create_volume(name, 1024 * 1024, sparse=True)
    with pytest.raises(Exception, match="mkfs.ocfs2 failed"):
        drv.transport.call("ocfs2_format", name=name, slots=1, cluster_stack="local",
                           label="tiny")
    drv.zfs.destroy(name)
