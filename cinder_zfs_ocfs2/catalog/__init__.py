"""Auxiliary snapshot catalog: SQLAlchemy models, Alembic migrations, queries, reconciliation.

An index over the pool's snapshots (the pool is the truth). See api.Catalog and DESIGN.md
section 5.
"""

from cinder_zfs_ocfs2.catalog.api import (
    Catalog,
    Intent,
    Page,
    SnapshotEntry,
    Usage,
    default_url,
    to_epoch,
)
from cinder_zfs_ocfs2.catalog.reconcile import Drift, ReconcileReport

__all__ = ["Catalog", "Drift", "Intent", "Page", "ReconcileReport", "SnapshotEntry", "Usage",
           "default_url", "to_epoch"]
