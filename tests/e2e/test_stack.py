"""End to end: the real `openstack` CLI and openstacksdk against Keystone + Cinder + this driver.

Each test creates what it needs with unique names, registers it with `cleanup`, and checks the
result where it lands: on the pool of the storage node (`node.run("zfs list ...")`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shlex
import subprocess
import threading
import uuid

import pytest
from stacklib import BACKEND_HOST, ZFS_ROOT

MiB = 1 << 20
GiB = 1 << 30
# udev makes /dev/zvol/... links; on a node busy with thousands of zvols (benchmarks share it)
# that can take long
LINK_TIMEOUT = 180


def uniq(prefix: str) -> str:
    return f"e2e-{prefix}-{secrets.token_hex(3)}"


def create_volume(stack, cleanup, cloud: str, *args: str, size: int = 1) -> str:
    v = stack.cli_json(cloud, "volume", "create", "--size", str(size), *args, uniq("vol"))
    cleanup.volume(v["id"])
    stack.wait_volume(v["id"])
    return v["id"]


def create_snapshot(stack, cleanup, cloud: str, volume_id: str, *args: str) -> str:
    s = stack.cli_json(cloud, "volume", "snapshot", "create", "--volume", volume_id, *args,
                       uniq("snap"))
    cleanup.snapshot(s["id"])
    stack.wait_snapshot(s["id"])
    return s["id"]


def pool_objects(node) -> list[str]:
    r = node.run(f"zfs list -H -o name -r -t volume,snapshot {ZFS_ROOT}")
    return r.stdout.split()


def wait_for_device(node, device: str) -> None:
    """Wait for a /dev/zvol link; if udev lost the event (seen with a flooded queue), ask again."""
    try:
        node.wait_for_path(device, timeout=60)
    except Exception:  # noqa: BLE001 - one more chance after a re-trigger
        node.run("udevadm trigger --subsystem-match=block --action=change", check=False)
        node.wait_for_path(device, timeout=LINK_TIMEOUT)


def write_random(node, device: str, mib: int = 4) -> str:
    """Fill the first `mib` MiB of a block device on the node with random data; its sha256."""
    q = shlex.quote(device)
    wait_for_device(node, device)
    node.run(f"dd if=/dev/urandom of=/tmp/e2e.bin bs=1M count={mib} status=none && "
             f"dd if=/tmp/e2e.bin of={q} bs=1M oflag=direct conv=fsync status=none && sync")
    return node.run("sha256sum /tmp/e2e.bin | cut -d' ' -f1; rm -f /tmp/e2e.bin").stdout.strip()


def read_hash(node, device: str, mib: int = 4) -> str:
    q = shlex.quote(device)
    wait_for_device(node, device)
    return node.run(f"dd if={q} bs=1M count={mib} iflag=direct status=none | sha256sum"
                    ).stdout.split()[0]


def volsize(node, dataset: str) -> int:
    return int(node.run(f"zfs get -H -p -o value volsize {shlex.quote(dataset)}").stdout)


def zvol_dev(dataset: str) -> str:
    return f"/dev/zvol/{dataset}"


def assert_nothing_left(node, ids: list[str]) -> None:
    left = [n for n in node.run(f"zfs list -H -o name -r -t all {ZFS_ROOT}").stdout.split()
            if any(i in n for i in ids)]
    assert left == [], f"left on the pool: {left}"


# --------------------------------------------------------------------------------------------
# 1. the lifecycle, in two projects
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cloud", ["alice", "bob"])
def test_lifecycle_create_snapshot_clone_extend_revert_delete(stack, node, cleanup, cloud):
    project = stack.project_id(cloud)
    vol = create_volume(stack, cleanup, cloud)
    vol_ds = stack.zvol(project, vol)
    assert vol_ds in pool_objects(node)
    data_a = write_random(node, zvol_dev(vol_ds))

    snap = create_snapshot(stack, cleanup, cloud, vol)
    assert f"{vol_ds}@snapshot-{snap}" in pool_objects(node)
    data_b = write_random(node, zvol_dev(vol_ds))
    assert data_b != data_a

    # volume from snapshot, larger than its origin
    from_snap = create_volume(stack, cleanup, cloud, "--snapshot", snap, size=2)
    from_snap_ds = stack.zvol(project, from_snap)
    assert read_hash(node, zvol_dev(from_snap_ds)) == data_a
    assert volsize(node, from_snap_ds) == 2 * GiB

    # clone of the volume: its current data
    clone = create_volume(stack, cleanup, cloud, "--source", vol)
    assert read_hash(node, zvol_dev(stack.zvol(project, clone))) == data_b

    # revert to the (latest) snapshot: microversion 3.40
    stack.cli(cloud, "volume", "revert", snap, api="3.40")
    stack.wait_volume(vol)
    assert read_hash(node, zvol_dev(vol_ds)) == data_a
    # the clone and the volume from the snapshot are untouched by the revert
    assert read_hash(node, zvol_dev(stack.zvol(project, clone))) == data_b

    # extend
    stack.cli(cloud, "volume", "set", "--size", "3", vol)
    extended = stack.wait_volume(vol)
    assert extended.size == 3
    assert volsize(node, vol_ds) == 3 * GiB
    assert read_hash(node, zvol_dev(vol_ds)) == data_a

    shown = stack.cli_json(cloud, "volume", "show", vol)
    assert (shown["status"], shown["size"], shown["type"]) == ("available", 3, "zfs")

    # delete everything through the CLI, dependents first
    stack.cli(cloud, "volume", "delete", clone, from_snap)
    for v in (clone, from_snap):
        stack.wait_gone("volume", v)
    stack.cli(cloud, "volume", "snapshot", "delete", snap)
    stack.wait_gone("snapshot", snap)
    stack.cli(cloud, "volume", "delete", vol)
    stack.wait_gone("volume", vol)
    assert_nothing_left(node, [vol, snap, from_snap, clone])


# --------------------------------------------------------------------------------------------
# 2. tenant isolation
# --------------------------------------------------------------------------------------------
def test_tenant_isolation_of_snapshots(stack, node, cleanup):
    from openstack import exceptions

    vol_a = create_volume(stack, cleanup, "alice")
    snap_a = create_snapshot(stack, cleanup, "alice", vol_a)
    vol_b = create_volume(stack, cleanup, "bob")
    snap_b = create_snapshot(stack, cleanup, "bob", vol_b)

    # bob's CLI: alice's snapshot is not listed, cannot be shown, cloned or deleted
    listed = {s["ID"] for s in stack.cli_json("bob", "volume", "snapshot", "list")}
    assert snap_b in listed and snap_a not in listed
    for argv in (("volume", "snapshot", "show", snap_a),
                 ("volume", "create", "--snapshot", snap_a, "--size", "1", uniq("steal")),
                 ("volume", "create", "--source", vol_a, "--size", "1", uniq("steal")),
                 ("volume", "snapshot", "delete", snap_a),
                 ("volume", "delete", vol_a)):
        r = stack.cli("bob", *argv, check=False)
        assert r.returncode != 0, f"bob could run {argv}: {r.stdout}"

    # the same through the API (openstacksdk): 403 or 404, never a success
    bob = stack.sdk("bob").block_storage
    calls = {
        "show": lambda: bob.get_snapshot(snap_a),
        "clone": lambda: bob.create_volume(size=1, snapshot_id=snap_a, name=uniq("steal")),
        "source": lambda: bob.create_volume(size=1, source_volid=vol_a, name=uniq("steal")),
        "delete": lambda: bob.delete_snapshot(snap_a, ignore_missing=False),
    }
    for what, call in calls.items():
        with pytest.raises(exceptions.HttpException) as err:
            created = call()
            if getattr(created, "id", None):
                cleanup.volume(created.id)
        assert err.value.status_code in (403, 404), f"{what}: {err.value}"
    assert [s.id for s in bob.snapshots(details=False)] == [snap_b]

    # admin sees both with --all-projects; alice's snapshot is intact
    every = {s["ID"] for s in stack.cli_json("admin", "volume", "snapshot", "list",
                                             "--all-projects")}
    assert {snap_a, snap_b} <= every
    assert stack.cli_json("alice", "volume", "snapshot", "show", snap_a)["status"] == "available"
    assert f"{stack.zvol(stack.project_id('alice'), vol_a)}@snapshot-{snap_a}" in \
        pool_objects(node)


# --------------------------------------------------------------------------------------------
# 3. snapshot of an in-use volume, attached through the attachments API
# --------------------------------------------------------------------------------------------
def guest_initiator(node) -> str:
    out = node.run("cat /etc/iscsi/initiatorname.iscsi").stdout
    return next(line.split("=", 1)[1].strip() for line in out.splitlines()
                if line.startswith("InitiatorName="))


def iscsi_login(node, data: dict) -> str:
    iqn, portal = data["target_iqn"], data["target_portal"]
    node.run(f"iscsiadm -m discovery -t sendtargets -p {portal} >/dev/null")
    base = f"iscsiadm -m node -T {iqn} -p {portal}"
    node.run(f"{base} --op update -n node.session.auth.authmethod -v {data['auth_method']} && "
             f"{base} --op update -n node.session.auth.username -v {data['auth_username']} && "
             f"{base} --op update -n node.session.auth.password -v {data['auth_password']} && "
             f"{base} --login")
    path = f"/dev/disk/by-path/ip-{portal}-iscsi-{iqn}-lun-{data.get('target_lun', 0)}"
    node.wait_for_path(path, timeout=LINK_TIMEOUT)
    return path


def iscsi_logout(node, data: dict) -> None:
    iqn, portal = data["target_iqn"], data["target_portal"]
    node.run(f"iscsiadm -m node -T {iqn} -p {portal} --logout; "
             f"iscsiadm -m node -T {iqn} -p {portal} -o delete", check=False)


def test_snapshot_of_in_use_volume_attached_over_iscsi(stack, node, cleanup):
    project = stack.project_id("alice")
    vol = create_volume(stack, cleanup, "alice", size=1)
    connector = {"initiator": guest_initiator(node), "ip": "127.0.0.1", "host": "node",
                 "platform": "x86_64", "os_type": "linux", "multipath": False}
    alice = stack.sdk("alice", "3.54").block_storage
    attachment = alice.create_attachment(vol, connector=connector, mode="rw")
    cleanup.attachment(attachment.id, "alice")
    data = attachment.connection_info
    assert data["driver_volume_type"] == "iscsi"
    assert data["auth_method"] == "CHAP" and data["auth_password"]
    assert data["target_portal"] == "127.0.0.1:3260"
    stack.cli("alice", "volume", "attachment", "complete", attachment.id, api="3.44")
    assert stack.wait_volume(vol, "in-use").status == "in-use"

    disk = iscsi_login(node, data)
    try:
        written = write_random(node, disk, mib=8)
        # Still logged in, the volume in use. Since microversion 3.66 an in-use snapshot needs
        # no flag; before it, `force`. (`openstack volume snapshot create --force` cannot send
        # it: openstackclient 10.5 passes force= to openstacksdk 4.22, whose attribute is
        # is_forced, so the flag is dropped and Cinder answers "must be available".)
        s = stack.cli_json("alice", "volume", "snapshot", "create", "--volume", vol,
                           uniq("snap"), api="3.66")
        snap = cleanup.snapshot(s["id"])
        forced = stack.sdk("alice").block_storage.create_snapshot(
            volume_id=vol, is_forced=True, name=uniq("forced"))
        cleanup.snapshot(forced.id)
        for sid in (snap, forced.id):
            stack.wait_snapshot(sid)
    finally:
        iscsi_logout(node, data)
    stack.cli("alice", "volume", "attachment", "delete", attachment.id, api="3.27")
    stack.wait_volume(vol, "available")
    assert node.run("targetcli ls /iscsi 1").stdout.count(f"volume-{vol}") == 0

    restored = create_volume(stack, cleanup, "alice", "--snapshot", snap)
    assert read_hash(node, zvol_dev(stack.zvol(project, restored)), mib=8) == written


# --------------------------------------------------------------------------------------------
# 4. volume transfer between projects
# --------------------------------------------------------------------------------------------
def test_volume_transfer_moves_the_zvol_to_the_new_project(stack, node, cleanup):
    pa, pb = stack.project_id("alice"), stack.project_id("bob")
    vol = create_volume(stack, cleanup, "alice")
    data = write_random(node, zvol_dev(stack.zvol(pa, vol)))
    old = stack.zvol(pa, vol)
    cleanup.dataset(node, old)  # destroyed if the transfer left it behind
    req = stack.cli_json("alice", "volume", "transfer", "request", "create", vol)
    stack.cli("bob", "volume", "transfer", "request", "accept", "--auth-key", req["auth_key"],
              req["id"])
    moved = stack.wait_volume(vol)
    assert moved.project_id == pb
    assert vol in {v["ID"] for v in stack.cli_json("bob", "volume", "list")}
    assert vol not in {v["ID"] for v in stack.cli_json("alice", "volume", "list")}
    objects = pool_objects(node)
    assert stack.zvol(pb, vol) in objects and old not in objects
    assert read_hash(node, zvol_dev(stack.zvol(pb, vol))) == data
    # B can use it: snapshot it and delete everything
    snap = create_snapshot(stack, cleanup, "bob", vol)
    stack.cli("bob", "volume", "snapshot", "delete", snap)
    stack.wait_gone("snapshot", snap)
    stack.cli("bob", "volume", "delete", vol)
    stack.wait_gone("volume", vol)
    assert_nothing_left(node, [vol])


# --------------------------------------------------------------------------------------------
# 5. manageable listing and manage of an out-of-band zvol
# --------------------------------------------------------------------------------------------
def test_manageable_listing_and_manage_of_an_out_of_band_zvol(stack, node, cleanup):
    oob = cleanup.dataset(node, f"{ZFS_ROOT}/oob-{secrets.token_hex(4)}")
    node.run(f"zfs create -V 1G -o volblocksize=16K {oob}")
    data = write_random(node, zvol_dev(oob))

    listing = stack.cli_json("admin", "block", "storage", "volume", "manageable", "list",
                             BACKEND_HOST, api="3.8")
    rows = [{k.lower().replace(" ", "_"): v for k, v in row.items()} for row in listing]
    short = oob.rsplit("/", 1)[1]
    mine = [row for row in rows if short in json.dumps(row.get("reference"))]
    assert len(mine) == 1, f"{oob} not in the manageable listing: {listing}"
    assert mine[0]["safe_to_manage"] in (True, "True") and int(mine[0]["size"]) == 1
    ref = mine[0]["reference"]
    ref = ref if isinstance(ref, dict) else json.loads(ref.replace("'", '"'))

    # --non-bootable: without it openstackclient 10.5 sends "bootable": null, which Cinder's
    # manageable_volumes schema refuses (400)
    managed = stack.cli_json("admin", "volume", "create", "--remote-source",
                             f"source-name={ref['source-name']}", "--host",
                             f"{BACKEND_HOST}#zfs", "--non-bootable", uniq("managed"))
    cleanup.volume(managed["id"])
    vol = stack.wait_volume(managed["id"])
    assert vol.size == 1
    ds = stack.zvol(stack.project_id("admin"), vol.id)
    assert read_hash(node, zvol_dev(ds)) == data
    # a managed volume is an ordinary volume: it is deleted with its zvol
    stack.cli("admin", "volume", "delete", vol.id)
    stack.wait_gone("volume", vol.id)
    assert_nothing_left(node, [vol.id, oob.rsplit("/", 1)[1]])


# --------------------------------------------------------------------------------------------
# 6. 20 concurrent snapshot requests
# --------------------------------------------------------------------------------------------
def test_twenty_concurrent_snapshot_creates_none_lost(stack, node, cleanup):
    project = stack.project_id("alice")
    vols = [create_volume(stack, cleanup, "alice") for _ in range(4)]
    conns = [stack.new_sdk("alice") for _ in range(20)]
    for c in conns:
        c.authorize()  # tokens first, so the 20 requests leave together
    barrier = threading.Barrier(20)
    results: list = [None] * 20

    def fire(i: int) -> None:
        barrier.wait()
        try:
            snap = conns[i].block_storage.create_snapshot(
                volume_id=vols[i % 4], name=f"e2e-burst-{i}-{uuid.uuid4().hex[:6]}")
            cleanup.snapshot(snap.id)
            results[i] = snap.id
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = e

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    failed = [r for r in results if not isinstance(r, str)]
    assert failed == [], f"requests failed: {failed}"
    assert len(set(results)) == 20
    for sid in results:
        stack.wait_snapshot(sid)

    listed = {s["ID"] for s in stack.cli_json("alice", "volume", "snapshot", "list")}
    assert set(results) <= listed
    on_pool = set(pool_objects(node))
    expected = {f"{stack.zvol(project, vols[i % 4])}@snapshot-{sid}"
                for i, sid in enumerate(results)}
    assert expected <= on_pool, f"missing on the pool: {sorted(expected - on_pool)}"

    # and all 20 deleted at once
    for sid in results:
        conns[0].block_storage.delete_snapshot(sid)
    for sid in results:
        stack.wait_gone("snapshot", sid)
    stack.cli("alice", "volume", "delete", *vols)
    for v in vols:
        stack.wait_gone("volume", v)
    assert_nothing_left(node, vols + list(results))



# --------------------------------------------------------------------------------------------
# 7. images: into a volume and back out, streamed through the agent (this host has no initiator)
# --------------------------------------------------------------------------------------------
def test_volume_from_image_and_volume_uploaded_as_image(stack, node, cleanup, tmp_path):
    image = stack.test_image
    vol = create_volume(stack, cleanup, "alice", "--image", image["id"])
    shown = stack.cli_json("alice", "volume", "show", vol)
    assert shown["bootable"] in (True, "true")   # the CLI version decides the type
    dev = zvol_dev(stack.zvol(stack.project_id("alice"), vol))
    wait_for_device(node, dev)
    virtual_mib = image["virtual_size"] // MiB
    assert read_hash(node, dev, mib=1) == image["first_mib_sha256"]     # qcow2 -> raw, on the zvol
    assert read_hash(node, dev, mib=virtual_mib) == image["raw_sha256"]

    # What the volume holds now goes out: a mark written on the node after the image.
    mark = secrets.token_hex(16).encode()
    node.run(f"printf %s {mark.decode()} | dd of={dev} bs=1M seek={virtual_mib} "
             f"oflag=direct conv=fsync status=none")
    up = stack.sdk("alice").block_storage.upload_volume_to_image(
        vol, uniq("img"), disk_format="qcow2", container_format="bare")
    image_id = cleanup.image(up["image_id"])
    stack.wait_volume(vol)                 # 'uploading' until the image is in Glance
    glance = stack.sdk("alice").image
    glance.wait_for_status(glance.get_image(image_id), "active", wait=300)
    qcow2, raw = tmp_path / "up.qcow2", tmp_path / "up.raw"
    stack.cli("alice", "image", "save", "--file", str(qcow2), image_id)
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(qcow2), str(raw)],
                   check=True)
    assert raw.stat().st_size == GiB       # the whole volume, not just the written part
    with raw.open("rb") as f:
        head = f.read(virtual_mib * MiB)
        assert f.read(len(mark)) == mark
    assert hashlib.sha256(head).hexdigest() == image["raw_sha256"]
    assert qcow2.stat().st_size < 64 * MiB  # the zero runs did not travel as data
