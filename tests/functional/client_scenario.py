"""Every ZFS client operation, exercised against a real pool. Standard library only: the same
scenario runs here through the SSH agent and inside the guest through the local transport."""

from __future__ import annotations

import os
import tempfile

from cinder_zfs_ocfs2.zfs import errors


def expect(exc_type, func, *args, **kwargs):
    try:
        func(*args, **kwargs)
    except exc_type:
        return
    raise AssertionError(f"{func.__name__}{args} did not raise {exc_type.__name__}")


def run(client, root: str) -> dict:
    """Run the scenario under ``root`` (an existing dataset); returns facts for the caller."""
    facts = {"version": client.version()}
    parent = f"{root}/p1"
    client.create_filesystem(parent)
    a, b = f"{parent}/volume-a", f"{parent}/volume-b"
    client.create_volume(a, 64 * 1024 * 1024, sparse=True, volblocksize=16384,
                         properties={"compression": "lz4", "org.openstack.cinder:volume_id": "a"})
    client.create_volume(b, 64 * 1024 * 1024, sparse=False)
    expect(errors.AlreadyExists, client.create_volume, a, 64 * 1024 * 1024)
    assert client.exists(a) and not client.exists(f"{parent}/nope")
    vol = client.get_volume(a)
    assert vol.volsize == 64 * 1024 * 1024 and vol.volblocksize == 16384
    assert vol.user_props["org.openstack.cinder:volume_id"] == "a"
    assert client.get_properties(b, ["refreservation"])["refreservation"] != "0"

    client.snapshot([f"{a}@s1", f"{b}@s1"])             # one call, one txg
    s_a, s_b = client.get_snapshots([f"{a}@s1", f"{b}@s1"])
    assert s_a.createtxg == s_b.createtxg
    assert s_a.user_props["org.openstack.cinder:volume_id"] == "a"   # inherited
    expect(errors.InvalidArgument, client.snapshot, [f"{a}@x", f"{a}@y"])  # one per dataset

    client.clone(f"{a}@s1", f"{parent}/clone-1", {"compression": "zstd"})
    assert client.get_volume(f"{parent}/clone-1").origin == f"{a}@s1"
    assert client.get_snapshot(f"{a}@s1").clones == (f"{parent}/clone-1",)
    expect(errors.HasDependents, client.destroy, f"{a}@s1")
    client.destroy(f"{a}@s1", defer=True)                # goes with its last clone
    assert client.get_snapshot(f"{a}@s1").defer_destroy

    client.promote(f"{parent}/clone-1")                  # the snapshot moves to the clone
    assert client.get_volume(a).origin == f"{parent}/clone-1@s1"
    client.promote(a)                                    # and back
    assert client.get_volume(f"{parent}/clone-1").origin == f"{a}@s1"

    client.snapshot([f"{b}@s2"])
    expect(errors.NotLatest, client.rollback, f"{b}@s1")
    client.rollback(f"{b}@s2")

    client.hold(f"{b}@s2", "backup")
    assert client.holds(f"{b}@s2") == ["backup"]
    expect(errors.Busy, client.destroy, f"{b}@s2")
    client.release(f"{b}@s2", "backup")
    client.destroy(f"{b}@s2")

    client.set_properties(b, {"org.openstack.cinder:hidden": "true", "compression": "off"})
    assert client.get_properties(b, ["org.openstack.cinder:hidden"]) == {
        "org.openstack.cinder:hidden": "true"}
    client.inherit(b, "org.openstack.cinder:hidden")
    assert client.get_properties(b, ["org.openstack.cinder:hidden"]) == {
        "org.openstack.cinder:hidden": None}

    client.rename(b, f"{root}/p2/volume-b")              # -p makes the new parent
    assert client.exists(f"{root}/p2/volume-b@s1")
    copy = client.send_receive(f"{root}/p2/volume-b@s1", f"{parent}/copy")
    assert copy["bytes"] > 0 and client.get_volume(f"{parent}/copy").origin is None

    names = {s.name for s in client.list_snapshots(root)}
    assert {f"{a}@s1", f"{root}/p2/volume-b@s1", f"{parent}/copy@s1"} <= names
    assert {v.name for v in client.list_volumes(root, depth=None)} >= {a, f"{parent}/copy"}
    facts["pool"] = client.pool_capacity().health

    facts["streamed"] = volume_data(client, a, 64 * 1024 * 1024)

    expect(errors.NotFound, client.destroy, f"{parent}/nope")
    expect(errors.InvalidArgument, client.exists, "elsewhere/x")
    client.destroy(f"{parent}/clone-1")                  # a@s1 (deferred) goes with it
    assert not client.exists(f"{a}@s1")
    for name in (a, f"{parent}/copy", f"{root}/p2/volume-b"):
        client.destroy(name, recursive=True)
    return facts


def volume_data(client, volume: str, volsize: int) -> int:
    """An image written into a zvol and read back (sparse); what does not fit is refused."""
    data = bytes(range(256)) * 4096 * 3 + b"tail"
    with tempfile.TemporaryDirectory() as tmp:
        image, back, big = (os.path.join(tmp, n) for n in ("image.raw", "back.raw", "big.raw"))
        with open(image, "wb") as f:
            f.write(data)
        assert client.write_volume_from_file(volume, image) == len(data)
        assert client.read_volume_to_file(volume, back) == volsize
        with open(back, "rb") as f:
            assert f.read(len(data)) == data
            assert f.read(1024 * 1024) == bytes(1024 * 1024)
        assert os.stat(back).st_size == volsize
        assert os.stat(back).st_blocks * 512 < 16 * 1024 * 1024   # the rest are holes
        with open(big, "wb") as f:
            f.truncate(volsize + 4096)
        expect(errors.InvalidArgument, client.write_volume_from_file, volume, big)
        expect(errors.InvalidArgument, client.read_volume_to_file, f"{volume}@s1", back)
    return len(data)


GUEST_MAIN = """
import json, sys
sys.path.insert(0, "/opt/cinder-zfs-ocfs2")
sys.path.insert(0, "/tmp")
import client_scenario
from cinder_zfs_ocfs2.transport.local import LocalTransport
from cinder_zfs_ocfs2.zfs.client import ZFSClient
transport = LocalTransport(sys.argv[1])
facts = client_scenario.run(ZFSClient(transport), sys.argv[1])
facts["pyzfs"] = transport.info["pyzfs"]
print(json.dumps(facts))
"""
