"""The agent's allow-list: what a request may set, and ZFS's limits checked before libzfs_core.

Every refusal here happens before any command runs or any libzfs_core function is called: the
operations run with a pyzfs whose every function fails the test, and a CLI that records.
"""

import math
import uuid

import pytest

from cinder_zfs_ocfs2.agent import policy
from cinder_zfs_ocfs2.agent.ops import NodeOperations
from cinder_zfs_ocfs2.zfs import errors
from tests.unit.agent.guarded import GuardedOperations
from tests.unit.zfs.fakes import RecordingOperations

ROOT = "tank/cinder"
VOL = f"{ROOT}/p1/volume-{uuid.UUID(int=1)}"
SNAP = f"{VOL}@snapshot-{uuid.UUID(int=2)}"
NEW = f"{ROOT}/p1/volume-{uuid.UUID(int=3)}"
USER = "org.openstack.cinder:volume_id"


@pytest.fixture
def ops():
    return GuardedOperations(ROOT, replies={"get": "volsize\t1073741824\tlocal\n"})


def refused(func, *args, match=None, **kwargs):
    with pytest.raises(errors.InvalidArgument, match=match) as info:
        func(*args, **kwargs)
    return info.value


# -- properties: one table, per operation ------------------------------------------------------

HOSTILE_NATIVE = [("mountpoint", "/mnt/x"), ("canmount", "on"), ("sharenfs", "on"),
                  ("sharesmb", "on"), ("reservation", "100T"), ("quota", "1"),
                  ("refquota", "1"), ("sync", "disabled"), ("checksum", "off"),
                  ("copies", "3"), ("dedup", "on"), ("exec", "on"), ("setuid", "on"),
                  ("devices", "on"), ("zoned", "on"), ("keylocation", "file:///etc/shadow"),
                  ("primarycache", "none"), ("logbias", "throughput"),
                  ("redundant_metadata", "most")]


@pytest.mark.parametrize("prop,value", HOSTILE_NATIVE)
@pytest.mark.parametrize("call", [
    lambda o, p: o.set(VOL, p),
    lambda o, p: o.set(ROOT, p),
    lambda o, p: o.create_filesystem(f"{ROOT}/p2", p),
    lambda o, p: o.create_volume(NEW, 1 << 30, properties=p),
    lambda o, p: o.clone(SNAP, NEW, p),
    lambda o, p: o.send_receive(SNAP, NEW, p),
    lambda o, p: o.snapshot([SNAP], p),
], ids=["set", "set-root", "create_filesystem", "create_volume", "clone", "send_receive",
        "snapshot"])
def test_native_properties_outside_the_table_are_refused_by_name(ops, call, prop, value):
    exc = refused(call, ops, {prop: value})
    assert repr(prop) in exc.message
    assert ops.commands == []


@pytest.mark.parametrize("props", [
    {"compression": "gzip-42"}, {"compression": "lz4 -o mountpoint=/x"},
    {"refreservation": "100T"}, {"refreservation": 5}, {"snapdev": "on"},
    {"readonly": "maybe"}, {"volsize": "-1"}, {"volsize": "0"}, {"volsize": "1G"},
    {"volsize": str(2**64)}, {"volsize": 1 << 30},
])
def test_values_outside_the_table_are_refused(ops, props):
    refused(ops.set, VOL, props)
    assert ops.commands == []


def test_what_the_driver_sets_passes(ops):
    ops.set(VOL, {"compression": "zstd-fast-1000", "refreservation": "auto",
                  "snapdev": "visible", "readonly": "off", USER: str(uuid.uuid4())})
    ops.set(VOL, {"volsize": str(2 << 30)})
    ops.create_volume(NEW, 1 << 30, sparse=False, volblocksize=16384,
                      properties={"compression": "lz4", USER: "v"})
    assert ops.commands[-1] == ["zfs", "create", "-V", str(1 << 30), "-o", "compression=lz4",
                                "-o", f"{USER}=v", "-o", "volblocksize=16384", NEW]


