"""The snapshot catalog: an index over the pool's snapshots (DESIGN.md section 5).

The pool is the truth; the catalog mirrors it through write-through calls from the driver
(an intent row before each ZFS call, the final state after) and reconciliation against a pool
listing. It knows its tables only: nothing of Cinder's driver API or of how ZFS is reached.

Threads: every call checks a connection out of the engine's pool for its own short
transaction; nothing is shared between calls, so one Catalog serves all threads of a process.
On SQLite, writers take the lock up front (BEGIN IMMEDIATE) and wait up to busy_timeout,
readers never block writers (WAL).

Identity: a catalog opened for a backend is bound to (backend section, storage node, root);
every row it writes carries that scope and every write, lookup and reconciliation stays in it,
so backends and nodes can share one database. Opening never connects: the database is reached
(and the schema created or upgraded) at the first call, and a database that is down raises
CatalogUnavailable from that call, not from the constructor.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import math
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

import sqlalchemy as sa
from oslo_log import log as logging
from sqlalchemy import event, orm

from cinder_zfs_ocfs2.catalog import derive, migrate, models
from cinder_zfs_ocfs2.catalog import reconcile as reconcile_mod
from cinder_zfs_ocfs2.catalog.models import edges as E
from cinder_zfs_ocfs2.catalog.models import scopes as SC
from cinder_zfs_ocfs2.catalog.models import snapshots as S
from cinder_zfs_ocfs2.zfs import names
from cinder_zfs_ocfs2.zfs.types import Snapshot

LOG = logging.getLogger(__name__)

DEFAULT_FILE = "zfs_catalog.sqlite"
SQLITE_BUSY_TIMEOUT_MS = 30000
# Seconds a server database may take to accept a connection: a catalog that is down must cost
# an operation at most this once (operations.catalog_sync then stops waiting for it).
CONNECT_TIMEOUT_S = 5
RECONCILE_PAGE = 2000  # rows read per query while reconciling, and updates per write batch
_WRITE = "zfs_catalog_write"
_CHUNK = 500  # bound on IN (...) lists: SQLite's variable limit, MySQL's packet size

TimeLike = int | float | datetime.datetime


class Identity(NamedTuple):
    """Whose rows: the backend's cinder.conf section, the storage node, the root dataset."""

    backend_section: str
    node: str
    root: str

    def __str__(self) -> str:
        return f"[{self.backend_section}] {self.root} on {self.node}"


class CatalogUnavailable(Exception):
    """The catalog database cannot be reached (or its schema not brought up to date)."""

    def __init__(self, url: str, cause: BaseException):
        self.url, self.cause = url, cause
        super().__init__(
            f"snapshot catalog database {url} is unreachable ({type(cause).__name__}: "
            f"{str(cause).splitlines()[0] if str(cause) else 'no detail'}); check that the "
            f"database server is up and that zfs_catalog_connection points at it")


# Errors that say the database is not there (or not answering), as opposed to a bad query.
UNAVAILABLE_ERRORS = (CatalogUnavailable, sa.exc.OperationalError, sa.exc.InterfaceError,
                      sa.exc.TimeoutError)


def is_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, UNAVAILABLE_ERRORS) or bool(
        getattr(exc, "connection_invalidated", False))


def default_url(state_path: str, backend: str | None = None) -> str:
    """The embedded SQLite catalog under Cinder's state_path, one file per backend section.

    The driver and cinder-zfs-catalog both name the file after the backend's section of
    cinder.conf (never volume_backend_name, which several backends may share).
    """
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
_RECONCILE_COLS = [S.c.id, S.c.zfs_name, S.c.updated_at] + [S.c[k] for k in
                                                            reconcile_mod.COMPARED]


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


