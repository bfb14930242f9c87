"""Fixtures that put the agent on the storage node and build real drivers against it.

The package is copied to /opt/cinder-zfs-ocfs2 on the node and a dedicated key is authorized
with the agent as its forced command (restrict,command=...), exactly as an operator installs
it (README "Installing the agent on a storage node"). Drivers run in ssh mode over that key.
"""

from __future__ import annotations

import io
import pathlib
import secrets
import shlex
import subprocess
import tarfile
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
AGENT_DIR = "/opt/cinder-zfs-ocfs2"
AGENT_ROOTS = ("tank", "ftmig")   # ftmig: a second pool, for migrations between pools


def package_tarball() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(ROOT / "cinder_zfs_ocfs2", arcname="cinder_zfs_ocfs2",
                filter=lambda t: None if "__pycache__" in t.name else t)
    return buf.getvalue()


def ensure_second_pool(node) -> str:
    """Pool `ftmig` on a sparse file in the guest: another pool of the same node (migrations),
    and one of the agent's roots. Not in the cache file: after a reboot of the node it is
    imported again, or made anew."""
    node.run("zpool list ftmig >/dev/null 2>&1 || "
             "zpool import -o cachefile=none -d /var/tmp ftmig 2>/dev/null || "
             "(truncate -s 4G /var/tmp/ftmig.img && "
             "zpool create -f -o cachefile=none ftmig /var/tmp/ftmig.img)")
    return "ftmig"


def install_agent(node, key_dir: pathlib.Path) -> pathlib.Path:
    """Install the agent and authorize a key whose only power is to run it."""
    key = key_dir / "agent_key"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cinder-volume",
                        "-f", str(key)], check=True)
    node.put_bytes(package_tarball(), "/tmp/cinder-zfs-ocfs2.tgz")
    node.run(f"rm -rf {AGENT_DIR} && mkdir -p {AGENT_DIR} && "
             f"tar -xzf /tmp/cinder-zfs-ocfs2.tgz -C {AGENT_DIR}")
    public = (key_dir / "agent_key.pub").read_text().strip()
    blob = public.split()[1]
    roots = " ".join(f"--root {root}" for root in AGENT_ROOTS)
    line = (f'restrict,command="cd {AGENT_DIR} && exec python3 -m cinder_zfs_ocfs2.agent '
            f'{roots}" {public}')
    # Several test sessions may share the node: add this key once, leave the others alone.
    node.run("mkdir -p /root/.ssh && touch /root/.ssh/authorized_keys && "
             f"(grep -qF '{blob}' /root/.ssh/authorized_keys || "
             f"echo '{line}' >> /root/.ssh/authorized_keys) && "
             "chmod 600 /root/.ssh/authorized_keys")
    return key


@pytest.fixture(scope="session")
def agent_key(node, tmp_path_factory):
    key_dir = tmp_path_factory.mktemp("agent")

    def install(n):
        ensure_second_pool(n)   # the agent serves it: it must be there (again) when it starts
        return install_agent(n, key_dir)

    # a restarted node has lost ftmig, and maybe what was not yet on its disk: again after it
    node.on_restart(install)
    return install(node)


@pytest.fixture(scope="session")
def agent_transport_factory(node, agent_key):
    from cinder_zfs_ocfs2.transport.ssh import SSHTransport

    made = []

    def factory(**kw):
        transport = SSHTransport(host="127.0.0.1", port=node.port, user="root",
                                 key_file=str(agent_key), known_hosts=str(node.known_hosts),
                                 **kw)
        made.append(transport)
        return transport

    yield factory
    for transport in made:
        transport.close()


class FakeCinderDB:
    """The one DB call Cinder's iSCSI target helpers make (CHAP of an existing export)."""

    def __init__(self):
        self.volumes: dict = {}

    def volume_get(self, context, volume_id):
        from cinder import exception
        if volume_id not in self.volumes:
            raise exception.VolumeNotFound(volume_id=volume_id)
        return self.volumes[volume_id]


