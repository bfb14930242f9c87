"""End to end: the storage node goes away and comes back (issue 16).

With the node stopped, cinder-volume keeps its service up and reports `backend_state: down`
with no free space (the scheduler sends nothing there); when the node is back on the same port,
the driver reconnects by itself and the backend takes volumes again. Nobody reruns
tools/stack/up in between.

Named `zz` so it runs last among the e2e tests: everything before it has a node, and the
finally block gives Tempest (which follows in `make test`) its node back.
"""

from __future__ import annotations

import subprocess
import sys

import nodelib
from stacklib import BACKEND_HOST
from test_scheduler_view import wait_capabilities
from test_stack import create_volume


def volume_service_state(stack) -> str:
    services = stack.cli_json("admin", "volume", "service", "list", "--service",
                              "cinder-volume")
    mine = [s for s in services if s["Host"] == BACKEND_HOST]
    assert len(mine) == 1, f"not one cinder-volume for {BACKEND_HOST}: {services}"
    return mine[0]["State"]


def stop_node() -> None:
    r = subprocess.run([sys.executable, str(nodelib.NODE_TOOL), "stop"], capture_output=True,
                       text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"`node stop` exited {r.returncode}: {r.stderr[-3000:]}"


def node_answers(node) -> bool:
    try:
        node.run("true", timeout=30)
        return True
    except Exception:  # noqa: BLE001 - refused, reset, timed out: all mean "not up"
        return False


def test_a_stopped_node_is_reported_down_and_the_backend_comes_back_by_itself(
        stack, node, cleanup):
    # a cinder-volume just (re)started by the stack fixture reports within a stats interval
    wait_capabilities(stack, lambda c: c.get("backend_state") == "up", "backend_state up")
    try:
        stop_node()
        down = wait_capabilities(
            stack, lambda c: c.get("backend_state") == "down",
            "backend_state down with the node stopped")
        assert float(down["free_capacity_gb"]) == 0, down
        # the service stays up: only its backend is down, and Cinder keeps polling it
        assert volume_service_state(stack) == "up"

        node.restart()  # same run dir, same SSH port: the stack's config stays valid
        wait_capabilities(
            stack, lambda c: c.get("backend_state") == "up" and float(c["free_capacity_gb"]) > 0,
            "backend_state up again with the node back")
        volume = create_volume(stack, cleanup, "alice")
        assert node.run(f"zfs list -H -o name {stack.zvol(stack.project_id('alice'), volume)}"
                        ).returncode == 0
    finally:
        if not node_answers(node):
            node.restart()
