"""Chain-free ZFS snapshots vs chained qcow2 snapshots, and O(1) snapshot and clone cost.

Runs inside the storage-node VM (tools/storage-node/node; one SSH connection via
tests/functional/nodelib.py), under its own dataset `<pool>/bench-chain/<run id>` only, and
destroys it at the end. Every figure is a RATIO measured side by side in the same run.

Reads (issue 10):
  The same data is written to (a) a sparse zvol (volblocksize 16K, the driver's default) with N
  snapshots and (b) a qcow2 chain of depth N made the way Cinder's remotefs (NFS) driver does it:
  `qemu-img create -f qcow2 -b <active> -F qcow2 <new>` per snapshot, writes going into the top
  image with `qemu-io`. The write plan is fixed for the run and identical for every N: fill the
  volume, then W = max(depths) rounds, each overwriting V/W of it in random 64 KiB extents (the
  qcow2 cluster size); for depth N a snapshot is taken before rounds floor(i*W/N), i < N. So every
  volume of the run ends with byte-identical content (checked by md5 against the plan) and the
  same amount of overwriting; only the number of snapshots (chain depth) differs.
  The qcow2 files live on a ZFS filesystem of the same pool (recordsize 64K = the cluster size).
  Both datasets: primarycache=metadata (ARC keeps no file or zvol data, so every data read goes
  to the pool's disks; exporting the pool to drop the ARC is too slow and the node is shared) and
  compression=off (the patterns written compress to nothing). Before every fio run:
  `sync; echo 3 > /proc/sys/vm/drop_caches`. The zvol is read through /dev/zvol/..., the chain
  through `qemu-nbd --read-only` on /dev/nbdX (started fresh for each measurement slot). fio:
  random 4k reads (time based, same random sequence everywhere) and one sequential 1M pass, both
  O_DIRECT, libaio, iodepth 1. Each repetition measures every (variant, N) in a shuffled order.

Snapshot / clone cost (lzc = libzfs_core, the driver's path, and the `zfs` CLI), timed inside the
guest by guest_ops.py: snapshot and clone of a 1 GiB vs a 100 GiB sparse zvol holding the same
data, interleaved; snapshot of a zvol with 0 vs 10,000 existing snapshots (one snapshot per
dataset per txg is all ZFS allows, so they are made one lzc_snapshot at a time, within a time
budget), interleaved.

    .venv/bin/python benchmarks/chain/run.py                 # full run (~1 h under emulation)
    .venv/bin/python benchmarks/chain/run.py --quick         # smoke run, ~1 min
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import random
import secrets
import shlex
import signal
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "functional"))

import nodelib  # noqa: E402

MiB = 1024 * 1024
GiB = 1024 * MiB
CLUSTER = 64 * 1024          # qcow2 default cluster size; the unit of every write
VOLBLOCKSIZE = "16K"         # the driver's default (zfs_volblocksize)
QCOW2_RECORDSIZE = "64K"     # = qcow2 cluster size
FILL_CHUNK = 16 * MiB
TOP = "bench-chain"
VARIANTS = ("zfs", "qcow2")
WORKLOADS = ("rand4k", "seq1m")
GOAL_READ_RATIO = 0.95
GOAL_OP_SPREAD = 1.2
RESULTS = REPO / "benchmarks" / "results"


def log(msg: str) -> None:
    print(f"[chain {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- write plan
class Plan:
    """Fill with byte 1, then `rounds` rounds of random 64 KiB extents, one byte value per round."""

    def __init__(self, size: int, rounds: int, seed: int):
        self.size = size
        self.rounds = rounds
        rng = random.Random(seed)
        nclusters = size // CLUSTER
        per_round = max(1, nclusters // rounds) if rounds else 0
        self.per_round = per_round
        self.round_clusters = [rng.sample(range(nclusters), per_round) for _ in range(rounds)]

    @staticmethod
    def pattern(j: int) -> int:
        return 2 + j % 253

    def fill_cmds(self) -> list[str]:
        chunk = min(FILL_CHUNK, self.size)
        return [f"write -P 1 {off} {chunk}" for off in range(0, self.size, chunk)]

    def round_cmds(self, j: int) -> list[str]:
        p = self.pattern(j)
        return [f"write -P {p} {c * CLUSTER} {CLUSTER}" for c in self.round_clusters[j]]

    def snapshot_rounds(self, n: int) -> list[int]:
        """Round index before which each of the n snapshots is taken."""
        if n > self.rounds:
            raise ValueError(f"depth {n} > write rounds {self.rounds}")
        return [i * self.rounds // n for i in range(n)]

    def expected_md5(self) -> str:
        buf = bytearray(b"\x01" * self.size)
        for j, clusters in enumerate(self.round_clusters):
            ext = bytes([self.pattern(j)]) * CLUSTER
            for c in clusters:
                buf[c * CLUSTER:(c + 1) * CLUSTER] = ext
        return hashlib.md5(buf).hexdigest()


def _qemu_io(fmt: str, cmds: list[str], target: str) -> str:
    args = " ".join(f"-c {shlex.quote(c)}" for c in cmds)
    return f"qemu-io -f {fmt} {args} {target} >/dev/null"


def wait_dev_sh(dev: str) -> str:
    """Shell: wait for udev's /dev/zvol link (up to ~3 min: the shared node can have thousands
    of zvols); a zvol's "add" event can be lost under load, so replay it once after 10 s (as
    the agent's wait_for_device does)."""
    return (f"udevadm settle -t 30; i=0; while [ ! -e {dev} ]; do i=$((i+1)); "
            f"if [ $i = 100 ]; then udevadm trigger --action=add --subsystem-match=block "
            f"--sysname-match='zd*'; udevadm settle -t 60; fi; "
            f"[ $i -gt 1800 ] && {{ echo 'no {dev}; regular files shadowing zvol nodes:' "
            f"$(find /dev -maxdepth 1 -name 'zd*' -type f) >&2; exit 1; }}; sleep 0.1; done")


