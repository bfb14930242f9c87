"""How the ZFS client reaches a storage node: in-process (local) or the SSH agent (ssh).

A transport has one method that matters, ``call(op, **args)``: it runs a NodeOperations
operation on the node and returns its JSON-able result, or raises a zfs.errors type.
"""

from __future__ import annotations

from typing import Any, Protocol


class Transport(Protocol):
    info: dict

    def call(self, op: str, **args: Any) -> Any: ...

    def close(self) -> None: ...


def from_config(configuration) -> Transport:
    """The transport a backend's configuration asks for (zfs_agent_mode)."""
    if configuration.zfs_agent_mode == "local":
        import os

        from cinder_zfs_ocfs2.transport.local import LocalTransport
        if os.geteuid() == 0:
            return LocalTransport(configuration.zfs_root_dataset)
        # As the cinder user: the agent itself runs as root through Cinder's root helper, the
        # one command etc/rootwrap.d/zfs-ocfs2.filters grants (never zfs or zpool as such).
        from cinder import utils

        from cinder_zfs_ocfs2.transport.rootwrap import RootHelperAgentTransport
        return RootHelperAgentTransport(configuration.zfs_root_dataset,
                                        utils.get_root_helper(),
                                        timeout=configuration.zfs_ssh_timeout)
    from cinder_zfs_ocfs2.transport.ssh import SSHTransport
    return SSHTransport(
        host=configuration.zfs_ssh_host,
        port=configuration.zfs_ssh_port,
        user=configuration.zfs_ssh_user,
        key_file=configuration.zfs_ssh_private_key,
        known_hosts=configuration.zfs_ssh_known_hosts_file,
        strict_host_key=configuration.zfs_ssh_strict_host_key_checking,
        command=configuration.zfs_ssh_agent_command,
        timeout=configuration.zfs_ssh_timeout,
        connect_retries=configuration.zfs_ssh_connect_retries,
    )
