"""An agent whose libzfs_core must never be reached, for proving refusals before they matter.

The unit tests refuse through it; the functional tests send a hostile frame to the real node
only after it was refused here (a refusal that reached libzfs_core could panic the node).
"""

from __future__ import annotations

from tests.unit.zfs.fakes import RecordingOperations


class UntouchableLzc:
    """A libzfs_core whose every function fails the test."""

    def __getattr__(self, name):
        def called(*args, **kwargs):
            raise AssertionError(f"libzfs_core.{name} reached with {args!r:.200}")
        return called


class GuardedOperations(RecordingOperations):
    """NodeOperations with the CLI recorded (answered from ``replies``) and pyzfs untouchable."""

    def __init__(self, root: str = "tank/cinder", replies=None):
        super().__init__(root, replies=replies)
        self.lzc = UntouchableLzc()