def zvol_script(plan: Plan, ds: str, n: int, pidfile: str) -> str:
    dev = f"/dev/zvol/{ds}"
    snaps = plan.snapshot_rounds(n)
    lines = [
        "set -e",
        f"echo $$ > {pidfile}",
        f"zfs create -s -V {plan.size} -b {VOLBLOCKSIZE} {ds}",
        wait_dev_sh(dev),
        _qemu_io("raw", plan.fill_cmds(), dev),
    ]
    k = 0
    for j in range(plan.rounds):
        while k < len(snaps) and snaps[k] == j:
            lines.append(f"zfs snapshot {ds}@s{k + 1}")
            k += 1
        lines.append(_qemu_io("raw", plan.round_cmds(j), dev))
    lines.append("sync")
    return "\n".join(lines) + "\n"


def _top_only(image: str) -> str:
    """The image without its backing chain: opening a chain of depth k costs O(k) (~13 s at
    depth 74 under emulation), which would make building a 256-deep chain O(N^2). Every write
    of the plan is one whole, aligned qcow2 cluster, so no write reads the backing chain and
    the result is the same as writing through the chain (the md5 check reads through it)."""
    return shlex.quote("json:" + json.dumps(
        {"driver": "qcow2", "backing": None, "file": {"driver": "file", "filename": image}},
        separators=(",", ":")))


def qcow2_script(plan: Plan, directory: str, n: int, pidfile: str) -> tuple[str, str]:
    """The build script and the active (top) image's file name."""
    snaps = plan.snapshot_rounds(n)
    active = "volume.qcow2"
    lines = [
        "set -e",
        f"echo $$ > {pidfile}",
        f"mkdir -p {directory}",
        f"cd {directory}",
        f"qemu-img create -q -f qcow2 {active} {plan.size}",
        _qemu_io("qcow2", plan.fill_cmds(), active),
    ]
    k = 0
    for j in range(plan.rounds):
        while k < len(snaps) and snaps[k] == j:
            new = f"volume.s{k + 1}.qcow2"
            # Cinder remotefs: the active file becomes the snapshot, a new overlay (backing file
            # = the old active, by its relative name, size given) the active one. -u: the same
            # header without opening the whole chain (see _top_only).
            lines.append(f"qemu-img create -q -u -f qcow2 -b {active} -F qcow2 {new} "
                         f"{plan.size}")
            active = new
            k += 1
        target = _top_only(active) if k else active
        lines.append(f"qemu-io {' '.join(f'-c {shlex.quote(c)}' for c in plan.round_cmds(j))} "
                     f"{target} >/dev/null")
    lines.append("sync")
    return "\n".join(lines) + "\n", active


