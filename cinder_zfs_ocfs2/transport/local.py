"""Local mode as root: cinder-volume runs on the storage node and performs ZFS operations
in-process, through the agent's own NodeOperations (same allow-list). As the cinder user, the
agent runs under the root helper instead: transport.rootwrap.

libzfs_core calls block in C and the CLIs block in subprocess; both run in a native thread
(eventlet's tpool) when cinder-volume's event loop is active, so one slow destroy does not stall
every other request.
"""

from __future__ import annotations

import logging  # stdlib, like the agent: this module also runs on a node without oslo

from cinder_zfs_ocfs2.agent.ops import NodeOperations

LOG = logging.getLogger(__name__)


def _native_thread_runner():
    try:
        from eventlet import patcher, tpool
    except ImportError:
        return None
    return tpool.execute if patcher.is_monkey_patched("thread") else None


class LocalTransport:
    def __init__(self, root: str, pyzfs="auto"):
        self.ops = NodeOperations(root, pyzfs=pyzfs)
        if self.ops.lzc is None:
            LOG.warning("libzfs_core (Debian python3-pyzfs) is not importable: every ZFS "
                        "operation runs through the zfs CLI. Install python3-pyzfs on this "
                        "node for atomic multi-snapshots without the CLI.")
        self.info = {"type": "local", "root": self.ops.names.root,
                     "pyzfs": self.ops.lzc is not None, "operations": self.ops.operations}
        self._execute = _native_thread_runner()

    def _run(self, func, *args):
        if self._execute is not None:
            return self._execute(func, *args)
        return func(*args)

    def call(self, op: str, **args):
        return self._run(self.ops.dispatch, op, args)

    def write_volume(self, name: str, source, size: int) -> int:
        return self._run(self.ops.write_volume, name, size, source)

    def read_volume(self, name: str, sink) -> int:
        return self._run(self.ops.read_volume, name, sink)

    def close(self) -> None:
        pass
