"""Fakes at the transport boundary: a NodeOperations whose commands are recorded, not run."""

from __future__ import annotations

from cinder_zfs_ocfs2.agent.ops import NodeOperations
from cinder_zfs_ocfs2.zfs import errors


class RecordingOperations(NodeOperations):
    """NodeOperations without pyzfs whose CLI calls are recorded and answered from a table."""

    rtslib = False  # never reach the host's real LIO

    def __init__(self, root="tank/cinder", replies=None):
        super().__init__(root, pyzfs=None)
        self.busy_retries = 1
        self.commands: list[list[str]] = []
        self.replies = replies or {}

    def wait_for_device(self, name, timeout=60.0):
        self.names.check(name)
        return f"/dev/zvol/{name}"

    def _run(self, argv, name=None, input=None):
        self.commands.append(argv)
        reply = self.replies.get(argv[1], "")
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, tuple):  # (returncode, stderr)
            raise errors.from_cli(reply[1], name)
        return reply
