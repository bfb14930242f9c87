"""The snapshot catalog: an index over the pool's snapshots (DESIGN.md section 5).

The pool is the truth; the catalog mirrors it through write-through calls from the driver
(an intent row before each ZFS call, the final state after) and reconciliation against a pool
listing. It knows its tables only: nothing of Cinder's driver API or of how ZFS is reached.

Threads: every call checks a connection out of the engine's pool for its own short
transaction; nothing is shared between calls, so one Catalog serves all threads of a process.
On SQLite, writers take the lock up front (BEGIN IMMEDIATE) and wait up to busy_timeout,
readers never block writers (WAL).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

import sqlalchemy as sa
from oslo_log import log as logging
from sqlalchemy import event, orm

from cinder_zfs_ocfs2.catalog import derive, migrate, models
from cinder_zfs_ocfs2.catalog import reconcile as reconcile_mod
from cinder_zfs_ocfs2.catalog.models import edges as E
from cinder_zfs_ocfs2.catalog.models import snapshots as S
from cinder_zfs_ocfs2.zfs import names
from cinder_zfs_ocfs2.zfs.types import Snapshot

LOG = logging.getLogger(__name__)

DEFAULT_FILE = "zfs_catalog.sqlite"
SQLITE_BUSY_TIMEOUT_MS = 30000
_WRITE = "zfs_catalog_write"
_CHUNK = 500  # bound on IN (...) lists: SQLite's variable limit, MySQL's packet size

TimeLike = int | float | datetime.datetime


def default_url(state_path: str, backend: str | None = None) -> str:
    """The embedded SQLite catalog under Cinder's state_path (one file per backend if named)."""
    name = f"zfs_catalog-{backend}.sqlite" if backend else DEFAULT_FILE
    return "sqlite:///" + state_path.rstrip("/") + "/" + name


