"""A node that dies in the middle of the suite (issue 21): the test it dies under says so with
the node's console, the node is started again, and the tests after it pass.

Runs tests/functional/scenarios/node_death.py in a pytest of its own against this session's
node, so that what the suite prints can be checked; afterwards this session adopts the node
that pytest started again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCENARIO = HERE / "scenarios" / "node_death.py"


def test_a_node_killed_mid_suite_is_reported_then_started_again(node):
    port = node.port
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
         str(SCENARIO)],
        cwd=HERE.parents[1], capture_output=True, text=True, timeout=1200,
        stdin=subprocess.DEVNULL)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "1 failed, 1 passed" in out, out
    # the failing test names the death, its cause and the console before its own traceback
    assert "the storage node died: its QEMU (pid" in out, out
    assert "--- its console, last lines" in out, out
    assert "the test's own failure (call)" in out, out
    node.restart()   # adopt the node the scenario's session started again (no boot: reused)
    assert node.port == port
    assert node.run(f"zpool list -H -o health {node.pool}").stdout.strip() == "ONLINE"
