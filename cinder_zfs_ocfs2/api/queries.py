"""Tenant-scoped reads of the snapshot catalog for the API (keyset pages, nearest sets, usage).

Built on the catalog's tables and its public types (SnapshotEntry, Usage); the catalog's own
query methods serve operators and know no visibility rules. Every query here takes a Scope and
puts it in the SQL WHERE clause: a marker (page cursor) only positions a query, it never widens
what the query may return.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import sqlalchemy as sa

from cinder_zfs_ocfs2.catalog import Catalog, SnapshotEntry, Usage, models
from cinder_zfs_ocfs2.catalog.api import FIELDS
from cinder_zfs_ocfs2.catalog.models import snapshots as S

_COLS = [S.c[f] for f in FIELDS]

# What a tenant sees of its volumes: snapshots Cinder asked for. Clone temps, out-of-band
# snapshots made behind the driver's back and hidden (deleted but pinned) ones are internal.
_TENANT_KINDS = (models.KIND_CINDER,)
_INTERNAL_STATES = (models.HIDDEN,)

Position = tuple[int, int]   # (creation, id) of the last row of a page


@dataclasses.dataclass(frozen=True)
class Scope:
    """Whose rows a request may read.

    project_id None means every project (admin / system reader); include_internal adds clone
    temps, out-of-band and hidden snapshots (admin).
    """

    project_id: str | None
    include_internal: bool = False

    @property
    def key(self) -> str:
        """Stable text naming the scope, bound into markers."""
        return f"{self.project_id or '*'}|{'internal' if self.include_internal else 'tenant'}"


@dataclasses.dataclass(frozen=True)
class Page:
    rows: list[SnapshotEntry]
    last: Position | None   # where the next page starts (None: this is the last page)


@dataclasses.dataclass(frozen=True)
class NearestSet:
    """Snapshots taken in one transaction group of one pool: consistent with each other."""

    createtxg: int | None
    creation: int
    rows: list[SnapshotEntry]


def _scoped(stmt: sa.Select, scope: Scope) -> sa.Select:
    if scope.project_id is not None:
        stmt = stmt.where(S.c.project_id == scope.project_id)
    if not scope.include_internal:
        stmt = stmt.where(S.c.kind.in_(_TENANT_KINDS), S.c.state.not_in(_INTERNAL_STATES))
    return stmt


def _newest_first_page(catalog: Catalog, stmt: sa.Select, limit: int,
                       after: Position | None) -> Page:
    if limit < 1:
        raise ValueError("limit must be >= 1")
    if after is not None:
        creation, row_id = after
        # The range on creation seeks the index; the OR only breaks ties within one second.
        stmt = stmt.where(S.c.creation <= creation,
                          sa.or_(S.c.creation < creation, S.c.id < row_id))
    stmt = stmt.order_by(S.c.creation.desc(), S.c.id.desc()).limit(limit + 1)
    with catalog.engine.connect() as conn:
        rows = [SnapshotEntry._make(r) for r in conn.execute(stmt)]
    if len(rows) > limit:
        rows = rows[:limit]
        return Page(rows, (rows[-1].creation, rows[-1].id))
    return Page(rows, None)


def volume_visible(catalog: Catalog, volume_id: str, scope: Scope) -> bool:
    """Whether the scope holds any snapshot of the volume (what the API can know of it)."""
    stmt = _scoped(sa.select(S.c.id).where(S.c.volume_id == volume_id), scope).limit(1)
    with catalog.engine.connect() as conn:
        return conn.execute(stmt).first() is not None


def volume_history(catalog: Catalog, volume_id: str, scope: Scope, *, limit: int,
                   after: Position | None = None) -> Page:
    """One volume's snapshots, newest first."""
    stmt = _scoped(sa.select(*_COLS).where(S.c.volume_id == volume_id), scope)
    return _newest_first_page(catalog, stmt, limit, after)


