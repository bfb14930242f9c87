"""Options of the catalog API service (its own config file, section [catalog_api]).

`list_opts` feeds oslo-config-generator (entry point ``oslo.config.opts =
cinder_zfs_ocfs2.api``); etc/cinder-zfs-catalog-api.conf.sample is generated from it together
with keystonemiddleware's [keystone_authtoken] and oslo.policy's [oslo_policy]
(`make sample-config`).
"""

from __future__ import annotations

from oslo_config import cfg

GROUP = "catalog_api"

api_opts = [
    cfg.StrOpt("catalog_connection", secret=True,
               help="SQLAlchemy URL of the snapshot catalog this service reads: the backend's "
                    "zfs_catalog_connection, or its embedded SQLite file "
                    "sqlite:///$state_path/zfs_catalog-<backend>.sqlite. The service never "
                    "writes to it and never migrates its schema (cinder-volume does)."),
    cfg.HostAddressOpt("bind_host", default="127.0.0.1",
                       help="Address the cinder-zfs-catalog-api console script listens on "
                            "(under gunicorn, gunicorn's --bind decides)."),
    cfg.PortOpt("bind_port", default=8796,
                help="Port the cinder-zfs-catalog-api console script listens on."),
    cfg.IntOpt("default_limit", default=100, min=1,
               help="Rows in a page when the request gives no limit."),
    cfg.IntOpt("max_limit", default=1000, min=1,
               help="Largest page (and most volumes in one nearest set) a request may ask "
                    "for."),
    cfg.StrOpt("marker_key", secret=True,
               help="Key that signs page markers (at least 16 characters). Unset: a random "
                    "key per process, so markers only work against the process that issued "
                    "them: set it when several workers or hosts serve the API."),
]


def register(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(api_opts, group=GROUP)


def list_opts():
    return [(GROUP, api_opts)]
