"""LIO export through the agent on the real node (remote mode), with an iSCSI login from the guest.

The agent runs under the node's python3 over its own SSH session (the remote transport the
driver uses), rooted at the test's dataset. It exports a zvol with lio_create + CHAP ACL; the
guest's open-iscsi logs in to 127.0.0.1 with CHAP; data written through the iSCSI disk is read
back from the zvol; then everything is removed again through the agent.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import shlex
import tarfile
from pathlib import Path

import pytest

from cinder_zfs_ocfs2.agent import lio
from cinder_zfs_ocfs2.transport.ssh import SSHTransport
from cinder_zfs_ocfs2.zfs import errors

REPO = Path(__file__).resolve().parents[2]
AGENT_DIR = "/opt/cinder-zfs-ocfs2-ft-lio"  # our own copy: other tests may be replacing theirs
PORTAL = "127.0.0.1:3260"
MiB = 1 << 20


def package_tarball() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(REPO / "cinder_zfs_ocfs2", arcname="cinder_zfs_ocfs2",
                filter=lambda t: None if "__pycache__" in t.name else t)
    return buf.getvalue()


@pytest.fixture(scope="module")
def agent_dir(node) -> str:
    node.put_bytes(package_tarball(), "/tmp/ft-lio-agent.tgz")
    node.run(f"rm -rf {AGENT_DIR} && mkdir -p {AGENT_DIR} && "
             f"tar -xzf /tmp/ft-lio-agent.tgz -C {AGENT_DIR} && rm /tmp/ft-lio-agent.tgz")
    return AGENT_DIR


@pytest.fixture
def agent(node, dataset, agent_dir):
    """The agent rooted at the test's dataset, over one persistent SSH session."""
    transport = SSHTransport(
        host=node.host, port=node.port, user=node.user, key_file=node.key_path,
        known_hosts=node.known_hosts, timeout=300,
        command=f"cd {agent_dir} && exec python3 -m cinder_zfs_ocfs2.agent --root {dataset}")
    yield transport
    transport.close()


def guest_initiator(node) -> str:
    return node.run("sed -n 's/^InitiatorName=//p' /etc/iscsi/initiatorname.iscsi").stdout.strip()


def sha256_of(node, path: str, nbytes: int) -> str:
    out = node.run(f"dd if={shlex.quote(path)} bs=1M count={nbytes // MiB} iflag=direct "
                   f"status=none | sha256sum").stdout
    return out.split()[0]


def login(node, iqn: str, user: str, password: str, check: bool = True):
    base = f"iscsiadm -m node -T {iqn} -p {PORTAL}"
    return node.run(
        f"{base} --op update -n node.session.auth.authmethod -v CHAP && "
        f"{base} --op update -n node.session.auth.username -v {shlex.quote(user)} && "
        f"{base} --op update -n node.session.auth.password -v {shlex.quote(password)} && "
        f"{base} --login", check=check, timeout=120)


def discover(node, iqn: str) -> None:
    # -o new: add our record only; never rewrite the records of other tests' sessions.
    out = node.run(f"iscsiadm -m discovery -t sendtargets -p {PORTAL} -o new").stdout
    assert iqn in out
    assert iqn in node.run(f"iscsiadm -m node -T {iqn} -p {PORTAL}").stdout


def disk_of(node, iqn: str) -> str:
    path = f"/dev/disk/by-path/ip-{PORTAL}-iscsi-{iqn}-lun-0"
    node.run(f"udevadm settle -t 30; for i in $(seq 100); do [ -b {path} ] && break; "
             f"sleep 0.2; done; [ -b {path} ]")
    return path


def logout(node, iqn: str) -> None:
    node.run(f"iscsiadm -m node -T {iqn} -p {PORTAL} --logout; "
             f"iscsiadm -m node -T {iqn} -p {PORTAL} -o delete", check=False, timeout=120)


def lio_leftovers(node, name: str) -> list[str]:
    """Targets and storage objects called ``name`` in configfs (what rtslib reads)."""
    out = node.run("ls -1 /sys/kernel/config/target/iscsi /sys/kernel/config/target/core/*/ "
                   "2>/dev/null", check=False).stdout
    return [line for line in out.splitlines() if line.strip() == name]


def cleanup(node, agent, iqn: str) -> None:
    logout(node, iqn)
    try:
        agent.call("lio_delete", iqn=iqn)
    except errors.ZFSError:
        pass


