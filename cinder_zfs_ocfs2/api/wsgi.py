"""The catalog API's WSGI pipeline, and the module gunicorn serves.

    gunicorn --bind 127.0.0.1:8796 cinder_zfs_ocfs2.api.wsgi:application

Configuration files: $CINDER_ZFS_CATALOG_API_CONFIG_FILES (comma-separated), else oslo.config's
default search for cinder/cinder-zfs-catalog-api.conf (/etc/cinder/...). Pipeline:
request id -> keystonemiddleware auth_token ([keystone_authtoken]) -> CatalogAPI.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from keystonemiddleware import auth_token
from oslo_config import cfg
from oslo_log import log as logging
from oslo_middleware import request_id

from cinder_zfs_ocfs2.api import app, opts, policies
from cinder_zfs_ocfs2.catalog import Catalog

PROJECT = "cinder"
PROG = "cinder-zfs-catalog-api"
CONFIG_FILES_ENV = "CINDER_ZFS_CATALOG_API_CONFIG_FILES"

LOG = logging.getLogger(__name__)


def load_config(args: Sequence[str] = (), config_files: Sequence[str] | None = None
                ) -> cfg.ConfigOpts:
    """A private ConfigOpts with the service's, oslo.log's and oslo.policy's options."""
    conf = cfg.ConfigOpts()
    opts.register(conf)
    logging.register_options(conf)
    if config_files is None and os.environ.get(CONFIG_FILES_ENV):
        config_files = [f for f in os.environ[CONFIG_FILES_ENV].split(",") if f]
    conf(list(args), project=PROJECT, prog=PROG,
         default_config_files=list(config_files) if config_files is not None else None)
    return conf


def build_catalog_app(conf: cfg.ConfigOpts) -> app.CatalogAPI:
    """The application without authentication (for tests and the pipeline below)."""
    group = conf[opts.GROUP]
    if not group.catalog_connection:
        raise cfg.RequiredOptError("catalog_connection", cfg.OptGroup(opts.GROUP))
    if group.marker_key is None:
        LOG.warning("[%s] marker_key is unset: page markers only work against this process",
                    opts.GROUP)
    # upgrade=False: the schema belongs to cinder-volume; this service only reads.
    catalog = Catalog.from_url(group.catalog_connection, upgrade=False)
    return app.CatalogAPI(catalog, policies.get_enforcer(conf),
                          default_limit=group.default_limit, max_limit=group.max_limit,
                          marker_key=group.marker_key.encode() if group.marker_key else None)


class _VersionsWithoutToken:
    """Version documents answer without a token (as Cinder's do, for discovery and health
    checks); every other path goes through auth_token."""

    def __init__(self, app, authenticated):
        self.app = app
        self.authenticated = authenticated

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").rstrip("/") in ("", "/v1"):
            return self.app(environ, start_response)
        return self.authenticated(environ, start_response)


def build_app(conf: cfg.ConfigOpts):
    """The full pipeline: request ids, Keystone token validation, the catalog API."""
    inner = build_catalog_app(conf)
    authenticated = auth_token.AuthProtocol(inner, {"oslo_config_config": conf})
    return request_id.RequestId(_VersionsWithoutToken(inner, authenticated))


def init_application():
    conf = load_config()
    logging.setup(conf, PROG)
    return build_app(conf)


class _LazyApplication:
    """Builds the pipeline at the first request, so importing this module reads no config."""

    def __init__(self):
        self._app = None

    def __call__(self, environ, start_response):
        if self._app is None:
            self._app = init_application()
        return self._app(environ, start_response)


application = _LazyApplication()
