"""Unit tests keep Cinder's coordination (tooz file locks) in a temporary directory; the
driver fixtures of test_driver serve the other driver-level tests too."""

import pytest
from cinder import coordination
from oslo_config import cfg

from tests.unit.test_driver import make_driver, overrides  # noqa: F401 - fixtures


@pytest.fixture(autouse=True, scope="session")
def coordination_in_tmp(tmp_path_factory):
    url = f"file://{tmp_path_factory.mktemp('locks')}"
    cfg.CONF.set_override("backend_url", url, group="coordination")
    coordination.COORDINATOR.stop()
    coordination.COORDINATOR.start()
    yield url
    coordination.COORDINATOR.stop()
    cfg.CONF.clear_override("backend_url", group="coordination")
