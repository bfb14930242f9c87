"""cinder-zfs-backend-conf: the one source of the backend section of cinder.conf.

Every key it can write must be an option the driver or Cinder registers (a renamed option
fails here), and the Cinder options it mirrors must agree with Cinder's own registration.
"""

from __future__ import annotations

import configparser
import pathlib
import subprocess
import sys

import pytest

from cinder_zfs_ocfs2 import options
from cinder_zfs_ocfs2.cmd import backend_conf
from cinder_zfs_ocfs2.cmd.backend_conf import InvalidSettings, backend_section

ROOT = pathlib.Path(__file__).resolve().parents[2]

EVERYTHING = dict(
    backend_name="zfs", root_dataset="tank/cinder", agent_mode="ssh", ssh_host="192.0.2.20",
    ssh_port=2222, ssh_user="root", ssh_key="/etc/cinder/zfs_agent_key",
    ssh_known_hosts="/etc/cinder/zfs_agent_known_hosts", sparse_volumes=True,
    volblocksize="16K", compression="lz4", clone_mode="linked", max_clone_depth=5,
    snapshot_batch_window_ms=50, catalog_connection="sqlite:////var/lib/cinder/cat.sqlite",
    ocfs2_slots=8, ocfs2_cluster_stack="o2cb", target_helper="lioadm", target_protocol="iscsi",
    target_ip_address="192.0.2.20", target_port=3260, target_prefix="iqn.2010-10.org.openstack:",
    extra={"zfs_catalog_reconcile_interval": 300, "reserved_percentage": 5})


def cinder_registered_options() -> dict:
    """Every option Cinder registers for a backend section (volume driver and manager)."""
    from cinder import objects

    objects.register_all()
    from cinder.volume import driver, manager

    opts = {}
    for name in ("volume_opts", "iser_opts", "nvmeof_opts", "nvmet_opts", "scst_opts",
                 "backup_opts", "image_opts", "fqdn_opts"):
        opts.update({opt.dest: opt for opt in getattr(driver, name)})
    opts.update({opt.dest: opt for opt in manager.volume_backend_opts})
    return opts


def test_every_key_is_an_option_of_the_driver_or_cinder():
    driver_opts = {opt.dest for opt in options.ALL_OPTS}
    cinder_opts = cinder_registered_options()
    pairs = backend_section(**EVERYTHING)
    keys = [key for key, _ in pairs]
    assert len(keys) == len(set(keys))
    assert set(backend_conf.SETTINGS.values()) <= {key for key, _ in pairs}
    for key in keys:
        assert key in driver_opts or key in cinder_opts, f"{key} is not a registered option"


def test_cinder_options_mirror_cinder_and_are_read_by_the_driver():
    from cinder_zfs_ocfs2.driver import ZFSOCFS2Driver

    cinder_opts = cinder_registered_options()
    read_by_driver = {opt.dest for opt in ZFSOCFS2Driver.get_driver_options()} | {
        "volume_driver"}
    for key, mirror in backend_conf.CINDER_OPTIONS.items():
        real = cinder_opts.get(key)
        assert real is not None, f"Cinder registers no option {key}"
        assert key in read_by_driver, f"the driver does not read {key}"
        assert type(mirror.type) is type(real.type), key
        mirror_choices = getattr(mirror.type, "choices", None)
        if mirror_choices:
            assert set(mirror_choices) <= set(real.type.choices), key
    assert not set(backend_conf.CINDER_OPTIONS) & set(backend_conf.DRIVER_OPTIONS)


def test_volume_driver_is_the_driver_class():
    from cinder_zfs_ocfs2.driver import ZFSOCFS2Driver

    module, _, name = backend_conf.VOLUME_DRIVER.rpartition(".")
    assert f"{ZFSOCFS2Driver.__module__}.{ZFSOCFS2Driver.__name__}" == backend_conf.VOLUME_DRIVER
    assert module and name


def test_minimal_section_in_order_with_unset_settings_left_out():
    pairs = backend_section(backend_name="zfs", root_dataset="tank/cinder", agent_mode="local",
                            target_ip_address="", catalog_connection=None)
    assert pairs == [
        ("volume_driver", "cinder_zfs_ocfs2.driver.ZFSOCFS2Driver"),
        ("volume_backend_name", "zfs"),
        ("zfs_root_dataset", "tank/cinder"),
        ("zfs_agent_mode", "local"),
        ("target_helper", "lioadm"),
        ("target_protocol", "iscsi"),
    ]


