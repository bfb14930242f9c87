"""Which catalog scope a backend's configuration names: (section, storage node, root).

The driver and cinder-zfs-catalog both derive it here, so that by default they open the same
file and the same rows.
"""

from __future__ import annotations

import socket

from cinder_zfs_ocfs2.catalog.api import Identity


def node_of(conf) -> str:
    """The storage node a backend reaches: the agent's host:port over SSH, else this host."""
    if conf.zfs_agent_mode == "ssh":
        return f"{conf.zfs_ssh_host}:{conf.zfs_ssh_port}"
    return socket.gethostname()


def backend_identity(section: str, conf) -> Identity:
    """``conf``: the backend section's options (zfs_agent_mode, zfs_ssh_*, zfs_root_dataset)."""
    return Identity(section, node_of(conf), conf.zfs_root_dataset.strip("/"))
