"""Alembic environment of the snapshot catalog.

Run in code by cinder_zfs_ocfs2.catalog.migrate (no alembic.ini needed): the caller passes an
open connection in ``config.attributes['connection']``. The ``alembic`` command line works too
with ``-x url=...`` or ``sqlalchemy.url`` set in a config file.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from cinder_zfs_ocfs2.catalog import models

config = context.config
target_metadata = models.Base.metadata


def _url() -> str:
    return context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url")


def _configure(**kwargs) -> None:
    context.configure(target_metadata=target_metadata, version_table=models.VERSION_TABLE,
                      render_as_batch=True, compare_type=True, **kwargs)


def run_migrations_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = sa.create_engine(_url(), poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        _configure(connection=conn)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
