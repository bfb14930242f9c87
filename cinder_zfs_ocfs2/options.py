"""Every option of the driver. Registered in the backend's section of cinder.conf.

`list_opts` feeds oslo-config-generator (entry point ``oslo.config.opts = cinder_zfs_ocfs2``);
etc/cinder-zfs-ocfs2.conf.sample is generated from it (`make sample-config`).
"""

from __future__ import annotations

from oslo_config import cfg

storage_opts = [
    cfg.StrOpt("zfs_root_dataset", default="tank/cinder",
               help="Dataset under which this backend keeps everything: per-project parent "
                    "datasets, volumes (zvols) and their snapshots. Nothing outside it is ever "
                    "touched."),
    cfg.BoolOpt("zfs_create_root_dataset", default=True,
                help="Create zfs_root_dataset at start-up if it does not exist (the pool must)."),
    cfg.BoolOpt("zfs_sparse_volumes", default=True,
                help="Create volumes sparse (no refreservation; thin provisioning) unless the "
                     "volume type's extra spec zfs:sparse says otherwise."),
    cfg.StrOpt("zfs_volblocksize", default="16K",
               help="Default volblocksize of new zvols (power of two, 512 to 128K); overridden "
                    "by the extra spec zfs:volblocksize. Volume sizes are rounded up to it."),
    cfg.StrOpt("zfs_compression", default="lz4",
               help="Default compression of new zvols; overridden by the extra spec "
                    "zfs:compression."),
    cfg.StrOpt("zfs_clone_mode", default="linked", choices=["linked", "independent"],
               help="How a volume is made from a snapshot: 'linked' is an O(1) zfs clone that "
                    "depends on the snapshot; 'independent' is a full copy by send|receive. The "
                    "extra spec zfs:clone_mode overrides it per volume type."),
    cfg.IntOpt("zfs_max_clone_depth", default=5, min=0,
               help="Longest chain of linked clones (clone of a clone of ...) before a new "
                    "clone is made independent instead. ZFS reads never walk the chain; the "
                    "limit keeps deleted origins from being pinned forever. 0 disables linked "
                    "clones."),
    cfg.IntOpt("zfs_snapshot_batch_window_ms", default=50, min=0, max=5000,
               help="Snapshots of different volumes requested within this many milliseconds "
                    "of each other are taken in one ZFS call (one transaction group: the "
                    "volumes of one instance snapshotted by Nova are crash-consistent with "
                    "each other). 0 disables coalescing."),
    cfg.BoolOpt("zfs_promote_newest_clone_on_delete", default=False,
                help="When a deleted volume still has snapshots with clones, promote its newest "
                     "clone so the space moves to the clone instead of keeping the volume "
                     "hidden until its clones are gone."),
]

agent_opts = [
    cfg.StrOpt("zfs_agent_mode", default="ssh", choices=["local", "ssh"],
               help="How to reach the storage node: 'local' runs ZFS in the cinder-volume "
                    "process (cinder-volume runs on the node); 'ssh' talks to the "
                    "cinder-zfs-agent over one persistent SSH session."),
    cfg.HostAddressOpt("zfs_ssh_host", default="127.0.0.1",
                       help="Storage node address (ssh mode)."),
    cfg.PortOpt("zfs_ssh_port", default=22, help="Storage node SSH port (ssh mode)."),
    cfg.StrOpt("zfs_ssh_user", default="root",
               help="SSH user whose authorized_keys pins the agent as the forced command."),
    cfg.StrOpt("zfs_ssh_private_key", default="/etc/cinder/zfs_agent_key",
               help="Private key for the agent's SSH login."),
    cfg.StrOpt("zfs_ssh_known_hosts_file", default="/etc/cinder/zfs_agent_known_hosts",
               help="known_hosts file holding the storage node's host key."),
    cfg.BoolOpt("zfs_ssh_strict_host_key_checking", default=True,
                help="Refuse a storage node whose host key is not in zfs_ssh_known_hosts_file."),
    cfg.StrOpt("zfs_ssh_agent_command", default="cinder-zfs-agent",
               help="Command requested on the node (the key's forced command wins if set)."),
    cfg.IntOpt("zfs_ssh_timeout", default=300, min=1,
               help="Seconds a call may go without a reply or a progress report from the "
                    "agent before it fails. Long copies (independent clones, migrations) report "
                    "progress as they go, so this bounds silence, not the length of a copy."),
    cfg.IntOpt("zfs_ssh_connect_retries", default=3, min=1,
               help="Connection attempts (with exponential backoff) before a call fails."),
]

catalog_opts = [
    cfg.StrOpt("zfs_catalog_connection", default=None, secret=True,
               help="SQLAlchemy URL of the snapshot catalog. Unset: an embedded SQLite file "
                    "$state_path/zfs_catalog-<backend>.sqlite. Use a MySQL/PostgreSQL URL when "
                    "several cinder-volume hosts share the backend (active-active)."),
    cfg.IntOpt("zfs_catalog_reconcile_interval", default=3600, min=0,
               help="Seconds between reconciliations of the catalog against the pool "
                    "(0: only at start-up). Write-through keeps the catalog current; this "
                    "catches out-of-band changes. Each pass lists every snapshot under the "
                    "root (about 2 minutes of node time at 10,000 snapshots on OpenZFS 2.1)."),
]

ocfs2_opts = [
    cfg.IntOpt("ocfs2_default_slots", default=8, min=1, max=255,
               help="Node slots of an OCFS2 filesystem when the extra spec ocfs2:slots is "
                    "not set: how many hosts can mount it at once."),
    cfg.StrOpt("ocfs2_default_cluster_stack", default="o2cb", choices=["local", "o2cb"],
               help="Cluster stack of new OCFS2 filesystems when ocfs2:cluster_stack is not "
                    "set: 'o2cb' for multi-host mounts, 'local' for single-host."),
]

ALL_OPTS = storage_opts + agent_opts + catalog_opts + ocfs2_opts


def list_opts():
    """Options for oslo-config-generator, in the section a backend uses."""
    return [("backend_defaults", ALL_OPTS)]


def register(conf: cfg.ConfigOpts, group: str | None = None) -> None:
    conf.register_opts(ALL_OPTS, group=group)
