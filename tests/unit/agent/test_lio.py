"""The agent's LIO operations against a fake rtslib: rtstool semantics, validation, confinement."""

from __future__ import annotations

import io
import json
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cinder_zfs_ocfs2.agent import lio, protocol
from cinder_zfs_ocfs2.agent.ops import NodeOperations
from cinder_zfs_ocfs2.agent.server import AgentServer
from cinder_zfs_ocfs2.zfs import errors
from cinder_zfs_ocfs2.zfs.names import NameSpace

ROOT = "tank/cinder"
DEV = "/dev/zvol/tank/cinder/p/volume-1"
IQN = "iqn.2010-10.org.openstack:volume-1"
INITIATOR = "iqn.1993-08.org.debian:01:abcdef0123"


# -- a fake rtslib_fb: enough of its object model to hold state --------------------------------

class RTSLibError(Exception):
    pass


class RTSLibNotInCFSError(RTSLibError):
    pass


class FakeLIO:
    """The configfs tree: storage objects and targets, plus failure switches."""

    def __init__(self, save_file: str = "/nonexistent/saveconfig.json"):
        self.storage_objects: list = []
        self.targets: list = []
        self.failing_portals: set[str] = set()
        self.saved: list[str] = []
        self.restored: list[tuple] = []
        self.module = self._module(save_file)

    def _module(self, save_file: str):
        state = self

        class Root:
            @property
            def storage_objects(self):
                return list(state.storage_objects)

            @property
            def targets(self):
                return list(state.targets)

            def save_to_file(self, path):
                state.saved.append(path)

            def restore_from_file(self, path, clear_existing=True):
                state.restored.append((path, clear_existing))
                return ["storage object x exists"]

        class BlockStorageObject:
            plugin = "block"

            def __init__(self, name, dev=None, readonly=False):
                if any(so.name == name for so in state.storage_objects):
                    raise RTSLibError(f"Storage object block/{name} exists")
                self.name, self.udev_path, self.readonly = name, dev, readonly
                state.storage_objects.append(self)

            def delete(self):
                state.storage_objects.remove(self)

        class Target:
            def __init__(self, fabric, wwn, mode):
                assert fabric.name == "iscsi" and mode == "create"
                if any(t.wwn == wwn.lower() for t in state.targets):
                    raise RTSLibError("target exists")
                self.wwn, self.tpg_list = wwn.lower(), []
                state.targets.append(self)

            @property
            def tpgs(self):
                return iter(self.tpg_list)

            def delete(self):
                state.targets.remove(self)

        class TPG:
            def __init__(self, target, mode):
                self.attributes, self.lun_list, self.acls, self.portals = {}, [], [], []
                self.enable = False
                target.tpg_list.append(self)

            def set_attribute(self, key, value):
                self.attributes[key] = value

            @property
            def luns(self):
                return iter(self.lun_list)

            @property
            def node_acls(self):
                return iter(self.acls)

        class LUN:
            def __init__(self, tpg, storage_object):
                self.lun, self.storage_object = len(tpg.lun_list), storage_object
                tpg.lun_list.append(self)

        class NodeACL:
            def __init__(self, tpg, wwn, mode):
                self.tpg, self.node_wwn, self.mapped = tpg, wwn.lower(), []
                self.chap_userid = self.chap_password = ""
                tpg.acls.append(self)

            def delete(self):
                self.tpg.acls.remove(self)

        class MappedLUN:
            def __init__(self, acl, mapped_lun, tpg_lun=None):
                acl.mapped.append((mapped_lun, tpg_lun))

        class NetworkPortal:
            def __init__(self, tpg, ip, port, mode):
                if ip in state.failing_portals:
                    raise RTSLibError("Cannot bind")
                self.ip, self.port, self.iser = ip, port, False
                tpg.portals.append(self)

        return types.SimpleNamespace(
            BlockStorageObject=BlockStorageObject, Target=Target, TPG=TPG, LUN=LUN,
            NodeACL=NodeACL, MappedLUN=MappedLUN, NetworkPortal=NetworkPortal,
            FabricModule=lambda name: types.SimpleNamespace(name=name),
            root=types.SimpleNamespace(RTSRoot=Root, default_save_file=save_file),
            utils=types.SimpleNamespace(RTSLibError=RTSLibError,
                                        RTSLibNotInCFSError=RTSLibNotInCFSError))


_MINORS: dict[str, int] = {}


