"""Concurrent driver calls are serialized by Cinder's coordination (tooz file locks here).

Each race is staged: one call is stopped inside the fake node at the step where the pool is in
between states, the other is started, and the test checks that it waits for the lock instead
of acting on the in-between state.
"""

import contextlib
import random
import subprocess
import sys
import threading
import time

import pytest
import tenacity
from cinder import exception

from cinder_zfs_ocfs2.locking import CoordinationLocks
from cinder_zfs_ocfs2.operations import locks
from tests.unit.fakezfs import FakeZFS
from tests.unit.test_driver import CTX, ROOT, leftovers, snapshot_obj, volume_obj, zsnap, zvol

WAITS = 0.5  # long enough for a call that is not blocked to finish on the fake


class SharedNode(FakeZFS):
    """The fake node, safe for concurrent callers, with a way to stop a call at one step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._mutex = threading.RLock()
        self._stops: list = []

    def stop_at(self, op: str, when=lambda args: True):
        """The next ``op`` matching ``when`` waits before it runs; returns (reached, go)."""
        reached, go = threading.Event(), threading.Event()
        self._stops.append((op, when, reached, go))
        return reached, go

    def call(self, op: str, **args):
        for stop in list(self._stops):
            if stop[0] == op and stop[1](args):
                self._stops.remove(stop)
                stop[2].set()
                assert stop[3].wait(30), f"{op} was never let go"
        with self._mutex:
            return super().call(op, **args)


class Call(threading.Thread):
    """A driver call in its own thread, as Cinder's greenthreads run them."""

    def __init__(self, func, *args):
        super().__init__(daemon=True)
        self.func, self.args, self.error, self.result = func, args, None, None
        self.start()

    def run(self):
        try:
            self.result = self.func(*self.args)
        except Exception as exc:  # reported by finish()
            self.error = exc

    def finish(self, timeout=30):
        self.join(timeout)
        assert not self.is_alive(), f"{self.func.__name__} did not finish (deadlock?)"
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def node():
    return SharedNode(ROOT)


def second_waits_for_first(node, stop, first, second, why):
    """Stop ``first`` (func, *args) at the node call ``stop`` (op, when), start ``second``
    and check that it waits until ``first`` is let go; both must then finish."""
    reached, go = node.stop_at(*stop)
    first = Call(*first)
    assert reached.wait(10)
    second = Call(*second)
    time.sleep(WAITS)
    assert second.is_alive(), why
    go.set()
    first.finish()
    second.finish()


def hidden_volumes(node):
    return [n for n in node.tree(f"{ROOT}/.trash") if "@" not in n][1:]


def volume_with_snapshots(drv, count):
    vol = volume_obj()
    drv.create_volume(vol)
    snaps = [snapshot_obj(vol) for _ in range(count)]
    for snap in snaps:
        drv.create_snapshot(snap)
    return vol, snaps


def origin_and_heir(drv):
    """A volume whose only snapshot Cinder deleted (hidden), and the clone that pins it."""
    origin, (snap,) = volume_with_snapshots(drv, 1)
    heir = volume_obj()
    drv.create_volume_from_snapshot(heir, snap)
    drv.delete_snapshot(snap)
    return origin, heir


def test_delete_snapshot_waits_for_a_revert_by_swap(make_driver, node):
    drv, _ = make_driver(node)
    vol, (older, target) = volume_with_snapshots(drv, 2)
    drv.create_cloned_volume(volume_obj(), vol)  # a newer temp snapshot with a clone: swap
    # Between the promote and the rename, the snapshots sit on the scratch clone.
    second_waits_for_first(node, ("rename",), (drv.revert_to_snapshot, CTX, vol, target),
                           (drv.delete_snapshot, older),
                           "delete_snapshot ran in the middle of the swap")
    assert not drv.zfs.exists(zsnap(older)), "the deleted snapshot came back after the swap"
    assert drv.zfs.exists(zsnap(target))