def to_epoch(value: TimeLike) -> float:
    """Seconds since the epoch; naive datetimes are taken as UTC."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.timestamp()
    return float(value)


class SnapshotEntry(NamedTuple):
    """One catalog row. A named tuple: built straight from a result row, no per-field work."""

    id: int
    zfs_name: str
    dataset: str
    guid: int | None
    createtxg: int | None
    creation: int
    snapshot_id: str | None
    volume_id: str | None
    project_id: str | None
    group_snapshot_id: str | None
    backend: str | None
    kind: str
    state: str
    used: int
    referenced: int
    written: int
    defer_destroy: bool
    updated_at: float

    @property
    def created_at(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.creation, datetime.timezone.utc)

    def to_dict(self) -> dict:
        out = self._asdict()
        out["defer_destroy"] = bool(self.defer_destroy)
        # Decimal string: guids use 64 bits, beyond what JSON readers like jq or JS keep exact.
        out["guid"] = None if self.guid is None else str(self.guid)
        out["created_at"] = self.created_at.isoformat()
        return out


FIELDS = SnapshotEntry._fields
_COLS = [S.c[f] for f in FIELDS]


@dataclasses.dataclass(frozen=True)
class Page:
    rows: list[SnapshotEntry]
    next: str | None   # cursor for the following page, None on the last one


@dataclasses.dataclass(frozen=True)
class Usage:
    project_id: str | None
    snapshots: int
    used: int
    referenced: int
    written: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Intent:
    """A snapshot the driver is about to create (see Catalog.begin_snapshots)."""

    zfs_name: str
    snapshot_id: str | None = None
    volume_id: str | None = None
    project_id: str | None = None
    group_snapshot_id: str | None = None
    backend: str | None = None


def encode_cursor(creation: int, row_id: int) -> str:
    return f"{creation}.{row_id}"


def decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        creation, _, row_id = cursor.partition(".")
        return int(creation), int(row_id)
    except (ValueError, AttributeError):
        raise ValueError(f"invalid cursor {cursor!r}") from None


def _chunks(items: Sequence, size: int = _CHUNK) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _scope(column: sa.ColumnElement, root: str, dialect: str) -> sa.ColumnElement:
    """Names in ``root``: the root's snapshots and everything below it.

    Where names compare bytewise (SQLite's BINARY, MySQL's utf8mb4_bin) a range seeks the
    unique index: '0' and 'A' follow '/' and '@'. Elsewhere (PostgreSQL's locale collations
    order punctuation differently) LIKE, a superset where it ignores case; callers filter
    with derive.in_root either way.
    """
    if dialect in ("sqlite", "mysql", "mariadb"):
        return sa.or_(sa.and_(column >= root + "/", column < root + "0"),
                      sa.and_(column >= root + "@", column < root + "A"))
    return sa.or_(column.like(_like_prefix(root + "/"), escape="\\"),
                  column.like(_like_prefix(root + "@"), escape="\\"))


def _setup_sqlite(engine: sa.Engine) -> None:
    memory = engine.url.database in (None, "", ":memory:")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # pysqlite's own transaction handling defers BEGIN and cannot take the write lock up
        # front; turn it off and emit BEGIN in the "begin" hook below.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if not memory:
            cur.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: durable across process crashes; a power cut may lose the last
            # commits, which reconciliation restores from the pool.
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # A writer that starts deferred can fail with SQLITE_BUSY at its first write, which
        # busy_timeout does not retry; IMMEDIATE waits for the lock instead.
        immediate = conn.get_execution_options().get(_WRITE)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Catalog:
    """Snapshot catalog over one SQLAlchemy engine. See the module docstring."""

    def __init__(self, engine: sa.Engine, *, upgrade: bool = True,
                 clock: Callable[[], float] = time.time):
        self.engine = engine
        self._writer = engine.execution_options(**{_WRITE: True})
        self._clock = clock
        self._sessions = orm.sessionmaker(bind=engine)
        if upgrade:
            self.upgrade()

    @classmethod
    def from_url(cls, url: str, *, upgrade: bool = True,
                 clock: Callable[[], float] = time.time, **engine_kwargs) -> Catalog:
        """Open (and by default create or upgrade) the catalog at an SQLAlchemy URL.

        ``sqlite:///<file>``: WAL, busy_timeout, writers BEGIN IMMEDIATE (threads of one
        process, or a few processes on one host). ``sqlite://`` (memory) shares one connection:
        for tests and one thread only. MySQL/PostgreSQL URLs: pre-pinged pooled connections.
        """
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database in (None, "", ":memory:"):
                # One shared connection, or every checkout would see its own empty database.
                engine_kwargs.setdefault("poolclass", sa.pool.StaticPool)
                engine_kwargs.setdefault("connect_args", {"check_same_thread": False})
            engine = sa.create_engine(parsed, **engine_kwargs)
            _setup_sqlite(engine)
        else:
            engine_kwargs.setdefault("pool_pre_ping", True)
            engine_kwargs.setdefault("pool_recycle", 3600)
            engine = sa.create_engine(parsed, **engine_kwargs)
        return cls(engine, upgrade=upgrade, clock=clock)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def upgrade(self) -> None:
        """Create or upgrade the schema to the newest migration."""
        head = migrate.head_revision()
        with self.engine.connect() as conn:
            if migrate.current_revision(conn) == head:
                return
        try:
            with self._writer.begin() as conn:
                migrate.upgrade(conn)
        except sa.exc.SQLAlchemyError:
            # Another host or process may have run the same migration at the same moment.
            with self.engine.connect() as conn:
                if migrate.current_revision(conn) != head:
                    raise
        LOG.info("Snapshot catalog at %s is at schema revision %s",
                 self.engine.url.render_as_string(hide_password=True), head)

    @contextlib.contextmanager
    def session(self) -> Iterator[orm.Session]:
        """An ORM session of its own (for ad-hoc use), committed on success."""
        with self._sessions.begin() as session:
            yield session

    def _read(self):
        return self.engine.connect()

    def _write(self):
        return self._writer.begin()

    # -- write-through -----------------------------------------------------------------------

    def begin_snapshot(self, zfs_name: str, *, snapshot_id: str | None,
                       volume_id: str | None, project_id: str | None,
                       group_snapshot_id: str | None = None,
                       backend: str | None = None) -> SnapshotEntry:
        """Intent row ('creating') written before the ZFS call that makes ``zfs_name``."""
        self.begin_snapshots([Intent(zfs_name, snapshot_id, volume_id, project_id,
                                     group_snapshot_id, backend)])
        return self.get(zfs_name)

    def begin_snapshots(self, intents: Iterable[Intent]) -> None:
        """Intent rows for snapshots taken in one ZFS call (group or coalesced snapshots)."""
        intents = list(intents)
        now = self._clock()
        values = []
        for it in intents:
            dataset, _ = names.split_snapshot(it.zfs_name)
            values.append({
                "zfs_name": it.zfs_name, "dataset": dataset, "kind": derive.kind_of(it.zfs_name),
                "snapshot_id": it.snapshot_id, "volume_id": it.volume_id,
                "project_id": it.project_id, "group_snapshot_id": it.group_snapshot_id,
                "backend": it.backend, "state": models.CREATING, "updated_at": now})
        with self._write() as conn:
            existing = self._ids_by_name(conn, [v["zfs_name"] for v in values])
            inserts = [dict(v, creation=int(now), used=0, referenced=0, written=0,
                            defer_destroy=False) for v in values if v["zfs_name"] not in existing]
            updates = [dict(v, _id=existing[v["zfs_name"]]) for v in values
                       if v["zfs_name"] in existing]
            if inserts:
                conn.execute(S.insert(), inserts)
            if updates:
                conn.execute(_update_by_id(S, updates[0]), updates)

    def snapshot_created(self, record: Snapshot, *, root: str | None = None,
                         backend: str | None = None) -> SnapshotEntry:
        """The ZFS call made ``record``: 'available' (or 'hidden') with the pool's values."""
        self.snapshots_created([record], root=root, backend=backend)
        return self.get(record.name)

    def snapshots_created(self, records: Iterable[Snapshot], *, root: str | None = None,
                          backend: str | None = None) -> None:
        records = list(records)
        now = self._clock()
        with self._write() as conn:
            rows = self._rows_by_name(conn, [r.name for r in records])
            inserts, updates = [], []
            for record in records:
                desc = derive.describe(record, root)
                row = rows.get(record.name)
                state = models.HIDDEN if desc["hidden"] else models.AVAILABLE
                values = reconcile_mod.merged(desc, row, state, backend)
                values.update(zfs_name=record.name, updated_at=now)
                if row is None:
                    inserts.append(values)
                else:
                    updates.append(dict(values, _id=row["id"]))
            if inserts:
                conn.execute(S.insert(), inserts)
            if updates:
                conn.execute(_update_by_id(S, updates[0]), updates)
            for record in records:
                self._set_edges(conn, record.name, record.guid or None, record.clones, now)

    def abandon_snapshot(self, zfs_name: str) -> bool:
        """The ZFS call failed: drop the 'creating' intent (other states are left alone)."""
        with self._write() as conn:
            result = conn.execute(S.delete().where(S.c.zfs_name == zfs_name,
                                                   S.c.state == models.CREATING))
            return result.rowcount > 0

    def snapshot_hidden(self, zfs_name: str) -> bool:
        """Deleted by Cinder but kept on the pool for its dependents."""
        return self._set_state(zfs_name, models.HIDDEN)

    def begin_delete(self, zfs_name: str) -> bool:
        """Intent ('deleting') written before the ZFS destroy."""
        return self._set_state(zfs_name, models.DELETING)

    def snapshot_deleted(self, zfs_name: str) -> bool:
        """The snapshot is gone from the pool: its row and its edges go too."""
        with self._write() as conn:
            conn.execute(E.delete().where(E.c.origin_name == zfs_name))
            return conn.execute(S.delete().where(S.c.zfs_name == zfs_name)).rowcount > 0

    def _set_state(self, zfs_name: str, state: str) -> bool:
        with self._write() as conn:
            result = conn.execute(S.update().where(S.c.zfs_name == zfs_name)
                                  .values(state=state, updated_at=self._clock()))
            return result.rowcount > 0

    def snapshot_renamed(self, guid: int, new_name: str, *, project_id: str | None = None,
                         volume_id: str | None = None) -> bool:
        """A promote or rename moved the snapshot with ``guid`` to ``new_name``.

        Volume and project follow the new path unless given; edges follow the snapshot.
        """
        dataset, _ = names.split_snapshot(new_name)
        now = self._clock()
        with self._write() as conn:
            found = conn.execute(sa.select(S.c.id, S.c.zfs_name, S.c.volume_id, S.c.project_id,
                                           S.c.snapshot_id).where(S.c.guid == guid)).all()
            if not found:
                return False
            pool = new_name.split("/")[0]
            # guids are unique per pool; a catalog shared by backends may hold two.
            row = next((r for r in found if r.zfs_name.split("/")[0] == pool), found[0])
            if row.zfs_name == new_name:
                return True
            conn.execute(S.delete().where(S.c.zfs_name == new_name))
            conn.execute(S.update().where(S.c.id == row.id).values(
                zfs_name=new_name, dataset=dataset, kind=derive.kind_of(new_name),
                snapshot_id=names.snapshot_id_of(new_name) or row.snapshot_id,
                volume_id=volume_id or names.volume_id_of(dataset) or row.volume_id,
                project_id=project_id or derive.project_of_path(dataset) or row.project_id,
                updated_at=now))
            conn.execute(E.update().where(E.c.origin_name == row.zfs_name)
                         .values(origin_name=new_name, origin_guid=guid, updated_at=now))
            return True

    def dataset_renamed(self, old: str, new: str, *, project_id: str | None = None,
                        volume_id: str | None = None) -> int:
        """A zvol was renamed (project transfer, trash): its snapshots and edges follow."""
        names.validate_dataset(new)
        now = self._clock()
        with self._write() as conn:
            rows = conn.execute(sa.select(S.c.id, S.c.zfs_name, S.c.volume_id, S.c.project_id)
                                .where(S.c.dataset == old)).all()
            new_volume = volume_id or names.volume_id_of(new)
            new_project = project_id or derive.project_of_path(new)
            updates = []
            for row in rows:
                short = row.zfs_name.partition("@")[2]
                updates.append({
                    "_id": row.id, "zfs_name": f"{new}@{short}", "dataset": new,
                    "kind": derive.kind_of(f"{new}@{short}"),
                    "volume_id": new_volume or row.volume_id,
                    "project_id": new_project or row.project_id, "updated_at": now})
            if updates:
                conn.execute(_update_by_id(S, updates[0]), updates)
                for u, row in zip(updates, rows, strict=True):
                    conn.execute(E.update().where(E.c.origin_name == row.zfs_name)
                                 .values(origin_name=u["zfs_name"], updated_at=now))
            conn.execute(E.update().where(E.c.dependent == old)
                         .values(dependent=new, updated_at=now))
            return len(updates)

    def dataset_destroyed(self, dataset: str) -> int:
        """A zvol is gone: its snapshots' rows, their edges and its own origin edge go."""
        with self._write() as conn:
            gone = conn.execute(sa.select(S.c.zfs_name).where(S.c.dataset == dataset)
                                ).scalars().all()
            for chunk in _chunks(gone):
                conn.execute(E.delete().where(E.c.origin_name.in_(chunk)))
            conn.execute(E.delete().where(E.c.dependent == dataset))
            return conn.execute(S.delete().where(S.c.dataset == dataset)).rowcount

    def set_clone_edges(self, origin_name: str, dependents: Iterable[str], *,
                        origin_guid: int | None = None) -> None:
        """Replace the edges of ``origin_name`` with ``dependents`` (its clones)."""
        with self._write() as conn:
            self._set_edges(conn, origin_name, origin_guid, tuple(dependents), self._clock())

    def add_clone_edge(self, origin_name: str, dependent: str, *,
                       origin_guid: int | None = None) -> None:
        """``dependent`` was cloned from ``origin_name`` (a dataset has one origin)."""
        now = self._clock()
        with self._write() as conn:
            if origin_guid is None:
                origin_guid = conn.execute(sa.select(S.c.guid).where(
                    S.c.zfs_name == origin_name)).scalar()
            conn.execute(E.delete().where(E.c.dependent == dependent))
            conn.execute(E.insert().values(origin_name=origin_name, origin_guid=origin_guid,
                                           dependent=dependent, updated_at=now))

    def remove_clone_edge(self, dependent: str) -> bool:
        with self._write() as conn:
            return conn.execute(E.delete().where(E.c.dependent == dependent)).rowcount > 0

    def _set_edges(self, conn: sa.Connection, origin_name: str, origin_guid: int | None,
                   dependents: Sequence[str], now: float) -> None:
        conn.execute(E.delete().where(E.c.origin_name == origin_name))
        if not dependents:
            return
        if origin_guid is None:
            origin_guid = conn.execute(sa.select(S.c.guid).where(
                S.c.zfs_name == origin_name)).scalar()
        for chunk in _chunks(list(dependents)):
            conn.execute(E.delete().where(E.c.dependent.in_(chunk)))
        conn.execute(E.insert(), [{"origin_name": origin_name, "origin_guid": origin_guid,
                                   "dependent": d, "updated_at": now} for d in dependents])

    @staticmethod
    def _ids_by_name(conn: sa.Connection, zfs_names: Sequence[str]) -> dict[str, int]:
        out = {}
        for chunk in _chunks(list(zfs_names)):
            out.update(conn.execute(sa.select(S.c.zfs_name, S.c.id)
                                    .where(S.c.zfs_name.in_(chunk))).all())
        return out

    @staticmethod
    def _rows_by_name(conn: sa.Connection, zfs_names: Sequence[str]) -> dict[str, dict]:
        out = {}
        for chunk in _chunks(list(zfs_names)):
            for row in conn.execute(sa.select(S).where(S.c.zfs_name.in_(chunk))).mappings():
                out[row["zfs_name"]] = dict(row)
        return out

    # -- reconciliation ----------------------------------------------------------------------

    def reconcile(self, snapshots: Iterable[Snapshot], root: str, *,
                  backend: str | None = None, listed_at: float | None = None,
                  stale_after: float = 600.0) -> reconcile_mod.ReconcileReport:
        """Apply the pool listing ``snapshots`` of ``root`` to the catalog as a diff.

        ``listed_at``: when the listing started (rows written since are left alone; default
        now). ``stale_after``: seconds an intent may stay in flight. Rules: reconcile.py.
        Never touches the pool. Writes nothing when nothing changed.
        """
        return self._reconcile(snapshots, root, backend=backend, listed_at=listed_at,
                               stale_after=stale_after, dry_run=False)

    def verify(self, snapshots: Iterable[Snapshot], root: str, *,
               backend: str | None = None, listed_at: float | None = None,
               stale_after: float = 600.0) -> reconcile_mod.ReconcileReport:
        """The diff ``reconcile`` would apply, without writing: ``report.drift``."""
        return self._reconcile(snapshots, root, backend=backend, listed_at=listed_at,
                               stale_after=stale_after, dry_run=True)

    def _reconcile(self, snapshots, root, *, backend, listed_at, stale_after, dry_run):
        started = time.monotonic()
        root = names.validate_dataset(root.strip("/"))
        now = self._clock()
        listed_at = now if listed_at is None else listed_at
        cols = [S.c.id, S.c.zfs_name, S.c.updated_at] + [S.c[k] for k in
                                                         reconcile_mod.COMPARED]
        dialect = self.engine.dialect.name
        with self._read() as conn:
            rows = [r for r in conn.execute(sa.select(*cols).where(
                _scope(S.c.zfs_name, root, dialect))).mappings()
                if derive.in_root(r["zfs_name"], root)]
            edge_rows = [e for e in conn.execute(sa.select(E).where(
                _scope(E.c.origin_name, root, dialect))).mappings()
                if derive.in_root(e["origin_name"], root)]
        plan, report = reconcile_mod.plan(snapshots, root, rows, edge_rows, now=now,
                                          listed_at=listed_at, stale_after=stale_after,
                                          backend=backend)
        report.dry_run = dry_run
        if plan and not dry_run:
            self._apply(plan, report)
        report.seconds = time.monotonic() - started
        if not dry_run and report.writes:
            LOG.info("Catalog reconciled with %(root)s: %(listed)d listed, %(added)d added, "
                     "%(removed)d removed, %(updated)d updated, %(renamed)d renamed, "
                     "%(missing)d marked missing", {
                         "root": root, "listed": report.listed, "added": report.added,
                         "removed": report.removed, "updated": report.updated,
                         "renamed": report.renamed, "missing": report.marked_missing})
        return report

    def _apply(self, plan: reconcile_mod.Plan, report: reconcile_mod.ReconcileReport) -> None:
        with self._write() as conn:
            if plan.deletes:
                conn.execute(S.delete().where(S.c.id == sa.bindparam("_id"),
                                              S.c.updated_at == sa.bindparam("_seen")),
                             plan.deletes)
            if plan.updates:
                # Renames first free their new names of stale rows (unique zfs_name).
                ids = {u["_id"] for u in plan.updates}
                taken = self._ids_by_name(conn, [u["zfs_name"] for u in plan.updates])
                stale = [i for i in taken.values() if i not in ids]
                for chunk in _chunks(stale):
                    conn.execute(S.delete().where(S.c.id.in_(chunk)))
                stmt = S.update().where(S.c.id == sa.bindparam("_id"),
                                        S.c.updated_at == sa.bindparam("_seen"))
                conn.execute(stmt.values({k: sa.bindparam(k) for k in plan.updates[0]
                                          if not k.startswith("_")}), plan.updates)
            if plan.inserts:
                # A write-through may have inserted a name since the read: it is newer, keep it.
                taken = self._ids_by_name(conn, [v["zfs_name"] for v in plan.inserts])
                inserts = [v for v in plan.inserts if v["zfs_name"] not in taken]
                report.pending += len(plan.inserts) - len(inserts)
                report.added -= len(plan.inserts) - len(inserts)
                if inserts:
                    conn.execute(S.insert(), inserts)
            if plan.edge_deletes:
                conn.execute(E.delete().where(E.c.id == sa.bindparam("_id"),
                                              E.c.updated_at == sa.bindparam("_seen")),
                             plan.edge_deletes)
            if plan.edge_updates:
                conn.execute(E.update().where(E.c.id == sa.bindparam("_id"),
                                              E.c.updated_at == sa.bindparam("_seen"))
                             .values(origin_name=sa.bindparam("origin_name"),
                                     origin_guid=sa.bindparam("origin_guid"),
                                     updated_at=sa.bindparam("updated_at")),
                             plan.edge_updates)
            if plan.edge_inserts:
                for chunk in _chunks([e["dependent"] for e in plan.edge_inserts]):
                    conn.execute(E.delete().where(E.c.dependent.in_(chunk)))
                conn.execute(E.insert(), plan.edge_inserts)

    # -- queries -------------------------------------------------------------------------------

    def get(self, zfs_name: str) -> SnapshotEntry | None:
        with self._read() as conn:
            row = conn.execute(sa.select(*_COLS).where(S.c.zfs_name == zfs_name)).first()
        return SnapshotEntry._make(row) if row else None

    def by_guid(self, guid: int) -> list[SnapshotEntry]:
        with self._read() as conn:
            rows = conn.execute(sa.select(*_COLS).where(S.c.guid == int(guid))
                                .order_by(S.c.id)).all()
        return [SnapshotEntry._make(r) for r in rows]

    def list_by_project(self, project_id: str, limit: int = 100,
                        after: str | None = None) -> Page:
        """A tenant's snapshots, newest first; pass ``page.next`` as ``after`` to go on."""
        stmt = sa.select(*_COLS).where(S.c.project_id == project_id)
        if after:
            creation, row_id = decode_cursor(after)
            # The range on creation seeks the index; the OR only breaks ties of one second.
            stmt = stmt.where(S.c.creation <= creation,
                              sa.or_(S.c.creation < creation, S.c.id < row_id))
        stmt = stmt.order_by(S.c.creation.desc(), S.c.id.desc()).limit(limit + 1)
        return self._page(stmt, limit)

    def in_time_range(self, start: TimeLike, end: TimeLike, *, limit: int = 1000,
                      after: str | None = None) -> Page:
        """Every tenant's snapshots created in [start, end), oldest first (admin)."""
        stmt = sa.select(*_COLS).where(S.c.creation >= math.ceil(to_epoch(start)),
                                       S.c.creation < math.ceil(to_epoch(end)))
        if after:
            creation, row_id = decode_cursor(after)
            stmt = stmt.where(S.c.creation >= creation,
                              sa.or_(S.c.creation > creation, S.c.id > row_id))
        stmt = stmt.order_by(S.c.creation, S.c.id).limit(limit + 1)
        return self._page(stmt, limit)

    def _page(self, stmt: sa.Select, limit: int) -> Page:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        with self._read() as conn:
            rows = [SnapshotEntry._make(r) for r in conn.execute(stmt)]
        if len(rows) > limit:
            rows = rows[:limit]
            return Page(rows, encode_cursor(rows[-1].creation, rows[-1].id))
        return Page(rows, None)

    def volume_history(self, volume_id: str, *, project_id: str | None = None,
                       limit: int | None = None, newest_first: bool = False
                       ) -> list[SnapshotEntry]:
        """Snapshots of one volume in creation order (``project_id`` scopes it to a tenant)."""
        stmt = sa.select(*_COLS).where(S.c.volume_id == volume_id)
        if project_id is not None:
            stmt = stmt.where(S.c.project_id == project_id)
        order = (S.c.creation, S.c.createtxg, S.c.id)
        stmt = stmt.order_by(*(c.desc() for c in order) if newest_first else order)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._read() as conn:
            return [SnapshotEntry._make(r) for r in conn.execute(stmt)]

    def nearest_before(self, volume_id: str, at: TimeLike, *, project_id: str | None = None,
                       kinds: Sequence[str] | None = None,
                       states: Sequence[str] | None = None) -> SnapshotEntry | None:
        """The volume's newest snapshot created at or before ``at``."""
        stmt = sa.select(*_COLS).where(S.c.volume_id == volume_id,
                                       S.c.creation <= math.floor(to_epoch(at)))
        if project_id is not None:
            stmt = stmt.where(S.c.project_id == project_id)
        if kinds:
            stmt = stmt.where(S.c.kind.in_(list(kinds)))
        if states:
            stmt = stmt.where(S.c.state.in_(list(states)))
        stmt = stmt.order_by(S.c.creation.desc(), S.c.createtxg.desc(), S.c.id.desc()).limit(1)
        with self._read() as conn:
            row = conn.execute(stmt).first()
        return SnapshotEntry._make(row) if row else None

    def dependents(self, zfs_name: str | None = None, *, guid: int | None = None) -> list[str]:
        """Datasets cloned from a snapshot, by name or by guid."""
        if (zfs_name is None) == (guid is None):
            raise ValueError("give exactly one of zfs_name and guid")
        cond = E.c.origin_name == zfs_name if zfs_name is not None else E.c.origin_guid == guid
        with self._read() as conn:
            return list(conn.execute(sa.select(E.c.dependent).where(cond)
                                     .order_by(E.c.dependent)).scalars())

    def origin_of(self, dataset: str) -> str | None:
        """The snapshot ``dataset`` was cloned from, if the catalog knows one."""
        with self._read() as conn:
            return conn.execute(sa.select(E.c.origin_name).where(E.c.dependent == dataset)
                                ).scalar()

    def project_usage(self, project_id: str) -> Usage:
        """One tenant's snapshot count and bytes."""
        stmt = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(S.c.used), 0),
                         sa.func.coalesce(sa.func.sum(S.c.referenced), 0),
                         sa.func.coalesce(sa.func.sum(S.c.written), 0)
                         ).where(S.c.project_id == project_id)
        with self._read() as conn:
            count, used, referenced, written = conn.execute(stmt).one()
        return Usage(project_id, int(count), int(used), int(referenced), int(written))

    def usage_by_project(self) -> list[Usage]:
        """Every tenant's count and bytes (admin report; scans the table)."""
        stmt = (sa.select(S.c.project_id, sa.func.count(), sa.func.sum(S.c.used),
                          sa.func.sum(S.c.referenced), sa.func.sum(S.c.written))
                .group_by(S.c.project_id).order_by(S.c.project_id))
        with self._read() as conn:
            return [Usage(p, int(c), int(u or 0), int(r or 0), int(w or 0))
                    for p, c, u, r, w in conn.execute(stmt)]

    def count(self, *, backend: str | None = None,
              states: Sequence[str] | None = None,
              kinds: Sequence[str] | None = None) -> int:
        """Snapshots in the catalog (driver stats: total_snapshots)."""
        stmt = sa.select(sa.func.count()).select_from(S)
        if backend is not None:
            stmt = stmt.where(S.c.backend == backend)
        if states:
            stmt = stmt.where(S.c.state.in_(list(states)))
        if kinds:
            stmt = stmt.where(S.c.kind.in_(list(kinds)))
        with self._read() as conn:
            return int(conn.execute(stmt).scalar())


def _update_by_id(table: sa.Table, sample: dict) -> sa.Update:
    """UPDATE ... WHERE id = :_id for executemany over dicts shaped like ``sample``."""
    return table.update().where(table.c.id == sa.bindparam("_id")).values(
        {k: sa.bindparam(k) for k in sample if not k.startswith("_")})
