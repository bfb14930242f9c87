"""devstack/plugin.sh run through DevStack's phases against a fake DevStack that records.

tests/devstack/fake-devstack-functions.sh provides DevStack's function names (iniset, iniget,
pip_install, setup_develop, install_package, is_service_enabled, sudo, openstack...) and the
order stack.sh / unstack.sh / clean.sh call a Cinder backend plugin in. cinder.conf and
tempest.conf are real files written with DevStack's iniset semantics; the backend section is
compared key by key with backend_section(), so a renamed option breaks this test.
No root, no network: every package install, zpool/zfs and openstack call is only recorded.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from cinder_zfs_ocfs2.cmd.backend_conf import backend_section

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLUGIN_DIR = ROOT / "devstack"
FAKE = pathlib.Path(__file__).with_name("fake-devstack-functions.sh")
HOST_IP = "192.0.2.10"

# [volume-feature-enabled] options Tempest registers (tempest/config.py) and those
# cinder-tempest-plugin adds (cinder_tempest_plugin/config.py): the plugin may set no other.
TEMPEST_VOLUME_FEATURES = {
    "multi_backend", "backup", "snapshot", "clone", "manage_snapshot", "manage_volume",
    "replication", "api_extensions", "extend_attached_volume",
    "extend_attached_encrypted_volume", "extend_volume_with_snapshot",
    "volume_types_for_data_volume", "enable_volume_image_dep_tests",
    "consistency_group", "volume_revert", "volume_image_dep_tests", "concurrency_tests"}

SUPPORTED = {
    "snapshot": "True", "clone": "True", "extend_volume_with_snapshot": "True",
    "extend_attached_volume": "True", "manage_volume": "True", "manage_snapshot": "True",
    "volume_revert": "True", "consistency_group": "True"}


def read_ini(path: pathlib.Path) -> dict[str, list[tuple[str, str]]]:
    """Sections of an ini file as ordered (key, value) lists ([DEFAULT] is just a section)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        if line.startswith("["):
            current = sections.setdefault(line.strip()[1:-1], [])
        elif "=" in line and current is not None:
            key, _, value = line.partition("=")
            current.append((key.strip(), value.strip()))
    return sections


@dataclasses.dataclass
class Run:
    returncode: int
    output: str
    calls: list[tuple[str, list[str]]]  # (phase or hook it ran in, argv)
    tmp: pathlib.Path

    @property
    def cinder(self):
        return read_ini(self.tmp / "etc" / "cinder" / "cinder.conf")

    @property
    def tempest(self):
        return read_ini(self.tmp / "tempest.conf")

    def types(self) -> dict[str, dict[str, str]]:
        return {p.name: dict(line.split("=", 1) for line in p.read_text().splitlines())
                for p in (self.tmp / "state" / "types").iterdir()}

    def argv(self, tool: str, phase: str | None = None) -> list[list[str]]:
        return [argv[1:] for where, argv in self.calls
                if argv[0] == tool and (phase is None or where == phase)]

    def sudo(self, *prefix: str, phase: str | None = None) -> list[list[str]]:
        return [a for a in self.argv("sudo", phase) if a[:len(prefix)] == list(prefix)]

    def installed(self) -> list[str]:
        return [p for argv in self.argv("install_package") for p in argv]


