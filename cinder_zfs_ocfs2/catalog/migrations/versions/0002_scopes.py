"""Scopes: every row belongs to one (backend section, storage node, root).

Two nodes with the same root name, or two backends, may share one catalog database: names are
unique per scope, and reconciliation selects its rows by the indexed scope_id instead of a name
prefix (LIKE, a sequential scan on PostgreSQL). Rows from before this revision go to the
unscoped scope ('', '', ''); a backend adopts those under its root when it first opens its scope
(Catalog._scope_id), so an upgrade keeps the index and needs no reconcile.

Names compare bytewise on PostgreSQL too (collation "C"), like utf8mb4_bin on MySQL/MariaDB
and BINARY on SQLite.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _name() -> sa.types.TypeEngine:
    return sa.String(255).with_variant(
        mysql.VARCHAR(255, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    ).with_variant(sa.String(255, collation="C"), "postgresql")


NAME_COLUMNS = (("zfs_snapshots", ("zfs_name", "dataset")),
                ("zfs_clone_edges", ("origin_name", "dependent")))


def upgrade() -> None:
    scopes = op.create_table(
        "zfs_catalog_scopes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("backend_section", sa.String(128), nullable=False),
        sa.Column("node", sa.String(255), nullable=False),
        sa.Column("root", _name(), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.UniqueConstraint("backend_section", "node", "root", name="uq_zfs_catalog_scopes"),
    )
    op.bulk_insert(scopes, [{"backend_section": "", "node": "", "root": "",
                             "created_at": time.time()}])
    # A subquery, not a fetched id: the offline (--sql) rendering has no database to ask.
    unscoped = ("(SELECT id FROM zfs_catalog_scopes WHERE backend_section = '' AND node = '' "
                "AND root = '')")

    if op.get_context().dialect.name == "postgresql":
        for table, columns in NAME_COLUMNS:
            for column in columns:
                op.alter_column(table, column, type_=_name(), existing_nullable=False)

    for table in ("zfs_snapshots", "zfs_clone_edges"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("scope_id", sa.Integer, nullable=True))
        op.execute(f"UPDATE {table} SET scope_id = {unscoped}")

    with op.batch_alter_table("zfs_snapshots") as batch:
        batch.alter_column("scope_id", existing_type=sa.Integer, nullable=False)
        batch.create_foreign_key("fk_zfs_snapshots_scope", "zfs_catalog_scopes",
                                 ["scope_id"], ["id"])
        batch.drop_constraint("uq_zfs_snapshots_zfs_name", type_="unique")
        batch.create_unique_constraint("uq_zfs_snapshots_scope_name", ["scope_id", "zfs_name"])
        batch.drop_index("ix_zfs_snapshots_backend_state")
        batch.drop_index("ix_zfs_snapshots_dataset")
        batch.create_index("ix_zfs_snapshots_scope_state", ["scope_id", "state"])
        batch.create_index("ix_zfs_snapshots_scope_dataset", ["scope_id", "dataset"])

    with op.batch_alter_table("zfs_clone_edges") as batch:
        batch.alter_column("scope_id", existing_type=sa.Integer, nullable=False)
        batch.create_foreign_key("fk_zfs_clone_edges_scope", "zfs_catalog_scopes",
                                 ["scope_id"], ["id"])
        batch.drop_constraint("uq_zfs_clone_edges_dependent", type_="unique")
        batch.create_unique_constraint("uq_zfs_clone_edges_scope_dependent",
                                       ["scope_id", "dependent"])
        batch.drop_index("ix_zfs_clone_edges_origin_name")
        batch.create_index("ix_zfs_clone_edges_scope_origin", ["scope_id", "origin_name"])


def downgrade() -> None:
    # Names become globally unique again: with two scopes holding one name this fails, and the
    # operator must drop one scope's rows first (reconciliation rebuilds them from the pool).
    # The foreign keys go first: MySQL/MariaDB will not drop an index (the (scope_id, ...)
    # unique constraints) that still backs a foreign key.
    with op.batch_alter_table("zfs_clone_edges") as batch:
        batch.drop_constraint("fk_zfs_clone_edges_scope", type_="foreignkey")
        batch.drop_index("ix_zfs_clone_edges_scope_origin")
        batch.create_index("ix_zfs_clone_edges_origin_name", ["origin_name"])
        batch.drop_constraint("uq_zfs_clone_edges_scope_dependent", type_="unique")
        batch.create_unique_constraint("uq_zfs_clone_edges_dependent", ["dependent"])
        batch.drop_column("scope_id")
    with op.batch_alter_table("zfs_snapshots") as batch:
        batch.drop_constraint("fk_zfs_snapshots_scope", type_="foreignkey")
        batch.drop_index("ix_zfs_snapshots_scope_dataset")
        batch.drop_index("ix_zfs_snapshots_scope_state")
        batch.create_index("ix_zfs_snapshots_dataset", ["dataset"])
        batch.create_index("ix_zfs_snapshots_backend_state", ["backend", "state"])
        batch.drop_constraint("uq_zfs_snapshots_scope_name", type_="unique")
        batch.create_unique_constraint("uq_zfs_snapshots_zfs_name", ["zfs_name"])
        batch.drop_column("scope_id")
    op.drop_table("zfs_catalog_scopes")
