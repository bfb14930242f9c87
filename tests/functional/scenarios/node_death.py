"""Run by test_node_recovery.py in a pytest of its own (not collected by the suite: the file
name does not start with test_): a test that breaks the node, then an ordinary one.

The first kills the node's QEMU by its pid, as a kernel panic (with -no-reboot) or the OOM
killer would; it must fail saying the node died, with the console. The second must find the node
started again, on the same SSH port, with its pool."""

from __future__ import annotations

import os
import signal
import time

PORT = {}


def test_a_test_that_kills_the_node(node):
    PORT["before"] = node.port
    node.run("zpool sync")
    os.kill(node.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while os.path.exists(f"/proc/{node.pid}") and time.monotonic() < deadline:
        time.sleep(0.1)
    node.run("zfs list -H -o name " + node.pool)   # fails: the node is gone


def test_the_next_test_runs_on_the_node_started_again(node):
    assert node.restarts == 1
    assert node.port == PORT["before"]
    assert node.run(f"zpool list -H -o health {node.pool}").stdout.strip() == "ONLINE"
