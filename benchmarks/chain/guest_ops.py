"""Timed ZFS operations, run ON the storage node by benchmarks/chain/run.py (the guest's python3).

Timing inside the guest keeps the SSH round trip out of every sample. Reads {"pool": ...,
"steps": [...]} as JSON on stdin, runs the steps in order, prints one JSON list of results (one
per step). Only the standard library and OpenZFS's own `libzfs_core` bindings (Debian
python3-pyzfs), imported once and warmed up before the first timed step. Steps:

  {"op": "write", "dev": "/dev/zvol/...", "offsets": [...], "length": 65536, "byte": 7}
        untimed: pwrite `byte`-filled extents at `offsets`, then fsync
  {"op": "snapshot", "method": "cli" | "lzc", "name": "pool/ds@snap"}       timed
  {"op": "clone", "method": "cli" | "lzc", "origin": "pool/ds@snap", "name": "pool/clone"}  timed
  {"op": "settle"}      untimed: udevadm settle (no udev work left over from the last step)
  {"op": "destroy", "names": [...]}     untimed; retries while udev still holds a new zvol
  {"op": "snapshot_many", "dataset": "pool/ds", "prefix": "c", "start": 0, "count": 10000,
   "budget_s": 900}   one lzc_snapshot per txg (one snapshot per dataset per txg is all ZFS
                      allows), until `count` or the time budget; returns created and seconds

Every result: {"op", "tag" (echoed), "seconds" (timed steps), ...}.
"""

import json
import os
import subprocess
import sys
import time

import libzfs_core as lzc


def _zfs(*argv):
    r = subprocess.run(("zfs",) + argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("zfs %s: %s" % (" ".join(argv), r.stderr.strip()))


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def step_write(s):
    buf = bytes([s["byte"]]) * s["length"]
    fd = os.open(s["dev"], os.O_WRONLY)
    try:
        for off in s["offsets"]:
            os.pwrite(fd, buf, off)
        os.fsync(fd)
    finally:
        os.close(fd)
    return {}


def step_snapshot(s):
    name = s["name"]
    if s["method"] == "lzc":
        return {"seconds": _timed(lambda: lzc.lzc_snapshot([name.encode()]))}
    return {"seconds": _timed(lambda: _zfs("snapshot", name))}


def step_clone(s):
    name, origin = s["name"], s["origin"]
    if s["method"] == "lzc":
        return {"seconds": _timed(lambda: lzc.lzc_clone(name.encode(), origin.encode()))}
    return {"seconds": _timed(lambda: _zfs("clone", origin, name))}


def step_destroy(s):
    attempts = 0
    for name in s["names"]:
        for i in range(10):
            attempts += 1
            r = subprocess.run(["zfs", "destroy", name], capture_output=True, text=True)
            if r.returncode == 0:
                break
            if "could not find" in r.stderr or "does not exist" in r.stderr:
                break
            if i == 9:
                raise RuntimeError("zfs destroy %s: %s" % (name, r.stderr.strip()))
            subprocess.run(["udevadm", "settle", "-t", "10"], capture_output=True)
            time.sleep(0.2 * (i + 1))
    return {"attempts": attempts}


def step_settle(s):
    subprocess.run(["udevadm", "settle", "-t", "30"], capture_output=True)
    return {}


def step_snapshot_many(s):
    ds, prefix = s["dataset"], s["prefix"]
    start, count, budget = s["start"], s["count"], s["budget_s"]
    t0 = time.perf_counter()
    created = 0
    while created < count and time.perf_counter() - t0 < budget:
        lzc.lzc_snapshot([("%s@%s%d" % (ds, prefix, start + created)).encode()])
        created += 1
    return {"created": created, "seconds": time.perf_counter() - t0}


STEPS = {
    "write": step_write, "snapshot": step_snapshot, "clone": step_clone,
    "destroy": step_destroy, "settle": step_settle, "snapshot_many": step_snapshot_many,
}


def main():
    job = json.load(sys.stdin)
    steps = job["steps"]
    lzc.lzc_exists(job["pool"].encode())  # loads libzfs_core (cffi) before the first timed step
    out = []
    for s in steps:
        res = STEPS[s["op"]](s)
        res.update(op=s["op"], tag=s.get("tag"))
        out.append(res)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