def test_volsize_only_grows(ops):
    refused(ops.set, VOL, {"volsize": str(1 << 29)}, match="only grow")
    assert not any(c[1] == "set" for c in ops.commands)


@pytest.mark.parametrize("call", [
    lambda o: o.set(VOL, {"volblocksize": "8192"}),        # fixed once created
    lambda o: o.clone(SNAP, NEW, {"refreservation": "auto"}),
    lambda o: o.send_receive(SNAP, NEW, {"volsize": "1"}),
    lambda o: o.create_volume(NEW, 1 << 30, volblocksize=12345),
    lambda o: o.create_volume(NEW, 1 << 30, volblocksize=1 << 20),
])
def test_each_native_property_only_where_the_table_says(ops, call):
    refused(call, ops)
    assert ops.commands == []


@pytest.mark.parametrize("key,value", [
    ("org.evil:x", "1"), ("com.sun:auto-snapshot", "true"), (USER + "x" * 64, "1"),
    ("org.openstack.cinder:-r", "1"), ("org.openstack.cinder:", "1"),
    ("org.openstack.cinder:a.b", "1"), ("org.openstack.cinder:A", "1"),
    (USER, "a\tb"), (USER, "a\nb"), (USER, "a\0b"), (USER, "a\rb"), (USER, "\x1b[2J"),
    (USER, "\u2028"), (USER, "\ud800"), (USER, ""), (USER, 5), (USER, None), (USER, True),
    (USER, "x" * (policy.MAX_USER_VALUE_LEN + 1)), (USER, "é" * 600),
    (USER, "x" * policy.ZAP_MAXVALUELEN), (USER, "x" * 100_000),
    (5, "1"), (None, "1"),
])
def test_user_properties_only_in_the_namespace_short_and_printable(ops, key, value):
    refused(ops.set, VOL, {key: value})
    refused(ops.snapshot, [SNAP], {key: value})
    assert ops.commands == []


def test_too_many_properties_and_wrong_shapes(ops):
    refused(ops.set, VOL, {f"org.openstack.cinder:p{i}": "1" for i in range(33)})
    refused(ops.set, VOL, [("compression", "lz4")])
    refused(ops.set, VOL, {})
    assert ops.commands == []


@pytest.mark.parametrize("prop", ["mountpoint", "canmount", "sharenfs", "compression",
                                  "-r", "-rf", "org.evil:x", "", 5, None, ["a"]])
def test_inherit_only_the_drivers_user_properties(ops, prop):
    refused(ops.inherit, VOL, prop)
    assert ops.commands == []
    ops.inherit(VOL, USER)
    assert ops.commands == [["zfs", "inherit", USER, VOL]]


# -- nothing on a command line looks like an option -------------------------------------------

@pytest.mark.parametrize("tag", ["-r", "--", "-", "-d", "a b", "a\tb", "a\nb", "a\0b", "a@b",
                                 "a/b", "", 5, None, ["x"], "x" * 256, "x" * 100_000])
def test_hold_and_release_tags(ops, tag):
    refused(ops.hold, SNAP, tag)
    refused(ops.release, SNAP, tag)
    assert ops.commands == []


def test_the_longest_tag_zfs_takes_passes():
    ops = RecordingOperations(ROOT)
    ops.hold(SNAP, "t" * policy.MAX_TAG_LEN)
    ops.release(SNAP, "t" * policy.MAX_TAG_LEN)
    assert ops.commands == [["zfs", "hold", "t" * 255, SNAP], ["zfs", "release", "t" * 255, SNAP]]


def test_the_kernel_panicking_hold_never_reaches_libzfs_core():
    # 100,000 characters: OpenZFS 2.1 panics in fnvlist_add_string() (issue 14).
    ops = GuardedOperations(ROOT)
    exc = refused(ops.hold, SNAP, "x" * 100_000)
    assert len(exc.message) < 300  # and the refusal does not echo it back


@pytest.mark.parametrize("props", [["-o", "name"], ["name", "-H"], ["name\tguid"], ["NAME"],
                                   ["x" * 256], [], "name", [5], ["a"] * 65])