def test_promote_on_delete_waits_for_a_clone_of_the_heir(make_driver, node):
    drv, _ = make_driver(node, zfs_promote_newest_clone_on_delete=True)
    origin, heir = origin_and_heir(drv)
    clone = volume_obj()
    # The clone of the heir has taken its temp snapshot and not yet cloned it.
    second_waits_for_first(
        node, ("clone", lambda args: args["snapshot"].startswith(zvol(heir))),
        (drv.create_cloned_volume, clone, heir), (drv.delete_volume, origin),
        "promote ran while a clone of the heir was in flight")
    assert not drv.zfs.exists(zvol(origin))
    assert drv.zfs.get_volume(zvol(clone)).origin == f"{zvol(heir)}@clone-{clone.id}"
    assert drv.zfs.get_volume(zvol(heir)).origin is None  # promoted after the clone


def test_a_busy_heir_is_not_promoted_the_origin_is_hidden(make_driver, node, monkeypatch):
    monkeypatch.setattr(locks, "DISCOVERED_WAIT", 0.2)
    drv, _ = make_driver(node, zfs_promote_newest_clone_on_delete=True)
    origin, heir = origin_and_heir(drv)
    reached, go = node.stop_at("send_receive")  # a long independent clone of the heir
    clone = volume_obj(extra_specs={"zfs:clone_mode": "independent"})
    cloning = Call(drv.create_cloned_volume, clone, heir)
    assert reached.wait(10)
    Call(drv.delete_volume, origin).finish()  # did not wait for the copy
    go.set()
    cloning.finish()
    assert not drv.zfs.exists(zvol(origin))
    assert hidden_volumes(node), "the origin was not hidden"
    assert drv.zfs.get_volume(zvol(heir)).origin is not None  # not promoted


class EtcdLikeCoordinator:
    """A coordinator whose locks are all held elsewhere and whose bounded wait ends as tooz's
    etcd3gw driver ends it: with tenacity's RetryError, not False."""

    class Lock:
        def __init__(self, name):
            self.name = name

        def acquire(self, blocking=True):
            if blocking is True:
                raise AssertionError("an unbounded wait in a test")
            raise tenacity.RetryError(None)

        def release(self):
            raise AssertionError("released a lock never taken")

    def get_lock(self, name):
        return self.Lock(name)


def test_a_bounded_wait_that_runs_out_in_etcd_is_a_lock_not_taken():
    with CoordinationLocks(EtcdLikeCoordinator()).hold(["zfs-ocfs2-volume-x"], wait=0.1) as ok:
        assert ok is False


