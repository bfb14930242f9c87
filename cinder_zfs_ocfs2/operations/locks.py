"""Which locks the driver takes, their names, and the one order they are taken in.

Cinder runs driver calls concurrently (greenthreads in one cinder-volume, and several
cinder-volume services of one cluster). The locks are Cinder's own (cinder.coordination, tooz):
file locks on one host, a distributed lock when ``[coordination] backend_url`` names one (etcd).
This module only names them and states the rules; the driver supplies the implementation
(``Locks``), so operations stay free of Cinder imports and can run without any (``NO_LOCKS``).

Names (each volume-keyed name uses the id its dataset is named by, Cinder's ``name_id``)::

    zfs-ocfs2-volume-<volume uuid>      one volume: its dataset, its snapshots, its temp
                                        snapshots, its hidden copies in .trash and its
                                        revert scratch clone
    zfs-ocfs2-maintenance-<root>        start-up repair and the periodic reclaim/reconcile pass
                                        of one root dataset (one process at a time)

The order, which keeps every combination deadlock-free:

1. A driver call takes every volume lock its arguments name in ONE step, before it starts
   (``cinder.coordination.synchronized`` with several templates sorts the rendered names and
   acquires them in that order), and holds them until it returns.
2. A lock discovered during the call (the origin of a deleted clone, the heir of a promote, a
   hidden volume to reclaim) is only ever TRIED, with a bounded wait (``DISCOVERED_WAIT``); a call
   never waits without bound while holding a lock. When the try fails, the call takes the path
   that is always safe (hide instead of promote, leave the reclaim to the periodic pass).
3. The maintenance lock is taken before any volume lock, never after one: start-up repair waits
   for it, the periodic pass skips when another process has it, and both then take each volume's
   lock (rule 2) before touching that volume.

A lock the calling thread already holds is never taken again (tooz locks are not re-entrant):
``Locks`` implementations keep a per-thread record of what the thread holds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Protocol

from cinder_zfs_ocfs2.zfs.names import canonical_uuid, volume_id_of

PREFIX = "zfs-ocfs2"
# Templates for cinder.coordination.synchronized at the driver boundary.
VOLUME = PREFIX + "-volume-{volume.name_id}"
SOURCE_VOLUME = PREFIX + "-volume-{src_vref.name_id}"
NEW_VOLUME = PREFIX + "-volume-{new_volume.name_id}"
SNAPSHOT_VOLUME = PREFIX + "-volume-{snapshot.volume.name_id}"
# How long a call holding locks may wait for one it discovered (rule 2), in seconds.
DISCOVERED_WAIT = 10.0


def volume(volume_id: str) -> str:
    """The lock name of one volume (same as the templates render)."""
    return f"{PREFIX}-volume-{canonical_uuid(volume_id)}"


def owner_of(dataset: str) -> str | None:
    """The volume lock that guards ``dataset`` (a volume, its trash copy or its snapshot)."""
    last = dataset.partition("@")[0].rpartition("/")[2]
    if last.startswith("revert-"):  # the scratch clone of a revert belongs to its volume
        last = "volume-" + last[len("revert-"):]
    volume_id = volume_id_of(last)
    return volume(volume_id) if volume_id else None


def maintenance(root: str) -> str:
    # '+' never occurs in a ZFS name, so different roots never share a lock name.
    return f"{PREFIX}-maintenance-{root.replace('/', '+')}"


class Locks(Protocol):
    def hold(self, names: Iterable[str], wait: float | None) -> contextlib.AbstractContextManager:
        """Hold every lock in ``names`` (sorted, skipping those this thread holds already).

        ``wait``: None waits without bound, a number bounds the wait in seconds (0: no wait).
        Yields True when all are held, False when the wait ran out (then none is held).
        """


class _NoLocks:
    """For tools and tests that run operations alone (one caller, nothing to exclude)."""

    @contextlib.contextmanager
    def hold(self, names: Iterable[str], wait: float | None) -> Iterator[bool]:
        yield True


NO_LOCKS: Locks = _NoLocks()
