"""AgentLioAdm: Cinder's LioAdm, unchanged, with every cinder-rtstool call sent to the agent."""

from __future__ import annotations

import uuid
from unittest import mock

import pytest
from cinder import exception
from cinder.volume.targets import lio as cinder_lio
from cinder.volume.targets import tgt
from oslo_concurrency import processutils

from cinder_zfs_ocfs2 import export
from cinder_zfs_ocfs2.export.agent_lio import AgentLioAdm
from cinder_zfs_ocfs2.zfs import errors

PREFIX = "iqn.2010-10.org.openstack:"
INITIATOR = "iqn.1993-08.org.debian:01:abcdef0123"


class FakeTransport:
    """Records agent calls and keeps the node's target list; errors can be injected by op."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.targets: list[str] = []
        self.fail: dict[str, errors.ZFSError] = {}

    def call(self, op, **args):
        self.calls.append((op, args))
        if op in self.fail:
            raise self.fail[op]
        if op == "lio_create":
            self.targets.append(args["name"])
        elif op == "lio_delete":
            self.targets.remove(args["iqn"])
        elif op == "lio_targets":
            return list(self.targets)
        elif op == "lio_verify":
            return {"rtslib_fb": "2.1.75"}
        elif op == "lio_restore":
            return []
        return None

    def ops(self) -> list[str]:
        return [op for op, _ in self.calls]


class FakeConfiguration:
    target_prefix = PREFIX
    target_ip_address = "192.0.2.10"
    target_secondary_ip_addresses: list = []
    target_port = 3260
    target_protocol = "iscsi"
    target_helper = "lioadm"
    volumes_dir = "/var/lib/cinder/volumes"

    def __init__(self, **overrides):
        self.__dict__.update(overrides)

    def safe_get(self, key):
        return getattr(self, key, None)


class FakeDB:
    def __init__(self, provider_auth=None):
        self.provider_auth = provider_auth

    def volume_get(self, context, volume_id):
        return {"provider_auth": self.provider_auth}


class FakeVolume(dict):
    """What LioAdm reads of a volume: item access, .get, .volume_attachment."""

    volume_attachment: list = []

    def __init__(self, **kw):
        vid = str(uuid.uuid4())
        super().__init__(id=vid, name=f"volume-{vid}", provider_location=None,
                         provider_auth=None, **kw)


@pytest.fixture
def transport():
    return FakeTransport()


@pytest.fixture
def target(transport):
    helper = AgentLioAdm(configuration=FakeConfiguration(), executor=None, transport=transport)
    helper.db = FakeDB()
    transport.calls.clear()  # the construction-time verify is tested on its own
    return helper


def exported(target, transport, volume):
    data = target.create_export(None, volume, f"/dev/zvol/tank/cinder/p/{volume['name']}")
    volume["provider_location"], volume["provider_auth"] = data["location"], data["auth"]
    transport.calls.clear()
    return data


def test_construction_verifies_lio_on_the_node(transport):
    AgentLioAdm(configuration=FakeConfiguration(), executor=None, transport=transport)
    assert transport.calls == [("lio_verify", {})]
    transport.fail["lio_verify"] = errors.InvalidArgument("unknown operation 'lio_verify'")
    with pytest.raises(processutils.ProcessExecutionError, match="unknown operation"):
        AgentLioAdm(configuration=FakeConfiguration(), executor=None, transport=transport)


def test_is_cinders_lioadm(target):
    assert isinstance(target, cinder_lio.LioAdm)
    assert target.protocol == "iSCSI"


def test_create_export(target, transport):
    volume = FakeVolume()
    iqn = PREFIX + volume["name"]
    device = f"/dev/zvol/tank/cinder/p/{volume['name']}"
    data = target.create_export(None, volume, device)

    assert transport.ops() == ["lio_create", "lio_targets", "lio_save"]
    create = transport.calls[0][1]
    assert create == {"device": device, "name": iqn, "userid": create["userid"],
                      "password": create["password"], "iser": False,
                      "portals_ips": ["192.0.2.10"], "portals_port": 3260}
    # Cinder's own location and CHAP format, with the credentials the node got.
    assert data["location"] == f"192.0.2.10:3260,{iqn} {iqn} 0"
    assert data["auth"] == f"CHAP {create['userid']} {create['password']}"
    assert create["userid"] and create["password"]


def test_create_export_reuses_chap_from_the_db(target, transport):
    target.db = FakeDB("CHAP olduser oldsecret0123456")
    target.create_export(None, FakeVolume(), "/dev/zvol/tank/cinder/p/v")
    assert (transport.calls[0][1]["userid"], transport.calls[0][1]["password"]) == \
        ("olduser", "oldsecret0123456")


def test_create_export_iser_and_secondary_portals(transport):
    conf = FakeConfiguration(target_protocol="iser",
                             target_secondary_ip_addresses=["192.0.2.11", "2001:db8::1"],
                             target_port=3261)
    helper = AgentLioAdm(configuration=conf, executor=None, transport=transport)
    helper.db = FakeDB()
    volume = FakeVolume()
    data = helper.create_export(None, volume, "/dev/zvol/tank/cinder/p/v")
    create = transport.calls[1][1]
    assert create["iser"] is True and create["portals_port"] == 3261
    assert create["portals_ips"] == ["192.0.2.10", "192.0.2.11", "2001:db8::1"]
    assert data["location"].startswith("192.0.2.10:3261;192.0.2.11:3261;[2001:db8::1]:3261,")


def test_create_failure_is_cinders_create_failed(target, transport):
    transport.fail["lio_create"] = errors.NotFound("/dev/zvol/x does not exist")
    with pytest.raises(exception.ISCSITargetCreateFailed):
        target.create_export(None, FakeVolume(), "/dev/zvol/tank/cinder/p/v")
    assert transport.ops() == ["lio_create"]


def test_created_target_missing_from_the_list_is_not_found(target, transport):
    transport.call = lambda op, **a: [] if op == "lio_targets" else None
    with pytest.raises(exception.NotFound):
        target.create_export(None, FakeVolume(), "/dev/zvol/tank/cinder/p/v")


def test_save_failure_is_only_a_warning(target, transport):
    transport.fail["lio_save"] = errors.ZFSError("read-only /etc")
    target.create_export(None, FakeVolume(), "/dev/zvol/tank/cinder/p/v")
    assert transport.ops() == ["lio_create", "lio_targets", "lio_save"]


def test_initialize_connection(target, transport):
    volume = FakeVolume()
    exported(target, transport, volume)
    iqn = PREFIX + volume["name"]
    _, user, password = volume["provider_auth"].split()

    info = target.initialize_connection(volume, {"initiator": INITIATOR})

    assert transport.calls == [
        ("lio_add_initiator", {"iqn": iqn, "userid": user, "password": password,
                               "initiator_iqn": INITIATOR}),
        ("lio_save", {})]
    assert info["driver_volume_type"] == "iscsi"
    data = info["data"]
    assert (data["target_iqn"], data["target_portal"], data["target_lun"]) == \
        (iqn, "192.0.2.10:3260", 0)
    assert (data["auth_method"], data["auth_username"], data["auth_password"]) == \
        ("CHAP", user, password)
    assert data["volume_id"] == volume["id"] and data["target_discovered"] is False


def test_initialize_connection_failure(target, transport):
    volume = FakeVolume()
    exported(target, transport, volume)
    transport.fail["lio_add_initiator"] = errors.NotFound("no such target")
    with pytest.raises(exception.ISCSITargetAttachFailed):
        target.initialize_connection(volume, {"initiator": INITIATOR})


def test_terminate_connection(target, transport):
    volume = FakeVolume()
    exported(target, transport, volume)
    target.terminate_connection(volume, {"initiator": INITIATOR})
    assert transport.calls == [
        ("lio_delete_initiator", {"iqn": PREFIX + volume["name"], "initiator_iqn": INITIATOR}),
        ("lio_save", {})]
    transport.fail["lio_delete_initiator"] = errors.TransportError("session broke")
    with pytest.raises(exception.ISCSITargetDetachFailed):
        target.terminate_connection(volume, {"initiator": INITIATOR})


def test_terminate_connection_without_export_does_nothing(target, transport):
    target.terminate_connection(FakeVolume(), {"initiator": INITIATOR})
    assert transport.calls == []


def test_remove_export(target, transport):
    volume = FakeVolume()
    exported(target, transport, volume)
    target.remove_export(None, volume)
    assert transport.calls == [("lio_targets", {}),
                               ("lio_delete", {"iqn": PREFIX + volume["name"]}),
                               ("lio_save", {})]
    assert transport.targets == []


def test_remove_export_of_a_target_already_gone(target, transport):
    volume = FakeVolume()
    exported(target, transport, volume)
    transport.targets.clear()
    target.remove_export(None, volume)
    assert transport.ops() == ["lio_targets"]


def test_remove_export_failure(target, transport):
    volume = FakeVolume()
    exported(target, transport, volume)
    transport.fail["lio_delete"] = errors.InvalidArgument("not ours")
    with pytest.raises(exception.ISCSITargetRemoveFailed):
        target.remove_export(None, volume)


def test_ensure_export_restores_only_when_no_target_exists(target, transport):
    volume = FakeVolume()
    target.ensure_export(None, volume, "/dev/zvol/tank/cinder/p/v")
    assert transport.ops() == ["lio_targets", "lio_restore"]
    transport.calls.clear()
    exported(target, transport, volume)
    target.ensure_export(None, volume, "/dev/zvol/tank/cinder/p/v")
    assert transport.ops() == ["lio_targets"]


# -- the cinder-rtstool command line, as LioAdm writes it -----------------------------------

def test_create_arguments_are_parsed_like_rtstool(target, transport):
    target._execute("cinder-rtstool", "create", "/dev/zvol/tank/cinder/p/v", PREFIX + "v",
                    "u", "p", True, f"{INITIATOR}, iqn.2000-01.com.example:b",
                    "-a10.0.0.1,,10.0.0.2", "-p3270", run_as_root=True)
    assert transport.calls == [("lio_create", {
        "device": "/dev/zvol/tank/cinder/p/v", "name": PREFIX + "v", "userid": "u",
        "password": "p", "iser": True,
        "initiator_iqns": [INITIATOR, "iqn.2000-01.com.example:b"],
        "portals_ips": ["10.0.0.1", "10.0.0.2"], "portals_port": 3270})]


def test_get_targets_is_one_iqn_a_line(target, transport):
    transport.targets[:] = [PREFIX + "a", PREFIX + "b"]
    assert target._execute("cinder-rtstool", "get-targets") == \
        (f"{PREFIX}a\n{PREFIX}b\n", "")
    transport.targets.clear()
    assert target._execute("cinder-rtstool", "get-targets") == ("", "")


@pytest.mark.parametrize("cmd", [
    ("cinder-rtstool", "create", "/dev/zvol/x", "n", "u", "p"),  # iser missing
    ("cinder-rtstool", "create", "/dev/zvol/x", "n", "u", "p", "False", "-a"),
    ("cinder-rtstool", "create", "/dev/zvol/x", "n", "u", "p", "False", "-pabc"),
    ("cinder-rtstool", "add-initiator", "iqn", "u", "p"),
    ("cinder-rtstool", "delete"),
    ("cinder-rtstool", "save", "/tmp/elsewhere.json"),
    ("cinder-rtstool", "frobnicate"),
    ("cinder-rtstool",),
    ("tgt-admin", "--update", "iqn"),
    ("iscsiadm", "-m", "discovery"),
])
def test_anything_else_fails_without_reaching_the_node(target, transport, cmd):
    with pytest.raises(processutils.ProcessExecutionError):
        target._execute(*cmd)
    assert transport.calls == []


def test_passwords_do_not_leak_into_errors(target, transport):
    transport.fail["lio_add_initiator"] = errors.NotFound("no target")
    with pytest.raises(processutils.ProcessExecutionError) as exc:
        target._execute("cinder-rtstool", "add-initiator", PREFIX + "v", "user",
                        "TopSecret42", INITIATOR)
    assert "TopSecret42" not in str(exc.value) and "not_found: no target" in str(exc.value)
    transport.fail["lio_create"] = errors.ZFSError("boom")
    with pytest.raises(processutils.ProcessExecutionError) as exc:
        target._execute("cinder-rtstool", "create", "/dev/zvol/x", PREFIX + "v", "user",
                        "TopSecret42", False)
    assert "TopSecret42" not in str(exc.value)


# -- the factory -----------------------------------------------------------------------------

def test_factory_ssh_mode_builds_agent_lioadm(transport):
    helper = export.target_driver_for(FakeConfiguration(), "executor", transport, "ssh")
    assert isinstance(helper, AgentLioAdm) and helper.transport is transport
    assert transport.ops() == ["lio_verify"]


def test_factory_ssh_mode_refuses_other_helpers(transport):
    with pytest.raises(exception.InvalidConfigurationValue, match="target_helper=lioadm"):
        export.target_driver_for(FakeConfiguration(target_helper="tgtadm"), None, transport,
                                 "ssh")
    assert transport.calls == []


def test_factory_local_mode_uses_cinders_helper_from_the_mapping(transport):
    mapping = {"lioadm": "cinder.volume.targets.lio.LioAdm",
               "tgtadm": "cinder.volume.targets.tgt.TgtAdm"}
    helper = export.target_driver_for(FakeConfiguration(target_helper="tgtadm"), "exe",
                                      transport, "local", mapping)
    assert type(helper) is tgt.TgtAdm
    with mock.patch("cinder.utils.execute") as execute:  # LioAdm verifies rtstool locally
        helper = export.target_driver_for(FakeConfiguration(), "exe", transport, "local",
                                          mapping)
    assert type(helper) is cinder_lio.LioAdm
    execute.assert_called_once_with("cinder-rtstool", "verify")
    assert transport.calls == []  # nothing goes to an agent in local mode
    with pytest.raises(exception.InvalidConfigurationValue):
        export.target_driver_for(FakeConfiguration(target_helper="nope"), "exe", transport,
                                 "local", mapping)


def test_factory_unknown_mode(transport):
    with pytest.raises(exception.InvalidConfigurationValue):
        export.target_driver_for(FakeConfiguration(), None, transport, "carrier-pigeon")