# --------------------------------------------------------------------------- guest helpers
class Bench:
    def __init__(self, node: nodelib.Node, args):
        self.node = node
        self.args = args
        self.pool = node.pool
        self.top = f"{self.pool}/{TOP}"
        self.run_id = time.strftime("r%Y%m%d%H%M%S") + secrets.token_hex(2)
        self.root = f"{self.top}/{self.run_id}"
        self.minor_holds: list[str] = []
        self.nbd_conns: dict[str, int] = {}  # /dev/nbdX -> its qemu-nbd's pid
        self._nbd_next = 0
        self.ops_script = f"/tmp/{TOP}-{self.run_id}-ops.py"
        self.nbd_err = f"/tmp/{TOP}-{self.run_id}-nbd.err"

    def run(self, cmd: str, timeout: float = 600, check: bool = True):
        return self.node.run(cmd, timeout=timeout, check=check)

    # ------------------------------------------------------------ datasets
    def setup(self) -> None:
        r = self.run(f"zfs list -H -o name {self.top}", check=False)
        if r.returncode != 0:
            self.run(f"zfs create -o primarycache=metadata -o compression=off {self.top} "
                     f"|| zfs list -H -o name {self.top}")
        self.run(f"zfs create -o primarycache=metadata -o compression=off {self.root}")
        self.node.put(HERE / "guest_ops.py", self.ops_script)
        self.minor_holds = self.hold_shadowed_minors()

    def hold_shadowed_minors(self) -> list[str]:
        """A regular file where a zvol's device node belongs (/dev/zdN; seen on the shared node:
        something wrote to a zvol device after it had gone) keeps devtmpfs from making that
        node, so udev never links the next zvol that gets minor N and the run would fail
        waiting for it. Hold each such free minor with a 1 MiB placeholder zvol of this run
        (minors go lowest free first), so the benchmark's zvols get working ones."""
        shadows = self.run("for f in /dev/zd*; do [ -f \"$f\" ] && echo ${f#/dev/}; done; true"
                           ).stdout.split()
        held: list[str] = []
        for name in shadows:
            log(f"/dev/{name} is a regular file, not a device node: holding minor {name}")
            for _ in range(8):
                if self.run(f"[ -e /sys/block/{name} ]", check=False).returncode == 0:
                    break
                ds = f"{self.root}/minor-hold-{len(held)}"
                self.run(f"zfs create -s -V 1M {ds}")
                held.append(ds)
                self.run(f"i=0; while [ ! -e /sys/block/{name} ] && [ $i -lt 100 ]; do "
                         f"i=$((i+1)); sleep 0.3; done; true", timeout=120)
        return held

    def mountpoint(self, ds: str) -> str:
        return self.run(f"zfs get -H -o value mountpoint {ds}").stdout.strip()

    def pidfile(self, what: str) -> str:
        return f"/tmp/{TOP}-{self.run_id}-{what}.pid"

    def cleanup(self) -> float:
        # Build shells still running (interrupted run): they are ours, by their pid files.
        self.run(f"for f in /tmp/{TOP}-{self.run_id}-*.pid; do [ -e \"$f\" ] || continue; "
                 "p=$(cat $f); if [ \"$(tr '\\0' ' ' < /proc/$p/cmdline 2>/dev/null)\" = "
                 "'bash -s ' ]; then kill -STOP $p; pkill -P $p; kill $p; kill -CONT $p; fi; "
                 "rm -f $f; done", check=False)
        for dev in sorted(self.nbd_conns):
            self.nbd_disconnect(dev, check=False)
        self.run(f"rm -f {self.ops_script} {self.nbd_err}", check=False)
        t0 = time.monotonic()
        # Thousands of snapshots (the count phase) take ~25 min to destroy under emulation.
        self.node.destroy_dataset(self.root, timeout=3600)
        seconds = time.monotonic() - t0
        # The top dataset goes when no other run of this benchmark still has a child there.
        self.run(f"[ -z \"$(zfs list -H -o name -d 1 {self.top} | tail -n +2)\" ] && "
                 f"zfs destroy {self.top}", check=False)
        return seconds

    # ------------------------------------------------------------ nbd
    def _nbd_pidfile(self, name: str) -> str:
        return f"/tmp/{TOP}-{self.run_id}-{name}.qpid"

    def nbd_connect(self, image: str) -> str:
        """`qemu-nbd --read-only -c` on a free /dev/nbdX, round robin: a device just
        disconnected is not reused while its old qemu-nbd may still be shutting down (reusing
        it at once lost the new connection under load)."""
        for attempt in range(3):
            script = (
                "modprobe nbd\n"
                "cnt=$(ls -d /sys/block/nbd* | wc -l)\n"
                "for k in $(seq 0 $((cnt - 1))); do\n"
                f"  n=nbd$(( (k + {self._nbd_next}) % cnt ))\n"
                "  [ -e /sys/block/$n ] || continue\n"
                "  [ -e /sys/block/$n/pid ] && continue\n"
                "  pgrep -f \"qemu-nbd.* -c /dev/$n \" >/dev/null && continue\n"
                f"  pf={self._nbd_pidfile('$n')}\n"
                f"  if qemu-nbd --read-only --fork --pid-file=$pf -f qcow2 -c /dev/$n "
                f"{shlex.quote(image)} 2>{self.nbd_err}; then echo $n $(cat $pf); exit 0; fi\n"
                "done\n"
                f"cat {self.nbd_err} >&2; exit 1\n"
            )
            name, pid = self.node.run("bash -s", input=script, timeout=900).stdout.split()[:2]
            dev = f"/dev/{name}"
            self.nbd_conns[dev] = int(pid)
            self._nbd_next = int(name[3:]) + 1
            ok = self.run(
                f"i=0; while ! [ -e /sys/block/{name}/pid ] || "
                f"[ \"$(cat /sys/block/{name}/size)\" = 0 ]; do i=$((i+1)); "
                f"[ $i -gt 1200 ] && exit 1; sleep 0.25; done", check=False, timeout=900)
            if ok.returncode == 0:
                return dev
            log(f"{dev} did not come up for {image} (attempt {attempt + 1}); retrying")
            self.nbd_disconnect(dev, check=False)
        raise RuntimeError(f"cannot export {image} on /dev/nbdX")

    def nbd_disconnect(self, dev: str, check: bool = True) -> None:
        """Disconnect, then wait until that qemu-nbd process has exited (killed after 150 s)."""
        pid = self.nbd_conns.pop(dev)
        self.run(f"qemu-nbd -d {dev} >/dev/null; i=0; while kill -0 {pid} 2>/dev/null; do "
                 f"i=$((i+1)); [ $i = 600 ] && kill {pid}; [ $i -gt 720 ] && exit 1; "
                 f"sleep 0.25; done; rm -f {self._nbd_pidfile(dev[5:])}",
                 timeout=600, check=check)

    # ------------------------------------------------------------ fio
    def fio(self, dev: str) -> dict[str, dict]:
        """Random 4k reads, then one sequential 1M pass: one fio process, two jobs, caches
        dropped before each job (exec_prerun)."""
        a = self.args
        prerun = shlex.quote("--exec_prerun=sync; echo 3 > /proc/sys/vm/drop_caches")
        cmd = (
            f"cd /tmp && fio --output-format=json --filename={dev} --direct=1 "
            f"--ioengine=libaio --iodepth=1 --size={a.size_mib * MiB} {prerun} "
            f"--name=rand4k --rw=randread --bs=4k --time_based --runtime={a.runtime} "
            f"--ramp_time={a.ramp} --randrepeat=1 --norandommap "
            f"--name=seq1m --stonewall --rw=read --bs=1M; "
            f"rc=$?; rm -f /tmp/rand4k.prerun.txt /tmp/seq1m.prerun.txt; exit $rc"
        )
        out = self.run(cmd, timeout=a.runtime + a.ramp + 1800).stdout
        res = {}
        for job in json.loads(out[out.index("{"):])["jobs"]:
            rd = job["read"]
            if job.get("error"):
                raise RuntimeError(f"fio job {job['jobname']} error {job['error']}")
            pct = rd["clat_ns"].get("percentile", {})
            res[job["jobname"]] = {
                "iops": rd["iops"],
                "mib_s": rd["bw_bytes"] / MiB,
                "lat_mean_us": rd["lat_ns"]["mean"] / 1e3,
                "clat_p50_us": pct.get("50.000000", 0) / 1e3,
                "clat_p99_us": pct.get("99.000000", 0) / 1e3,
                "runtime_s": rd["runtime"] / 1e3,
                "ios": rd["total_ios"],
                "io_mib": rd["io_bytes"] / MiB,
                "usr_cpu": job.get("usr_cpu"),
                "sys_cpu": job.get("sys_cpu"),
            }
        if set(res) != set(WORKLOADS):
            raise RuntimeError(f"fio returned jobs {sorted(res)}")
        return res

    # ------------------------------------------------------------ guest ops
    def ops(self, steps: list[dict], timeout: float) -> list[dict]:
        job = json.dumps({"pool": self.pool, "steps": steps})
        out = self.node.run(f"python3 {self.ops_script}", input=job, timeout=timeout).stdout
        return json.loads(out)


