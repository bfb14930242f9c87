"""Initial catalog: snapshots and clone edges.

Revision ID: 0001
Revises:
Create Date: 2025-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _name() -> sa.types.TypeEngine:
    # Case-sensitive names on MySQL/MariaDB, whose default collations are not.
    return sa.String(255).with_variant(
        mysql.VARCHAR(255, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "zfs_snapshots",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("zfs_name", _name(), nullable=False),
        sa.Column("dataset", _name(), nullable=False),
        sa.Column("guid", sa.BigInteger, nullable=True),
        sa.Column("createtxg", sa.BigInteger, nullable=True),
        sa.Column("creation", sa.BigInteger, nullable=False),
        sa.Column("snapshot_id", sa.String(36), nullable=True),
        sa.Column("volume_id", sa.String(36), nullable=True),
        sa.Column("project_id", sa.String(64), nullable=True),
        sa.Column("group_snapshot_id", sa.String(36), nullable=True),
        sa.Column("backend", sa.String(255), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("used", sa.BigInteger, nullable=False),
        sa.Column("referenced", sa.BigInteger, nullable=False),
        sa.Column("written", sa.BigInteger, nullable=False),
        sa.Column("defer_destroy", sa.Boolean(name="ck_zfs_snapshots_defer_destroy"),
                  nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.UniqueConstraint("zfs_name", name="uq_zfs_snapshots_zfs_name"),
        sa.CheckConstraint("kind IN ('cinder', 'clone-temp', 'out-of-band')",
                           name="ck_zfs_snapshots_kind"),
        sa.CheckConstraint(
            "state IN ('creating', 'available', 'hidden', 'deleting', 'missing')",
            name="ck_zfs_snapshots_state"),
    )
    op.create_index("ix_zfs_snapshots_project_creation", "zfs_snapshots",
                    ["project_id", sa.literal_column("creation").desc(),
                     sa.literal_column("id").desc()])
    op.create_index("ix_zfs_snapshots_volume_creation", "zfs_snapshots",
                    ["volume_id", "creation", "createtxg"])
    op.create_index("ix_zfs_snapshots_guid", "zfs_snapshots", ["guid"])
    op.create_index("ix_zfs_snapshots_creation", "zfs_snapshots", ["creation", "id"])
    op.create_index("ix_zfs_snapshots_backend_state", "zfs_snapshots", ["backend", "state"])
    op.create_index("ix_zfs_snapshots_dataset", "zfs_snapshots", ["dataset"])

    op.create_table(
        "zfs_clone_edges",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("origin_name", _name(), nullable=False),
        sa.Column("origin_guid", sa.BigInteger, nullable=True),
        sa.Column("dependent", _name(), nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.UniqueConstraint("dependent", name="uq_zfs_clone_edges_dependent"),
    )
    op.create_index("ix_zfs_clone_edges_origin_name", "zfs_clone_edges", ["origin_name"])
    op.create_index("ix_zfs_clone_edges_origin_guid", "zfs_clone_edges", ["origin_guid"])


def downgrade() -> None:
    op.drop_table("zfs_clone_edges")
    op.drop_table("zfs_snapshots")
