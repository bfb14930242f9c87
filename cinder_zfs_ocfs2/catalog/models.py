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
    """ZFS names are case-sensitive: MySQL/MariaDB's default collations are not."""
    return sa.String(NAME_LEN).with_variant(
        mysql.VARCHAR(NAME_LEN, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb")


class Base(orm.DeclarativeBase):
    pass


class SnapshotRow(Base):
    """One snapshot on the backend: driver-made, internal or out-of-band."""

    __tablename__ = SNAPSHOTS_TABLE

    id: orm.Mapped[int] = orm.mapped_column(sa.Integer, primary_key=True, autoincrement=True)
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
        sa.UniqueConstraint("zfs_name", name="uq_zfs_snapshots_zfs_name"),
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
        sa.Index("ix_zfs_snapshots_backend_state", "backend", "state"),
        sa.Index("ix_zfs_snapshots_dataset", "dataset"),
    )


class CloneEdge(Base):
    """origin snapshot -> dependent dataset (a zfs clone). A dataset has at most one origin."""

    __tablename__ = EDGES_TABLE

    id: orm.Mapped[int] = orm.mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    origin_name: orm.Mapped[str] = orm.mapped_column(name_type(), nullable=False)
    origin_guid: orm.Mapped[int | None] = orm.mapped_column(UnsignedBigInteger, nullable=True)
    dependent: orm.Mapped[str] = orm.mapped_column(name_type(), nullable=False)
    updated_at: orm.Mapped[float] = orm.mapped_column(sa.Double, nullable=False)

    __table_args__ = (
        sa.UniqueConstraint("dependent", name="uq_zfs_clone_edges_dependent"),
        sa.Index("ix_zfs_clone_edges_origin_name", "origin_name"),
        sa.Index("ix_zfs_clone_edges_origin_guid", "origin_guid"),
    )


# A tenant's snapshots newest first, keyset-paginated on (creation, id).
sa.Index("ix_zfs_snapshots_project_creation", SnapshotRow.project_id, SnapshotRow.creation.desc(),
         SnapshotRow.id.desc())

snapshots = SnapshotRow.__table__
edges = CloneEdge.__table__
