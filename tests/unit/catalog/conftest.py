"""Fixtures for catalog tests: a file-backed SQLite catalog with a clock the test moves."""

from __future__ import annotations

import pytest

from cinder_zfs_ocfs2.catalog import Catalog
from tests.unit.catalog.helpers import Clock, WriteCounter


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/zfs_catalog.sqlite"


@pytest.fixture
def catalog(db_url, clock):
    cat = Catalog.from_url(db_url, clock=clock)
    yield cat
    cat.close()


@pytest.fixture
def writes(catalog) -> WriteCounter:
    return WriteCounter(catalog.engine)
