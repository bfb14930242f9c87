#!/usr/bin/env python3
"""The narrated demo of `make demo`: the real `openstack` CLI against the local stack.

Two tenants (alice in project-a, bob in project-b) create volumes, snapshots, a volume from a
snapshot and a clone; the pool on the storage node shows what ZFS made of it; the snapshot catalog
finds every snapshot across both tenants. Each step prints its command, its output and its time.
Everything the demo made is deleted at the end (--keep leaves it for you to explore).
Needs a running stack (tools/stack/up).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import stack  # noqa: E402

OPENSTACK = str(stack.VENV / "bin" / "openstack")
CATALOG = str(stack.VENV / "bin" / "cinder-zfs-catalog")
NODE = str(REPO / "tools" / "storage-node" / "node")
T0 = time.time()
ENV = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(stack.CLOUDS))
ENV.pop("OS_CLOUD", None)


def banner(n: int, text: str) -> None:
    print(f"\n\033[1m[demo {time.time() - T0:6.1f}s] {n}. {text}\033[0m", flush=True)


def run(argv: list[str], show: bool = True) -> str:
    shown = " ".join(shlex.quote(a) for a in argv).replace(OPENSTACK, "openstack").replace(
        CATALOG, "cinder-zfs-catalog").replace(NODE, "tools/storage-node/node")
    print(f"$ {shown}", flush=True)
    t = time.time()
    r = subprocess.run(argv, capture_output=True, text=True, env=ENV, stdin=subprocess.DEVNULL)
    if show and r.stdout.strip():
        print(r.stdout.rstrip())
    if r.returncode != 0:
        print(r.stderr.rstrip(), file=sys.stderr)
        raise SystemExit(f"demo: the command above exited {r.returncode}")
    print(f"  ({time.time() - t:.1f}s)", flush=True)
    return r.stdout


def osc(cloud: str, *args: str, show: bool = True) -> str:
    return run([OPENSTACK, "--os-cloud", cloud, *args], show=show)


def osc_id(cloud: str, *args: str) -> str:
    return osc(cloud, *args, "-f", "value", "-c", "id").strip()


def wait(kind: str, ident: str, status: str = "available", timeout: float = 300) -> None:
    conn = stack.admin_conn(stack.secrets_get())
    get = conn.block_storage.get_volume if kind == "volume" else conn.block_storage.get_snapshot
    t = time.time()
    while True:
        obj = get(ident)
        if obj.status == status:
            print(f"  {kind} {ident} {status} after {time.time() - t:.1f}s", flush=True)
            return
        if obj.status.startswith("error") or time.time() - t > timeout:
            raise SystemExit(f"demo: {kind} {ident} is {obj.status} (see {stack.LOG})")
        time.sleep(0.3)


def wait_gone(kind: str, ident: str, timeout: float = 300) -> None:
    from openstack import exceptions

    conn = stack.admin_conn(stack.secrets_get())
    get = conn.block_storage.get_volume if kind == "volume" else conn.block_storage.get_snapshot
    end = time.time() + timeout
    while time.time() < end:
        try:
            get(ident)
        except exceptions.NotFoundException:
            return
        time.sleep(0.3)
    raise SystemExit(f"demo: {kind} {ident} not deleted after {timeout}s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", action="store_true", help="leave the demo's volumes in place")
    args = ap.parse_args()
    tag = secrets.token_hex(2)
    since = str(int(time.time()) - 1)
    made: list[tuple[str, str, str]] = []  # (cloud, kind, id), newest last

    banner(1, "alice (project-a) creates a 1 GiB volume: a sparse zvol on the storage node")
    vol = osc_id("alice", "volume", "create", "--size", "1", f"demo-vol-{tag}")
    made.append(("alice", "volume", vol))
    wait("volume", vol)

    banner(2, "alice snapshots it: one ZFS snapshot, no copy, no chain")
    snap = osc_id("alice", "volume", "snapshot", "create", "--volume", vol, f"demo-snap-{tag}")
    made.append(("alice", "snapshot", snap))
    wait("snapshot", snap)

    banner(3, "alice creates a volume from the snapshot: an O(1) ZFS clone")
    from_snap = osc_id("alice", "volume", "create", "--snapshot", snap, "--size", "1",
                       f"demo-from-snap-{tag}")
    made.append(("alice", "volume", from_snap))
    wait("volume", from_snap)

    banner(4, "alice clones the volume itself (a clone of an internal snapshot)")
    clone = osc_id("alice", "volume", "create", "--source", vol, "--size", "1",
                   f"demo-clone-{tag}")
    made.append(("alice", "volume", clone))
    wait("volume", clone)

    banner(5, "bob (project-b) makes a volume and two snapshots of his own")
    bvol = osc_id("bob", "volume", "create", "--size", "1", f"demo-bob-vol-{tag}")
    made.append(("bob", "volume", bvol))
    wait("volume", bvol)
    for i in (1, 2):
        bsnap = osc_id("bob", "volume", "snapshot", "create", "--volume", bvol,
                       f"demo-bob-snap{i}-{tag}")
        made.append(("bob", "snapshot", bsnap))
        wait("snapshot", bsnap)

    banner(6, "each tenant sees only its own; the admin sees both")
    osc("alice", "volume", "list")
    osc("bob", "volume", "snapshot", "list")
    osc("admin", "volume", "snapshot", "list", "--all-projects")

    banner(7, "what ZFS made of it on the storage node (per-project datasets, clones, origins)")
    run([NODE, "ssh", "zfs", "list", "-r", "-t", "all", "-o", "name,used,refer,origin",
         stack.ZFS_ROOT])

    banner(8, "the snapshot catalog: every snapshot of the backend, across tenants, "
              "newest first, without walking the pool")
    run([CATALOG, "search", "--config-file", str(stack.CINDER_CONF), "--since", since])
    run([CATALOG, "report", "--config-file", str(stack.CINDER_CONF)])

    if args.keep:
        banner(9, "kept: explore with `export OS_CLIENT_CONFIG_FILE=" + str(stack.CLOUDS) +
               "` and `openstack --os-cloud alice volume list`")
    else:
        banner(9, "cleaning up what the demo made (dependents first)")
        for cloud, kind, ident in reversed(made):
            if kind == "volume":
                osc(cloud, "volume", "delete", ident)
            else:
                osc(cloud, "volume", "snapshot", "delete", ident)
            wait_gone(kind, ident)
    print(f"\n\033[1m[demo {time.time() - T0:6.1f}s] done.\033[0m  Next: `make test` runs every "
          f"test (unit, functional, e2e).\n"
          f"Use the stack yourself:  export OS_CLIENT_CONFIG_FILE={stack.CLOUDS}; "
          f"openstack --os-cloud alice volume list", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
