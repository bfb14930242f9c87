"""End to end: what the scheduler sees of the backend (issue 16): thick and thin volumes.

The test waits on Cinder's own periodic stats report (backend_stats_polling_interval, 60 s),
never on a fixed sleep.
"""

from __future__ import annotations

import shlex
import time

from stacklib import BACKEND_HOST, restart_volume_service
from test_stack import GiB, create_volume, uniq

# Two stats reports plus the scheduler's pickup, on a slow node.
STATS_TIMEOUT = 300


def pool_capabilities(stack) -> dict:
    pools = stack.cli_json("admin", "volume", "backend", "pool", "list", "--long")
    mine = [p for p in pools if p["Name"].startswith(BACKEND_HOST)]
    assert len(mine) == 1, f"not one pool of {BACKEND_HOST}: {pools}"
    return mine[0]["Capabilities"]


def wait_capabilities(stack, ok, what: str, timeout: float = STATS_TIMEOUT) -> dict:
    end = time.time() + timeout
    caps = {}
    while time.time() < end:
        caps = pool_capabilities(stack)
        if ok(caps):
            return caps
        time.sleep(5)
    raise AssertionError(f"the scheduler's view of {BACKEND_HOST} is not {what} after "
                         f"{timeout:.0f} s: {caps}")


def refreservation(node, dataset: str) -> int:
    return int(node.run(f"zfs get -H -p -o value refreservation {shlex.quote(dataset)}").stdout)


def volume_type(stack, provisioning: str) -> str:
    t = stack.cli_json("admin", "volume", "type", "create", "--property",
                       f"provisioning:type={provisioning}", uniq(provisioning))
    return t["id"]


def cinder_allocated_gb(stack) -> int:
    """What Cinder's database says sits on this backend, in GiB."""
    volumes = stack.admin.block_storage.volumes(details=True, all_projects=True)
    return sum(v.size for v in volumes if (v.host or "").startswith(BACKEND_HOST))


def test_provisioning_type_is_honoured_and_the_pool_view_adds_up(stack, node, cleanup):
    before = pool_capabilities(stack)
    assert before["thick_provisioning_support"] and before["thin_provisioning_support"]
    types = [volume_type(stack, "thick"), volume_type(stack, "thin")]
    try:
        thick = create_volume(stack, cleanup, "alice", "--type", types[0], size=1)
        thin = create_volume(stack, cleanup, "alice", "--type", types[1], size=2)
        alice = stack.project_id("alice")
        # ZFS reserves the volume and its metadata for a thick zvol (refreservation=auto)
        assert refreservation(node, stack.zvol(alice, thick)) >= 1 * GiB
        assert refreservation(node, stack.zvol(alice, thin)) == 0
        # the scheduler's allocated_capacity_gb (Cinder's own count: the driver reports no
        # provisioned space of its own) equals what Cinder's database holds here, ours
        # included. cinder-volume counts it from the database when it starts, then adds and
        # subtracts per call; that running count drifted by 1 GiB once after the catalog API
        # tests (not understood yet), so it is compared after a recount.
        restart_volume_service()
        wait_capabilities(
            stack, lambda c: float(c["allocated_capacity_gb"]) == cinder_allocated_gb(stack),
            "allocated_capacity_gb = the sizes of the backend's volumes")
    finally:
        cleanup.run()
        cleanup.items.clear()
        for t in types:
            stack.cli("admin", "volume", "type", "delete", t)