def zvols(path: str) -> str | None:
    """Each /dev/zvol link resolves to its own whole zvol, except '-part' links and 'missing'."""
    if "missing" in path:
        return None
    minor = _MINORS.setdefault(path.removesuffix("-part1"), 16 * len(_MINORS))
    return f"/dev/zd{minor}p1" if path.endswith("-part1") else f"/dev/zd{minor}"


@pytest.fixture
def fake():
    return FakeLIO()


@pytest.fixture
def ops(fake):
    return lio.LioOperations(NameSpace(ROOT), fake.module, resolve=zvols, lock_file=None)


def create(ops, **kw):
    args = dict(device=DEV, name=IQN, userid="user1", password="Secret-123",
                portals_ips=["127.0.0.1"])
    args.update(kw)
    return ops.lio_create(**args)


# -- create / delete ------------------------------------------------------------------------

def test_create_matches_rtstool(ops, fake):
    create(ops, initiator_iqns=[INITIATOR], portals_port=3261)
    (so,) = fake.storage_objects
    assert (so.name, so.udev_path, so.readonly) == (IQN, DEV, False)
    (target,) = fake.targets
    (tpg,) = target.tpg_list
    assert target.wwn == IQN and tpg.enable
    assert tpg.attributes == {"authentication": "1"}
    assert [(lun.lun, lun.storage_object) for lun in tpg.lun_list] == [(0, so)]
    (acl,) = tpg.acls
    assert (acl.node_wwn, acl.chap_userid, acl.chap_password, acl.mapped) == \
        (INITIATOR, "user1", "Secret-123", [(0, 0)])
    assert [(p.ip, p.port, p.iser) for p in tpg.portals] == [("127.0.0.1", 3261, False)]


def test_create_is_idempotent(ops, fake):
    create(ops)
    create(ops)
    assert len(fake.storage_objects) == 1 and len(fake.targets) == 1


def test_create_readonly_snapshot_and_iser(ops, fake):
    create(ops, device=DEV + "@snapshot-1", readonly=True, iser=True,
           portals_ips=["::1", "[fe80::1]"])
    assert fake.storage_objects[0].readonly is True
    portals = fake.targets[0].tpg_list[0].portals
    assert [(p.ip, p.iser) for p in portals] == [("[::1]", True), ("[fe80::1]", True)]


def test_create_default_portals_tolerate_ipv6_failure(ops, fake):
    fake.failing_portals.add("[::]")
    create(ops, portals_ips=None)
    assert [p.ip for p in fake.targets[0].tpg_list[0].portals] == ["0.0.0.0"]


def test_failed_create_leaves_nothing_behind(ops, fake):
    fake.failing_portals.add("127.0.0.1")
    with pytest.raises(errors.ZFSError) as exc:
        create(ops)
    assert type(exc.value) is errors.ZFSError and "127.0.0.1:3260" in exc.value.message
    assert fake.storage_objects == [] and fake.targets == []


def test_create_refuses_same_name_on_other_device_or_mode(ops, fake):
    create(ops)
    with pytest.raises(errors.AlreadyExists):
        create(ops, device="/dev/zvol/tank/cinder/p/volume-2")
    with pytest.raises(errors.AlreadyExists):
        create(ops, readonly=True)


def test_create_needs_the_zvol_device(ops, fake):
    with pytest.raises(errors.NotFound):
        create(ops, device="/dev/zvol/tank/cinder/p/missing")
    with pytest.raises(errors.InvalidArgument):  # a partition link is not a zvol
        create(ops, device="/dev/zvol/tank/cinder/p/volume-1-part1")
    assert fake.storage_objects == []


def test_delete_removes_target_and_storage_object_and_tolerates_absence(ops, fake):
    create(ops)
    ops.lio_delete(IQN)
    assert fake.storage_objects == [] and fake.targets == []
    ops.lio_delete(IQN)  # rtstool: nothing to delete is fine


def test_objects_outside_the_root_are_never_touched(ops, fake):
    foreign = fake.module.BlockStorageObject(name=IQN, dev="/dev/sdb")
    with pytest.raises(errors.InvalidArgument):
        ops.lio_delete(IQN)
    with pytest.raises(errors.InvalidArgument):
        create(ops)
    assert fake.storage_objects == [foreign]


# -- initiators -----------------------------------------------------------------------------