def snapshots(catalog: Catalog, scope: Scope, *, since: int | None = None,
              until: int | None = None, limit: int, after: Position | None = None) -> Page:
    """The scope's snapshots created in [since, until), newest first."""
    stmt = _scoped(sa.select(*_COLS), scope)
    if since is not None:
        stmt = stmt.where(S.c.creation >= since)
    if until is not None:
        stmt = stmt.where(S.c.creation < until)
    return _newest_first_page(catalog, stmt, limit, after)


def nearest(catalog: Catalog, volume_id: str, at: int, scope: Scope) -> SnapshotEntry | None:
    """The volume's newest snapshot created at or before ``at`` (epoch seconds)."""
    stmt = _scoped(sa.select(*_COLS).where(S.c.volume_id == volume_id, S.c.creation <= at),
                   scope)
    stmt = stmt.order_by(S.c.creation.desc(), S.c.createtxg.desc(), S.c.id.desc()).limit(1)
    with catalog.engine.connect() as conn:
        row = conn.execute(stmt).first()
    return SnapshotEntry._make(row) if row else None


def nearest_per_volume(catalog: Catalog, at: int, scope: Scope, *,
                       volume_ids: Sequence[str] | None = None,
                       max_volumes: int) -> tuple[list[SnapshotEntry], bool]:
    """Each volume's newest snapshot at or before ``at``, ordered by volume id.

    ``volume_ids`` None: every volume in the scope. Returns (rows, truncated): at most
    ``max_volumes`` rows, truncated when more volumes had one.
    """
    cond = [S.c.creation <= at, S.c.volume_id.is_not(None)]
    if volume_ids is not None:
        cond.append(S.c.volume_id.in_(list(volume_ids)))
    rank = sa.func.row_number().over(
        partition_by=S.c.volume_id,
        order_by=(S.c.creation.desc(), S.c.createtxg.desc(), S.c.id.desc())).label("rank")
    ranked = _scoped(sa.select(*_COLS, rank).where(*cond), scope).subquery()
    stmt = (sa.select(*(ranked.c[f] for f in FIELDS)).where(ranked.c.rank == 1)
            .order_by(ranked.c.volume_id).limit(max_volumes + 1))
    with catalog.engine.connect() as conn:
        rows = [SnapshotEntry._make(r) for r in conn.execute(stmt)]
    return rows[:max_volumes], len(rows) > max_volumes


def consistent_sets(rows: Sequence[SnapshotEntry]) -> list[NearestSet]:
    """Group snapshots by (pool, createtxg): each group was taken in one ZFS call.

    txg numbers are per pool, and a catalog may be shared by backends on several pools.
    Newest set first.
    """
    groups: dict[tuple, list[SnapshotEntry]] = {}
    for row in rows:
        pool = row.zfs_name.split("/", 1)[0]
        # A row still 'creating' has no txg yet: it is a set of its own.
        key = (pool, row.createtxg) if row.createtxg is not None else (pool, None, row.id)
        groups.setdefault(key, []).append(row)
    sets = [NearestSet(members[0].createtxg, max(r.creation for r in members), members)
            for members in groups.values()]
    sets.sort(key=lambda s: (s.creation, s.createtxg or 0), reverse=True)
    return sets


def usage(catalog: Catalog, scope: Scope) -> list[Usage]:
    """Snapshot counts and bytes per project in the scope (one row for a project scope)."""
    stmt = _scoped(sa.select(S.c.project_id, sa.func.count(),
                             sa.func.coalesce(sa.func.sum(S.c.used), 0),
                             sa.func.coalesce(sa.func.sum(S.c.referenced), 0),
                             sa.func.coalesce(sa.func.sum(S.c.written), 0)), scope)
    stmt = stmt.group_by(S.c.project_id).order_by(S.c.project_id)
    with catalog.engine.connect() as conn:
        rows = [Usage(p, int(c), int(u), int(r), int(w)) for p, c, u, r, w in conn.execute(stmt)]
    if scope.project_id is not None and not rows:
        rows = [Usage(scope.project_id, 0, 0, 0, 0)]
    return rows
