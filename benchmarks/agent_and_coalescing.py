"""Two side-by-side measurements on the storage node, in one run:

1. Agent requests per second over the ONE persistent SSH session the driver keeps, vs one `ssh`
   per request (a new handshake each time, ~2 s under emulation) -- issue 3.
2. 32 concurrent create_snapshot calls (eventlet greenthreads, as cinder-volume runs them) with
   snapshot coalescing on (zfs_snapshot_batch_window_ms=50) vs off (0), against one snapshot
   alone -- issue 7. Beside them, in the same run, the floor: lzc_snapshot of the same 1 and 32
   zvols timed inside the guest, no driver, no SSH -- what ZFS itself needs for one txg with 32
   snapshots in it on this node.

    .venv/bin/python benchmarks/agent_and_coalescing.py [--repeat 3] [--volumes 32]

Writes benchmarks/results/agent-and-coalescing.json. Ratios, not absolute times, are the result.
"""

import eventlet

eventlet.monkey_patch()  # as cinder-volume runs: before paramiko and threading are imported

import argparse  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "functional")]

import nodelib  # noqa: E402

from tests.functional.driver_env import (  # noqa: E402
    build_driver,
    install_agent,
    snapshot_obj,
    volume_obj,
)


def agent_session_vs_ssh(node, key, requests: int, ssh_requests: int) -> dict:
    from cinder_zfs_ocfs2.transport.ssh import SSHTransport

    transport = SSHTransport(host="127.0.0.1", port=node.port, user="root",
                             key_file=str(key), known_hosts=str(node.known_hosts))
    transport.call("exists", name="tank")  # the one handshake, outside the timing
    started = time.monotonic()
    for _ in range(requests):
        transport.call("exists", name="tank")
    session = requests / (time.monotonic() - started)
    transport.close()

    line = json.dumps({"id": 1, "op": "exists", "args": {"name": "tank"}}) + "\n"
    argv = ["ssh", "-i", str(key), "-o", f"UserKnownHostsFile={node.known_hosts}",
            "-o", "BatchMode=yes", "-p", str(node.port), "root@127.0.0.1", "agent"]
    started = time.monotonic()
    for _ in range(ssh_requests):
        out = subprocess.run(argv, input=line, capture_output=True, text=True, check=True)
        assert '"ok":true' in out.stdout, out.stdout
    per_ssh = ssh_requests / (time.monotonic() - started)
    return {"persistent_session_ops_per_s": round(session, 2),
            "ssh_per_request_ops_per_s": round(per_ssh, 3),
            "ratio": round(session / per_ssh, 1),
            "requests": requests, "ssh_requests": ssh_requests}


def snapshot_burst(drv, volumes) -> float:
    snaps = [snapshot_obj(v) for v in volumes]
    pool = eventlet.GreenPool(len(snaps))
    started = time.monotonic()
    list(pool.imap(drv.create_snapshot, snaps))
    elapsed = time.monotonic() - started
    for snap in snaps:
        drv.delete_snapshot(snap)
    return elapsed


# Timed inside the guest: one lzc_snapshot call of the first zvol, then one of all of them.
LZC_FLOOR = """
import json, sys, time, libzfs_core as lzc
zvols = json.loads(sys.argv[1]); tag = sys.argv[2]; out = {}
# warm-up: the first call of a process pays for opening /dev/zfs and loading the library
for label, names in (("warm", zvols[:1]), ("one", zvols[:1]), ("all", zvols)):
    snaps = [f"{z}@floor-{label}-{tag}".encode() for z in names]
    started = time.monotonic()
    lzc.lzc_snapshot(snaps)
    out[label] = time.monotonic() - started
    lzc.lzc_destroy_snaps(snaps, defer=False)
print(json.dumps(out))
"""


def zfs_floor(node, zvols: list[str], tag: str) -> dict:
    node.run(f"cat > /tmp/lzc_floor.py <<'EOF'\n{LZC_FLOOR}\nEOF")
    out = node.run(f"python3 /tmp/lzc_floor.py '{json.dumps(zvols)}' {tag}").stdout
    return json.loads(out)


def coalescing(node, key, root: str, catalog: str, count: int, repeat: int) -> dict:
    batched = build_driver(node, key, root, catalog, zfs_snapshot_batch_window_ms=50)
    serial = build_driver(node, key, root, catalog, zfs_snapshot_batch_window_ms=0)
    volumes = [volume_obj() for _ in range(count)]
    for volume in volumes:
        batched.create_volume(volume)
    zvols = [batched._volume_name(v) for v in volumes]
    samples = {"one": [], "one_with_window": [], "burst_coalesced": [],
               "burst_not_coalesced": [], "lzc_one": [], "lzc_burst": []}
    for i in range(repeat):  # interleaved, so drift in machine load hits all alike
        samples["one"].append(snapshot_burst(serial, volumes[:1]))
        samples["one_with_window"].append(snapshot_burst(batched, volumes[:1]))
        samples["burst_coalesced"].append(snapshot_burst(batched, volumes))
        samples["burst_not_coalesced"].append(snapshot_burst(serial, volumes))
        floor = zfs_floor(node, zvols, str(i))
        samples["lzc_one"].append(floor["one"])
        samples["lzc_burst"].append(floor["all"])
    txgs = set()
    snaps = [snapshot_obj(v) for v in volumes]
    list(eventlet.GreenPool(count).imap(batched.create_snapshot, snaps))
    for snap in snaps:
        txgs.add(node.run(f"zfs get -Hp -o value createtxg "
                          f"{batched._snapshot_name(snap)}").stdout.strip())
        batched.delete_snapshot(snap)
    for volume in volumes:
        batched.delete_volume(volume)
    median = {k: statistics.median(v) for k, v in samples.items()}
    return {"volumes": count, "repeat": repeat, "samples_s": samples,
            "median_s": {k: round(v, 3) for k, v in median.items()},
            "coalesced_vs_one": round(median["burst_coalesced"] / median["one"], 2),
            "coalesced_vs_one_with_window": round(
                median["burst_coalesced"] / median["one_with_window"], 2),
            "not_coalesced_vs_one": round(median["burst_not_coalesced"] / median["one"], 2),
            "zfs_floor_burst_vs_one": round(median["lzc_burst"] / median["lzc_one"], 2),
            "distinct_txgs_in_a_coalesced_burst": len(txgs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--volumes", type=int, default=32)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--ssh-requests", type=int, default=5)
    args = parser.parse_args()
    node = nodelib.start_node()
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-agent-"))
    key = install_agent(node, work)
    root = f"tank/bench-{uuid.uuid4().hex[:8]}"
    node.run(f"zfs create {root}")
    try:
        result = {"agent": agent_session_vs_ssh(node, key, args.requests, args.ssh_requests),
                  "coalescing": coalescing(node, key, f"{root}/cinder",
                                           f"sqlite:///{work}/catalog.sqlite", args.volumes,
                                           args.repeat),
                  "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    finally:
        node.run(f"zfs destroy -r {root}", check=False)
    out = ROOT / "benchmarks" / "results" / "agent-and-coalescing.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
