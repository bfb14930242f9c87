"""Schema upgrades of the catalog through Alembic's API, with no alembic.ini on disk."""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from oslo_log import log as logging

from cinder_zfs_ocfs2.catalog import models

LOG = logging.getLogger(__name__)
SCRIPT_LOCATION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")


def alembic_config(connection: sa.engine.Connection | None = None,
                   url: str | None = None) -> Config:
    """A Config built in code; ``connection`` (preferred) or ``url`` says where to migrate."""
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    if url is not None:
        # Config values go through ConfigParser interpolation: a '%' in a password must double.
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: sa.engine.Connection) -> str | None:
    ctx = MigrationContext.configure(connection,
                                     opts={"version_table": models.VERSION_TABLE})
    return ctx.get_current_revision()


def upgrade(connection: sa.engine.Connection, revision: str = "head") -> None:
    """Bring the schema on ``connection`` to ``revision``; a no-op when it is there already."""
    command.upgrade(alembic_config(connection), revision)


def downgrade(connection: sa.engine.Connection, revision: str) -> None:
    command.downgrade(alembic_config(connection), revision)