# --------------------------------------------------------------------------- statistics
def spread(values: list[float]) -> dict:
    v = sorted(values)
    q = statistics.quantiles(v, n=4) if len(v) >= 2 else [v[0]] * 3
    return {"median": statistics.median(v), "p25": q[0], "p75": q[2], "min": v[0], "max": v[-1],
            "n": len(v)}


def r4(x):
    if isinstance(x, float):
        return round(x, 4)
    if isinstance(x, dict):
        return {k: r4(v) for k, v in x.items()}
    if isinstance(x, list):
        return [r4(v) for v in x]
    return x


# --------------------------------------------------------------------------- phases
def phase_reads(b: Bench, out: dict) -> None:
    a = b.args
    size = a.size_mib * MiB
    depths = a.depths
    rounds = max(depths)
    plan = Plan(size, rounds, a.seed)
    expected = plan.expected_md5()
    qdir_ds = f"{b.root}/qcow2"
    b.run(f"zfs create -o recordsize={QCOW2_RECORDSIZE} {qdir_ds}")
    qdir = b.mountpoint(qdir_ds)
    props = b.run(f"zfs get -H -o name,property,value primarycache,compression,recordsize "
                  f"{b.root} {qdir_ds}").stdout.split("\n")
    out["reads"] = reads = {
        "plan": {"size_bytes": size, "write_rounds": rounds, "extents_per_round": plan.per_round,
                 "extent_bytes": CLUSTER, "seed": a.seed, "expected_md5": expected,
                 "bytes_overwritten": rounds * plan.per_round * CLUSTER},
        "dataset_properties": [p for p in props if p],
        "builds": {}, "samples": [], "summary": {},
    }
    targets: dict[tuple[str, int], dict] = {}

    def build(variant: str, n: int) -> dict:
        t0 = time.monotonic()
        if variant == "zfs":
            ds = f"{b.root}/zvol-n{n}"
            b.node.run("bash -s", input=zvol_script(plan, ds, n, b.pidfile(f"zfs{n}")),
                       timeout=7200)
            info = {"dataset": ds, "device": f"/dev/zvol/{ds}"}
            cnt = b.run(f"zfs list -H -t snapshot -o name -d 1 {ds} | wc -l").stdout.strip()
            info["snapshots"] = int(cnt)
        else:
            d = f"{qdir}/chain-n{n}"
            script, active = qcow2_script(plan, d, n, b.pidfile(f"qcow2{n}"))
            b.node.run("bash -s", input=script, timeout=7200)
            info = {"directory": d, "active": f"{d}/{active}"}
            info["files"] = int(b.run(f"ls {d} | wc -l").stdout.strip())
            info["bytes"] = int(b.run(f"du -sb --apparent-size {d}").stdout.split()[0])
        info["build_seconds"] = time.monotonic() - t0
        log(f"built {variant} N={n} in {info['build_seconds']:.0f} s")
        return info

    log(f"building {len(depths) * 2} volumes of {a.size_mib} MiB, depths {depths}, "
        f"{rounds} write rounds of {plan.per_round} x 64 KiB")
    jobs = [(v, n) for n in sorted(depths, reverse=True) for v in VARIANTS]
    ex = ThreadPoolExecutor(max_workers=2)
    try:
        futs = {job: ex.submit(build, *job) for job in jobs}
        for job, f in futs.items():
            targets[job] = f.result()
    finally:
        # On an error or interrupt, do not wait here: cleanup() kills the build shells.
        ex.shutdown(wait=False, cancel_futures=True)
    for (v, n), t in targets.items():
        reads["builds"][f"{v}/{n}"] = t
        if v == "zfs" and t["snapshots"] != n:
            raise RuntimeError(f"zvol N={n} has {t['snapshots']} snapshots")
        if v == "qcow2" and t["files"] != n + 1:
            raise RuntimeError(f"qcow2 N={n} has {t['files']} files")

    if not a.no_verify:
        log("verifying every volume's content against the plan (md5)")
        for (v, n), t in targets.items():
            if v == "zfs":
                dev = t["device"]
                md5 = b.run(f"md5sum {dev}").stdout.split()[0]
            else:
                dev = b.nbd_connect(t["active"])
                try:
                    md5 = b.run(f"md5sum {dev}").stdout.split()[0]
                finally:
                    b.nbd_disconnect(dev)
            t["md5"] = md5
            t["content_ok"] = md5 == expected
            if md5 != expected:
                raise RuntimeError(f"{v} N={n}: md5 {md5} != expected {expected}")

    rng = random.Random(a.seed + 1)
    slots = [(v, n) for v in VARIANTS for n in depths]
    for rep in range(a.repeat):
        order = slots[:]
        rng.shuffle(order)
        log(f"read repetition {rep + 1}/{a.repeat}: {order}")
        for pos, (v, n) in enumerate(order):
            t = targets[(v, n)]
            dev = t["device"] if v == "zfs" else b.nbd_connect(t["active"])
            try:
                for wl, res in b.fio(dev).items():
                    res.update(rep=rep, position=pos, variant=v, n=n, workload=wl,
                               at=round(time.time(), 1))
                    reads["samples"].append(res)
            finally:
                if v == "qcow2":
                    b.nbd_disconnect(dev)
    reads["summary"] = summarize_reads(reads["samples"], depths, a.repeat)