def build_driver(node, agent_key, root: str, catalog_url: str, section: str | None = None,
                 **overrides):
    """A ZFSOCFS2Driver in ssh mode against the node, set up and checked as the manager does.

    `section`: its cinder.conf section (the catalog's scope is named after it: a CLI that
    should see this driver's rows names the same section); a fresh one by default."""
    from cinder import context as cinder_context
    from cinder import objects
    from cinder.volume import configuration
    from cinder.volume import driver as cinder_driver
    from oslo_config import cfg

    from cinder_zfs_ocfs2 import driver as zfs_driver
    from cinder_zfs_ocfs2 import options

    objects.register_all()
    group = section or f"zfs_ft_{uuid.uuid4().hex[:8]}"
    conf = configuration.Configuration(cinder_driver.volume_opts, config_group=group)
    conf.append_config_values(cinder_driver.iser_opts)
    conf.append_config_values(options.ALL_OPTS)
    settings = dict(zfs_root_dataset=root, zfs_agent_mode="ssh",
                    zfs_ssh_host="127.0.0.1", zfs_ssh_port=node.port,
                    zfs_ssh_private_key=str(agent_key),
                    zfs_ssh_known_hosts_file=str(node.known_hosts),
                    target_helper="lioadm", target_ip_address="127.0.0.1",
                    volume_backend_name="zfs-ft", zfs_catalog_connection=catalog_url)
    settings.update(overrides)
    for key, value in settings.items():
        cfg.CONF.set_override(key, value, group=group)
    drv = zfs_driver.ZFSOCFS2Driver(configuration=conf, host="ft@zfs-ft")
    drv.do_setup(cinder_context.get_admin_context())
    drv.target_driver.db = FakeCinderDB()
    drv.check_for_setup_error()
    return drv


@pytest.fixture
def make_driver(node, dataset, agent_key, tmp_path):
    """Build drivers rooted at <dataset>/cinder (or root=...); one catalog per test, shared by
    "restarted" drivers."""
    made = []

    def factory(**overrides):
        root = overrides.pop("root", f"{dataset}/cinder")
        drv = build_driver(node, agent_key, root, f"sqlite:///{tmp_path}/catalog.sqlite",
                           **overrides)
        made.append(drv)
        return drv

    yield factory
    for drv in made:
        drv.transport.close()


def volume_obj(project_id="proj-a", size=1, extra_specs=None, **kw):
    """A Cinder Volume object as the manager hands it over (no DB behind it).

    Built directly: importing cinder.tests would monkey-patch eventlet under the SSH threads.
    """
    from cinder import context as cinder_context
    from cinder import objects

    ctx = cinder_context.get_admin_context()
    kw.setdefault("id", str(uuid.uuid4()))
    kw.setdefault("multiattach", False)
    if extra_specs is not None:
        vtype = objects.VolumeType(context=ctx, id=str(uuid.uuid4()), name="ft-type",
                                   extra_specs=extra_specs)
        kw.update(volume_type_id=vtype.id, volume_type=vtype)
    else:
        kw["volume_type_id"] = None
    return objects.Volume(context=ctx, _name_id=None, project_id=project_id, size=size,
                          volume_attachment=objects.VolumeAttachmentList(objects=[]), **kw)


def snapshot_obj(volume, **kw):
    from cinder import context as cinder_context
    from cinder import objects

    kw.setdefault("id", str(uuid.uuid4()))
    return objects.Snapshot(context=cinder_context.get_admin_context(), volume=volume,
                            volume_id=volume.id, project_id=volume.project_id,
                            volume_size=volume.size, **kw)


# -- iSCSI from the guest's own initiator (the only one that reaches the node's targets) --

def guest_initiator(node) -> str:
    out = node.run("cat /etc/iscsi/initiatorname.iscsi").stdout
    return next(line.split("=", 1)[1].strip() for line in out.splitlines()
                if line.startswith("InitiatorName="))


def iscsi_login(node, data) -> str:
    iqn, portal = data["target_iqn"], data["target_portal"]
    node.run(f"iscsiadm -m discovery -t sendtargets -p {portal} >/dev/null")
    base = f"iscsiadm -m node -T {iqn} -p {portal}"
    node.run(f"{base} --op update -n node.session.auth.authmethod -v CHAP && "
             f"{base} --op update -n node.session.auth.username -v {data['auth_username']} && "
             f"{base} --op update -n node.session.auth.password -v {data['auth_password']} && "
             f"{base} --login")
    path = f"/dev/disk/by-path/ip-{portal}-iscsi-{iqn}-lun-{data.get('target_lun', 0)}"
    node.run(f"udevadm settle; for i in $(seq 50); do [ -b {path} ] && break; sleep 0.2; done; "
             f"[ -b {path} ]")
    return path


def iscsi_logout(node, data) -> None:
    """Log out of the target. The caller has unmounted what it mounted on it (see GuestMount)."""
    node.run(f"iscsiadm -m node -T {data['target_iqn']} -p {data['target_portal']} --logout; "
             f"iscsiadm -m node -T {data['target_iqn']} -p {data['target_portal']} -o delete",
             check=False)


