"""Volume-type extra specs in the zfs: namespace."""

import pytest

from cinder_zfs_ocfs2.operations.specs import VolumeSpec, round_up, volume_spec
from cinder_zfs_ocfs2.zfs.errors import InvalidArgument

DEFAULTS = VolumeSpec(sparse=True, compression="lz4", volblocksize=16384, clone_mode="linked")


def test_no_specs_gives_the_defaults():
    assert volume_spec(None, DEFAULTS) == DEFAULTS
    assert volume_spec({}, DEFAULTS) == DEFAULTS


def test_other_namespaces_are_ignored():
    extra = {"volume_backend_name": "zfs", "capabilities:foo": "x", "ocfs2:format": "true",
             "multiattach": "<is> True"}
    assert volume_spec(extra, DEFAULTS) == DEFAULTS


def test_all_keys():
    spec = volume_spec({"zfs:sparse": "false", "zfs:compression": "ZSTD-3",
                        "zfs:volblocksize": "64K", "zfs:clone_mode": "Independent"}, DEFAULTS)
    assert spec == VolumeSpec(sparse=False, compression="zstd-3", volblocksize=65536,
                              clone_mode="independent")
    assert spec.zfs_properties() == {"compression": "zstd-3"}


@pytest.mark.parametrize("value,expected", [
    ("true", True), ("True", True), ("yes", True), ("on", True), ("1", True),
    ("<is> True", True), ("false", False), ("no", False), ("off", False), ("0", False),
    ("<is> False", False), (" false ", False),
])
def test_bools(value, expected):
    assert volume_spec({"zfs:sparse": value}, DEFAULTS).sparse is expected


@pytest.mark.parametrize("value", ["maybe", "", "2", "truthy"])
def test_bad_bool(value):
    with pytest.raises(InvalidArgument, match="zfs:sparse"):
        volume_spec({"zfs:sparse": value}, DEFAULTS)


@pytest.mark.parametrize("value,expected", [
    ("512", 512), ("8K", 8192), ("8k", 8192), ("16384", 16384), ("128K", 131072),
    (" 32K ", 32768),
])
def test_volblocksize(value, expected):
    assert volume_spec({"zfs:volblocksize": value}, DEFAULTS).volblocksize == expected


@pytest.mark.parametrize("value", ["3K", "256K", "1M", "256", "0", "-8K", "8KB", "8 G", "abc",
                                   "12288"])
def test_bad_volblocksize(value):
    with pytest.raises(InvalidArgument, match="zfs:volblocksize"):
        volume_spec({"zfs:volblocksize": value}, DEFAULTS)


@pytest.mark.parametrize("value", ["off", "on", "lz4", "gzip", "gzip-9", "zstd", "zstd-19",
                                   "zle", "lzjb", "zstd-fast"])
def test_compression(value):
    assert volume_spec({"zfs:compression": value}, DEFAULTS).compression == value


@pytest.mark.parametrize("value", ["xz", "gzip-10", "zstd-20", "", "lz4,gzip", "lz5"])
def test_bad_compression(value):
    with pytest.raises(InvalidArgument, match="zfs:compression"):
        volume_spec({"zfs:compression": value}, DEFAULTS)


def test_bad_clone_mode():
    with pytest.raises(InvalidArgument, match="linked or independent"):
        volume_spec({"zfs:clone_mode": "shallow"}, DEFAULTS)


def test_unknown_key_is_refused_with_the_known_ones():
    with pytest.raises(InvalidArgument) as info:
        volume_spec({"zfs:foo": "1"}, DEFAULTS)
    message = str(info.value)
    assert "zfs:foo" in message
    assert all(f"zfs:{k}" in message for k in ("sparse", "compression", "volblocksize",
                                               "clone_mode"))


def test_round_up():
    assert round_up(1, 16384) == 16384
    assert round_up(16384, 16384) == 16384
    assert round_up(16385, 16384) == 32768
    assert round_up(3 * 1024 ** 3, 131072) == 3 * 1024 ** 3


@pytest.mark.parametrize("extra,sparse", [
    ({"provisioning:type": "thick"}, False),
    ({"provisioning:type": "Thin"}, True),
    ({"provisioning:type": "thick", "zfs:sparse": "false"}, False),
    ({"provisioning:type": "thin", "zfs:sparse": "true"}, True),
    ({"zfs:sparse": "false"}, False),
])
def test_provisioning_type_decides_thin_or_thick(extra, sparse):
    assert volume_spec(extra, DEFAULTS).sparse is sparse
    thick_defaults = VolumeSpec(sparse=False, compression="lz4", volblocksize=16384,
                                clone_mode="linked")
    assert volume_spec(extra, thick_defaults).sparse is sparse


@pytest.mark.parametrize("extra,words", [
    ({"provisioning:type": "fat"}, "thin or thick"),
    ({"provisioning:type": "thick", "zfs:sparse": "true"}, "disagree"),
])
def test_bad_or_contradictory_provisioning_is_refused(extra, words):
    with pytest.raises(InvalidArgument, match=words):
        volume_spec(extra, DEFAULTS)
