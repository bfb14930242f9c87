"""Catalog vs pool: the diff that reconciliation applies and verify reports.

The pool listing is the truth. Rules (DESIGN.md section 5):

- a snapshot on the pool and not in the catalog gets a row (kind 'out-of-band' unless its name
  is one the driver makes); one whose guid matches a row whose name vanished is that row,
  renamed (a promote or a volume rename moved it);
- a row whose snapshot is on the pool takes the pool's values; 'creating' and 'missing' become
  'available' ('hidden' when the pool marks it: hidden property, deferred destroy, trash), and a
  'deleting' row stays so for ``stale_after`` seconds (the destroy may be in flight);
- a row whose snapshot is gone is deleted, except a 'creating' intent: kept for ``stale_after``
  seconds (the ZFS call may be in flight), then marked 'missing' rather than deleted, so the
  Cinder id that never got its snapshot stays visible until the driver's delete removes it;
- Cinder ids (snapshot/volume/project/group snapshot/backend): the pool's value wins when it has
  one, else the row keeps what the driver wrote;
- rows written at or after ``listed_at`` (the start of the listing) are newer than the listing
  and left alone; every write is guarded by the ``updated_at`` that was read, so a write-through
  racing the reconciliation wins.

Pure functions over plain rows: nothing here touches a database or the pool.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping

from cinder_zfs_ocfs2.catalog import derive, models
from cinder_zfs_ocfs2.zfs.types import Snapshot

# Columns a row is compared on, in this order.
COMPARED = derive.POOL_COLUMNS + derive.ID_COLUMNS + ("state",)


@dataclasses.dataclass(frozen=True)
class Drift:
    """One difference between catalog and pool.

    ``what``: 'added' (on the pool, not in the catalog), 'removed' (in the catalog, gone from the
    pool), 'changed', 'renamed', 'missing' (a stale 'creating' intent), 'edge-added',
    'edge-removed', 'edge-changed'.
    """

    what: str
    zfs_name: str
    detail: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ReconcileReport:
    root: str
    dry_run: bool
    listed: int = 0         # listing entries under root
    ignored: int = 0        # listing entries outside root (never recorded)
    catalog_rows: int = 0   # rows in scope before the diff
    added: int = 0
    removed: int = 0
    updated: int = 0
    renamed: int = 0
    marked_missing: int = 0
    missing: int = 0        # rows already 'missing' (consistent: not drift)
    pending: int = 0        # rows newer than the listing or intents in flight (not drift)
    edges_added: int = 0
    edges_removed: int = 0
    edges_updated: int = 0
    seconds: float = 0.0
    drift: list[Drift] = dataclasses.field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return not self.drift

    @property
    def writes(self) -> int:
        return (self.added + self.removed + self.updated + self.renamed + self.marked_missing
                + self.edges_added + self.edges_removed + self.edges_updated)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["in_sync"] = self.in_sync
        out["drift"] = [d.to_dict() for d in self.drift]
        return out


@dataclasses.dataclass
class Plan:
    inserts: list[dict] = dataclasses.field(default_factory=list)
    # Full target values plus '_id' and '_seen' (the updated_at read, guarding the write).
    updates: list[dict] = dataclasses.field(default_factory=list)
    deletes: list[dict] = dataclasses.field(default_factory=list)     # '_id', '_seen'
    edge_inserts: list[dict] = dataclasses.field(default_factory=list)
    edge_updates: list[dict] = dataclasses.field(default_factory=list)
    edge_deletes: list[dict] = dataclasses.field(default_factory=list)

    def __bool__(self) -> bool:
        return any((self.inserts, self.updates, self.deletes, self.edge_inserts,
                    self.edge_updates, self.edge_deletes))


def target_state(current: str | None, hidden: bool, age: float, stale_after: float) -> str:
    """State of a row whose snapshot the pool lists."""
    if hidden:
        return models.HIDDEN
    if current == models.DELETING and age < stale_after:
        return models.DELETING
    return models.AVAILABLE


def merged(desc: dict, row: Mapping | None, state: str, backend: str | None = None) -> dict:
    """Target values: pool columns from ``desc``; ids from the pool, else the row, else
    ``backend`` as the default of the backend column."""
    values = {k: desc[k] for k in derive.POOL_COLUMNS}
    for k in derive.ID_COLUMNS:
        values[k] = desc[k] if desc[k] is not None or row is None else row[k]
    if values["backend"] is None:
        values["backend"] = backend
    values["state"] = state
    return values


def _changed(row: Mapping, values: dict) -> list[str]:
    return [k for k in COMPARED if row[k] != values[k]]


def sorted_listing(snapshots: Iterable[Snapshot], root: str,
                   report: ReconcileReport) -> list[Snapshot]:
    """The listing's entries under ``root`` in name order (the order rows are read in)."""
    inside = []
    for record in snapshots:
        if derive.in_root(record.name, root):
            inside.append(record)
        else:
            report.ignored += 1
    inside.sort(key=lambda r: r.name)
    report.listed = len(inside)
    return inside


