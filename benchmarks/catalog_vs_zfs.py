"""The snapshot catalog vs `zfs list`, side by side in one run on the storage node (issue 5).

Builds the storage model on the real pool: TENANTS project datasets holding ZVOLS zvols in all
(`<root>/<project>/volume-<uuid>`, with the driver's user properties
org.openstack.cinder:project_id / volume_id / backend), then snapshots every zvol PER_ZVOL times
(`@snapshot-<uuid>`), in rounds of one `zfs snapshot` command naming one snapshot of every zvol
(one txg per round), many rounds per SSH request. At each checkpoint (1,000 / 3,000 / 10,000
snapshots by default), two questions are answered both ways and the answers compared:

- "all snapshots of tenant X" (newest first) and
- "the snapshot of volume V nearest before time T" (greatest creation <= T; createtxg breaks ties),

(a) from the catalog: a fresh SQLite catalog filled by ONE full reconcile (the agent's listing
    of the root, as the driver and `cinder-zfs-catalog reconcile` do it; listing and diff timed
    apart), then the Catalog API timed over many random tenants / volumes / times (p50, p99);
    the CLI is timed end to end once per question as well (Python start-up included);
(b) from `zfs list -H -p -t snapshot -o name,creation,createtxg,guid,<project>,<volume>` parsed
    in Python the way an admin would: the whole root (`-r <root>`), and, as the fairer
    baseline, scoped to the tenant (`-r <root>/<project>`) or to the volume (`-r <zvol>`).
    A zfs-list answer costs its listing plus the parse; one listing per question. The
    whole-root listing is run twice (right after the snapshots were made, and after the
    reconcile's listing warmed the caches); the faster run is the baseline.

Everything the catalog answers is checked against the pool's answer (all tenants, and hundreds
of random volume/time pairs, from the whole-root listing). At the end the root is destroyed with
one `zfs destroy -r` (timed). Results: benchmarks/results/catalog-vs-zfs.json and .png.

    nice .venv/bin/python benchmarks/catalog_vs_zfs.py [--zvols 100] [--per-zvol 100]
        [--tenants 10] [--checkpoints 1000,3000,10000] [--samples 300]

Under QEMU software emulation the whole run takes 30-90 minutes depending on what else the node
runs (`zfs list` of 10,000 snapshots alone takes 3-11 minutes); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import NamedTuple

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "functional")]

import nodelib  # noqa: E402

from cinder_zfs_ocfs2.catalog import Catalog  # noqa: E402
from cinder_zfs_ocfs2.zfs.types import (  # noqa: E402
    PROP_BACKEND,
    PROP_PROJECT_ID,
    PROP_VOLUME_ID,
)
from tests.functional.driver_env import install_agent  # noqa: E402

DEFAULT_ROOT = "tank/bench-catalog"
BACKEND = "bench-catalog"
LIST_COLUMNS = f"name,creation,createtxg,guid,{PROP_PROJECT_ID},{PROP_VOLUME_ID}"
CLI = REPO / ".venv" / "bin" / "cinder-zfs-catalog"
GOAL_SPEEDUP = 10_000
PAGE = 1000            # keyset page size for "all snapshots of a tenant"
FIRST_PAGE = 50        # what `cinder-zfs-catalog search --project` shows by default
STARTED = time.monotonic()


def log(msg: str) -> None:
    sys.stderr.write(f"[{time.monotonic() - STARTED:7.1f}s] {msg}\n")
    sys.stderr.flush()


# -- the pool side ---------------------------------------------------------------------------

class Row(NamedTuple):
    name: str
    creation: int
    createtxg: int
    guid: int
    project: str | None
    volume: str | None


def parse_listing(text: str) -> list[Row]:
    """`zfs list -H -p -o name,creation,createtxg,guid,<project>,<volume>` as an admin parses it."""
    rows = []
    for line in text.splitlines():
        if not line:
            continue
        name, creation, txg, guid, project, volume = line.split("\t")
        rows.append(Row(name, int(creation), int(txg), int(guid),
                        None if project == "-" else project, None if volume == "-" else volume))
    return rows


def pool_tenant(rows: list[Row], project: str) -> list[Row]:
    """All snapshots of a tenant, newest first."""
    out = [r for r in rows if r.project == project]
    out.sort(key=lambda r: (r.creation, r.createtxg), reverse=True)
    return out


def pool_nearest(rows: list[Row], volume_id: str, at: int) -> Row | None:
    best = None
    for r in rows:
        if r.volume == volume_id and r.creation <= at and (
                best is None or (r.creation, r.createtxg) > (best.creation, best.createtxg)):
            best = r
    return best


def zfs_list(node, target: str) -> tuple[list[Row], float, float, float]:
    """One listing: (rows, wall seconds seen from here, seconds on the node, parse seconds)."""
    cmd = (f"s=$(date +%s%N); zfs list -H -p -t snapshot -o {LIST_COLUMNS} "
           f"-r {shlex.quote(target)}; e=$(date +%s%N); echo $((e - s)) >&2")
    started = time.perf_counter()
    res = node.run(cmd, timeout=7200)
    wall = time.perf_counter() - started
    node_s = int(res.stderr.strip().splitlines()[-1]) / 1e9
    started = time.perf_counter()
    rows = parse_listing(res.stdout)
    return rows, wall, node_s, time.perf_counter() - started


# -- the catalog side ------------------------------------------------------------------------

def catalog_tenant(catalog: Catalog, project: str):
    rows, after = [], None
    while True:
        page = catalog.list_by_project(project, limit=PAGE, after=after)
        rows.extend(page.rows)
        if not page.next:
            return rows
        after = page.next


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - started


def stats_ms(seconds: list[float]) -> dict:
    ms = sorted(s * 1000 for s in seconds)
    p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
    return {"samples": len(ms), "p50_ms": round(statistics.median(ms), 4),
            "p99_ms": round(p99, 4), "mean_ms": round(statistics.fmean(ms), 4),
            "max_ms": round(ms[-1], 4)}


def same_tenant_answer(cat_rows, pool_rows: list[Row]) -> bool:
    """Same snapshots (name and guid), both newest first."""
    if {(r.zfs_name, r.guid) for r in cat_rows} != {(r.name, r.guid) for r in pool_rows}:
        return False
    if len(cat_rows) != len(pool_rows):
        return False
    return [r.creation for r in cat_rows] == [r.creation for r in pool_rows]


def same_pool_answer(a: list[Row], b: list[Row]) -> bool:
    """Two zfs-list answers to the tenant question: same snapshots, same creation order."""
    return ({(r.name, r.guid) for r in a} == {(r.name, r.guid) for r in b}
            and [r.creation for r in a] == [r.creation for r in b])


def same_nearest_answer(cat_row, pool_row: Row | None) -> bool:
    if cat_row is None or pool_row is None:
        return cat_row is None and pool_row is None
    return (cat_row.zfs_name, cat_row.guid) == (pool_row.name, pool_row.guid)


def run_cli(*argv: str) -> tuple[dict, float]:
    started = time.perf_counter()
    res = subprocess.run([str(CLI), *argv, "--json"], capture_output=True, text=True,
                         check=False)
    elapsed = time.perf_counter() - started
    if res.returncode not in (0, 1):
        raise RuntimeError(f"cinder-zfs-catalog {' '.join(argv)} exited {res.returncode}: "
                           f"{res.stderr}")
    return json.loads(res.stdout), elapsed


# -- the run ---------------------------------------------------------------------------------

class Layout:
    def __init__(self, root: str, tenants: int, zvols: int, rng: random.Random):
        self.root = root
        self.projects = [uuid.UUID(int=rng.getrandbits(128), version=4).hex
                         for _ in range(tenants)]
        self.volumes: list[tuple[str, str, str]] = []     # (project, volume_id, dataset)
        for i in range(zvols):
            project = self.projects[i % tenants]
            vid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            self.volumes.append((project, vid, f"{root}/{project}/volume-{vid}"))


def create_layout(node, layout: Layout) -> float:
    lines = ["set -e", f"zfs create -o canmount=off {layout.root}"]
    lines += [f"zfs create -o canmount=off {layout.root}/{p}" for p in layout.projects]
    for project, vid, ds in layout.volumes:
        # volmode=none: no /dev/zvol node, so 100 zvols cost the shared VM no udev work; the
        # listing of snapshots does not depend on it.
        lines.append(f"zfs create -s -V 64M -o volmode=none -o {PROP_PROJECT_ID}={project} "
                     f"-o {PROP_VOLUME_ID}={vid} -o {PROP_BACKEND}={BACKEND} {ds}")
    started = time.perf_counter()
    node.run("sh -s", input="\n".join(lines) + "\n", timeout=3600)
    return time.perf_counter() - started


def snapshot_rounds(node, layout: Layout, rounds: int, per_request: int) -> dict:
    """``rounds`` x one `zfs snapshot` naming one new snapshot of every zvol."""
    started = time.perf_counter()
    requests = 0
    done = 0
    while done < rounds:
        n = min(per_request, rounds - done)
        script = ["set -e"]
        for _ in range(n):
            script.append("zfs snapshot " + " ".join(
                f"{ds}@snapshot-{uuid.uuid4()}" for _, _, ds in layout.volumes))
        node.run("sh -s", input="\n".join(script) + "\n", timeout=3600)
        requests += 1
        done += n
    elapsed = time.perf_counter() - started
    made = rounds * len(layout.volumes)
    return {"snapshots": made, "zfs_snapshot_commands": rounds, "ssh_requests": requests,
            "seconds": round(elapsed, 2), "snapshots_per_second": round(made / elapsed, 1)}


def checkpoint(node, zfs, layout: Layout, work: pathlib.Path, count: int, samples: int,
               rng: random.Random, conf_file: pathlib.Path) -> dict:
    root = layout.root
    out: dict = {"snapshots": count, "node_loadavg_before": node_loadavg(node),
                 "host_loadavg_before": [round(x, 2) for x in os.getloadavg()]}

    # (b) zfs list of the whole root: one listing answers either question. Listed twice, right
    # after the snapshots were made and again after the reconcile's own listing warmed the
    # node's caches; the faster one is the baseline (the one kindest to zfs list).
    log(f"{count}: zfs list -r {root} ...")
    rows, wall, node_s, parse_s = zfs_list(node, root)
    assert len(rows) == count, (len(rows), count)
    log(f"{count}: whole-root listing {wall:.1f}s (node {node_s:.1f}s)")
    whole_runs = [{"when": "right after the snapshots were made", "wall_s": round(wall, 3),
                   "node_s": round(node_s, 3), "parse_s": round(parse_s, 4)}]
    tenant_x = rng.choice(layout.projects)
    _, t_ans = timed(pool_tenant, rows, tenant_x)
    _, vid, _ = rng.choice(layout.volumes)
    creations = sorted(r.creation for r in rows)
    some_t = rng.randint(creations[0], creations[-1])
    _, n_ans = timed(pool_nearest, rows, vid, some_t)

    # (a) the catalog: a fresh file, one full reconcile through the agent
    url = f"sqlite:///{work}/catalog-{count}.sqlite"
    catalog = Catalog.from_url(url)
    log(f"{count}: full reconcile (agent listing + diff) ...")
    listed_at = time.time()
    listing, list_s = timed(zfs.list_snapshots, root)
    report, apply_s = timed(catalog.reconcile, listing, root, backend=BACKEND,
                            listed_at=listed_at)
    assert report.added == count and catalog.count() == count, report.to_dict()
    again, again_s = timed(catalog.reconcile, listing, root, backend=BACKEND,
                           listed_at=time.time())
    assert again.writes == 0 and again.in_sync, again.to_dict()
    out["full_reconcile"] = {
        "listing_s": round(list_s, 3), "diff_apply_s": round(apply_s, 3),
        "total_s": round(list_s + apply_s, 3), "rows_added": report.added,
        "unchanged_diff_s": round(again_s, 3), "unchanged_writes": again.writes,
        "db_file_mb": round(sum(f.stat().st_size for f in work.glob(f"catalog-{count}.sqlite*"))
                            / 2**20, 2)}   # the file and its WAL
    log(f"{count}: reconcile listing {list_s:.1f}s + diff {apply_s:.2f}s")

    log(f"{count}: zfs list -r {root} again ...")
    again_rows, wall2, node2, parse2 = zfs_list(node, root)
    assert sorted(again_rows) == sorted(rows)
    whole_runs.append({"when": "after the reconcile's listing", "wall_s": round(wall2, 3),
                       "node_s": round(node2, 3), "parse_s": round(parse2, 4)})
    log(f"{count}: whole-root listing again {wall2:.1f}s")
    best = min(wall + parse_s, wall2 + parse2)
    out["zfs_list_whole_root"] = {
        "command": f"zfs list -H -p -t snapshot -o {LIST_COLUMNS} -r {root}",
        "rows": len(rows), "runs": whole_runs,
        "wall_s": round(min(wall, wall2), 3),
        "tenant_all_s": round(best + t_ans, 3),
        "nearest_s": round(best + n_ans, 3)}

    # correctness: every tenant and many (volume, T) pairs, catalog vs the whole-root listing
    mismatches = []
    for p in layout.projects:
        if not same_tenant_answer(catalog_tenant(catalog, p), pool_tenant(rows, p)):
            mismatches.append(("tenant", p))
    checks = [(rng.choice(layout.volumes)[1],
               rng.randint(creations[0] - 30, creations[-1] + 30)) for _ in range(samples)]
    for v, t in checks:
        if not same_nearest_answer(catalog.nearest_before(v, t), pool_nearest(rows, v, t)):
            mismatches.append(("nearest", v, t))
    out["answers"] = {"tenants_compared": len(layout.projects),
                      "nearest_compared": len(checks), "mismatches": mismatches,
                      "identical": not mismatches}

    # catalog query latency over random parameters: wall time, and the thread's CPU time (on
    # a shared 2-core host the wall p99 is mostly the scheduler, not the query)
    lat: dict[str, list[float]] = {"tenant_all": [], "tenant_first_page_50": [], "nearest": []}
    cpu: dict[str, list[float]] = {k: [] for k in lat}
    sizes = []

    def sample(key, fn, *a, **kw):
        c0 = time.thread_time()
        got, s = timed(fn, *a, **kw)
        cpu[key].append(time.thread_time() - c0)
        lat[key].append(s)
        return got

    for _ in range(samples):
        p = rng.choice(layout.projects)
        sizes.append(len(sample("tenant_all", catalog_tenant, catalog, p)))
        sample("tenant_first_page_50", catalog.list_by_project, p, limit=FIRST_PAGE)
        sample("nearest", catalog.nearest_before, rng.choice(layout.volumes)[1],
               rng.randint(creations[0] - 30, creations[-1] + 30))
    out["catalog"] = {}
    for k, v in lat.items():
        out["catalog"][k] = stats_ms(v)
        c = stats_ms(cpu[k])
        out["catalog"][k].update(cpu_p50_ms=c["p50_ms"], cpu_p99_ms=c["p99_ms"])
    out["catalog"]["tenant_all"]["mean_rows"] = round(statistics.fmean(sizes), 1)

    # the CLI end to end (a new Python process: start-up, config, SQLite open, query, JSON)
    data, cli_t = run_cli("search", "--config-file", str(conf_file), "--connection", url,
                          "--project", tenant_x, "--limit", "100000")
    cli_ok = ({(s["zfs_name"], int(s["guid"])) for s in data["snapshots"]}
              == {(r.name, r.guid) for r in pool_tenant(rows, tenant_x)})
    data, cli_n = run_cli("nearest", "--config-file", str(conf_file), "--connection", url,
                          "--volume", vid, "--at", str(some_t))
    want = pool_nearest(rows, vid, some_t)
    cli_ok = cli_ok and ((data["snapshot"] or {}).get("zfs_name") == (want.name if want
                                                                        else None))
    out["cli_end_to_end"] = {"search_project_s": round(cli_t, 3), "nearest_s": round(cli_n, 3),
                             "answers_identical": cli_ok}
    catalog.close()

    # (b') scoped listings: the tenant's dataset, the volume's zvol
    scoped_t, scoped_v, scoped_ok = [], [], True
    for p in rng.sample(layout.projects, min(2, len(layout.projects))):
        log(f"{count}: zfs list -r <tenant> ...")
        srows, wall, node_s, parse_s = zfs_list(node, f"{root}/{p}")
        ans, q = timed(pool_tenant, srows, p)
        scoped_t.append({"wall_s": round(wall, 3), "node_s": round(node_s, 3),
                         "rows": len(srows), "answer_s": round(wall + parse_s + q, 3)})
        scoped_ok &= same_pool_answer(ans, pool_tenant(rows, p))
    for _ in range(3):
        _, v, vds = rng.choice(layout.volumes)
        t = rng.randint(creations[0], creations[-1])
        srows, wall, node_s, parse_s = zfs_list(node, vds)
        ans, q = timed(pool_nearest, srows, v, t)
        scoped_v.append({"wall_s": round(wall, 3), "node_s": round(node_s, 3),
                         "rows": len(srows), "answer_s": round(wall + parse_s + q, 3)})
        scoped_ok &= ans == pool_nearest(rows, v, t)
    out["zfs_list_scoped"] = {
        "tenant": {"command": f"zfs list ... -r {root}/<project>", "runs": scoped_t,
                   "median_answer_s": round(statistics.median(r["answer_s"]
                                                              for r in scoped_t), 3)},
        "volume": {"command": f"zfs list ... -r {root}/<project>/volume-<uuid>",
                   "runs": scoped_v,
                   "median_answer_s": round(statistics.median(r["answer_s"]
                                                              for r in scoped_v), 3)},
        "answers_identical": scoped_ok}
    out["node_loadavg_after"] = node_loadavg(node)
    out["host_loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    out["speedup"] = speedups(out)
    log(f"{count}: speedups {json.dumps(out['speedup'])}")
    return out


def speedups(cp: dict) -> dict:
    whole = cp["zfs_list_whole_root"]
    scoped = cp["zfs_list_scoped"]
    cat = cp["catalog"]

    def ratio(seconds: float, ms: float) -> float:
        return round(seconds / (ms / 1000.0), 0)

    return {
        "tenant_all_vs_whole_root_p50": ratio(whole["tenant_all_s"], cat["tenant_all"]["p50_ms"]),
        "tenant_all_vs_whole_root_p99": ratio(whole["tenant_all_s"], cat["tenant_all"]["p99_ms"]),
        "nearest_vs_whole_root_p50": ratio(whole["nearest_s"], cat["nearest"]["p50_ms"]),
        "nearest_vs_whole_root_p99": ratio(whole["nearest_s"], cat["nearest"]["p99_ms"]),
        "tenant_all_vs_whole_root_cpu_p99": ratio(whole["tenant_all_s"],
                                                  cat["tenant_all"]["cpu_p99_ms"]),
        "nearest_vs_whole_root_cpu_p99": ratio(whole["nearest_s"], cat["nearest"]["cpu_p99_ms"]),
        "tenant_all_vs_scoped_tenant_p50": ratio(scoped["tenant"]["median_answer_s"],
                                                 cat["tenant_all"]["p50_ms"]),
        "nearest_vs_scoped_volume_p50": ratio(scoped["volume"]["median_answer_s"],
                                              cat["nearest"]["p50_ms"]),
        "tenant_all_vs_whole_root_cli_end_to_end": round(
            whole["tenant_all_s"] / cp["cli_end_to_end"]["search_project_s"], 1),
        "nearest_vs_whole_root_cli_end_to_end": round(
            whole["nearest_s"] / cp["cli_end_to_end"]["nearest_s"], 1),
    }


def destroy_root(node, root: str) -> None:
    node.run(f"udevadm settle -t 10; zfs destroy -r {shlex.quote(root)}", timeout=7200)


def node_loadavg(node) -> list[float]:
    return [float(x) for x in node.run("cat /proc/loadavg").stdout.split()[:3]]


def plot(result: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cps = result["checkpoints"]
    xs = [c["snapshots"] for c in cps]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 6.2),
                                  gridspec_kw={"width_ratios": [3, 2]})
    whole = [c["zfs_list_whole_root"] for c in cps]
    rows = "/".join(f"{c['catalog']['tenant_all']['mean_rows']:,.0f}" for c in cps)
    series = [
        ("zfs list -r <root>, either question (faster of 2 runs)",
         [w["tenant_all_s"] for w in whole], "tab:red", "o", "-"),
        ("zfs list -r <root>/<tenant>, the tenant's snapshots",
         [c["zfs_list_scoped"]["tenant"]["median_answer_s"] for c in cps], "tab:brown", "^",
         "--"),
        ("zfs list -r <zvol>, nearest before T",
         [c["zfs_list_scoped"]["volume"]["median_answer_s"] for c in cps], "tab:pink", "v",
         "--"),
        (f"catalog, all of a tenant's snapshots ({rows} rows; p50)",
         [c["catalog"]["tenant_all"]["p50_ms"] / 1000 for c in cps], "tab:blue", "o", "-"),
        ("catalog, a tenant's newest 50 (p50)",
         [c["catalog"]["tenant_first_page_50"]["p50_ms"] / 1000 for c in cps], "tab:cyan",
         "D", "-"),
        ("catalog, nearest before T (p50)",
         [c["catalog"]["nearest"]["p50_ms"] / 1000 for c in cps], "tab:green", "s", "-"),
    ]
    for label, ys, color, marker, style in series:
        ax.plot(xs, ys, marker=marker, linestyle=style, color=color, label=label)
    ax.plot([x for x, w in zip(xs, whole, strict=True) for _ in w.get("runs", [])],
            [r["wall_s"] for w in whole for r in w.get("runs", [])], linestyle="none",
            marker="o", markerfacecolor="none", color="tab:red",
            label="zfs list -r <root>, each run")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{x:,}" for x in xs])
    ax.minorticks_off()
    ax.set_xlabel("zvol snapshots under the root")
    ax.set_ylabel("seconds per answer (log)")
    last = cps[-1]["speedup"]
    ax.set_title("Answer time vs snapshot count (log-log)\n"
                 f"at {xs[-1]:,}: tenant {last['tenant_all_vs_whole_root_p50']:,.0f}x, "
                 f"nearest {last['nearest_vs_whole_root_p50']:,.0f}x faster than zfs list -r "
                 "<root> (catalog p50)", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)

    width = 0.38
    idx = list(range(len(xs)))
    lst = [c["full_reconcile"]["listing_s"] for c in cps]
    dif = [c["full_reconcile"]["diff_apply_s"] for c in cps]
    ax2.bar([i - width / 2 for i in idx], lst, width, color="tab:gray",
            label="agent listing of the root")
    ax2.bar([i + width / 2 for i in idx], dif, width, color="tab:blue",
            label="diff applied to the catalog")
    for i in idx:
        ax2.annotate(f"{lst[i]:.0f} s", (i - width / 2, lst[i]), ha="center", va="bottom",
                     fontsize=8)
        ax2.annotate(f"{dif[i]:.2f} s", (i + width / 2, dif[i]), ha="center", va="bottom",
                     fontsize=8)
    ax2.set_yscale("log")
    ax2.set_xticks(idx)
    ax2.set_xticklabels([f"{x:,}" for x in xs])
    ax2.set_xlabel("zvol snapshots under the root")
    ax2.set_ylabel("seconds (log)")
    ax2.set_title("One full reconcile (empty catalog)", fontsize=10)
    ax2.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    ax2.grid(True, axis="y", alpha=0.3)
    fig.suptitle("Snapshot catalog vs zfs list, OpenZFS 2.1 under QEMU TCG (one run)",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=DEFAULT_ROOT)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--zvols", type=int, default=100)
    parser.add_argument("--per-zvol", type=int, default=100)
    parser.add_argument("--checkpoints", default="1000,3000,10000",
                        help="snapshot counts to measure at (multiples of --zvols)")
    parser.add_argument("--samples", type=int, default=300,
                        help="catalog query samples (and nearest checks) per checkpoint")
    parser.add_argument("--rounds-per-request", type=int, default=10,
                        help="zfs snapshot commands sent in one SSH request")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"
                                             / "catalog-vs-zfs.json"))
    parser.add_argument("--plot", default=None, help="PNG path (default: --out with .png)")
    parser.add_argument("--keep", action="store_true", help="leave the snapshots on the pool")
    parser.add_argument("--replot", action="store_true",
                        help="only redraw the PNG from the JSON at --out (no node needed)")
    args = parser.parse_args()
    if args.replot:
        png = pathlib.Path(args.plot) if args.plot else pathlib.Path(args.out).with_suffix(".png")
        plot(json.loads(pathlib.Path(args.out).read_text()), png)
        return 0
    checkpoints = sorted(int(c) for c in args.checkpoints.split(","))
    total = args.zvols * args.per_zvol
    if checkpoints[-1] != total or any(c % args.zvols for c in checkpoints):
        parser.error(f"checkpoints must be multiples of --zvols ending at {total}")

    rng = random.Random(args.seed)
    node = nodelib.start_node()
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-catalog-vs-zfs-"))
    key = install_agent(node, work)
    from cinder_zfs_ocfs2.transport.ssh import SSHTransport
    from cinder_zfs_ocfs2.zfs.client import ZFSClient

    transport = SSHTransport(host="127.0.0.1", port=node.port, user="root", key_file=str(key),
                             known_hosts=str(node.known_hosts), timeout=7200)
    zfs = ZFSClient(transport)
    zfs.version()   # the one SSH handshake (~2 s under emulation), outside every timing
    conf_file = work / "cinder.conf"
    conf_file.write_text(f"[DEFAULT]\nstate_path = {work}\n")
    root = args.root
    if node.run(f"zfs list -H -o name {shlex.quote(root)}", check=False).returncode == 0:
        log(f"{root} is left over from an earlier run: destroying it first")
        destroy_root(node, root)
    version = node.run("zfs version | head -1").stdout.strip()
    layout = Layout(root, args.tenants, args.zvols, rng)
    result: dict = {
        "benchmark": "catalog-vs-zfs",
        "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "environment": {
            "zfs": version, "node": "storage-node VM, QEMU TCG (software emulation), 2 vCPU, "
                                    "2 GiB; shared with other engineers' tests",
            "host_cpus": os.cpu_count(), "python": platform.python_version(),
            "catalog": "SQLite file (WAL), the default engine, on the host's local disk",
            "ssh": "one persistent connection (node.run) for zfs list; the agent session "
                   "for the reconcile listing"},
        "parameters": {"root": root, "tenants": args.tenants, "zvols": args.zvols,
                       "snapshots_per_zvol": args.per_zvol, "snapshots": total,
                       "checkpoints": checkpoints, "catalog_samples": args.samples,
                       "seed": args.seed, "zvol": "sparse 64M, volmode=none, user props "
                       "project_id/volume_id/backend as the driver sets them"},
        "creation": {}, "checkpoints": []}
    try:
        log(f"creating {args.tenants} tenants and {args.zvols} zvols under {root}")
        result["creation"]["layout_s"] = round(create_layout(node, layout), 2)
        log(f"layout in {result['creation']['layout_s']}s")
        made_rounds = 0
        segments = []
        for count in checkpoints:
            rounds = count // args.zvols - made_rounds
            log(f"snapshotting: {rounds} rounds x {args.zvols} zvols")
            seg = snapshot_rounds(node, layout, rounds, args.rounds_per_request)
            seg["from"], seg["to"] = made_rounds * args.zvols, count
            segments.append(seg)
            made_rounds += rounds
            log(f"{seg['snapshots']} snapshots in {seg['seconds']}s")
            result["checkpoints"].append(checkpoint(node, zfs, layout, work, count,
                                                    args.samples, rng, conf_file))
            # keep what we have so far on disk: a long run that dies still leaves figures
            pathlib.Path(args.out + ".partial").write_text(json.dumps(result, indent=2))
        secs = sum(s["seconds"] for s in segments)
        result["creation"].update({
            "segments": segments, "snapshots": total, "seconds": round(secs, 2),
            "snapshots_per_second": round(total / secs, 1),
            "method": f"one `zfs snapshot` naming one snapshot of each of the {args.zvols} "
                      f"zvols per round (one txg), {args.rounds_per_request} rounds per SSH "
                      "request (a shell script on stdin)"})
    finally:
        transport.close()
        if args.keep:
            log(f"--keep: {root} left on the pool")
        else:
            # One bulk destroy; 10,000 snapshots take many minutes on a busy emulated node.
            log(f"zfs destroy -r {root} ...")
            started = time.perf_counter()
            try:
                destroy_root(node, root)
            except Exception as exc:   # never lose the figures to the cleanup
                log(f"zfs destroy -r {root} failed: {exc}; destroy it by hand")
                result["cleanup_error"] = str(exc)[-500:]
            else:
                result["cleanup_destroy_r_s"] = round(time.perf_counter() - started, 2)
                log(f"destroyed in {result['cleanup_destroy_r_s']}s")
        node.close()

    last = result["checkpoints"][-1]
    result["headline"] = {
        "snapshots": last["snapshots"],
        "answers_identical": all(c["answers"]["identical"] and
                                 c["zfs_list_scoped"]["answers_identical"] and
                                 c["cli_end_to_end"]["answers_identical"]
                                 for c in result["checkpoints"]),
        "zfs_list_whole_root_s": last["zfs_list_whole_root"]["wall_s"],
        "catalog_tenant_all_p50_ms": last["catalog"]["tenant_all"]["p50_ms"],
        "catalog_nearest_p50_ms": last["catalog"]["nearest"]["p50_ms"],
        "speedup": last["speedup"],
        "goal_speedup": GOAL_SPEEDUP,
        "goal_met_p50": min(last["speedup"]["tenant_all_vs_whole_root_p50"],
                            last["speedup"]["nearest_vs_whole_root_p50"]) >= GOAL_SPEEDUP,
        "goal_met_p99": min(last["speedup"]["tenant_all_vs_whole_root_p99"],
                            last["speedup"]["nearest_vs_whole_root_p99"]) >= GOAL_SPEEDUP,
        "full_reconcile": last["full_reconcile"],
        "creation_s": result["creation"]["seconds"],
        "creation_snapshots_per_second": result["creation"]["snapshots_per_second"]}
    out = pathlib.Path(args.out)
    out.write_text(json.dumps(result, indent=2) + "\n")
    pathlib.Path(args.out + ".partial").unlink(missing_ok=True)
    png = pathlib.Path(args.plot) if args.plot else out.with_suffix(".png")
    plot(result, png)
    print(json.dumps(result["headline"], indent=2))
    log(f"wrote {out} and {png}")
    return 0 if result["headline"]["answers_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
