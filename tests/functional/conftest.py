"""Fixtures of the functional tests: a real OpenZFS / OCFS2 / LIO storage node (a QEMU VM).

- `node` (session): the node, started once per test session by tools/storage-node/node (or a
  running healthy one reused), connected over one SSH connection; see nodelib.Node.
- `dataset` (function): a fresh dataset `<pool>/ft-<8 hex>` for one test, destroyed with
  `zfs destroy -r` after it. iSCSI/LIO/mount leftovers are the test's own business.

Every test under tests/functional is marked `functional`: `-m 'not functional'` deselects them.
Otherwise a node that cannot start makes the tests ERROR with the reason; they never skip.

A node that dies under a test (a panic, QEMU killed) fails that test with the reason and the
node's console (`pytest_runtest_makereport` below), and is started again before the next test
(`node_alive`), so one broken test never hides the others.
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


_NODE: list[nodelib.Node] = []   # the session's node once started, for the report hook


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
    _NODE.append(n)
    yield n
    _NODE.clear()
    n.close()  # the VM keeps running: the next session reuses it (make node-down stops it)


@pytest.fixture(autouse=True)
def node_alive(request):
    """Before each test that uses the node: a node that died since is started again."""
    if "node" not in request.fixturenames:
        yield
        return
    n = request.getfixturevalue("node")
    why = n.why_dead()
    if why:
        sys.stderr.write(f"\n{why}\nstarting it again for {request.node.nodeid}\n")
        try:
            n.restart()
        except nodelib.NodeStartError as e:
            pytest.fail(f"{why}\nand it could not be started again: {e}", pytrace=False)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that fails because the node died says so first, with the node's console."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or not _NODE or "node" not in getattr(item, "fixturenames", ()):
        return
    why = getattr(item, "_node_death", None) or _NODE[0].why_dead()
    if why:
        item._node_death = why
        report.longrepr = (f"{why}\n\n--- the test's own failure ({report.when}):\n"
                           f"{report.longrepr}")


@pytest.fixture
def dataset(node):
    """A clean dataset subtree `tank/ft-<hex>` for one test; destroyed recursively after it."""
    name = node.new_dataset("ft")
    yield name
    if node.why_dead():
        # nothing to clean on a dead node: the restart before the next test brings the pool
        # back, and this subtree is destroyed then
        node.on_restart(lambda n: n.destroy_dataset(name), once=True)
        return
    node.destroy_dataset(name)