def test_readable_property_names(ops, props):
    refused(ops.get, VOL, props)
    refused(ops.list, ROOT, ["volume"], props)
    assert ops.commands == []


@pytest.mark.parametrize("name", [
    "tank/" + "x" * 251,                                  # 256 characters
    f"{ROOT}/" + "x" * (255 - len(ROOT)),                 # 256 with the root
    f"{VOL}@" + "s" * (255 - len(VOL)),                   # a snapshot of 256
    f"{VOL}@" + "s" * 100_000,
    f"{ROOT}/" + "/".join(["a"] * 200),
])
def test_names_longer_than_zfs_takes(name):
    ops = GuardedOperations(ROOT)
    refused(ops.exists, name)
    refused(ops.destroy, name)
    refused(ops.hold, name, "t")
    refused(ops.snapshot, [name])
    refused(ops.rename, VOL, name)
    assert ops.commands == []


def test_a_root_that_looks_like_an_option_is_refused():
    with pytest.raises(errors.InvalidArgument):
        NodeOperations("-r", pyzfs=None)


# -- flags, sizes and waits of every shape ----------------------------------------------------

@pytest.mark.parametrize("value", ["false", "no", 0, 1, None, [], {}])
def test_booleans_are_booleans(ops, value):
    refused(ops.destroy, SNAP, defer=value)
    refused(ops.destroy, VOL, recursive=value)
    refused(ops.create_volume, NEW, 1 << 30, sparse=value)
    assert ops.commands == []


@pytest.mark.parametrize("size", [-1, 0, 2**63, 10**30, 1.5, "1G", True, None, math.inf])
def test_sizes(ops, size):
    refused(ops.create_volume, NEW, size)
    if size is not None:  # no volblocksize: ZFS's default
        refused(ops.create_volume, NEW, 1 << 30, volblocksize=size)
    assert ops.commands == []


@pytest.mark.parametrize("timeout", [math.nan, math.inf, -math.inf, -1, 121, 1e308, "10",
                                     None, True])
def test_wait_for_device_timeouts_are_finite_and_bounded(timeout):
    ops = NodeOperations(ROOT, pyzfs=None, command_prefix=["true"])
    refused(ops.wait_for_device, VOL, timeout=timeout)


def test_wait_for_device_gives_up_at_its_timeout():
    ops = NodeOperations(ROOT, pyzfs=None, command_prefix=["true"])
    with pytest.raises(errors.Busy, match="did not appear"):
        ops.wait_for_device(VOL, timeout=0.3)


@pytest.mark.parametrize("args", [
    {"name": VOL, "extra": 1}, {}, {"name": VOL, "progress": True},
])
def test_argument_names_are_checked_before_anything_runs(ops, args):
    refused(ops.dispatch, "exists", args)
    assert ops.commands == []


# -- child processes have deadlines -----------------------------------------------------------

def test_every_command_has_a_deadline(monkeypatch):
    # The "zfs" command is `sh -c 'sleep 5'`: it takes longer than its deadline.
    ops = NodeOperations(ROOT, pyzfs=None, command_prefix=["sh", "-c", "sleep 5"])
    monkeypatch.setitem(policy.DEADLINES, "zfs", 0.2)
    with pytest.raises(errors.ZFSError, match="did not finish within 0.2 s and was stopped"):
        ops.promote(VOL)
    assert policy.deadline(["zfs", "destroy"]) == 0.2
    assert policy.deadline(["udevadm", "settle"]) == policy.DEADLINES["udevadm"]
    assert policy.deadline(["zpool", "list"]) == policy.DEFAULT_DEADLINE


@pytest.mark.parametrize("value", ["full", "geom", "none", "default"])
def test_volmode_is_dev_or_nothing(ops, value):
    """New zvols are plain block devices; a mode that lets the node scan a guest's partitions
    (full, geom, default) is refused."""
    exc = refused(lambda o, p: o.create_volume(NEW, 1 << 30, properties=p), ops,
                  {"volmode": value})
    assert "volmode" in exc.message
    exc = refused(lambda o, p: o.set(VOL, p), ops, {"volmode": "dev"})  # never changed later
    assert "volmode" in exc.message