class FakeDevStack:
    def __init__(self, tmp: pathlib.Path):
        self.tmp = tmp
        bin_dir = tmp / "bin"
        for d in (bin_dir, tmp / "etc" / "cinder" / "rootwrap.d", tmp / "data", tmp / "state"):
            d.mkdir(parents=True, exist_ok=True)
        # Cinder's environment: the package's console script, as setup_develop would install it.
        script = bin_dir / "cinder-zfs-backend-conf"
        script.write_text(f"#!/bin/sh\nexec {sys.executable} -m "
                          "cinder_zfs_ocfs2.cmd.backend_conf \"$@\"\n")
        script.chmod(0o755)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp),
            "LANG": "C.UTF-8", "PYTHONPATH": str(ROOT),
            "FAKE_STATE": str(tmp / "state"), "FAKE_PYTHON": sys.executable,
            "PLUGIN_DIR": str(PLUGIN_DIR),
            "DEST": str(tmp), "DATA_DIR": str(tmp / "data"),
            "CINDER_CONF_DIR": str(tmp / "etc" / "cinder"),
            "CINDER_CONF": str(tmp / "etc" / "cinder" / "cinder.conf"),
            "TEMPEST_CONFIG": str(tmp / "tempest.conf"), "CINDER_BIN_DIR": str(bin_dir),
            "HOST_IP": HOST_IP, "SERVICE_HOST": HOST_IP, "REGION_NAME": "RegionOne",
            "ENABLED_SERVICES": "key,g-api,n-api,n-cpu,c-api,c-sch,c-vol,tempest",
            "os_PACKAGE": "deb", "os_VENDOR": "Debian", "os_CODENAME": "bookworm",
            "VIRT_DRIVER": "libvirt", "USE_VENV": "False", "STACK_USER": "stack",
            "VOLUME_BACKING_FILE_SIZE": "24G",
        }

    def run(self, script: str, setup: str = "", **env: str) -> Run:
        log = self.tmp / "state" / "calls.log"
        log.unlink(missing_ok=True)
        done = subprocess.run(
            ["bash", "-c", f'source "$1"\n{setup}\n{script}', "fake-devstack", str(FAKE)],
            env={**self.env, **env}, capture_output=True, text=True, timeout=120, cwd=self.tmp)
        calls, where = [], None
        for line in (log.read_text().splitlines() if log.exists() else []):
            argv = line.split("\t")
            if argv[0] == "phase":  # "stack install", "unstack"...
                where = " ".join(argv[1:])
            elif argv[0] == "hook":  # "hook init_cinder_backend zfs"...
                where = " ".join(argv)
            else:
                calls.append((where, argv))
        return Run(done.returncode, done.stdout + done.stderr, calls, self.tmp)

    def stack(self, setup: str = "", **env: str) -> Run:
        run = self.run("fake_stack", setup, **env)
        assert run.returncode == 0, run.output
        assert not run.argv("die"), run.output
        return run


@pytest.fixture
def devstack(tmp_path):
    return FakeDevStack(tmp_path)


def expected_tempest(backup="False"):
    return {**SUPPORTED, "backup": backup}