def _root_ranges(root: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """Name ranges [low, high) of ``root``'s descendants and of its own snapshots.

    Names compare bytewise on every engine (models.name_type): '0' follows '/' and 'A'
    follows '@', so each range seeks the (scope_id, name) index, and the first range sorts
    wholly before the second.
    """
    return (root + "/", root + "0"), (root + "@", root + "A")


def _in_root(column: sa.ColumnElement, root: str) -> sa.ColumnElement:
    """Names in ``root``: the root's snapshots and everything below it."""
    return sa.or_(*(sa.and_(column >= low, column < high) for low, high in _root_ranges(root)))


def _setup_sqlite(engine: sa.Engine, *, scratch: bool = False) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # pysqlite's own transaction handling defers BEGIN and cannot take the write lock up
        # front; turn it off and emit BEGIN in the "begin" hook below.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL: durable across process crashes; a power cut may lose the last
        # commits, which reconciliation restores from the pool. A scratch file needs no sync.
        cur.execute(f"PRAGMA synchronous = {'OFF' if scratch else 'NORMAL'}")
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
                 clock: Callable[[], float] = time.time, identity: Identity | None = None):
        self.engine = engine
        self._writer = engine.execution_options(**{_WRITE: True})
        self._clock = clock
        self._sessions = orm.sessionmaker(bind=engine)
        self._upgrade = upgrade
        self._identity = identity
        self._scope: int | None = None
        self._ready_lock = threading.Lock()

    @property
    def identity(self) -> Identity | None:
        return self._identity

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def bound(self, identity: Identity) -> Catalog:
        """This database, seen as the catalog of one backend (shares the engine)."""
        return Catalog(self.engine, upgrade=self._upgrade, clock=self._clock,
                       identity=Identity(*identity))

    def now(self) -> float:
        """The catalog's clock: what ``updated_at`` and ``listed_at`` are measured in."""
        return self._clock()

    def _scope_id(self) -> int:
        """The scope's row id; the first call reaches the database (schema, scope row)."""
        if self._scope is not None:
            return self._scope
        with self._ready_lock:
            if self._scope is None:
                try:
                    if self._upgrade:
                        self.upgrade()
                    self._scope = self._resolve_scope(
                        self._identity or Identity(*models.UNSCOPED))
                except sa.exc.SQLAlchemyError as exc:
                    if is_unavailable(exc):
                        raise CatalogUnavailable(self.url, exc) from exc
                    raise
        return self._scope

    def ping(self) -> None:
        """Reach the database now; CatalogUnavailable when it is not there."""
        self._scope_id()
        try:
            with self._read() as conn:
                conn.execute(sa.select(1))
        except sa.exc.SQLAlchemyError as exc:
            if is_unavailable(exc):
                raise CatalogUnavailable(self.url, exc) from exc
            raise

    def _resolve_scope(self, identity: Identity) -> int:
        def find(conn):
            return conn.execute(sa.select(SC.c.id).where(
                SC.c.backend_section == identity.backend_section, SC.c.node == identity.node,
                SC.c.root == identity.root)).scalar()

        # Under _scope_id's lock: the engine directly (_read/_write resolve the scope first).
        with self.engine.connect() as conn:
            found = find(conn)
        if found is not None:
            return found
        try:
            with self._writer.begin() as conn:
                found = conn.execute(SC.insert().values(
                    backend_section=identity.backend_section, node=identity.node,
                    root=identity.root, created_at=self._clock())).inserted_primary_key[0]
                if tuple(identity) != models.UNSCOPED and identity.root:
                    self._adopt_unscoped(conn, found, identity.root)
        except sa.exc.IntegrityError:
            with self.engine.connect() as conn:  # another host created the same scope first
                found = find(conn)
        LOG.info("Snapshot catalog scope %s is id %s in %s", identity, found, self.url)
        return found

    @staticmethod
    def _adopt_unscoped(conn: sa.Connection, scope: int, root: str) -> None:
        """Rows from before scopes (or written unbound) under ``root`` become this scope's."""
        unscoped = conn.execute(sa.select(SC.c.id).where(
            SC.c.backend_section == "", SC.c.node == "", SC.c.root == "")).scalar()
        if unscoped is None:
            return
        adopted = conn.execute(S.update().where(S.c.scope_id == unscoped,
                                                _in_root(S.c.zfs_name, root))
                               .values(scope_id=scope)).rowcount
        conn.execute(E.update().where(E.c.scope_id == unscoped, _in_root(E.c.origin_name, root))
                     .values(scope_id=scope))
        if adopted:
            LOG.info("Snapshot catalog: %d rows under %s written before scopes now belong to "
                     "this backend", adopted, root)

    @classmethod
    def from_url(cls, url: str, *, upgrade: bool = True,
                 clock: Callable[[], float] = time.time, identity: Identity | None = None,
                 **engine_kwargs) -> Catalog:
        """Open (and by default create or upgrade) the catalog at an SQLAlchemy URL.

        ``sqlite:///<file>``: WAL, busy_timeout, writers BEGIN IMMEDIATE (threads of one
        process, or a few processes on one host). ``sqlite://`` (memory, for tests): a private
        temporary file, removed with the engine, so threads get the file's locking.
        MySQL/PostgreSQL URLs: pre-pinged pooled connections that give up connecting after
        CONNECT_TIMEOUT_S unless the URL says otherwise.
        Nothing connects here (see the module docstring).
        """
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() == "sqlite":
            scratch = None
            if parsed.database in (None, "", ":memory:"):
                # A memory database lives in one connection, which the driver's threads (catalog
                # worker, reconciliation, callers) would share and interleave transactions on.
                scratch = tempfile.mkdtemp(prefix="zfs-catalog-")
                parsed = parsed.set(database=os.path.join(scratch, "catalog.sqlite"))
            engine = sa.create_engine(parsed, **engine_kwargs)
            if scratch is not None:
                weakref.finalize(engine, shutil.rmtree, scratch, ignore_errors=True)
            _setup_sqlite(engine, scratch=scratch is not None)
        else:
            engine_kwargs.setdefault("pool_pre_ping", True)
            engine_kwargs.setdefault("pool_recycle", 3600)
            engine_kwargs.setdefault("pool_timeout", CONNECT_TIMEOUT_S)
            if "connect_timeout" not in parsed.query and \
                    parsed.get_backend_name() in ("mysql", "mariadb", "postgresql"):
                connect_args = dict(engine_kwargs.get("connect_args") or {})
                connect_args.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
                engine_kwargs["connect_args"] = connect_args
            engine = sa.create_engine(parsed, **engine_kwargs)
        return cls(engine, upgrade=upgrade, clock=clock, identity=identity)

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
        LOG.info("Snapshot catalog at %s is at schema revision %s", self.url, head)

    @contextlib.contextmanager
    def session(self) -> Iterator[orm.Session]:
        """An ORM session of its own (for ad-hoc use), committed on success."""
        with self._sessions.begin() as session:
            yield session

    def _read(self):
        self._scope_id()  # as in _write
        return self.engine.connect()

    def _mine(self, table: sa.Table) -> sa.ColumnElement:
        """Rows of this catalog's scope (reaching the database on first use)."""
        return table.c.scope_id == self._scope_id()

    def _readable(self, table: sa.Table) -> sa.ColumnElement:
        """Lookups by name or guid: this scope when bound, every scope when not."""
        if self._identity is None:
            self._scope_id()
            return sa.true()
        return self._mine(table)

    def _write(self):
        # Schema and scope first: resolved inside this transaction, the first call would run
        # the migration on a second connection that waits for this one's lock (SQLite).
        self._scope_id()
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
        scope = self._scope_id()
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
            existing = self._ids_by_name(conn, scope, [v["zfs_name"] for v in values])
            inserts = [dict(v, scope_id=scope, creation=int(now), used=0, referenced=0,
                            written=0, defer_destroy=False)
                       for v in values if v["zfs_name"] not in existing]
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
                          backend: str | None = None, intents_only: bool = False) -> int:
        """Rows take the pool's values for ``records``; returns how many rows were written.

        ``intents_only``: complete only rows still 'creating' (or 'missing'), never insert and
        never drop edges. A completion listed before a later delete, hide or rename then
        changes nothing, however late it lands: it needs no lock against those events.
        """
        records = list(records)
        scope = self._scope_id()
        now = self._clock()
        with self._write() as conn:
            rows = self._rows_by_name(conn, scope, [r.name for r in records])
            inserts, updates, done = [], [], []
            for record in records:
                row = rows.get(record.name)
                if intents_only and (row is None or row["state"] not in (models.CREATING,
                                                                          models.MISSING)):
                    continue
                desc = derive.describe(record, root)
                state = models.HIDDEN if desc["hidden"] else models.AVAILABLE
                values = reconcile_mod.merged(desc, row, state, backend)
                values.update(zfs_name=record.name, updated_at=now)
                done.append(record)
                if row is None:
                    inserts.append(dict(values, scope_id=scope))
                else:
                    updates.append(dict(values, _id=row["id"], _state=row["state"]))
            if inserts:
                conn.execute(S.insert(), inserts)
            written = len(inserts)
            if updates:
                # The state read guards the write: an event that landed since wins.
                stmt = _update_by_id(S, updates[0]).where(S.c.state == sa.bindparam("_state"))
                written += conn.execute(stmt, updates).rowcount
            for record in done:
                if intents_only:
                    for dependent in record.clones:
                        self._put_edge(conn, scope, record.name, record.guid or None,
                                       dependent, now)
                else:
                    self._set_edges(conn, scope, record.name, record.guid or None,
                                    record.clones, now)
            return written

    def abandon_snapshot(self, zfs_name: str) -> bool:
        """The ZFS call failed: drop the 'creating' intent (other states are left alone)."""
        with self._write() as conn:
            result = conn.execute(S.delete().where(self._mine(S), S.c.zfs_name == zfs_name,
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
        return self.snapshots_deleted([zfs_name]) > 0

    def snapshots_deleted(self, zfs_names: Iterable[str]) -> int:
        """Several snapshots are gone (a revert's rollback destroyed them): rows and edges go."""
        zfs_names = list(zfs_names)
        gone = 0
        with self._write() as conn:
            for chunk in _chunks(zfs_names):
                conn.execute(E.delete().where(self._mine(E), E.c.origin_name.in_(chunk)))
                gone += conn.execute(S.delete().where(self._mine(S),
                                                      S.c.zfs_name.in_(chunk))).rowcount
        return gone

    def _set_state(self, zfs_name: str, state: str) -> bool:
        with self._write() as conn:
            result = conn.execute(S.update().where(self._mine(S), S.c.zfs_name == zfs_name)
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
                                           S.c.snapshot_id)
                                 .where(self._mine(S), S.c.guid == guid)).all()
            if not found:
                return False
            pool = new_name.split("/")[0]
            # guids are unique per pool; an unbound catalog may hold several pools.
            row = next((r for r in found if r.zfs_name.split("/")[0] == pool), found[0])
            if row.zfs_name == new_name:
                return True
            conn.execute(S.delete().where(self._mine(S), S.c.zfs_name == new_name))
            conn.execute(S.update().where(S.c.id == row.id).values(
                zfs_name=new_name, dataset=dataset, kind=derive.kind_of(new_name),
                snapshot_id=names.snapshot_id_of(new_name) or row.snapshot_id,
                volume_id=volume_id or names.volume_id_of(dataset) or row.volume_id,
                project_id=project_id or derive.project_of_path(dataset) or row.project_id,
                updated_at=now))
            conn.execute(E.update().where(self._mine(E), E.c.origin_name == row.zfs_name)
                         .values(origin_name=new_name, origin_guid=guid, updated_at=now))
            return True

    def dataset_renamed(self, old: str, new: str, *, project_id: str | None = None,
                        volume_id: str | None = None) -> int:
        """A zvol was renamed (project transfer, trash): its snapshots and edges follow."""
        names.validate_dataset(new)
        now = self._clock()
        with self._write() as conn:
            rows = conn.execute(sa.select(S.c.id, S.c.zfs_name, S.c.volume_id, S.c.project_id)
                                .where(self._mine(S), S.c.dataset == old)).all()
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
                    conn.execute(E.update().where(self._mine(E),
                                                  E.c.origin_name == row.zfs_name)
                                 .values(origin_name=u["zfs_name"], updated_at=now))
            conn.execute(E.update().where(self._mine(E), E.c.dependent == old)
                         .values(dependent=new, updated_at=now))
            return len(updates)

    def dataset_destroyed(self, dataset: str) -> int:
        """A zvol is gone: its snapshots' rows, their edges and its own origin edge go."""
        with self._write() as conn:
            gone = conn.execute(sa.select(S.c.zfs_name).where(
                self._mine(S), S.c.dataset == dataset)).scalars().all()
            for chunk in _chunks(gone):
                conn.execute(E.delete().where(self._mine(E), E.c.origin_name.in_(chunk)))
            conn.execute(E.delete().where(self._mine(E), E.c.dependent == dataset))
            return conn.execute(S.delete().where(self._mine(S),
                                                 S.c.dataset == dataset)).rowcount

    def refresh_datasets(self, snapshots: Iterable[Snapshot], datasets: Iterable[str], *,
                         listed_at: float, root: str | None = None,
                         backend: str | None = None) -> reconcile_mod.ReconcileReport:
        """Apply a listing of just ``datasets`` (depth 1 each): what an operation touched.

        The targeted form of reconcile for request paths (revert by swap, promote): rows of
        those datasets only, found by the (scope_id, dataset) index, renames by guid within
        them, and the same ``listed_at`` cut-off against events that landed meanwhile.
        """
        datasets = sorted(set(datasets))
        records = [r for r in snapshots if r.dataset in datasets]
        scope = self._scope_id()
        report = reconcile_mod.ReconcileReport(root=", ".join(datasets), dry_run=False)
        if root is None and self._identity is not None:
            root = self._identity.root or None
        differ = reconcile_mod.Differ(root, now=self._clock(), listed_at=listed_at,
                                      stale_after=600.0, backend=backend, report=report)
        records.sort(key=lambda r: r.name)
        report.listed = len(records)
        with self._read() as conn:
            rows = []
            for chunk in _chunks(datasets):
                rows.extend(conn.execute(sa.select(*_RECONCILE_COLS).where(
                    S.c.scope_id == scope, S.c.dataset.in_(chunk))).mappings())
            edge_rows = []
            for chunk in _chunks(datasets):
                edge_rows.extend(conn.execute(sa.select(E).where(
                    E.c.scope_id == scope, sa.or_(*(
                        sa.and_(E.c.origin_name >= d + "@", E.c.origin_name < d + "A")
                        for d in chunk)))).mappings())
        rows.sort(key=lambda r: r["zfs_name"])
        for part in differ.merge(records, rows):
            self._apply(part, report, scope)
        self._apply(differ.finish(edge_rows), report, scope)
        return report

    def set_clone_edges(self, origin_name: str, dependents: Iterable[str], *,
                        origin_guid: int | None = None) -> None:
        """Replace the edges of ``origin_name`` with ``dependents`` (its clones)."""
        scope = self._scope_id()
        with self._write() as conn:
            self._set_edges(conn, scope, origin_name, origin_guid, tuple(dependents),
                            self._clock())

    def add_clone_edge(self, origin_name: str, dependent: str, *,
                       origin_guid: int | None = None) -> None:
        """``dependent`` was cloned from ``origin_name`` (a dataset has one origin)."""
        scope = self._scope_id()
        with self._write() as conn:
            self._put_edge(conn, scope, origin_name, origin_guid, dependent, self._clock())

    def remove_clone_edge(self, dependent: str) -> bool:
        with self._write() as conn:
            return conn.execute(E.delete().where(self._mine(E),
                                                 E.c.dependent == dependent)).rowcount > 0

    @staticmethod
    def _put_edge(conn: sa.Connection, scope: int, origin_name: str, origin_guid: int | None,
                  dependent: str, now: float) -> None:
        if origin_guid is None:
            origin_guid = conn.execute(sa.select(S.c.guid).where(
                S.c.scope_id == scope, S.c.zfs_name == origin_name)).scalar()
        conn.execute(E.delete().where(E.c.scope_id == scope, E.c.dependent == dependent))
        conn.execute(E.insert().values(scope_id=scope, origin_name=origin_name,
                                       origin_guid=origin_guid, dependent=dependent,
                                       updated_at=now))

    @staticmethod
    def _set_edges(conn: sa.Connection, scope: int, origin_name: str, origin_guid: int | None,
                   dependents: Sequence[str], now: float) -> None:
        conn.execute(E.delete().where(E.c.scope_id == scope, E.c.origin_name == origin_name))
        if not dependents:
            return
        if origin_guid is None:
            origin_guid = conn.execute(sa.select(S.c.guid).where(
                S.c.scope_id == scope, S.c.zfs_name == origin_name)).scalar()
        for chunk in _chunks(list(dependents)):
            conn.execute(E.delete().where(E.c.scope_id == scope, E.c.dependent.in_(chunk)))
        conn.execute(E.insert(), [{"scope_id": scope, "origin_name": origin_name,
                                   "origin_guid": origin_guid, "dependent": d,
                                   "updated_at": now} for d in dependents])

    @staticmethod
    def _ids_by_name(conn: sa.Connection, scope: int,
                     zfs_names: Sequence[str]) -> dict[str, int]:
        out = {}
        for chunk in _chunks(list(zfs_names)):
            out.update(conn.execute(sa.select(S.c.zfs_name, S.c.id).where(
                S.c.scope_id == scope, S.c.zfs_name.in_(chunk))).all())
        return out

    @staticmethod
    def _rows_by_name(conn: sa.Connection, scope: int,
                      zfs_names: Sequence[str]) -> dict[str, dict]:
        out = {}
        for chunk in _chunks(list(zfs_names)):
            for row in conn.execute(sa.select(S).where(
                    S.c.scope_id == scope, S.c.zfs_name.in_(chunk))).mappings():
                out[row["zfs_name"]] = dict(row)
        return out

    # -- reconciliation ----------------------------------------------------------------------

    def reconcile(self, snapshots: Iterable[Snapshot], root: str, *,
                  backend: str | None = None, listed_at: float | None = None,
                  stale_after: float = 600.0) -> reconcile_mod.ReconcileReport:
        """Apply the pool listing ``snapshots`` of ``root`` to the catalog as a diff.

        ``listed_at``: when the listing started (rows written since are left alone; default
        now). ``stale_after``: seconds an intent may stay in flight. Rules: reconcile.py.
        Never touches the pool. Writes nothing when nothing changed. Reads the scope in pages
        of RECONCILE_PAGE rows in name order and writes changes in batches of as many, so
        memory grows with what changed, not with the number of rows.
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
        if self._identity is not None and self._identity.root and \
                not derive.in_root(root, self._identity.root):
            raise ValueError(f"{root} is not under this backend's root "
                             f"{self._identity.root}: a catalog only reconciles its own scope")
        scope = self._scope_id()
        now = self._clock()
        listed_at = now if listed_at is None else listed_at
        report = reconcile_mod.ReconcileReport(root=root, dry_run=dry_run)
        differ = reconcile_mod.Differ(root, now=now, listed_at=listed_at,
                                      stale_after=stale_after, backend=backend,
                                      batch=RECONCILE_PAGE, report=report)
        listing = reconcile_mod.sorted_listing(snapshots, root, report)
        with self._read() as conn:
            edge_rows = list(conn.execute(sa.select(E).where(
                E.c.scope_id == scope, _in_root(E.c.origin_name, root))).mappings())
        for part in differ.merge(listing, self._rows_in_name_order(scope, root)):
            if not dry_run:
                self._apply(part, report, scope)
        rest = differ.finish(edge_rows)
        if rest and not dry_run:
            self._apply(rest, report, scope)
        report.seconds = time.monotonic() - started
        if not dry_run and report.writes:
            LOG.info("Catalog reconciled with %(root)s: %(listed)d listed, %(added)d added, "
                     "%(removed)d removed, %(updated)d updated, %(renamed)d renamed, "
                     "%(missing)d marked missing", {
                         "root": root, "listed": report.listed, "added": report.added,
                         "removed": report.removed, "updated": report.updated,
                         "renamed": report.renamed, "missing": report.marked_missing})
        return report

    def _rows_in_name_order(self, scope: int, root: str) -> Iterator[dict]:
        """The scope's rows under ``root`` by name, one short read per page (keyset)."""
        for low, high in _root_ranges(root):
            last = None
            while True:
                cond = S.c.zfs_name > last if last is not None else S.c.zfs_name >= low
                with self._read() as conn:
                    page = conn.execute(sa.select(*_RECONCILE_COLS).where(
                        S.c.scope_id == scope, cond, S.c.zfs_name < high)
                        .order_by(S.c.zfs_name).limit(RECONCILE_PAGE)).mappings().all()
                yield from page
                if len(page) < RECONCILE_PAGE:
                    break
                last = page[-1]["zfs_name"]

    def _apply(self, plan: reconcile_mod.Plan, report: reconcile_mod.ReconcileReport,
               scope: int) -> None:
        if not plan:
            return
        with self._write() as conn:
            if plan.deletes:
                conn.execute(S.delete().where(S.c.id == sa.bindparam("_id"),
                                              S.c.updated_at == sa.bindparam("_seen")),
                             plan.deletes)
            if plan.updates:
                # Renames first free their new names of stale rows (unique per scope).
                renames = [u for u in plan.updates if u.get("_renamed")]
                ids = {u["_id"] for u in renames}
                taken = self._ids_by_name(conn, scope, [u["zfs_name"] for u in renames])
                stale = [i for i in taken.values() if i not in ids]
                for chunk in _chunks(stale):
                    conn.execute(S.delete().where(S.c.id.in_(chunk)))
                stmt = S.update().where(S.c.id == sa.bindparam("_id"),
                                        S.c.updated_at == sa.bindparam("_seen"))
                conn.execute(stmt.values({k: sa.bindparam(k) for k in plan.updates[0]
                                          if not k.startswith("_")}),
                             [{k: v for k, v in u.items() if k != "_renamed"}
                              for u in plan.updates])
            if plan.inserts:
                # A write-through may have inserted a name since the read: it is newer, keep it.
                taken = self._ids_by_name(conn, scope, [v["zfs_name"] for v in plan.inserts])
                inserts = [dict(v, scope_id=scope) for v in plan.inserts
                           if v["zfs_name"] not in taken]
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
                    conn.execute(E.delete().where(E.c.scope_id == scope,
                                                  E.c.dependent.in_(chunk)))
                conn.execute(E.insert(), [dict(e, scope_id=scope) for e in plan.edge_inserts])

    # -- queries -------------------------------------------------------------------------------

    def get(self, zfs_name: str) -> SnapshotEntry | None:
        with self._read() as conn:
            row = conn.execute(sa.select(*_COLS).where(self._readable(S),
                                                       S.c.zfs_name == zfs_name)).first()
        return SnapshotEntry._make(row) if row else None

    def by_guid(self, guid: int) -> list[SnapshotEntry]:
        with self._read() as conn:
            rows = conn.execute(sa.select(*_COLS).where(self._readable(S), S.c.guid == int(guid))
                                .order_by(S.c.id)).all()
        return [SnapshotEntry._make(r) for r in rows]

    def list_by_project(self, project_id: str, limit: int = 100,
                        after: str | None = None) -> Page:
        """A tenant's snapshots, newest first; pass ``page.next`` as ``after`` to go on."""
        stmt = sa.select(*_COLS).where(self._readable(S), S.c.project_id == project_id)
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
        stmt = sa.select(*_COLS).where(self._readable(S),
                                       S.c.creation >= math.ceil(to_epoch(start)),
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
        stmt = sa.select(*_COLS).where(self._readable(S), S.c.volume_id == volume_id)
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
        stmt = sa.select(*_COLS).where(self._readable(S), S.c.volume_id == volume_id,
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
            return list(conn.execute(sa.select(E.c.dependent).where(self._readable(E), cond)
                                     .order_by(E.c.dependent)).scalars())

    def origin_of(self, dataset: str) -> str | None:
        """The snapshot ``dataset`` was cloned from, if the catalog knows one."""
        with self._read() as conn:
            return conn.execute(sa.select(E.c.origin_name).where(
                self._readable(E), E.c.dependent == dataset)).scalar()

    def project_usage(self, project_id: str) -> Usage:
        """One tenant's snapshot count and bytes."""
        stmt = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(S.c.used), 0),
                         sa.func.coalesce(sa.func.sum(S.c.referenced), 0),
                         sa.func.coalesce(sa.func.sum(S.c.written), 0)
                         ).where(self._readable(S), S.c.project_id == project_id)
        with self._read() as conn:
            count, used, referenced, written = conn.execute(stmt).one()
        return Usage(project_id, int(count), int(used), int(referenced), int(written))

    def usage_by_project(self) -> list[Usage]:
        """Every tenant's count and bytes (admin report; scans the table)."""
        stmt = (sa.select(S.c.project_id, sa.func.count(), sa.func.sum(S.c.used),
                          sa.func.sum(S.c.referenced), sa.func.sum(S.c.written))
                .where(self._readable(S))
                .group_by(S.c.project_id).order_by(S.c.project_id))
        with self._read() as conn:
            return [Usage(p, int(c), int(u or 0), int(r or 0), int(w or 0))
                    for p, c, u, r, w in conn.execute(stmt)]

    def snapshots_of_scope(self, *, states: Sequence[str], kinds: Sequence[str]
                           ) -> Iterator[SnapshotEntry]:
        """This scope's rows in the given states and kinds, by name, read in pages
        (manageable snapshots: what would otherwise be a listing of every snapshot)."""
        scope = self._scope_id()
        last = None
        while True:
            stmt = sa.select(*_COLS).where(S.c.scope_id == scope, S.c.state.in_(list(states)),
                                           S.c.kind.in_(list(kinds)))
            if last is not None:
                stmt = stmt.where(S.c.zfs_name > last)
            with self._read() as conn:
                page = [SnapshotEntry._make(r) for r in conn.execute(
                    stmt.order_by(S.c.zfs_name).limit(RECONCILE_PAGE))]
            yield from page
            if len(page) < RECONCILE_PAGE:
                return
            last = page[-1].zfs_name

    def count(self, *, backend: str | None = None,
              states: Sequence[str] | None = None,
              kinds: Sequence[str] | None = None) -> int:
        """Snapshots in the catalog (driver stats: total_snapshots)."""
        stmt = sa.select(sa.func.count()).select_from(S).where(self._readable(S))
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
