"""Schema: Alembic migrations from an empty database, in code, matching the models."""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from cinder_zfs_ocfs2.catalog import Catalog, default_url, migrate, models


def test_migrations_run_from_empty(db_url, tmp_path, monkeypatch):
    # No alembic.ini anywhere near the working directory: the Config is built in code.
    monkeypatch.chdir(tmp_path)
    assert not os.path.exists("alembic.ini")
    with Catalog.from_url(db_url) as cat:
        # Opening never connects: the first call creates the schema.
        assert sa.inspect(cat.engine).get_table_names() == []
        cat.ping()
        inspector = sa.inspect(cat.engine)
        tables = set(inspector.get_table_names())
        assert {models.SCOPES_TABLE, models.SNAPSHOTS_TABLE, models.EDGES_TABLE,
                models.VERSION_TABLE} <= tables
        indexes = {i["name"] for i in inspector.get_indexes(models.SNAPSHOTS_TABLE)}
        assert {"ix_zfs_snapshots_project_creation", "ix_zfs_snapshots_volume_creation",
                "ix_zfs_snapshots_guid", "ix_zfs_snapshots_creation",
                "ix_zfs_snapshots_scope_dataset", "ix_zfs_snapshots_scope_state"} <= indexes
        edge_indexes = {i["name"] for i in inspector.get_indexes(models.EDGES_TABLE)}
        assert {"ix_zfs_clone_edges_scope_origin", "ix_zfs_clone_edges_origin_guid"} <= edge_indexes
        with cat.engine.connect() as conn:
            assert migrate.current_revision(conn) == migrate.head_revision()


def test_models_match_migrations(catalog):
    catalog.ping()
    with catalog.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True,
                                                     "version_table": models.VERSION_TABLE})
        diff = compare_metadata(ctx, models.Base.metadata)
    assert diff == []


def test_reopen_is_a_noop(db_url, clock):
    with Catalog.from_url(db_url, clock=clock) as cat:
        cat.begin_snapshot("tank/cinder/p/volume-x@manual", snapshot_id=None, volume_id=None,
                           project_id="p")
    with Catalog.from_url(db_url, clock=clock) as cat:
        assert cat.count() == 1


def test_downgrade_to_base_and_up_again(catalog):
    catalog.ping()
    with catalog.engine.begin() as conn:
        migrate.downgrade(conn, "base")
    assert models.SNAPSHOTS_TABLE not in sa.inspect(catalog.engine).get_table_names()
    catalog.upgrade()
    assert models.SNAPSHOTS_TABLE in sa.inspect(catalog.engine).get_table_names()


def test_sqlite_pragmas(catalog):
    catalog.ping()
    with catalog.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar().lower() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_memory_url_works_across_calls():
    with Catalog.from_url("sqlite://") as cat:
        cat.begin_snapshot("tank/cinder/p/volume-x@manual", snapshot_id=None, volume_id=None,
                           project_id="p")
        assert cat.count() == 1


def test_default_url():
    assert default_url("/var/lib/cinder") == "sqlite:////var/lib/cinder/zfs_catalog.sqlite"
    assert default_url("/var/lib/cinder/", "zfs1") == \
        "sqlite:////var/lib/cinder/zfs_catalog-zfs1.sqlite"


def test_offline_sql_renders(tmp_path, capsys):
    # DBAs of a shared MySQL/PostgreSQL catalog can review the DDL first (alembic --sql).
    from alembic import command

    command.upgrade(migrate.alembic_config(url="postgresql://u:p%40ss@db/catalog"), "head",
                    sql=True)
    out = capsys.readouterr().out
    assert "CREATE TABLE zfs_snapshots" in out
    assert "zfs_catalog_alembic_version" in out


def test_sqlite_writers_take_the_lock_up_front(catalog):
    from sqlalchemy import event

    catalog.ping()  # the schema and the scope row: the first call's own transactions
    begins = []

    @event.listens_for(catalog.engine, "before_cursor_execute")
    def _seen(conn, cursor, statement, params, context, executemany):
        if statement.startswith("BEGIN"):
            begins.append(statement)

    catalog.begin_snapshot("tank/cinder/p/volume-x@manual", snapshot_id=None, volume_id=None,
                           project_id="p")
    catalog.list_by_project("p")
    assert begins[0] == "BEGIN IMMEDIATE"   # the write
    assert begins[-1] == "BEGIN"            # the read does not block writers