@contextlib.contextmanager
def held_by_another_process(url, name):
    """Another cinder-volume process holds lock ``name`` (as Cinder names it) until exit."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys\n"
         "from tooz import coordination\n"
         f"c = coordination.get_coordinator({url!r}, b'other-process')\n"
         "c.start()\n"
         f"lock = c.get_lock(b'cinder-' + {name!r}.encode())\n"
         "lock.acquire()\n"
         "print('held', flush=True)\n"
         "sys.stdin.read()\n"
         "lock.release()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.stdin.close()
        holder.wait(10)


def test_a_lock_held_by_another_process_makes_the_call_wait(make_driver, node,
                                                            coordination_in_tmp):
    drv, _ = make_driver(node)
    vol, _ = volume_with_snapshots(drv, 0)
    with held_by_another_process(coordination_in_tmp, locks.volume(vol.id)):
        extend = Call(drv.extend_volume, vol, 2)
        time.sleep(WAITS)
        assert extend.is_alive(), "extend ran while another process held the volume's lock"
    extend.finish()
    assert drv.zfs.get_volume(zvol(vol)).volsize == 2 * 1024 ** 3


def test_two_calls_naming_the_same_two_volumes_in_opposite_order_both_finish(make_driver, node):
    drv, _ = make_driver(node)
    (one, _), (two, _) = volume_with_snapshots(drv, 0), volume_with_snapshots(drv, 0)
    second_waits_for_first(node, ("exists",),
                           (drv.update_migrated_volume, CTX, one, two, "available"),
                           (drv.update_migrated_volume, CTX, two, one, "available"),
                           "the second call did not wait for the volumes' locks")


def test_concurrent_mixed_calls_never_deadlock_and_orphan_nothing(make_driver, node, monkeypatch):
    """Clones, snapshot deletes, reverts, deletes with promote and extends on one family of
    volumes, from several threads: every call answers, and deleting everything leaves
    nothing behind."""
    monkeypatch.setattr(locks, "DISCOVERED_WAIT", 0.5)
    drv, _ = make_driver(node, zfs_promote_newest_clone_on_delete=True)
    rng = random.Random(15)
    family = []
    snaps = {}
    mutex = threading.Lock()
    base = volume_obj()
    drv.create_volume(base)
    family.append(base)

    busy = set()  # volumes with a call in flight: Cinder's status allows one at a time

    def one_call():
        with mutex:
            idle = [v for v in family if v.id not in busy]
            if not idle:
                return
            vol = rng.choice(idle)
            busy.add(vol.id)
            kind = rng.choice(["snapshot", "clone", "from_snapshot", "delete_snapshot",
                               "revert", "extend", "delete"])
            mine = list(snaps.get(vol.id, []))
        try:
            if kind == "snapshot":
                snap = snapshot_obj(vol)
                drv.create_snapshot(snap)
                with mutex:
                    snaps.setdefault(vol.id, []).append(snap)
            elif kind in ("clone", "from_snapshot"):
                new = volume_obj()
                if kind == "clone":
                    drv.create_cloned_volume(new, vol)
                elif mine:
                    drv.create_volume_from_snapshot(new, mine[0])
                else:
                    return
                with mutex:
                    family.append(new)
            elif kind == "delete_snapshot" and mine:
                drv.delete_snapshot(mine[0])
                with mutex:
                    snaps[vol.id].remove(mine[0])
            elif kind == "revert" and mine:
                drv.revert_to_snapshot(CTX, vol, mine[-1])
            elif kind == "extend":
                drv.extend_volume(vol, vol.size + 1)
                vol.size += 1
            elif kind == "delete" and not mine and len(family) > 1:
                drv.delete_volume(vol)
                with mutex:
                    family.remove(vol)
        except (exception.VolumeIsBusy, exception.SnapshotIsBusy):
            pass  # Cinder's answer to a call the state did not allow; not a failure here
        finally:
            with mutex:
                busy.discard(vol.id)

    def worker():
        for _ in range(15):
            one_call()

    threads = [Call(worker) for _ in range(4)]
    for thread in threads:
        thread.finish(timeout=120)
    for vol in family:
        for snap in snaps.get(vol.id, []):
            drv.delete_snapshot(snap)
    for vol in reversed(family):
        drv.delete_volume(vol)
    drv.ops.reclaim()
    assert leftovers(node) == []


def test_the_periodic_pass_runs_in_one_service_of_a_cluster_at_a_time(
        make_driver, node, coordination_in_tmp):
    drv, _ = make_driver(node)
    origin, heir = origin_and_heir(drv)
    drv.delete_volume(origin)  # hidden while the heir lives
    node.call("destroy", name=zvol(heir), recursive=True)  # out of band: the origin is free
    with held_by_another_process(coordination_in_tmp, locks.maintenance(ROOT)):
        drv._periodic_repair()  # another service runs the pass: this one skips it
        assert hidden_volumes(node)
    drv._periodic_repair()
    assert hidden_volumes(node) == []


def test_start_up_waits_for_another_services_repair(make_driver, node, coordination_in_tmp):
    drv, _ = make_driver(node, check=False)
    with held_by_another_process(coordination_in_tmp, locks.maintenance(ROOT)):
        starting = Call(drv.check_for_setup_error)
        time.sleep(WAITS)
        assert starting.is_alive(), "start-up repaired while another service was repairing"
    starting.finish()