def test_export_chap_login_write_through_iscsi_read_back_from_zvol(node, dataset, agent):
    hex_id = dataset.rsplit("-", 1)[1]
    assert set(lio.OPERATION_NAMES) <= set(agent.info["operations"])
    assert agent.call("lio_verify")["rtslib_fb"]

    volume = f"{dataset}/volume-1"
    agent.call("create_volume", name=volume, size=64 * MiB, sparse=True)
    device = agent.call("wait_for_device", name=volume)
    iqn = f"iqn.2010-10.org.openstack:ft-lio-{hex_id}"
    user, password = f"ft{hex_id}", secrets.token_hex(8)
    initiator = guest_initiator(node)
    assert initiator.startswith("iqn.")
    data = os.urandom(4 * MiB)

    try:
        args = dict(device=device, name=iqn, userid=user, password=password,
                    portals_ips=["127.0.0.1"], portals_port=3260)
        assert agent.call("lio_create", **args) is None
        assert agent.call("lio_create", **args) is None  # idempotent, like rtstool
        assert iqn in agent.call("lio_targets")
        agent.call("lio_add_initiator", iqn=iqn, initiator_iqn=initiator, userid=user,
                   password=password)
        agent.call("lio_add_initiator", iqn=iqn, initiator_iqn=initiator, userid=user,
                   password=password)
        assert os.path.basename(agent.call("lio_save")) == "saveconfig.json"

        # The agent refuses what is not its own, on the real node too.
        with pytest.raises(errors.InvalidArgument):
            agent.call("lio_create", **{**args, "device": f"/dev/zvol/{node.pool}/elsewhere"})
        with pytest.raises(errors.InvalidArgument):
            agent.call("lio_create", **{**args, "device": f"/dev/zvol/{dataset}/../x"})
        with pytest.raises(errors.InvalidArgument):
            agent.call("lio_add_initiator", iqn=iqn, initiator_iqn="not an iqn", userid=user,
                       password=password)
        with pytest.raises(errors.NotFound):
            agent.call("lio_add_initiator", iqn=iqn + "-missing", initiator_iqn=initiator,
                       userid=user, password=password)

        discover(node, iqn)
        # CHAP is enforced: a wrong secret does not log in.
        assert login(node, iqn, user, "wrong-secret-00", check=False).returncode != 0
        login(node, iqn, user, password)
        disk = disk_of(node, iqn)
        assert node.run(f"blockdev --getsize64 {disk}").stdout.strip() == str(64 * MiB)

        node.put_bytes(data, f"/tmp/ft-lio-{hex_id}.bin")
        node.run(f"dd if=/tmp/ft-lio-{hex_id}.bin of={disk} bs=1M oflag=direct conv=fsync "
                 f"status=none && rm /tmp/ft-lio-{hex_id}.bin")
        logout(node, iqn)
        assert iqn not in node.run("iscsiadm -m session 2>/dev/null", check=False).stdout

        # What went through iSCSI is on the zvol.
        assert sha256_of(node, device, len(data)) == hashlib.sha256(data).hexdigest()

        agent.call("lio_delete_initiator", iqn=iqn, initiator_iqn=initiator)
        agent.call("lio_delete_initiator", iqn=iqn, initiator_iqn=initiator)  # already gone
        agent.call("lio_delete", iqn=iqn)
        agent.call("lio_delete", iqn=iqn)  # already gone: fine
    finally:
        cleanup(node, agent, iqn)

    assert iqn not in agent.call("lio_targets")
    assert lio_leftovers(node, iqn) == []
    # The zvol is free again: nothing holds it open.
    agent.call("destroy", name=volume)


def test_snapshot_exported_read_only(node, dataset, agent):
    hex_id = dataset.rsplit("-", 1)[1]
    volume = f"{dataset}/volume-2"
    snapshot = f"{volume}@snapshot-1"
    agent.call("create_volume", name=volume, size=32 * MiB, sparse=True)
    # as the driver does it: snapdev is set on the zvol when a snapshot is exported
    agent.call("set", name=volume, properties={"snapdev": "visible"})
    device = agent.call("wait_for_device", name=volume)
    data = os.urandom(2 * MiB)
    node.put_bytes(data, f"/tmp/ft-lio-{hex_id}.bin")
    node.run(f"dd if=/tmp/ft-lio-{hex_id}.bin of={device} bs=1M oflag=direct conv=fsync "
             f"status=none && rm /tmp/ft-lio-{hex_id}.bin")
    agent.call("snapshot", names=[snapshot])
    snap_device = f"/dev/zvol/{snapshot}"
    node.wait_for_path(snap_device)

    iqn = f"iqn.2010-10.org.openstack:ft-lio-snap-{hex_id}"
    user, password = f"ft{hex_id}", secrets.token_hex(8)
    initiator = guest_initiator(node)
    try:
        agent.call("lio_create", device=snap_device, name=iqn, userid=user, password=password,
                   initiator_iqns=[initiator], portals_ips=["127.0.0.1"], readonly=True)
        # Same name, other mode: refused rather than silently exporting writable.
        with pytest.raises(errors.AlreadyExists):
            agent.call("lio_create", device=snap_device, name=iqn, userid=user,
                       password=password, portals_ips=["127.0.0.1"], readonly=False)
        discover(node, iqn)
        login(node, iqn, user, password)
        disk = disk_of(node, iqn)
        assert sha256_of(node, disk, len(data)) == hashlib.sha256(data).hexdigest()
        write = node.run(f"dd if=/dev/zero of={disk} bs=1M count=1 oflag=direct status=none",
                         check=False)
        assert write.returncode != 0
        logout(node, iqn)
        agent.call("lio_delete", iqn=iqn)
    finally:
        cleanup(node, agent, iqn)
    assert lio_leftovers(node, iqn) == []
    assert sha256_of(node, snap_device, len(data)) == hashlib.sha256(data).hexdigest()
