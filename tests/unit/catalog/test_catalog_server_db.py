"""The catalog on a real MariaDB/MySQL or PostgreSQL server (active-active deployments).

Set CATALOG_TEST_DB_URL to an SQLAlchemy URL of an empty database the test may fill and wipe,
e.g. postgresql+psycopg2://cinder:secret@127.0.0.1/catalog_test or
mysql+pymysql://cinder:secret@127.0.0.1/catalog_test. The test drops the catalog's tables
before and after it runs.
"""

from __future__ import annotations

import os
import threading

import pytest
import sqlalchemy as sa

from cinder_zfs_ocfs2.catalog import Catalog, migrate, models
from tests.unit.catalog.helpers import ROOT, T0, Clock, snap, uid, volume_ds

URL = os.environ.get("CATALOG_TEST_DB_URL")

pytestmark = pytest.mark.skipif(
    not URL, reason="CATALOG_TEST_DB_URL is not set: no MariaDB/PostgreSQL server to test on")


def _wipe(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        if migrate.current_revision(conn) is not None:
            migrate.downgrade(conn, "base")
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {models.VERSION_TABLE}"))


@pytest.fixture
def server_catalog():
    engine = sa.create_engine(URL, poolclass=sa.pool.NullPool)
    _wipe(engine)
    clock = Clock()
    cat = Catalog.from_url(URL, clock=clock)
    cat.clock = clock
    cat.ping()   # opening connects lazily: create the schema now
    yield cat
    cat.close()
    _wipe(engine)
    engine.dispose()


def test_schema_and_roundtrip(server_catalog):
    cat = server_catalog
    with cat.engine.connect() as conn:
        assert migrate.current_revision(conn) == migrate.head_revision()
    big = (1 << 64) - 2
    v, s = uid(1), uid(2)
    name = f"{volume_ds('p1', v)}@snapshot-{s}"
    cat.begin_snapshot(name, snapshot_id=s, volume_id=v, project_id="p1", backend="zfs1")
    cat.clock.advance(1)
    cat.snapshot_created(snap(volume_ds("p1", v), f"snapshot-{s}", guid=big, creation=T0,
                              used=1 << 40))
    row = cat.get(name)
    assert (row.guid, row.used, row.state, row.backend) == (big, 1 << 40, "available", "zfs1")
    assert cat.by_guid(big)[0].zfs_name == name


def test_names_are_case_sensitive(server_catalog):
    # MySQL/MariaDB's default collations would make these one row (and break uniqueness).
    ds = volume_ds("p1", uid(1))
    server_catalog.reconcile([snap(ds, "Daily", guid=1), snap(ds, "daily", guid=2)], ROOT)
    assert server_catalog.get(f"{ds}@Daily").guid == 1
    assert server_catalog.get(f"{ds}@daily").guid == 2
    assert server_catalog.count() == 2


def test_reconcile_queries_and_paging(server_catalog):
    cat = server_catalog
    listing = [snap(volume_ds(f"p{i % 3}", uid(i % 7)), f"snapshot-{uid(100 + i)}",
                    guid=i + 1, creation=T0 + (i // 2) * 60, clones=[f"{ROOT}/p0/c{i}"]
                    if i % 10 == 0 else ()) for i in range(60)]
    report = cat.reconcile(listing, ROOT)
    assert report.added == 60 and report.edges_added == 6
    cat.clock.advance(60)
    assert cat.reconcile(listing, ROOT).writes == 0
    seen, after = [], None
    while True:
        page = cat.list_by_project("p1", limit=7, after=after)
        seen.extend(page.rows)
        if not page.next:
            break
        after = page.next
    assert len(seen) == 20 and {r.project_id for r in seen} == {"p1"}
    assert [(r.creation, r.id) for r in seen] == sorted(((r.creation, r.id) for r in seen),
                                                        reverse=True)
    assert cat.nearest_before(uid(3), T0 + 600).creation <= T0 + 600
    assert len(cat.in_time_range(T0, T0 + 120, limit=100).rows) == 4
    assert cat.dependents(guid=11) == [f"{ROOT}/p0/c10"]
    assert sum(u.snapshots for u in cat.usage_by_project()) == 60
    cat.clock.advance(60)
    report = cat.reconcile(listing[10:], ROOT)
    assert report.removed == 10 and cat.count() == 50


def test_threads(server_catalog):
    errors = []

    def worker(n):
        try:
            for i in range(10):
                v, s = uid(n * 100 + i), uid(n * 100 + i + 50)
                ds = volume_ds(f"p{n}", v)
                server_catalog.begin_snapshot(f"{ds}@snapshot-{s}", snapshot_id=s, volume_id=v,
                                              project_id=f"p{n}")
                server_catalog.snapshot_created(snap(ds, f"snapshot-{s}", guid=n * 100 + i + 1))
        except Exception as exc:   # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and server_catalog.count() == 40


def test_models_match_migrations_on_the_server(server_catalog):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with server_catalog.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True,
                                                     "version_table": models.VERSION_TABLE})
        assert compare_metadata(ctx, models.Base.metadata) == []