class Differ:
    """The diff of a name-ordered listing against name-ordered rows, in bounded memory.

    ``merge`` walks both in step and yields plans of at most ``batch`` updates of rows that
    are on both sides; what is on one side only (churn, not the pool's size) is kept until
    ``finish``, where a guid seen on both sides makes a rename. Nothing else is kept: a
    million unchanged rows cost one comparison each and no memory.
    """

    def __init__(self, root: str | None, *, now: float, listed_at: float, stale_after: float,
                 backend: str | None = None, batch: int = 2000,
                 report: ReconcileReport | None = None):
        self.root = root.strip("/") if root else None  # None: ids from the path's shape
        self.now, self.listed_at, self.stale_after = now, listed_at, stale_after
        self.backend = backend
        self.batch = batch
        self.report = report or ReconcileReport(root=self.root or "", dry_run=True)
        self._added: list[dict] = []      # listed, no row of that name
        self._gone: list[Mapping] = []    # rows whose name the listing lacks
        self._want_edges: dict[str, tuple[str, int | None]] = {}

    def _newer(self, row: Mapping) -> bool:
        return row["updated_at"] >= self.listed_at

    def merge(self, listing: Iterable[Snapshot], rows: Iterable[Mapping]) -> Iterator[Plan]:
        """Both inputs in ascending name order; yields plans of updates as they fill."""
        out = Plan()
        records, rows = iter(listing), iter(rows)
        record, row = next(records, None), next(rows, None)
        while record is not None or row is not None:
            if row is None or (record is not None and record.name < row["zfs_name"]):
                self._added.append(self._describe(record))
                record = next(records, None)
            elif record is None or row["zfs_name"] < record.name:
                self._gone.append(row)
                self.report.catalog_rows += 1
                row = next(rows, None)
            else:
                self._compare(self._describe(record), row, out)
                self.report.catalog_rows += 1
                record, row = next(records, None), next(rows, None)
                if len(out.updates) >= self.batch:
                    yield out
                    out = Plan()
        if out:
            yield out

    def _describe(self, record: Snapshot) -> dict:
        desc = derive.describe(record, self.root)
        for dependent in record.clones:
            self._want_edges[dependent] = (record.name, desc["guid"])
        return desc

    def _compare(self, desc: dict, row: Mapping, out: Plan) -> None:
        report = self.report
        if self._newer(row):
            report.pending += 1
            return
        state = target_state(row["state"], desc["hidden"], self.now - row["updated_at"],
                             self.stale_after)
        values = merged(desc, row, state, self.backend)
        changed = _changed(row, values)
        if changed:
            values.update(zfs_name=desc["zfs_name"], _id=row["id"], _seen=row["updated_at"],
                          updated_at=self.now)
            out.updates.append(values)
            report.updated += 1
            report.drift.append(Drift("changed", desc["zfs_name"], ", ".join(
                f"{k}: {row[k]!r} -> {values[k]!r}" for k in changed)))

    def finish(self, edges: Iterable[Mapping]) -> Plan:
        """Renames, inserts, deletes and stale intents; then the clone edges."""
        report, now, out = self.report, self.now, Plan()
        # Rows whose name left the listing, by guid: a snapshot seen under a new name is a
        # rename (a promote or a volume rename moved it).
        by_guid = {r["guid"]: r for r in self._gone
                   if r["guid"] is not None and not self._newer(r)}
        renamed_from: set[str] = set()
        for desc in self._added:
            name = desc["zfs_name"]
            old = by_guid.pop(desc["guid"], None) if desc["guid"] is not None else None
            if old is not None:
                renamed_from.add(old["zfs_name"])
                state = target_state(old["state"], desc["hidden"], now - old["updated_at"],
                                     self.stale_after)
                values = merged(desc, old, state, self.backend)
                values.update(zfs_name=name, _id=old["id"], _seen=old["updated_at"],
                              _renamed=True, updated_at=now)
                out.updates.append(values)
                report.renamed += 1
                report.drift.append(Drift("renamed", name, f"was {old['zfs_name']}"))
                continue
            state = models.HIDDEN if desc["hidden"] else models.AVAILABLE
            values = merged(desc, None, state, self.backend)
            values.update(zfs_name=name, updated_at=now)
            out.inserts.append(values)
            report.added += 1
            report.drift.append(Drift("added", name, desc["kind"]))

        for row in self._gone:
            name = row["zfs_name"]
            if name in renamed_from:
                continue
            if self._newer(row):
                report.pending += 1
            elif row["state"] == models.CREATING:
                if now - row["updated_at"] < self.stale_after:
                    report.pending += 1
                else:
                    values = {k: row[k] for k in COMPARED}
                    values.update(state=models.MISSING, zfs_name=name, _id=row["id"],
                                  _seen=row["updated_at"], updated_at=now)
                    out.updates.append(values)
                    report.marked_missing += 1
                    report.drift.append(Drift("missing", name, "intent never reached the pool"))
            elif row["state"] == models.MISSING:
                report.missing += 1
            else:
                out.deletes.append({"_id": row["id"], "_seen": row["updated_at"]})
                report.removed += 1
                report.drift.append(Drift("removed", name, row["state"]))

        _plan_edges(self._want_edges, edges, out, report, now=now, listed_at=self.listed_at)
        return out