def test_values_are_parsed_with_the_option_types():
    pairs = dict(backend_section(**{**EVERYTHING, "sparse_volumes": "False",
                                    "ssh_port": "2222", "max_clone_depth": "0"}))
    assert pairs["zfs_sparse_volumes"] == "false"
    assert pairs["zfs_ssh_port"] == "2222"
    assert pairs["zfs_max_clone_depth"] == "0"
    assert pairs["zfs_catalog_reconcile_interval"] == "300"
    assert pairs["reserved_percentage"] == "5"


@pytest.mark.parametrize("change, message", [
    ({"agent_mode": "nfs"}, "zfs_agent_mode"),
    ({"ssh_port": 70000}, "zfs_ssh_port"),
    ({"clone_mode": "deep"}, "zfs_clone_mode"),
    ({"max_clone_depth": -1}, "zfs_max_clone_depth"),
    ({"ocfs2_cluster_stack": "pcmk"}, "ocfs2_default_cluster_stack"),
    ({"target_helper": "nvmet"}, "target_helper"),
    ({"target_helper": "tgtadm"}, "agent_mode=ssh"),
    ({"target_helper": None}, "set target_helper=lioadm"),
    ({"root_dataset": ""}, "root_dataset is required"),
    ({"extra": {"zfs_clone_mod": "linked"}}, "zfs_clone_mod is not an option"),
    ({"extra": {"zfs_root_dataset": "tank/other"}}, "set it once"),
    ({"extra": {"volume_clear": "zero"}}, "volume_clear is not an option"),
    ({"catalog_connection": "sqlite://\nx"}, "cannot span lines"),
])
def test_invalid_settings_are_refused(change, message):
    with pytest.raises(InvalidSettings, match=message):
        backend_section(**{**EVERYTHING, **change})


def test_ssh_settings_are_refused_in_local_mode():
    with pytest.raises(InvalidSettings, match="ssh_host, ssh_port: only meaningful"):
        backend_section(backend_name="zfs", root_dataset="tank/cinder", agent_mode="local",
                        ssh_host="192.0.2.1", ssh_port=22)
    with pytest.raises(InvalidSettings, match="zfs_ssh_user: only meaningful"):
        backend_section(backend_name="zfs", root_dataset="tank/cinder", agent_mode="local",
                        extra={"zfs_ssh_user": "root"})


def test_unknown_setting_is_a_type_error():
    with pytest.raises(TypeError):
        backend_section(backend_name="zfs", root_dataset="t/c", agent_mode="local", pool="t")


def test_render_ini_reads_back_as_the_same_pairs():
    pairs = backend_section(**EVERYTHING)
    parser = configparser.RawConfigParser()
    parser.optionxform = str
    parser.read_string(backend_conf.render_ini("zfs", pairs))
    assert list(parser["zfs"].items()) == pairs


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cinder_zfs_ocfs2.cmd.backend_conf", *args],
                          capture_output=True, text=True, cwd=ROOT)


def test_cli_prints_key_value_lines():
    done = run_cli("--backend-name", "zfs", "--root-dataset", "tank/cinder", "--agent-mode",
                   "local", "--target-ip-address", "192.0.2.10", "--catalog-connection", "",
                   "--set", "zfs_volblocksize=64K")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{key}={value}" for key, value in backend_section(
            backend_name="zfs", root_dataset="tank/cinder", agent_mode="local",
            target_ip_address="192.0.2.10", extra={"zfs_volblocksize": "64K"})]


def test_cli_ini_format():
    done = run_cli("--backend-name", "zfs-a", "--root-dataset", "tank/a", "--agent-mode", "ssh",
                   "--ssh-host", "192.0.2.20", "--format", "ini")
    assert done.returncode == 0, done.stderr
    assert done.stdout == backend_conf.render_ini("zfs-a", backend_section(
        backend_name="zfs-a", root_dataset="tank/a", agent_mode="ssh", ssh_host="192.0.2.20"))


@pytest.mark.parametrize("args, message", [
    (["--agent-mode", "local", "--set", "zfs_nonsense=1"], "zfs_nonsense is not an option"),
    (["--agent-mode", "local", "--set", "novalue"], "--set wants KEY=VALUE"),
    (["--agent-mode", "ssh", "--ssh-port", "0x"], "zfs_ssh_port"),
])
def test_cli_refuses_with_exit_code_2(args, message):
    done = run_cli("--backend-name", "zfs", "--root-dataset", "tank/cinder", *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stdout == ""


def test_console_script_is_declared():
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    scripts = dict(line.split(" = ", 1) for line in
                   setup["options.entry_points"]["console_scripts"].strip().splitlines())
    assert scripts["cinder-zfs-backend-conf"] == "cinder_zfs_ocfs2.cmd.backend_conf:main"