def throughput(sample: dict) -> float:
    return sample["iops"] if sample["workload"] == "rand4k" else sample["mib_s"]


def summarize_reads(samples: list[dict], depths: list[int], repeat: int) -> dict:
    idx = {(s["variant"], s["workload"], s["n"], s["rep"]): s for s in samples}
    summary: dict = {}
    for v in VARIANTS:
        for wl in WORKLOADS:
            per_n = summary.setdefault(v, {}).setdefault(wl, {})
            for n in depths:
                reps = [idx[(v, wl, n, r)] for r in range(repeat) if (v, wl, n, r) in idx]
                if not reps:
                    continue
                base = {r: idx[(v, wl, 0, r)] for r in range(repeat) if (v, wl, 0, r) in idx}
                entry = {
                    "throughput": spread([throughput(s) for s in reps]),
                    "throughput_unit": "IOPS" if wl == "rand4k" else "MiB/s",
                    "lat_mean_us": spread([s["lat_mean_us"] for s in reps]),
                    "clat_p50_us": spread([s["clat_p50_us"] for s in reps]),
                    "clat_p99_us": spread([s["clat_p99_us"] for s in reps]),
                }
                paired = [throughput(s) / throughput(base[s["rep"]]) for s in reps
                          if s["rep"] in base]
                lat = [s["lat_mean_us"] / base[s["rep"]]["lat_mean_us"] for s in reps
                       if s["rep"] in base]
                if paired:
                    entry["throughput_ratio_to_n0"] = spread(paired)
                    entry["lat_mean_ratio_to_n0"] = spread(lat)
                per_n[str(n)] = entry
    return summary


def _vol_dev(ds: str) -> str:
    return f"/dev/zvol/{ds}"


def _make_zvols(b: Bench, names: dict[str, int], data_offsets: list[int]) -> None:
    for ds, size in names.items():
        b.run(f"zfs create -s -V {size} -b {VOLBLOCKSIZE} {ds}")
    for ds in names:
        b.run(wait_dev_sh(_vol_dev(ds)), timeout=600)
    b.ops([{"op": "write", "dev": _vol_dev(ds), "offsets": data_offsets, "length": CLUSTER,
            "byte": 1} for ds in names], timeout=1800)


