import pytest

from cinder_zfs_ocfs2.catalog import Catalog
from tests.unit.api import fixtures


@pytest.fixture
def catalog(tmp_path):
    cat = Catalog.from_url(f"sqlite:///{tmp_path}/zfs_catalog.sqlite")
    fixtures.populate(cat)
    yield cat
    cat.close()


@pytest.fixture
def app(catalog):
    return fixtures.make_app(catalog)


@pytest.fixture
def alice(app):
    return fixtures.Client(app, fixtures.ALICE)


@pytest.fixture
def bob(app):
    return fixtures.Client(app, fixtures.BOB)


@pytest.fixture
def admin(app):
    return fixtures.Client(app, fixtures.ADMIN)
