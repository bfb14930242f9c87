"""Helpers for catalog tests: a clock the test moves, snapshot records, a write counter."""

from __future__ import annotations

import uuid

from cinder_zfs_ocfs2.zfs.types import Snapshot

ROOT = "tank/cinder"
T0 = 1_700_000_000


class Clock:
    def __init__(self, now: float = T0 + 10_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def uid(n: int | None = None) -> str:
    return str(uuid.UUID(int=n)) if n is not None else str(uuid.uuid4())


def volume_ds(project: str, volume_id: str, root: str = ROOT) -> str:
    return f"{root}/{project}/volume-{volume_id}"


def snap(dataset: str, short: str, *, guid: int, creation: int = T0, createtxg: int = 0,
         used: int = 0, referenced: int = 0, written: int = 0, clones=(), props=None,
         defer_destroy: bool = False) -> Snapshot:
    return Snapshot(name=f"{dataset}@{short}", guid=guid,
                    createtxg=createtxg or (guid & 0xFFFFFFF) + 1, creation=creation,
                    used=used, referenced=referenced, written=written,
                    clones=tuple(clones), defer_destroy=defer_destroy,
                    user_props=dict(props or {}))


class WriteCounter:
    """Counts INSERT/UPDATE/DELETE statements an engine runs."""

    def __init__(self, engine):
        from sqlalchemy import event

        self.statements: list[str] = []

        @event.listens_for(engine, "before_cursor_execute")
        def _count(conn, cursor, statement, params, context, executemany):
            if statement.lstrip().split(" ", 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
                self.statements.append(statement)

    @property
    def writes(self) -> int:
        return len(self.statements)
