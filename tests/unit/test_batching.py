"""Snapshot coalescing: one ZFS call for a burst, each request its own answer."""

import threading

import pytest

from cinder_zfs_ocfs2.operations.batching import SnapshotBatcher
from cinder_zfs_ocfs2.zfs import errors


class Recorder:
    def __init__(self, fail=()):
        self.calls: list[list[str]] = []
        self.fail = set(fail)
        self.lock = threading.Lock()

    def __call__(self, names):
        with self.lock:
            self.calls.append(list(names))
        bad = self.fail & set(names)
        if bad:
            raise errors.AlreadyExists(f"{sorted(bad)} exist")


def burst(batcher, names):
    results = {}

    def one(name):
        try:
            batcher.snapshot(name)
            results[name] = "ok"
        except errors.ZFSError as exc:
            results[name] = type(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_burst_of_different_volumes_is_one_call():
    rec = Recorder()
    names = [f"tank/c/p/volume-{i}@snapshot-x" for i in range(32)]
    assert burst(SnapshotBatcher(rec, window_ms=200), names) == dict.fromkeys(names, "ok")
    assert len(rec.calls) == 1 and sorted(rec.calls[0]) == sorted(names)


def test_two_snapshots_of_one_volume_never_share_a_call():
    rec = Recorder()
    burst(SnapshotBatcher(rec, window_ms=100), ["tank/c/p/v@a", "tank/c/p/v@b"])
    assert sorted(len(c) for c in rec.calls) == [1, 1]


def test_one_bad_request_does_not_fail_the_others():
    rec = Recorder(fail={"tank/c/p/v2@s"})
    results = burst(SnapshotBatcher(rec, window_ms=200),
                    ["tank/c/p/v1@s", "tank/c/p/v2@s", "tank/c/p/v3@s"])
    assert results == {"tank/c/p/v1@s": "ok", "tank/c/p/v2@s": errors.AlreadyExists,
                       "tank/c/p/v3@s": "ok"}


def test_window_zero_disables():
    rec = Recorder()
    batcher = SnapshotBatcher(rec, window_ms=0)
    batcher.snapshot("tank/c/p/v@s")
    assert rec.calls == [["tank/c/p/v@s"]]
    with pytest.raises(errors.AlreadyExists):
        SnapshotBatcher(Recorder(fail={"tank/c/p/v@s"}), 0).snapshot("tank/c/p/v@s")
