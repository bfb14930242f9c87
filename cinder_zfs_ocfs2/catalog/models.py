"""Tables of the snapshot catalog (SQLAlchemy 2.x declarative models).

Times are integer seconds since the epoch (UTC), the unit ZFS reports ``creation`` in, so a
listing compares to a row without conversion; ``updated_at`` is a float for sub-second ordering
against the start of a pool listing.

Table names carry a ``zfs_`` prefix: an admin may point zfs_catalog_connection at a database
that also holds Cinder's own tables, and Cinder has a ``snapshots`` table of its own.
Any change here needs a new migration under migrations/versions/.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import mysql

SCOPES_TABLE = "zfs_catalog_scopes"
SNAPSHOTS_TABLE = "zfs_snapshots"
EDGES_TABLE = "zfs_clone_edges"
VERSION_TABLE = "zfs_catalog_alembic_version"

KIND_CINDER = "cinder"          # @snapshot-<uuid> of a driver volume
KIND_CLONE_TEMP = "clone-temp"  # @clone-<uuid>: the driver's temp snapshot behind a clone
KIND_OUT_OF_BAND = "out-of-band"  # anything else: made behind the driver's back
KINDS = (KIND_CINDER, KIND_CLONE_TEMP, KIND_OUT_OF_BAND)

CREATING = "creating"    # intent written, ZFS call not confirmed yet
AVAILABLE = "available"
HIDDEN = "hidden"        # deleted by Cinder (or destroy -d deferred) but still has dependents
DELETING = "deleting"    # intent to destroy written, ZFS call not confirmed yet
MISSING = "missing"      # a 'creating' intent whose snapshot never appeared on the pool
STATES = (CREATING, AVAILABLE, HIDDEN, DELETING, MISSING)

NAME_LEN = 255  # ZFS_MAX_DATASET_NAME_LEN - 1
UUID_LEN = 36
SECTION_LEN = 128
NODE_LEN = 255
# The scope of rows written by a catalog opened without an identity (tests, ad-hoc tools) and
# of rows from before identities existed; a backend's first bind adopts those under its root.
UNSCOPED = ("", "", "")


class UnsignedBigInteger(sa.types.TypeDecorator):
    """A uint64 (ZFS guid) in a signed BIGINT column, stored in two's complement.

    ZFS guids use all 64 bits; SQLite, MySQL and PostgreSQL integers are signed 64-bit, so
    guids >= 2**63 would overflow. Equality (the only thing done with guids) survives the shift.
    """

    impl = sa.BigInteger
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = int(value)
        if not 0 <= value < 1 << 64:
            raise ValueError(f"guid out of range: {value}")
        return value - (1 << 64) if value >= 1 << 63 else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value + (1 << 64) if value < 0 else value


def name_type() -> sa.types.TypeEngine:
    """ZFS names compare bytewise everywhere, so a name range seeks the index.

    MySQL/MariaDB's default collations ignore case; PostgreSQL's locale collations order
    punctuation their own way: utf8mb4_bin and "C" make all three agree with Python's sort,
    which reconciliation's merge of a sorted listing with rows ordered by name relies on.
    """
    return sa.String(NAME_LEN).with_variant(
        mysql.VARCHAR(NAME_LEN, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    ).with_variant(sa.String(NAME_LEN, collation="C"), "postgresql")


class Base(orm.DeclarativeBase):
    pass


class ScopeRow(Base):
    """Whose rows these are: one backend (config section) on one storage node, one root.

    Two nodes may both use ``tank/cinder`` and two backends one database: every snapshot and
    edge row carries its scope, and reconciliation only ever touches its own scope's rows.
    """

    __tablename__ = SCOPES_TABLE

    id: orm.Mapped[int] = orm.mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    backend_section: orm.Mapped[str] = orm.mapped_column(sa.String(SECTION_LEN), nullable=False)
    node: orm.Mapped[str] = orm.mapped_column(sa.String(NODE_LEN), nullable=False)
    root: orm.Mapped[str] = orm.mapped_column(name_type(), nullable=False)
    created_at: orm.Mapped[float] = orm.mapped_column(sa.Double, nullable=False)

    __table_args__ = (
        sa.UniqueConstraint("backend_section", "node", "root", name="uq_zfs_catalog_scopes"),
    )


class SnapshotRow(Base):
    """One snapshot on the backend: driver-made, internal or out-of-band."""

    __tablename__ = SNAPSHOTS_TABLE

    id: orm.Mapped[int] = orm.mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    scope_id: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, sa.ForeignKey(f"{SCOPES_TABLE}.id", name="fk_zfs_snapshots_scope"),
        nullable=False)
    zfs_name: orm.Mapped[str] = orm.mapped_column(name_type(), nullable=False)
    dataset: orm.Mapped[str] = orm.mapped_column(name_type(), nullable=False)
    # NULL while 'creating': the pool has not told us yet.
    guid: orm.Mapped[int | None] = orm.mapped_column(UnsignedBigInteger, nullable=True)
    createtxg: orm.Mapped[int | None] = orm.mapped_column(sa.BigInteger, nullable=True)
    creation: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, nullable=False)
    snapshot_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(UUID_LEN))
    volume_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(UUID_LEN))
    project_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    group_snapshot_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(UUID_LEN))
    backend: orm.Mapped[str | None] = orm.mapped_column(sa.String(255))
    kind: orm.Mapped[str] = orm.mapped_column(sa.String(16), nullable=False)
    state: orm.Mapped[str] = orm.mapped_column(sa.String(16), nullable=False)
    used: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, nullable=False, default=0)
    referenced: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, nullable=False, default=0)
    written: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, nullable=False, default=0)
    defer_destroy: orm.Mapped[bool] = orm.mapped_column(
        sa.Boolean(name="ck_zfs_snapshots_defer_destroy"), nullable=False, default=False)
    updated_at: orm.Mapped[float] = orm.mapped_column(sa.Double, nullable=False)

    __table_args__ = (
        # Names are unique per scope: two nodes may hold the same names. Reconciliation pages
        # through a scope in name order on this index.
        sa.UniqueConstraint("scope_id", "zfs_name", name="uq_zfs_snapshots_scope_name"),
        sa.CheckConstraint("kind IN ('cinder', 'clone-temp', 'out-of-band')",
                           name="ck_zfs_snapshots_kind"),
        sa.CheckConstraint(
            "state IN ('creating', 'available', 'hidden', 'deleting', 'missing')",
            name="ck_zfs_snapshots_state"),
        # A volume's history and nearest-before-T; createtxg orders snapshots of one second.
        sa.Index("ix_zfs_snapshots_volume_creation", "volume_id", "creation", "createtxg"),
        sa.Index("ix_zfs_snapshots_guid", "guid"),
        # Admin time-range queries across tenants.
        sa.Index("ix_zfs_snapshots_creation", "creation", "id"),
        # Per-backend totals (driver stats) without a table scan.
        sa.Index("ix_zfs_snapshots_scope_state", "scope_id", "state"),
        sa.Index("ix_zfs_snapshots_scope_dataset", "scope_id", "dataset"),
    )


class CloneEdge(Base):
    """origin snapshot -> dependent dataset (a zfs clone). A dataset has at most one origin."""

    __tablename__ = EDGES_TABLE

    id: orm.Mapped[int] = orm.mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    scope_id: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, sa.ForeignKey(f"{SCOPES_TABLE}.id", name="fk_zfs_clone_edges_scope"),
        nullable=False)
    origin_name: orm.Mapped[str] = orm.mapped_column(name_type(), nullable=False)
    origin_guid: orm.Mapped[int | None] = orm.mapped_column(UnsignedBigInteger, nullable=True)
    dependent: orm.Mapped[str] = orm.mapped_column(name_type(), nullable=False)
    updated_at: orm.Mapped[float] = orm.mapped_column(sa.Double, nullable=False)

    __table_args__ = (
        sa.UniqueConstraint("scope_id", "dependent", name="uq_zfs_clone_edges_scope_dependent"),
        sa.Index("ix_zfs_clone_edges_scope_origin", "scope_id", "origin_name"),
        sa.Index("ix_zfs_clone_edges_origin_guid", "origin_guid"),
    )


# A tenant's snapshots newest first, keyset-paginated on (creation, id).
sa.Index("ix_zfs_snapshots_project_creation", SnapshotRow.project_id, SnapshotRow.creation.desc(),
         SnapshotRow.id.desc())

scopes = ScopeRow.__table__
snapshots = SnapshotRow.__table__
edges = CloneEdge.__table__
