import pytest

from cinder_zfs_ocfs2.zfs import errors


@pytest.mark.parametrize("stderr,cls", [
    ("cannot open 'tank/x': dataset does not exist", errors.NotFound),
    ("cannot create 'tank/x': dataset already exists", errors.AlreadyExists),
    ("cannot destroy 'tank/x@s': snapshot has dependent clones\nuse '-R' to destroy",
     errors.HasDependents),
    ("cannot destroy 'tank/x': volume has children", errors.HasDependents),
    ("cannot rollback to 'tank/x@a': more recent snapshots or bookmarks exist",
     errors.NotLatest),
    ("cannot create 'tank/x': out of space", errors.NoSpace),
    ("cannot destroy 'tank/x': dataset is busy", errors.Busy),
    ("cannot create 'tank/x': invalid property 'foo'", errors.InvalidArgument),
    ("something odd", errors.ZFSError),
])
def test_cli_messages_map_to_types(stderr, cls):
    exc = errors.from_cli(stderr, "tank/x")
    assert type(exc) is cls
    assert exc.name == "tank/x"


def _pyzfs_class(name, base=Exception):
    return type(name, (base,), {})


@pytest.mark.parametrize("pyzfs_name,cls", [
    ("DatasetNotFound", errors.NotFound), ("SnapshotExists", errors.AlreadyExists),
    ("SnapshotIsCloned", errors.HasDependents), ("SnapshotNotLatest", errors.NotLatest),
    ("NoSpace", errors.NoSpace), ("NameInvalid", errors.InvalidArgument),
    ("DatasetBusy", errors.Busy), ("Weird", errors.ZFSError),
])
def test_pyzfs_exceptions_map_to_the_same_types(pyzfs_name, cls):
    assert type(errors.from_pyzfs(_pyzfs_class(pyzfs_name)("x"))) is cls


def test_pyzfs_multi_error_takes_first_cause():
    failure = _pyzfs_class("SnapshotFailure")("snapshot failed")
    failure.errors = [_pyzfs_class("SnapshotExists")("exists"), _pyzfs_class("NoSpace")("full")]
    assert type(errors.from_pyzfs(failure)) is errors.AlreadyExists


def test_subclass_of_known_pyzfs_class_maps():
    base = _pyzfs_class("DatasetNotFound")
    sub = type("FilesystemNotFoundX", (base,), {})
    assert type(errors.from_pyzfs(sub("x"))) is errors.NotFound


def test_round_trip_over_the_wire():
    exc = errors.HasDependents("has clones", "tank/x@s")
    back = errors.from_dict(exc.to_dict())
    assert type(back) is errors.HasDependents and back.name == "tank/x@s"
    assert type(errors.from_dict({"code": "bogus", "message": "m"})) is errors.ZFSError
    assert isinstance(errors.HasDependents("x"), errors.Busy)
