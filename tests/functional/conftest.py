"""Fixtures of the functional tests: a real OpenZFS / OCFS2 / LIO storage node (a QEMU VM).

- `node` (session): the node, started once per test session by tools/storage-node/node (or a
  running healthy one reused), connected over one SSH connection; see nodelib.Node.
- `dataset` (function): a fresh dataset `<pool>/ft-<8 hex>` for one test, destroyed with
  `zfs destroy -r` after it. iSCSI/LIO/mount leftovers are the test's own business.

Every test under tests/functional is marked `functional`: `-m 'not functional'` deselects them.
Otherwise a node that cannot start makes the tests ERROR with the reason; they never skip.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nodelib  # noqa: E402

HERE = Path(__file__).resolve().parent


def pytest_configure(config):
    config.addinivalue_line("markers", "functional: needs the storage-node VM")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    # tryfirst: the marks must be there before `-m` deselects.
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.functional)


@pytest.fixture(scope="session")
def node():
    """The storage node (nodelib.Node): .host .port .key_path .known_hosts .pool .run() .put()."""
    try:
        n = nodelib.start_node()
    except nodelib.NodeStartError as e:
        reason = str(e)
    else:
        reason = None
    if reason is not None:
        pytest.fail(f"the storage node could not start: {reason}", pytrace=False)
    yield n
    n.close()  # the VM keeps running: the next session reuses it (make node-down stops it)


@pytest.fixture
def dataset(node):
    """A clean dataset subtree `tank/ft-<hex>` for one test; destroyed recursively after it."""
    name = node.new_dataset("ft")
    yield name
    node.destroy_dataset(name)