def test_add_and_delete_initiator(ops, fake):
    create(ops)
    ops.lio_add_initiator(IQN, INITIATOR, "user1", "Secret-123")
    ops.lio_add_initiator(IQN, INITIATOR.upper().replace("IQN", "iqn"), "user1", "Secret-123")
    (acl,) = fake.targets[0].tpg_list[0].acls
    assert (acl.chap_userid, acl.chap_password, acl.mapped) == ("user1", "Secret-123", [(0, 0)])
    ops.lio_delete_initiator(IQN, INITIATOR)
    ops.lio_delete_initiator(IQN, INITIATOR)  # already gone: fine, like rtstool
    assert fake.targets[0].tpg_list[0].acls == []


def test_unknown_target_is_not_found(ops):
    with pytest.raises(errors.NotFound):
        ops.lio_add_initiator(IQN, INITIATOR, "user1", "Secret-123")
    with pytest.raises(errors.NotFound):
        ops.lio_delete_initiator(IQN, INITIATOR)


def test_targets_save_restore(ops, fake, tmp_path):
    fake.module.root.default_save_file = str(tmp_path / "target" / "saveconfig.json")
    assert ops.lio_targets() == []
    create(ops)
    assert ops.lio_targets() == [IQN]
    assert ops.lio_save() == fake.module.root.default_save_file
    assert fake.saved == [fake.module.root.default_save_file]
    with pytest.raises(errors.NotFound):  # nothing saved yet (the fake writes no file)
        ops.lio_restore()
    (tmp_path / "target" / "saveconfig.json").write_text("{}")
    assert ops.lio_restore() == ["storage object x exists"]
    assert fake.restored == [(fake.module.root.default_save_file, False)]


def test_verify(ops, fake):
    assert ops.lio_verify()["save_file"] == fake.module.root.default_save_file
    del fake.module.MappedLUN
    with pytest.raises(errors.ZFSError, match="MappedLUN"):
        ops.lio_verify()


def test_rtslib_errors_become_zfs_errors(ops, fake):
    fake.module.root.RTSRoot = lambda: (_ for _ in ()).throw(RTSLibNotInCFSError("gone"))
    with pytest.raises(errors.NotFound):
        ops.lio_targets()
    fake.module.root.RTSRoot = lambda: (_ for _ in ()).throw(RTSLibError("no configfs"))
    with pytest.raises(errors.ZFSError, match="no configfs"):
        ops.lio_targets()


# -- validation -----------------------------------------------------------------------------

@pytest.mark.parametrize("device", [
    "/dev/sda", "/dev/zvol/tank/other/volume-1", "/dev/zvol/tank/cinder/../../sda",
    "/dev/zvol/tank/cinder/p/../../x", "/dev/zvol/tank/cinder", "/dev/zvol//tank/cinder/p/v",
    "/dev/zvol/tank/cinder/p/v/", "dev/zvol/tank/cinder/p/v", "/dev/zvolx/tank/cinder/p/v",
    "/dev/zvol/tank/cinder/p/v w", "/dev/zvol/tank/cinder/p/v\n", "/dev/zvol/tank/cinder/p/v@",
    "/dev/zd0", "", None, 5, ["/dev/zvol/tank/cinder/p/v"],
])
def test_bad_devices_are_refused(ops, fake, device):
    with pytest.raises(errors.InvalidArgument):
        create(ops, device=device)
    assert fake.storage_objects == [] and fake.targets == []


@pytest.mark.parametrize("iqn", [
    "", "volume-1", "iqn.10-10.org:x", "iqn.2010-13.org.openstack:x", "iqn.2010-10.org_x:y",
    "iqn.2010-10.org.openstack:vol ume", "iqn.2010-10.org.openstack:v\n",
    "iqn.2010-10.org.openstack:x;reboot", "iqn.2010-10.org.openstack:x/../y", "eui.123",
    "eui.0123456789abcdeg", "naa.1234", "iqn.2010-10." + "a" * 220, None, 42,
])
def test_bad_iqns_are_refused(ops, fake, iqn):
    with pytest.raises(errors.InvalidArgument):
        create(ops, name=iqn)
    with pytest.raises(errors.InvalidArgument):
        create(ops, initiator_iqns=[iqn])
    with pytest.raises(errors.InvalidArgument):
        ops.lio_add_initiator(IQN, iqn, "user1", "Secret-123")
    with pytest.raises(errors.InvalidArgument):
        ops.lio_delete(iqn)
    assert fake.storage_objects == [] and fake.targets == []


@pytest.mark.parametrize("iqn", [
    IQN, INITIATOR, "iqn.2003-01.org.linux-iscsi.node", "eui.0123456789ABCDEF",
    "naa.6001405f4c3a4b5e", "naa.6001405f4c3a4b5e6001405f4c3a4b5e",
])
def test_good_wwns_are_accepted_lower_cased(iqn):
    assert lio.check_wwn(iqn) == iqn.lower()