def attach(drv, node, volume):
    export = drv.create_export(None, volume, {})
    volume.provider_location = export["provider_location"]
    volume.provider_auth = export["provider_auth"]
    connector = {"initiator": guest_initiator(node), "ip": "127.0.0.1", "host": "node",
                 "multipath": False}
    info = drv.initialize_connection(volume, connector)
    assert info["driver_volume_type"] == "iscsi"
    assert info["data"]["auth_method"] == "CHAP"
    return info["data"], connector


class BackgroundJob:
    """A shell script running in the background on the node, in a session of its own.

    setsid makes the shell a process-group leader, so stop() ends its children too (a `head` or
    `dd` still writing), and waits until none is left: nothing it started outlives the test."""

    def __init__(self, node, script: str):
        self.node = node
        self.pidfile = f"/run/ft-job-{secrets.token_hex(4)}.pid"
        node.run(f"setsid sh -c {shlex.quote(script)} </dev/null >/dev/null 2>&1 & "
                 f"echo $! > {self.pidfile}")

    def _until_gone(self, seconds: float) -> str:
        return (f"for i in $(seq {int(seconds * 10)}); do kill -0 -$p 2>/dev/null || break; "
                "sleep 0.1; done")

    def wait(self, timeout: float = 120) -> None:
        """Wait for the script to end by itself (raises if it is still running after timeout)."""
        self.node.run(f"p=$(cat {self.pidfile}) || exit 0; {self._until_gone(timeout)}; "
                      f"! kill -0 -$p 2>/dev/null && rm -f {self.pidfile}",
                      timeout=timeout + 60)

    def stop(self) -> None:
        self.node.run(f"p=$(cat {self.pidfile}) || exit 0; kill -TERM -$p 2>/dev/null; "
                      f"{self._until_gone(10)}; kill -KILL -$p 2>/dev/null; "
                      f"{self._until_gone(10)}; rm -f {self.pidfile}; ! kill -0 -$p 2>/dev/null")

    def __enter__(self) -> BackgroundJob:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class GuestMount:
    """An exported volume, logged in from the guest's initiator and mounted there (the guest
    plays the compute host). Use it as a context manager, or call close() in a finally.

    close() undoes it in the only safe order: stop the writers this mount started and wait for
    them, sync, unmount and CHECK the unmount, and only then log out. OCFS2 mounts with
    errors=panic by default, so a logout under a mounted OCFS2 panics the node's kernel (and, with
    -no-reboot, the VM is gone); the mount uses errors=remount-ro as a second line of defence. If
    the unmount cannot be done, close() raises and leaves the session logged in: a leaked session
    is a test failure, a panic is every later test's failure.
    """

    UNMOUNT_SECONDS = 60

    def __init__(self, node, drv, volume, mountpoint: str, fstype: str = "ocfs2"):
        self.node, self.drv, self.volume, self.mountpoint = node, drv, volume, mountpoint
        self.writers: list[BackgroundJob] = []
        self.disk: str | None = None
        self.mounted = False
        self.data, self.connector = attach(drv, node, volume)
        try:
            self.disk = iscsi_login(node, self.data)
            node.run(f"mkdir -p {shlex.quote(mountpoint)} && mount -t {fstype} "
                     f"-o errors=remount-ro {self.disk} {shlex.quote(mountpoint)}")
            self.mounted = True
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> GuestMount:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start_writer(self, script: str) -> BackgroundJob:
        """Run `script` (sh) in the background; close() stops it before it unmounts."""
        job = BackgroundJob(self.node, script)
        self.writers.append(job)
        return job

    def stop_writers(self) -> None:
        while self.writers:
            self.writers.pop().stop()

    def unmount(self) -> None:
        mp = shlex.quote(self.mountpoint)
        tries = self.UNMOUNT_SECONDS * 2
        self.node.run(
            f"sync; for i in $(seq {tries}); do mountpoint -q {mp} || break; "
            f"umount {mp} 2>/dev/null && break; "
            f"[ $i = {tries // 2} ] && command -v fuser >/dev/null && fuser -km {mp}; "
            f"sleep 0.5; done; "
            f"if mountpoint -q {mp}; then echo 'still mounted, busy:' >&2; "
            f"(command -v fuser >/dev/null && fuser -vm {mp}) >&2; exit 1; fi; "
            f"rmdir {mp} 2>/dev/null; true")
        self.mounted = False

    def close(self) -> None:
        self.stop_writers()
        if self.mounted:
            self.unmount()   # raises, and we stay logged in, rather than panic the node
        if self.disk is not None:
            iscsi_logout(self.node, self.data)
            self.disk = None
        if self.connector is not None:
            self.drv.terminate_connection(self.volume, self.connector)
            self.drv.remove_export(None, self.volume)
            self.connector = None
