"""Local mode as the cinder user: the agent runs as root under Cinder's root helper.

cinder-volume on the storage node, not running as root, must not be granted `zfs`, `zpool`,
`mkfs.ocfs2` ... as root: a rootwrap filter for `zfs` lets anything running as the cinder user
run any `zfs` command (`zfs destroy -r <pool>`, `zfs set mountpoint=/etc ...`). Instead the
ONLY command the filters grant (etc/rootwrap.d/zfs-ocfs2.filters) is the agent itself,

    sudo cinder-rootwrap /etc/cinder/rootwrap.conf cinder-zfs-agent --root <root dataset>

and the driver speaks to it over pipes exactly as to the SSH agent (same protocol, same
session multiplexing, same streams): local mode is never wider than the agent's allow-list.
"""

from __future__ import annotations

import subprocess

from cinder_zfs_ocfs2.agent.sendrecv import stop_process
from cinder_zfs_ocfs2.transport.ssh import AgentTransport, _Session
from cinder_zfs_ocfs2.zfs import errors

STOP_GRACE = 5.0


class _AgentProcess:
    """One agent child process: what the session and the streams use of an SSH channel
    (makefile, makefile_stderr, sendall, shutdown_write, close), over its pipes."""

    def __init__(self, argv: list[str]):
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE)
        except OSError as exc:
            raise errors.TransportError(f"cannot start {' '.join(argv)}: {exc}") from None

    def makefile(self, mode: str):
        return self.proc.stdout

    def makefile_stderr(self, mode: str):
        return self.proc.stderr

    def sendall(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def shutdown_write(self) -> None:
        self.proc.stdin.close()

    def close(self) -> None:
        """End the agent: the end of its input first (it finishes what runs), then signals."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            stop_process(self.proc, STOP_GRACE)


class RootHelperAgentTransport(AgentTransport):
    """The agent for ``root`` under ``root_helper`` (e.g. "sudo cinder-rootwrap <conf>").

    Calls have the SSH transport's deadline (no reply and no progress for ``timeout``); a
    volume data stream is a pipe to a local process, read and written like a local device,
    with no network to time out."""

    unreachable_hint = ("Check that etc/rootwrap.d/zfs-ocfs2.filters is installed in "
                        "/etc/cinder/rootwrap.d and that cinder-zfs-agent is on the node")

    def __init__(self, root: str, root_helper: str, timeout: float = 300,
                 agent: str = "cinder-zfs-agent"):
        super().__init__("local agent (root helper)", timeout, retries=1, backoff=0)
        self._argv = root_helper.split() + [agent, "--root", root]

    def _open(self) -> _Session:
        process = self._stream_channel()
        try:
            return _Session(process, process, self.where)
        except BaseException:
            process.close()
            raise

    def _stream_channel(self) -> _AgentProcess:
        return _AgentProcess(self._argv)