@pytest.mark.parametrize("chap", ["", "with space", "tab\there", "x" * 256, "ünïcode", None, 7,
                                  "new\nline"])
def test_bad_chap_is_refused(ops, fake, chap):
    with pytest.raises(errors.InvalidArgument) as exc:
        create(ops, password=chap)
    if isinstance(chap, str) and len(chap) > 1:
        assert chap not in exc.value.message  # a secret is never echoed back
    with pytest.raises(errors.InvalidArgument):
        create(ops, userid=chap)
    create(ops)
    with pytest.raises(errors.InvalidArgument):
        ops.lio_add_initiator(IQN, INITIATOR, "user1", chap)
    assert fake.targets[0].tpg_list[0].acls == []
    ops.lio_delete(IQN)


@pytest.mark.parametrize("kw", [
    {"portals_port": 0}, {"portals_port": 65536}, {"portals_port": "3260"},
    {"portals_port": True}, {"portals_ips": ["example.com"]}, {"portals_ips": ["1.2.3"]},
    {"portals_ips": ["[::1"]}, {"portals_ips": [""]}, {"portals_ips": "127.0.0.1"},
    {"portals_ips": ["127.0.0.1"] * 65}, {"initiator_iqns": INITIATOR}, {"readonly": "yes"},
    {"iser": 1},
])
def test_bad_portals_and_flags_are_refused(ops, fake, kw):
    with pytest.raises(errors.InvalidArgument):
        create(ops, **kw)
    assert fake.storage_objects == []


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=60),
                 st.builds(lambda s: "/dev/zvol/" + s, st.text(max_size=60)),
                 st.builds(lambda s: DEV + s, st.text(max_size=20))))
def test_no_generated_device_escapes_the_root(device):
    fake = FakeLIO()
    ops = lio.LioOperations(NameSpace(ROOT), fake.module, resolve=zvols, lock_file=None)
    try:
        create(ops, device=device)
    except (errors.InvalidArgument, errors.NotFound):
        pass
    for so in fake.storage_objects:
        name = so.udev_path[len("/dev/zvol/"):]
        assert so.udev_path.startswith("/dev/zvol/tank/cinder/") and ".." not in name.split("/")
        assert NameSpace(ROOT).contains(name)


# -- through NodeOperations and the agent protocol ------------------------------------------

class LioNode(NodeOperations):
    def __init__(self, rtslib):
        self.rtslib = rtslib
        super().__init__(ROOT, pyzfs=None)


def test_node_operations_merge_lio_only_when_rtslib_is_there(monkeypatch, fake):
    assert set(lio.OPERATION_NAMES) <= set(LioNode(fake.module).operations)
    assert not any(op.startswith("lio_") for op in LioNode(False).operations)
    monkeypatch.setattr(lio.importlib.util, "find_spec", lambda name: None)
    assert not any(op.startswith("lio_") for op in NodeOperations(ROOT, pyzfs=None).operations)


def test_errors_travel_over_the_protocol(fake, monkeypatch):
    monkeypatch.setattr(lio, "_resolve", zvols)
    node = LioNode(fake.module)
    lines = [protocol.encode({"id": i, "op": op, "args": args}) for i, op, args in [
        (1, "lio_create", {"device": "/dev/zvol/tank/other/v", "name": IQN, "userid": "u",
                           "password": "p"}),
        (2, "lio_add_initiator", {"iqn": IQN, "initiator_iqn": INITIATOR, "userid": "u",
                                  "password": "p"}),
        (3, "lio_create", {"device": DEV, "name": IQN, "userid": "u", "password": "p",
                           "portals_ips": ["127.0.0.1"]}),
        (4, "lio_targets", {}),
        (5, "lio_delete", {"iqn": IQN, "force": True}),
    ]]
    out = io.BytesIO()
    AgentServer(node, io.BytesIO(b"".join(lines)), out, workers=1).serve()
    replies = {f["id"]: f for f in map(json.loads, out.getvalue().splitlines()[1:])}
    assert replies[1]["error"]["code"] == "invalid"
    assert replies[2]["error"]["code"] == "not_found"
    assert replies[3] == {"id": 3, "ok": True, "result": None}
    assert replies[4]["result"] == [IQN]
    assert replies[5]["error"]["code"] == "invalid"  # unknown argument: refused, not run
    assert len(fake.targets) == 1