def plan(snapshots: Iterable[Snapshot], root: str, rows: Iterable[Mapping],
         edges: Iterable[Mapping], *, now: float, listed_at: float, stale_after: float,
         backend: str | None = None) -> tuple[Plan, ReconcileReport]:
    """The writes that make ``rows``/``edges`` (the catalog in scope) match ``snapshots``,
    as one plan (the streaming form is Differ; Catalog.reconcile uses that).

    ``rows`` need the columns of COMPARED plus id, zfs_name, updated_at; ``edges`` need id,
    origin_name, origin_guid, dependent, updated_at.
    """
    root = root.strip("/")
    report = ReconcileReport(root=root, dry_run=True)
    differ = Differ(root, now=now, listed_at=listed_at, stale_after=stale_after,
                    backend=backend, batch=1 << 62, report=report)
    listing = sorted_listing(snapshots, root, report)
    out = Plan()
    for part in differ.merge(listing, sorted(rows, key=lambda r: r["zfs_name"])):
        out.updates.extend(part.updates)
    rest = differ.finish(edges)
    for field in dataclasses.fields(Plan):
        getattr(out, field.name).extend(getattr(rest, field.name))
    return out, report


def _plan_edges(want: dict[str, tuple[str, int | None]], edges: Iterable[Mapping], out: Plan,
                report: ReconcileReport, *, now: float, listed_at: float) -> None:
    """``want``: dependent dataset -> (origin snapshot, its guid), from the listing."""
    have = {e["dependent"]: e for e in edges}
    for dependent, (origin, guid) in want.items():
        edge = have.get(dependent)
        if edge is None:
            out.edge_inserts.append({"origin_name": origin, "origin_guid": guid,
                                     "dependent": dependent, "updated_at": now})
            report.edges_added += 1
            report.drift.append(Drift("edge-added", origin, dependent))
        elif (edge["origin_name"], edge["origin_guid"]) != (origin, guid):
            if edge["updated_at"] >= listed_at:
                report.pending += 1
                continue
            out.edge_updates.append({"_id": edge["id"], "_seen": edge["updated_at"],
                                     "origin_name": origin, "origin_guid": guid,
                                     "updated_at": now})
            report.edges_updated += 1
            report.drift.append(Drift("edge-changed", origin,
                                      f"{dependent} (was from {edge['origin_name']})"))
    for dependent, edge in have.items():
        if dependent in want:
            continue
        if edge["updated_at"] >= listed_at:
            report.pending += 1
            continue
        out.edge_deletes.append({"_id": edge["id"], "_seen": edge["updated_at"]})
        report.edges_removed += 1
        report.drift.append(Drift("edge-removed", edge["origin_name"], dependent))
