"""The driver's locks, through Cinder's own coordination (tooz); see operations/locks.py for
the names and the order.

``synchronized`` is ``cinder.coordination.synchronized`` (name templates rendered from the
call's arguments, several names sorted and taken in one step) that also records, per thread,
which names the call holds: a lock discovered later in the same call (``CoordinationLocks``)
is then not taken a second time, since tooz locks are not re-entrant.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Iterable, Iterator

import decorator
import tenacity
from cinder import coordination
from oslo_log import log as logging

LOG = logging.getLogger(__name__)
_thread = threading.local()  # green-thread local under cinder-volume's eventlet


def _held() -> set[str]:
    held = getattr(_thread, "held", None)
    if held is None:
        held = _thread.held = set()
    return held


@contextlib.contextmanager
def _recorded(names: set[str]) -> Iterator[None]:
    held = _held()
    new = names - held
    held.update(new)
    try:
        yield
    finally:
        held.difference_update(new)


def held_by_this_thread() -> frozenset[str]:
    return frozenset(_held())


def synchronized(*templates: str):
    """``@coordination.synchronized(*templates)``, recording the names for this thread."""
    def decorate(func):
        def record(f, *args, **kwargs):
            call_args = inspect.getcallargs(f, *args, **kwargs)
            call_args["f_name"] = f.__name__
            with _recorded({t.format(**call_args) for t in templates}):
                return f(*args, **kwargs)

        return coordination.synchronized(*templates)(decorator.decorate(func, record))
    return decorate


def _acquire(lock, blocking) -> bool:
    """``lock.acquire``, False when a bounded wait ran out, whatever the tooz driver: the file
    driver returns False, the etcd3gw driver raises tenacity's RetryError (seen in the
    stack's cluster: a delete that tried the origin's lock for 10 s went error_deleting)."""
    try:
        return lock.acquire(blocking=blocking)
    except tenacity.RetryError:
        return False


class CoordinationLocks:
    """operations.locks.Locks over cinder.coordination.COORDINATOR (started by the service)."""

    def __init__(self, coordinator: coordination.Coordinator | None = None):
        self.coordinator = coordinator or coordination.COORDINATOR

    @contextlib.contextmanager
    def hold(self, names: Iterable[str], wait: float | None) -> Iterator[bool]:
        wanted = sorted(set(n for n in names if n) - _held())
        blocking = True if wait is None else (wait if wait > 0 else False)
        taken = []
        try:
            for name in wanted:
                lock = self.coordinator.get_lock(name)
                if not _acquire(lock, blocking):
                    LOG.info("Lock %s is held elsewhere (waited %s s)", name, wait)
                    break
                taken.append(lock)
            else:
                with _recorded(set(wanted)):
                    yield True
                return
            yield False
        finally:
            for lock in reversed(taken):
                try:
                    lock.release()
                except Exception as exc:  # a lost lease must not hide the call's own outcome
                    LOG.error("Failed to release lock %s: %s", lock.name, exc)
