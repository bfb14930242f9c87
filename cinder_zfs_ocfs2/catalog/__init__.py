"""Auxiliary snapshot catalog: SQLAlchemy models, Alembic migrations, queries, reconciliation.

An index over the pool's snapshots (the pool is the truth). See api.Catalog and DESIGN.md
section 5.
"""

from cinder_zfs_ocfs2.catalog.api import (
    Catalog,
    CatalogUnavailable,
    Identity,
    Intent,
    Page,
    SnapshotEntry,
    Usage,
    default_url,
    is_unavailable,
    to_epoch,
)
from cinder_zfs_ocfs2.catalog.reconcile import Drift, ReconcileReport

__all__ = ["Catalog", "CatalogUnavailable", "Drift", "Identity", "Intent", "Page",
           "ReconcileReport", "SnapshotEntry", "Usage", "default_url", "is_unavailable",
           "to_epoch"]