def _snapshot_steps(rng: random.Random, vols: dict[str, str], methods: list[str], repeat: int,
                    phase: str, span: int) -> list[dict]:
    """Interleaved: per repetition a shuffled volume order; before each timed snapshot 1 MiB of
    the same new data (same offsets in every volume of the repetition) is written; the
    repetition's snapshots are destroyed afterwards (untimed) so the counts do not grow."""
    steps: list[dict] = []
    for rep in range(repeat):
        order = list(vols)
        rng.shuffle(order)
        ms = methods[:]
        rng.shuffle(ms)
        offsets = [c * CLUSTER for c in rng.sample(range(span // CLUSTER), 16)]
        made = []
        for key in order:
            ds = vols[key]
            for m in ms:
                steps.append({"op": "settle"})
                steps.append({"op": "write", "dev": _vol_dev(ds), "offsets": offsets,
                              "length": CLUSTER, "byte": 2 + rep % 250})
                name = f"{ds}@t{phase}{rep}{m}"
                steps.append({"op": "snapshot", "method": m, "name": name,
                              "tag": [phase, key, m, rep]})
                made.append(name)
        steps.append({"op": "destroy", "names": made})
    return steps


def _collect(results: list[dict]) -> list[dict]:
    return [{"phase": r["tag"][0], "volume": r["tag"][1], "method": r["tag"][2],
             "rep": r["tag"][3], "seconds": r["seconds"]}
            for r in results if r.get("tag") and "seconds" in r]


def _ratio(samples: list[dict], phase_a: str, vol_a: str, phase_b: str, vol_b: str,
           method: str) -> dict:
    """Timing of (phase_a, vol_a) over (phase_b, vol_b): ratio of medians + paired per rep."""
    a = {s["rep"]: s["seconds"] for s in samples
         if (s["phase"], s["volume"], s["method"]) == (phase_a, vol_a, method)}
    b = {s["rep"]: s["seconds"] for s in samples
         if (s["phase"], s["volume"], s["method"]) == (phase_b, vol_b, method)}
    ratio = statistics.median(a.values()) / statistics.median(b.values())
    paired = [a[r] / b[r] for r in a if r in b]
    return {"numerator": f"{phase_a}/{vol_a}", "denominator": f"{phase_b}/{vol_b}",
            "method": method, "ratio_of_medians": ratio, "paired_ratio": spread(paired),
            "numerator_median_s": statistics.median(a.values()),
            "denominator_median_s": statistics.median(b.values()),
            "within_goal": max(ratio, 1 / ratio) <= GOAL_OP_SPREAD}


def _timing_summary(samples: list[dict]) -> dict:
    keys = sorted({(s["phase"], s["volume"], s["method"]) for s in samples})
    return {f"{p}/{v}/{m}": spread([s["seconds"] for s in samples
                                    if (s["phase"], s["volume"], s["method"]) == (p, v, m)])
            for p, v, m in keys}


def phase_ops(b: Bench, out: dict) -> None:
    a = b.args
    rng = random.Random(a.seed + 2)
    methods = ["lzc", "cli"]
    parent = f"{b.root}/ops"
    b.run(f"zfs create {parent}")
    small, big = a.small_gib * GiB, a.big_gib * GiB
    span = min(small, 1 * GiB)
    data_offsets = [c * CLUSTER for c in
                    rng.sample(range(span // CLUSTER), a.op_data_mib * MiB // CLUSTER)]
    vols = {"small": f"{parent}/size-small", "big": f"{parent}/size-big"}
    _make_zvols(b, {vols["small"]: small, vols["big"]: big}, data_offsets)
    ops = out["ops"] = {"methods": {"lzc": "libzfs_core lzc_snapshot/lzc_clone (the driver's "
                                           "path), in one python3 process",
                                    "cli": "the zfs command (process start included)"},
                        "volumes": {"small_bytes": small, "big_bytes": big,
                                    "data_written_bytes": len(data_offsets) * CLUSTER,
                                    "sparse": True, "volblocksize": VOLBLOCKSIZE}}
    per_op_timeout = 120 * a.op_repeat * 4 + 600

    if "snapshot-size" in a.phases:
        log(f"snapshot time vs size: {a.small_gib} GiB vs {a.big_gib} GiB, {a.op_repeat} reps")
        res = b.ops(_snapshot_steps(rng, vols, methods, a.op_repeat, "size", span),
                    per_op_timeout)
        samples = _collect(res)
        ops["snapshot_vs_size"] = {
            "samples": samples, "summary": _timing_summary(samples),
            "ratios": [_ratio(samples, "size", "big", "size", "small", m) for m in methods]}

    if "clone-size" in a.phases:
        log(f"clone time vs size: {a.small_gib} GiB vs {a.big_gib} GiB, {a.op_repeat} reps")
        for ds in vols.values():
            b.run(f"zfs snapshot {ds}@origin")
        steps: list[dict] = []
        for rep in range(a.op_repeat):
            order = list(vols)
            rng.shuffle(order)
            ms = methods[:]
            rng.shuffle(ms)
            for key in order:
                for m in ms:
                    clone = f"{parent}/clone-{key}-{rep}-{m}"
                    steps.append({"op": "settle"})
                    steps.append({"op": "clone", "method": m, "origin": f"{vols[key]}@origin",
                                  "name": clone, "tag": ["clone", key, m, rep]})
                    steps.append({"op": "destroy", "names": [clone]})
        samples = _collect(b.ops(steps, per_op_timeout))
        ops["clone_vs_size"] = {
            "samples": samples, "summary": _timing_summary(samples),
            "ratios": [_ratio(samples, "clone", "big", "clone", "small", m) for m in methods]}

    if "snapshot-count" in a.phases:
        cvols = {"a": f"{parent}/count-a", "b": f"{parent}/count-b"}
        _make_zvols(b, {cvols["a"]: small, cvols["b"]: small}, data_offsets)
        log(f"snapshot time vs existing snapshots: both volumes at 0, {a.op_repeat} reps")
        before = _collect(b.ops(_snapshot_steps(rng, cvols, methods, a.op_repeat, "before", span),
                                per_op_timeout))
        log(f"creating up to {a.snap_count} snapshots of {cvols['b']} "
            f"(one per txg, budget {a.snap_budget} s)")
        made = b.ops([{"op": "snapshot_many", "dataset": cvols["b"], "prefix": "c", "start": 0,
                       "count": a.snap_count, "budget_s": a.snap_budget}],
                     a.snap_budget + 900)[0]
        existing = int(b.run(f"zfs list -H -t snapshot -o name -d 1 {cvols['b']} | wc -l",
                             timeout=1800).stdout.strip())
        log(f"{made['created']} snapshots in {made['seconds']:.0f} s; {cvols['b']} has "
            f"{existing}")
        log(f"snapshot time: volume a at 0 vs volume b at {existing}, {a.op_repeat} reps")
        after = _collect(b.ops(_snapshot_steps(rng, cvols, methods, a.op_repeat, "after", span),
                               per_op_timeout))
        samples = before + after
        ops["snapshot_vs_count"] = {
            "target_count": a.snap_count, "created": made["created"],
            "create_seconds": made["seconds"], "existing_on_b": existing,
            "reached_target": made["created"] >= a.snap_count,
            "budget_s": a.snap_budget,
            "samples": samples, "summary": _timing_summary(samples),
            "ratios": [_ratio(samples, "after", "b", "after", "a", m) for m in methods],
            "context_ratios": (
                [_ratio(samples, "before", "b", "before", "a", m) for m in methods]
                + [_ratio(samples, "after", "b", "before", "b", m) for m in methods]
                + [_ratio(samples, "after", "a", "before", "a", m) for m in methods]),
            "note": "ratios: b (with the snapshots) over a (none of its own), measured "
                    "interleaved after the snapshots were made. context_ratios: the same pair "
                    "before (control), and each volume after/before (sequential in time; the "
                    "pool's snapshot count grew in between)."}


# --------------------------------------------------------------------------- goals, report
def goals(out: dict, max_n: int) -> list[dict]:
    g = []
    reads = out.get("reads", {}).get("summary", {})
    for wl in WORKLOADS:
        z = reads.get("zfs", {}).get(wl, {}).get(str(max_n), {}).get("throughput_ratio_to_n0")
        q = reads.get("qcow2", {}).get(wl, {}).get(str(max_n), {}).get("throughput_ratio_to_n0")
        if z:
            g.append({"goal": f"zfs {wl} read throughput at N={max_n} >= {GOAL_READ_RATIO}x N=0",
                      "value": z["median"], "spread": [z["min"], z["max"]],
                      "qcow2_beside_it": q["median"] if q else None,
                      "met": z["median"] >= GOAL_READ_RATIO})
    for key, label in (("snapshot_vs_size", "snapshot time, big/small volume"),
                       ("clone_vs_size", "clone time, big/small volume"),
                       ("snapshot_vs_count", "snapshot time, many/no existing snapshots")):
        for r in out.get("ops", {}).get(key, {}).get("ratios", []):
            g.append({"goal": f"{label} ({r['method']}) within {GOAL_OP_SPREAD}x",
                      "value": r["ratio_of_medians"],
                      "spread": [r["paired_ratio"]["p25"], r["paired_ratio"]["p75"]],
                      "met": r["within_goal"]})
    return g


def markdown(out: dict) -> str:
    lines = []
    reads = out.get("reads", {}).get("summary")
    if reads:
        depths = out["parameters"]["depths"]
        lines += ["| N | ZFS rand 4k | qcow2 rand 4k | ZFS seq 1M | qcow2 seq 1M |",
                  "|---:|---|---|---|---|"]
        for n in depths:
            cells = []
            for wl in WORKLOADS:
                for v in VARIANTS:
                    e = reads[v][wl][str(n)]
                    r = e["throughput_ratio_to_n0"]
                    cells.append(f"{r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f}); "
                                 f"{e['throughput']['median']:.0f} {e['throughput_unit']}")
            lines.append(f"| {n} | " + " | ".join([cells[0], cells[1], cells[2], cells[3]]) + " |")
        lines += ["", "| N | ZFS rand 4k p50 / p99 latency | qcow2 rand 4k p50 / p99 latency |",
                  "|---:|---|---|"]
        for n in depths:
            cells = []
            for v in VARIANTS:
                e = reads[v]["rand4k"][str(n)]
                cells.append(f"{e['clat_p50_us']['median']:.0f} / {e['clat_p99_us']['median']:.0f}"
                             f" us (mean {e['lat_mean_ratio_to_n0']['median']:.2f}x N=0)")
            lines.append(f"| {n} | {cells[0]} | {cells[1]} |")
    ops = out.get("ops", {})
    rows = []
    for key in ("snapshot_vs_size", "clone_vs_size", "snapshot_vs_count"):
        for r in ops.get(key, {}).get("ratios", []) + ops.get(key, {}).get("context_ratios", []):
            pr = r["paired_ratio"]
            rows.append(f"| {key} | {r['method']} | {r['numerator']} / {r['denominator']} | "
                        f"{r['numerator_median_s'] * 1e3:.0f} / "
                        f"{r['denominator_median_s'] * 1e3:.0f} ms | "
                        f"{r['ratio_of_medians']:.2f}x | {pr['p25']:.2f}-{pr['p75']:.2f} |")
    if rows:
        lines += ["", "| figure | method | ratio | medians | ratio of medians | paired IQR |",
                  "|---|---|---|---|---:|---|"] + rows
    if out.get("goals"):
        lines += ["", "| goal | value | met |", "|---|---:|---|"]
        for g in out["goals"]:
            extra = (f" (qcow2 beside it: {g['qcow2_beside_it']:.2f}x)"
                     if g.get("qcow2_beside_it") is not None else "")
            lines.append(f"| {g['goal']} | {g['value']:.2f}x{extra} | "
                         f"{'yes' if g['met'] else 'NO'} |")
    return "\n".join(lines)


def plot(out: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = out["reads"]["summary"]
    depths = out["parameters"]["depths"]
    xs = list(range(len(depths)))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), sharey=True)
    styles = {"zfs": ("ZFS zvol, N snapshots", "tab:blue", "o"),
              "qcow2": ("qcow2 backing chain, depth N", "tab:red", "s")}
    titles = {"rand4k": "random 4 KiB reads (IOPS)", "seq1m": "sequential 1 MiB reads (MiB/s)"}
    top = 1.1
    for ax, wl in zip(axes, WORKLOADS, strict=True):
        for v in VARIANTS:
            label, color, marker = styles[v]
            rs = [summary[v][wl][str(n)]["throughput_ratio_to_n0"] for n in depths]
            med = [r["median"] for r in rs]
            lo = [r["median"] - r["min"] for r in rs]
            hi = [r["max"] - r["median"] for r in rs]
            top = max(top, max(r["max"] for r in rs) + 0.08)
            ax.errorbar(xs, med, yerr=[lo, hi], color=color, marker=marker, capsize=4,
                        label=label)
            for x, m in zip(xs, med, strict=True):
                ax.annotate(f"{m:.2f}", (x, m), textcoords="offset points",
                            xytext=(8, 6 if v == "zfs" else -13), fontsize=8, color=color)
        ax.axhline(1.0, color="0.6", lw=0.8)
        ax.axhline(GOAL_READ_RATIO, color="tab:green", ls="--", lw=1,
                   label=f"goal for ZFS: {GOAL_READ_RATIO}x")
        ax.set_xticks(xs, [str(n) for n in depths])
        ax.set_xlabel("N = snapshots (qcow2: backing files under the active image)")
        ax.set_title(titles[wl])
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("throughput / throughput at N = 0\n(same variant, same repetition)")
    axes[0].set_ylim(0, top)
    axes[0].legend(loc="lower left", fontsize=8)
    p = out["parameters"]
    fig.suptitle(f"Read throughput vs snapshots, {p['size_mib']} MiB volume, median of "
                 f"{p['repeat']} interleaved repetitions (bars: min-max); "
                 f"storage-node VM under TCG, {out['when'][:10]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depths", default=None,
                   help="snapshot counts / chain depths, comma separated (default 0,16,64,256)")
    p.add_argument("--size-mib", type=int, default=None, help="read-test volume size (256)")
    p.add_argument("--repeat", type=int, default=None, help="read repetitions (5)")
    p.add_argument("--runtime", type=int, default=None, help="random-read seconds per run (8)")
    p.add_argument("--ramp", type=int, default=None, help="random-read ramp seconds (3)")
    p.add_argument("--op-repeat", type=int, default=None,
                   help="repetitions of each snapshot/clone timing (25)")
    p.add_argument("--op-data-mib", type=int, default=None,
                   help="data written to the snapshot/clone test volumes (64)")
    p.add_argument("--small-gib", type=int, default=1)
    p.add_argument("--big-gib", type=int, default=100)
    p.add_argument("--snap-count", type=int, default=None, help="existing snapshots (10000)")
    p.add_argument("--snap-budget", type=int, default=None,
                   help="seconds allowed for creating them (900)")
    p.add_argument("--phases", default="reads,snapshot-size,clone-size,snapshot-count")
    p.add_argument("--seed", type=int, default=10)
    p.add_argument("--no-verify", action="store_true", help="skip the md5 content check")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 16 MiB, N in 0,2, one repetition, tiny op counts")
    p.add_argument("--out", help="results JSON (default benchmarks/results/chain-<date>.json; "
                                 "--quick: a file under /tmp)")
    p.add_argument("--plot", help="PNG (default benchmarks/results/chain-read-throughput.png; "
                                  "--quick: none unless given)")
    p.add_argument("--keep", action="store_true", help="keep the datasets (debugging)")
    a = p.parse_args(argv)
    quick = {"depths": "0,2", "size_mib": 16, "repeat": 1, "runtime": 1, "ramp": 0,
             "op_repeat": 1, "op_data_mib": 1, "snap_count": 20, "snap_budget": 30}
    full = {"depths": "0,16,64,256", "size_mib": 256, "repeat": 5, "runtime": 8, "ramp": 3,
            "op_repeat": 25, "op_data_mib": 64, "snap_count": 10000, "snap_budget": 900}
    for k, v in (quick if a.quick else full).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.depths = sorted({int(x) for x in str(a.depths).split(",")})
    if 0 not in a.depths:
        p.error("--depths must include 0 (every figure is a ratio to N=0)")
    if a.size_mib * MiB // CLUSTER < max(a.depths):
        p.error("--size-mib too small for the deepest chain (one 64 KiB extent per round)")
    a.phases = [x for x in a.phases.split(",") if x]
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    if a.out is None:
        a.out = (f"/tmp/chain-quick-{today}-{os.getpid()}.json" if a.quick
                 else str(RESULTS / f"chain-{today}.json"))
    if a.plot is None and not a.quick:
        a.plot = str(RESULTS / "chain-read-throughput.png")
    return a


def environment(node: nodelib.Node) -> dict:
    def q(cmd):
        return node.run(cmd, check=False).stdout.strip()
    return {
        "host_cpus": os.cpu_count(), "host_python": platform.python_version(),
        "guest_kernel": q("uname -r"), "guest_cpus": q("nproc"),
        "guest_mem_mib": q("awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo"),
        "zfs": q("zfs version | head -1"), "qemu_img": q("qemu-img --version | head -1"),
        "fio": q("fio --version"), "arc_max_bytes": q("cat /sys/module/zfs/parameters/zfs_arc_max"),
        "node_image_id": node.state.get("image_id"),
    }


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    a = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    t_start = time.monotonic()
    node = nodelib.start_node()
    b = Bench(node, a)
    out: dict = {
        "benchmark": "chain",
        "issue": 10,
        "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "quick": a.quick,
        "run_dataset": b.root,
        "parameters": {k: getattr(a, k) for k in (
            "depths", "size_mib", "repeat", "runtime", "ramp", "op_repeat", "op_data_mib",
            "small_gib", "big_gib", "snap_count", "snap_budget", "phases", "seed")},
        "method": (__doc__ or "").split("    .venv")[0].strip(),
        "setup": {"volblocksize": VOLBLOCKSIZE, "qcow2_dataset_recordsize": QCOW2_RECORDSIZE,
                  "primarycache": "metadata", "compression": "off",
                  "drop_caches": "sync; echo 3 > /proc/sys/vm/drop_caches before every fio run",
                  "qemu_nbd": "qemu-nbd --read-only --fork -f qcow2 -c /dev/nbdX <active>",
                  "fio": "O_DIRECT, libaio, iodepth 1; rand4k time based with ramp, "
                         "randrepeat=1 norandommap; seq1m one full pass"},
    }
    try:
        out["environment"] = environment(node)
        out["environment"]["host_loadavg_before"] = list(os.getloadavg())
        out["environment"]["guest_loadavg_before"] = node.run("cat /proc/loadavg").stdout.strip()
        b.setup()
        log(f"run dataset {b.root}")
        if b.minor_holds:
            out["node_workaround"] = {
                "minor_holds": b.minor_holds,
                "why": "regular files at /dev/zdN on the shared node (not device nodes) would "
                       "leave the zvol that gets minor N without its /dev/zvol link"}
        if "reads" in a.phases:
            phase_reads(b, out)
        if {"snapshot-size", "clone-size", "snapshot-count"} & set(a.phases):
            phase_ops(b, out)
        out["environment"]["host_loadavg_after"] = list(os.getloadavg())
        out["environment"]["guest_loadavg_after"] = node.run("cat /proc/loadavg").stdout.strip()
    except BaseException as e:
        # Keep what was measured: a failed run's samples are still worth a look.
        out["error"] = repr(e)
        partial = Path(f"/tmp/chain-partial-{b.run_id}.json")
        partial.write_text(json.dumps(r4(out), indent=1, default=str) + "\n")
        log(f"failed: {e!r}; partial results in {partial}")
        raise
    finally:
        if not a.keep:
            try:
                out["cleanup_seconds"] = b.cleanup()
            except Exception as e:  # report, but never hide the original error
                log(f"cleanup failed: {e}")
                out["cleanup_error"] = str(e)
        node.close()
    out["goals"] = goals(out, max(a.depths))
    out["duration_s"] = time.monotonic() - t_start
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(r4(out), indent=1) + "\n")
    log(f"results: {a.out} ({out['duration_s']:.0f} s)")
    if a.plot and "reads" in out:
        try:
            plot(out, Path(a.plot))
            log(f"plot: {a.plot}")
        except ImportError as e:
            log(f"no plot ({e}); pip install -r benchmarks/requirements.txt")
    print(markdown(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