def test_shellcheck_clean():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is not installed: apt-get install -y shellcheck")
    done = subprocess.run(
        [shellcheck, "-s", "bash", "devstack/plugin.sh", "devstack/settings",
         "devstack/override-defaults", "tests/devstack/fake-devstack-functions.sh"],
        cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_default_stack_local_mode_file_backed_pool(devstack):
    run = devstack.stack()
    data = devstack.tmp / "data"

    # cinder.conf: the backend section is exactly what backend_section() gives for the settings.
    assert run.cinder["zfs"] == backend_section(
        backend_name="zfs", root_dataset="stack-zfs/cinder", agent_mode="local",
        target_helper="lioadm", target_protocol="iscsi", target_ip_address=HOST_IP,
        target_port=3260)
    default = dict(run.cinder["DEFAULT"])
    assert default["enabled_backends"] == "zfs"
    assert default["default_volume_type"] == "zfs"

    # stack install: OpenZFS from contrib (Debian), the driver into Cinder's environment.
    assert run.argv("apt-cache", "stack install") == [["show", "zfsutils-linux"]]
    assert run.sudo("tee", "/etc/apt/sources.list.d/cinder-zfs-contrib.list") == [[
        "tee", "/etc/apt/sources.list.d/cinder-zfs-contrib.list",
        "stdin=deb http://deb.debian.org/debian bookworm contrib"]]
    assert set(run.argv("install_package", "stack install")[0]) >= {
        "zfsutils-linux", "zfs-dkms", "python3-pyzfs", "ocfs2-tools", "targetcli-fb"}
    assert run.sudo("modprobe", "zfs", phase="stack install")
    assert run.argv("setup_develop", "stack install") == [[str(ROOT)]]
    assert run.argv("pip_install", "stack install") == [["PIP_VIRTUAL_ENV=", "-e", str(ROOT)]]
    assert not run.sudo("cp")  # no agent copy in local mode

    # init_cinder: a sparse backing file of the configured size becomes the pool.
    assert run.argv("truncate", "hook init_cinder_backend zfs") == [
        ["-s", "24G", str(data / "stack-zfs.img")]]
    assert run.sudo("zpool", "create", phase="hook init_cinder_backend zfs") == [
        ["zpool", "create", "-f", "-m", "none", "-o", "ashift=12", "stack-zfs",
         str(data / "stack-zfs.img")]]
    assert run.sudo("zfs", "create", phase="hook init_cinder_backend zfs") == [
        ["zfs", "create", "-p", "-o", "mountpoint=none", "stack-zfs/cinder"]]

    # post-config: the rootwrap filters of local mode, from the repository.
    filters = ROOT / "etc" / "rootwrap.d" / "zfs-ocfs2.filters"
    assert filters.is_file()
    assert run.sudo("install", phase="stack post-config") == [
        ["install", "-o", "root", "-g", "root", "-m", "644", str(filters),
         str(devstack.tmp / "etc" / "cinder" / "rootwrap.d" / "zfs-ocfs2.filters")]]

    # extra: the backend's type and the OCFS2 type.
    assert run.types() == {
        "zfs": {"volume_backend_name": "zfs"},
        "zfs-ocfs2": {"volume_backend_name": "zfs", "ocfs2:format": "true", "ocfs2:slots": "8",
                      "ocfs2:cluster_stack": "o2cb", "multiattach": "<is> True"}}

    # test-config: what the driver supports, key by key.
    from cinder_zfs_ocfs2.driver import ZFSOCFS2Driver

    features = dict(run.tempest["volume-feature-enabled"])
    assert set(features) <= TEMPEST_VOLUME_FEATURES
    assert features == expected_tempest()
    assert dict(run.tempest["volume"]) == {
        "manage_volume_ref": "source-name,volume-%s",
        "manage_snapshot_ref": "source-name,snapshot-%s",
        "storage_protocol": "iSCSI",
        "vendor_name": ZFSOCFS2Driver.VENDOR,
        "volume_type_multiattach": "zfs-ocfs2"}
    assert dict(run.tempest["compute-feature-enabled"]) == {"volume_multiattach": "True"}


def test_ssh_mode_agent_on_this_host(devstack):
    tmp = devstack.tmp
    key = tmp / "etc" / "cinder" / "zfs_agent_key"
    known_hosts = tmp / "etc" / "cinder" / "zfs_agent_known_hosts"
    run = devstack.stack(CINDER_ZFS_AGENT_MODE="ssh", CINDER_ZFS_SSH_PORT="2222",
                         os_VENDOR="Ubuntu", os_CODENAME="noble")

    assert run.cinder["zfs"] == backend_section(
        backend_name="zfs", root_dataset="stack-zfs/cinder", agent_mode="ssh",
        ssh_host="127.0.0.1", ssh_port=2222, ssh_user="root", ssh_key=str(key),
        ssh_known_hosts=str(known_hosts), target_helper="lioadm", target_protocol="iscsi",
        target_ip_address=HOST_IP, target_port=3260)

    # Ubuntu: OpenZFS from the archive (kernel module included); sshd and rtslib for the agent.
    packages = run.installed()
    assert {"zfsutils-linux", "python3-pyzfs", "openssh-server", "python3-rtslib-fb"} <= set(
        packages)
    assert "zfs-dkms" not in packages
    assert not run.argv("apt-cache")
    # The agent: a root-owned copy of the package, run by the key's forced command.
    assert run.sudo("cp", phase="stack install") == [
        ["cp", "-r", str(ROOT / "cinder_zfs_ocfs2"), "/opt/cinder-zfs-agent/"]]
    assert run.argv("ssh-keygen", "stack post-config") == [
        ["-q", "-t", "ed25519", "-N", "", "-C", "cinder-zfs-ocfs2-devstack", "-f", str(key)]]
    [tee] = run.sudo("tee", "-a", phase="stack post-config")
    assert tee[2].endswith("/.ssh/authorized_keys")
    assert tee[3] == (
        'stdin=restrict,command="cd /opt/cinder-zfs-agent && exec /usr/bin/python3 -m '
        'cinder_zfs_ocfs2.agent --root stack-zfs/cinder" '
        "ssh-ed25519 AAAAC3NzaFAKE cinder-zfs-ocfs2-devstack")
    assert run.argv("ssh-keyscan") == [["-p", "2222", "-t", "ed25519", "127.0.0.1"]]
    assert known_hosts.read_text().startswith("[127.0.0.1]:2222 ssh-ed25519 ")
    assert not run.sudo("install", "-o", "root", "-g", "root", "-m", "644")  # no rootwrap
    assert run.sudo("zpool", "create")


def test_remote_storage_node(devstack):
    run = devstack.stack(CINDER_ZFS_AGENT_MODE="ssh", CINDER_ZFS_SSH_HOST="198.51.100.7",
                         CINDER_ZFS_POOL="tank", CINDER_ZFS_INSTALL_ZFS="False")
    section = dict(run.cinder["zfs"])
    assert section["zfs_ssh_host"] == "198.51.100.7"
    assert section["target_ip_address"] == "198.51.100.7"
    assert section["zfs_root_dataset"] == "tank/cinder"
    # Nothing of the node is done here: no ZFS, no pool, no agent, no modprobe.
    assert not run.sudo("zpool") and not run.sudo("zfs") and not run.sudo("modprobe")
    assert not run.sudo("cp") and not run.argv("ssh-keyscan")
    assert "zfsutils-linux" not in run.installed()
    assert run.argv("ssh-keygen")  # the key to authorize on the node
    assert "authorize" in run.output and run.argv("warn")  # no known_hosts yet


def test_named_pool_is_used_not_created(devstack):
    (devstack.tmp / "state" / "pools").mkdir(parents=True)
    (devstack.tmp / "state" / "pools" / "tank").touch()
    run = devstack.stack(CINDER_ZFS_POOL="tank", CINDER_ZFS_ROOT_DATASET="tank/os/cinder")
    assert dict(run.cinder["zfs"])["zfs_root_dataset"] == "tank/os/cinder"
    assert not run.sudo("zpool", "create") and not run.argv("truncate")
    assert run.sudo("zfs", "create") == [
        ["zfs", "create", "-p", "-o", "mountpoint=none", "tank/os/cinder"]]

    clean = devstack.run("fake_clean", CINDER_ZFS_POOL="tank",
                         CINDER_ZFS_ROOT_DATASET="tank/os/cinder")
    assert clean.sudo("zfs", "destroy") == [["zfs", "destroy", "-r", "tank/os/cinder"]]
    assert not clean.sudo("zpool", "destroy")  # never a pool the plugin did not make


def test_named_pool_missing_stops_stack(devstack):
    run = devstack.run("fake_stack", CINDER_ZFS_POOL="tank")
    assert run.returncode != 0
    assert "CINDER_ZFS_POOL=tank is not an imported pool" in run.output


def test_with_other_backends_and_backup(devstack):
    run = devstack.stack(CINDER_ENABLED_BACKENDS="lvm:lvmdriver-1",
                         ENABLED_SERVICES="key,c-api,c-sch,c-vol,c-bak,tempest")
    default = dict(run.cinder["DEFAULT"])
    assert default["enabled_backends"] == "lvmdriver-1,zfs"
    assert default["default_volume_type"] == "lvmdriver-1"
    assert run.cinder["zfs"][0] == ("volume_driver", "cinder_zfs_ocfs2.driver.ZFSOCFS2Driver")
    assert dict(run.tempest["volume-feature-enabled"]) == expected_tempest(backup="True")
    assert "vendor_name" not in dict(run.tempest["volume"])  # not the only backend


def test_extra_options_and_their_validation(devstack):
    run = devstack.stack(CINDER_ZFS_EXTRA_OPTS="zfs_volblocksize=64K zfs_compression=zstd",
                         CINDER_ZFS_CATALOG_CONNECTION="mysql+pymysql://c:p@127.0.0.1/zcat",
                         CINDER_ZFS_TARGET_IP="203.0.113.5")
    section = run.cinder["zfs"]
    assert section == backend_section(
        backend_name="zfs", root_dataset="stack-zfs/cinder", agent_mode="local",
        target_helper="lioadm", target_protocol="iscsi", target_ip_address="203.0.113.5",
        target_port=3260, catalog_connection="mysql+pymysql://c:p@127.0.0.1/zcat",
        extra={"zfs_volblocksize": "64K", "zfs_compression": "zstd"})

    bad = devstack.run("fake_stack", CINDER_ZFS_EXTRA_OPTS="zfs_volblocksise=64K")
    assert bad.returncode != 0
    assert "zfs_volblocksise is not an option" in bad.output
    assert not (devstack.tmp / "etc" / "cinder" / "cinder.conf").read_text().count("[zfs]")


def test_project_venv_gets_the_driver(devstack):
    run = devstack.stack(
        setup='declare -A PROJECT_VENV=([cinder]=/opt/stack/cinder.venv)', USE_VENV="True")
    assert run.argv("pip_install") == [
        ["PIP_VIRTUAL_ENV=/opt/stack/cinder.venv", "-e", str(ROOT)]]


def test_no_ocfs2_type_and_devstack_multiattach(devstack):
    run = devstack.stack(CINDER_ZFS_OCFS2_VOLUME_TYPE="", ENABLE_VOLUME_MULTIATTACH="True")
    assert set(run.types()) == {"zfs"}
    assert "volume_type_multiattach" not in dict(run.tempest["volume"])


def test_unstack_then_clean(devstack):
    devstack.stack()
    data = devstack.tmp / "data"
    assert (data / "stack-zfs.img").exists()

    unstack = devstack.run("fake_unstack")
    assert unstack.returncode == 0, unstack.output
    # After DevStack stopped cinder: the volumes go, the pool stays.
    assert unstack.sudo("zfs", "destroy", phase="hook cleanup_cinder_backend zfs") == [
        ["zfs", "destroy", "-r", "stack-zfs/cinder"]]
    assert not unstack.sudo("zpool", "destroy")
    assert (data / "stack-zfs.img").exists()

    clean = devstack.run("fake_clean")
    assert clean.returncode == 0, clean.output
    assert clean.sudo("zpool", "destroy", phase="clean") == [
        ["zpool", "destroy", "-f", "stack-zfs"]]
    assert not (data / "stack-zfs.img").exists()
    assert clean.sudo("rm", phase="clean") == [
        ["rm", "-f", str(devstack.tmp / "etc" / "cinder" / "rootwrap.d" / "zfs-ocfs2.filters")]]

    # The next stack.sh starts over with a new pool.
    again = devstack.stack()
    assert again.sudo("zpool", "create")


def test_unstack_keeps_volumes_when_asked(devstack):
    devstack.stack()
    unstack = devstack.run("fake_unstack", CINDER_ZFS_DESTROY_ON_UNSTACK="False")
    assert unstack.returncode == 0, unstack.output
    assert not unstack.sudo("zfs", "destroy")


def test_earlier_pool_is_imported_again(devstack):
    (devstack.tmp / "data" / "stack-zfs.img").touch()
    run = devstack.stack(FAKE_IMPORTABLE_POOLS="stack-zfs")
    assert run.sudo("zpool", "import") == [
        ["zpool", "import", "-d", str(devstack.tmp / "data" / "stack-zfs.img"), "stack-zfs"]]
    assert not run.sudo("zpool", "create") and not run.argv("truncate")


def test_ssh_clean_removes_agent_and_key(devstack):
    env = {"CINDER_ZFS_AGENT_MODE": "ssh"}
    devstack.stack(**env)
    key = devstack.tmp / "etc" / "cinder" / "zfs_agent_key"
    assert key.exists()
    clean = devstack.run("fake_clean", **env)
    assert clean.returncode == 0, clean.output
    assert ["rm", "-rf", "/opt/cinder-zfs-agent"] in clean.sudo("rm", phase="clean")
    [sed] = clean.sudo("sed", phase="clean")
    assert sed[2] == "/ cinder-zfs-ocfs2-devstack$/d"
    assert not key.exists()


def test_tgtadm_follows_devstack_in_local_mode(devstack):
    run = devstack.stack(CINDER_TARGET_HELPER="tgtadm")
    assert dict(run.cinder["zfs"])["target_helper"] == "tgtadm"
    assert "tgt" in run.installed() and "targetcli-fb" not in run.installed()
    # ssh mode exports with LIO on the node, whatever DevStack's helper
    ssh = devstack.stack(CINDER_TARGET_HELPER="tgtadm", CINDER_ZFS_AGENT_MODE="ssh")
    assert dict(ssh.cinder["zfs"])["target_helper"] == "lioadm"
