"""The storage-node test bed proves itself: real OpenZFS, pyzfs, OCFS2 and LIO/iSCSI work in it.

Each test works inside its own `dataset` (tank/ft-<hex>, destroyed after it) and cleans up the
mounts, targets and iSCSI sessions it makes.
"""

from __future__ import annotations

import hashlib
import os
import shlex

MiB = 1 << 20


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def remote_sha256(node, path: str, nbytes: int) -> str:
    """sha256 of the first `nbytes` of a file or block device (devices: direct I/O)."""
    q = shlex.quote(path)
    r = node.run(
        f"if [ -b {q} ]; then dd if={q} bs=1M count={nbytes // MiB} iflag=direct status=none; "
        f"else head -c {nbytes} {q}; fi | sha256sum"
    )
    return r.stdout.split()[0]


def make_zvol(node, name: str, size: str) -> str:
    node.run(f"zfs create -V {size} {shlex.quote(name)}")
    dev = f"/dev/zvol/{name}"
    node.wait_for_path(dev)
    return dev


def test_pool_online(node):
    r = node.run(f"zpool list -H -o name,health {node.pool}")
    assert r.stdout.split() == [node.pool, "ONLINE"]
    assert "is healthy" in node.run(f"zpool status -x {node.pool}").stdout
    assert node.run("cat /sys/module/zfs/version").stdout.strip()[:2] in ("2.",)
    # the same connection serves many commands (and files)
    node.put_bytes(b"hello\n", "/tmp/ft-hello")
    assert node.run("cat /tmp/ft-hello; rm /tmp/ft-hello").stdout == "hello\n"
    r = node.run("echo out; echo err >&2; exit 3", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    assert node.run("wc -c", input=b"x" * 100000).stdout.strip() == "100000"


def test_zvol_snapshot_clone_roundtrip(node, dataset):
    vol = f"{dataset}/vol"
    dev = make_zvol(node, vol, "16M")
    # 4 MiB made here, 4 MiB of the guest's /dev/urandom behind it
    data = os.urandom(4 * MiB)
    node.put_bytes(data, f"/tmp/{dataset.replace('/', '-')}.bin")
    node.run(
        f"dd if=/tmp/{dataset.replace('/', '-')}.bin of={dev} bs=1M oflag=direct status=none && "
        f"dd if=/dev/urandom of={dev} bs=1M seek=4 count=4 oflag=direct status=none && "
        f"rm /tmp/{dataset.replace('/', '-')}.bin && sync"
    )
    assert remote_sha256(node, dev, 4 * MiB) == sha256(data)
    before = remote_sha256(node, dev, 8 * MiB)

    node.run(f"zfs snapshot {vol}@s1")
    # the origin changes after the snapshot: the clone must show the snapshot, not the origin
    node.run(f"dd if=/dev/zero of={dev} bs=1M count=8 oflag=direct status=none && sync")
    assert remote_sha256(node, dev, 8 * MiB) != before

    clone = f"{dataset}/clone"
    node.run(f"zfs clone {vol}@s1 {clone}")
    cdev = f"/dev/zvol/{clone}"
    node.wait_for_path(cdev)
    assert remote_sha256(node, cdev, 4 * MiB) == sha256(data)
    assert remote_sha256(node, cdev, 8 * MiB) == before
    assert node.run(f"zfs get -H -o value origin {clone}").stdout.strip() == f"{vol}@s1"


def test_pyzfs_lzc_snapshot_two_zvols_one_txg(node, dataset):
    a, b = f"{dataset}/a", f"{dataset}/b"
    for v in (a, b):
        node.run(f"zfs create -s -V 8M {v}")
    script = (
        "import libzfs_core\n"
        f"libzfs_core.lzc_snapshot([b'{a}@s', b'{b}@s'])\n"
        "print('snapshotted')\n"
    )
    assert node.run("python3 -", input=script).stdout.strip() == "snapshotted"
    txgs = node.run(f"zfs get -Hp -o value createtxg {a}@s {b}@s").stdout.split()
    assert len(txgs) == 2 and txgs[0] == txgs[1], txgs
    # and a snapshot taken later is in a later txg
    node.run(f"zfs snapshot {a}@later")
    later = node.run(f"zfs get -Hp -o value createtxg {a}@later").stdout.strip()
    assert int(later) > int(txgs[0])


def test_ocfs2_local_mount_write_remount_read(node, dataset):
    vol = f"{dataset}/ocfs2"
    dev = make_zvol(node, vol, "256M")
    mnt = f"/mnt/{dataset.replace('/', '-')}"
    data = os.urandom(2 * MiB)
    node.run(f"mkfs.ocfs2 -q -M local -L ft-ocfs2 {dev}")
    try:
        node.run(f"mkdir -p {mnt} && mount -t ocfs2 -o errors=remount-ro {dev} {mnt}")
        assert "ocfs2" in node.run(f"findmnt -n -o FSTYPE {mnt}").stdout
        node.put_bytes(data, f"{mnt}/data.bin")
        node.run(f"sync && umount {mnt}")
        node.run(f"mount -t ocfs2 -o errors=remount-ro {dev} {mnt}")
        assert remote_sha256(node, f"{mnt}/data.bin", len(data)) == sha256(data)
        assert node.get_bytes(f"{mnt}/data.bin") == data
    finally:
        node.run(f"umount {mnt} 2>/dev/null; rmdir {mnt} 2>/dev/null", check=False)


def test_lio_iscsi_login_from_guest_reads_back(node, dataset):
    suffix = dataset.rsplit("-", 1)[-1]
    vol = f"{dataset}/lun"
    dev = make_zvol(node, vol, "32M")
    node.run(f"dd if=/dev/urandom of={dev} bs=1M count=16 oflag=direct status=none && sync")
    expected = remote_sha256(node, dev, 16 * MiB)

    iqn = f"iqn.2003-01.org.cinder-zfs-ocfs2.ft:{suffix}"
    backstore = f"ft-{suffix}"
    portal = "127.0.0.1:3260"
    initiator = node.run(
        "sed -n 's/^InitiatorName=//p' /etc/iscsi/initiatorname.iscsi"
    ).stdout.strip()
    assert initiator.startswith("iqn.")
    tpg = f"/iscsi/{iqn}/tpg1"
    try:
        node.run(
            "set -e\n"
            f"targetcli /backstores/block create name={backstore} dev={dev}\n"
            f"targetcli /iscsi create {iqn}\n"
            f"if targetcli {tpg}/portals ls | grep -q 0.0.0.0:3260; then\n"
            f"  targetcli {tpg}/portals delete 0.0.0.0 3260\n"
            "fi\n"
            f"targetcli {tpg}/portals create 127.0.0.1 3260\n"
            f"targetcli {tpg}/luns create /backstores/block/{backstore}\n"
            f"targetcli {tpg}/acls create {initiator}\n"
        )
        found = node.run(f"iscsiadm -m discovery -t sendtargets -p {portal}").stdout
        assert iqn in found
        node.run(f"iscsiadm -m node -T {iqn} -p {portal} --login")
        disk = f"/dev/disk/by-path/ip-{portal}-iscsi-{iqn}-lun-0"
        node.wait_for_path(disk)
        assert node.run(f"readlink -f {disk}").stdout.startswith("/dev/sd")
        assert remote_sha256(node, disk, 16 * MiB) == expected
    finally:
        node.run(
            f"iscsiadm -m node -T {iqn} -p {portal} --logout; "
            f"iscsiadm -m node -T {iqn} -p {portal} -o delete; "
            f"targetcli /iscsi delete {iqn}; "
            f"targetcli /backstores/block delete {backstore}",
            check=False,
        )
    assert iqn not in node.run("iscsiadm -m session 2>/dev/null", check=False).stdout
