"""Fixtures of the end-to-end tests: the real stack (Keystone + Cinder + this driver + the node).

- `stack` (session): `tools/stack/up` (idempotent: reuses a healthy stack, starts what is
  missing, boots the storage node when it is down) and a `Stack` helper to drive the real
  `openstack` CLI (`stack.cli("alice", "volume", "list")`) and openstacksdk (`stack.sdk("bob")`).
- `node` (session): the storage node over one SSH connection (tests/functional/nodelib.py), to
  look at the pool and to run the guest's iSCSI initiator.
- `cleanup` (function): volumes/snapshots/attachments registered by a test are removed after it
  even when it fails, so the next test and the pool start clean.

Every test under tests/e2e is marked `e2e`. A stack that cannot come up makes the tests ERROR
with the reason; they never skip.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "functional"))

import nodelib  # noqa: E402
import stacklib  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: needs the local OpenStack stack")
    # the SDK's and WebOb's deprecation chatter is not ours to fix
    for mod in ("openstack", "webob", "keystoneauth1"):
        config.addinivalue_line("filterwarnings", f"ignore::DeprecationWarning:{mod}.*")
        config.addinivalue_line("filterwarnings", f"ignore::PendingDeprecationWarning:{mod}.*")
    config.addinivalue_line("filterwarnings",
                            "ignore:.*:openstack.warnings.OpenStackDeprecationWarning")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def stack(pytestconfig):
    # tools/stack/up prints each step and its time: show it live, not in pytest's capture
    capman = pytestconfig.pluginmanager.getplugin("capturemanager")
    try:
        with capman.global_and_fixture_disabled():
            return stacklib.bring_up()
    except stacklib.StackUpError as e:
        pytest.fail(f"the stack could not come up: {e}", pytrace=False)


@pytest.fixture(scope="session")
def node(stack):
    try:
        n = nodelib.start_node()
    except nodelib.NodeStartError as e:
        pytest.fail(f"the storage node could not start: {e}", pytrace=False)
    yield n
    n.close()


@pytest.fixture
def cleanup(stack):
    c = stacklib.Cleanup(stack)
    yield c
    c.run()
