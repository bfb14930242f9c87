"""The snapshot catalog against the real pool and a real database server (issue 5).

Drivers in ssh mode write through into the catalog; the admin CLI `cinder-zfs-catalog` runs as
a subprocess with a cinder.conf backend section, as an operator runs it:

- drift: snapshots made and destroyed behind the driver's back (plain `zfs` on the node) are
  reported by `verify` (exit 1), fixed by `reconcile`, and nothing on the pool changes;
- the catalog's answers (nearest snapshot before T, a tenant's snapshots) equal the pool's;
- a tenant-scoped search never shows another tenant's rows;
- the catalog's server-database tests (tests/unit/catalog/test_catalog_server_db.py) on a
  private MariaDB (catalog_db.py), and two drivers sharing one MariaDB catalog (active-active).
"""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from cinder_zfs_ocfs2.catalog import Catalog
from cinder_zfs_ocfs2.zfs.types import PROP_PROJECT_ID, PROP_VOLUME_ID
from tests.functional import catalog_db
from tests.functional.driver_env import build_driver, snapshot_obj, volume_obj
from tests.unit.catalog import test_catalog_server_db as server_db
from tests.unit.catalog.helpers import Clock

# The private MariaDB server's fixtures, for this module.
mariadb = catalog_db.mariadb
mariadb_url = catalog_db.mariadb_url

BACKEND = "zfs-cat"
POOL_COLUMNS = f"name,creation,createtxg,guid,{PROP_PROJECT_ID},{PROP_VOLUME_ID}"


def _cli_path() -> str:
    here = Path(sys.executable).with_name("cinder-zfs-catalog")
    return str(here) if here.exists() else (shutil.which("cinder-zfs-catalog") or str(here))


class CLI:
    """`cinder-zfs-catalog <command> --config-file <conf> --backend <section> ...`."""

    def __init__(self, conf: Path, backend: str):
        self.conf = conf
        self.backend = backend
        self.exe = _cli_path()

    def run(self, command: str, *args: str, json_out: bool = False,
            connection: str | None = None) -> subprocess.CompletedProcess:
        argv = [self.exe, command, "--config-file", str(self.conf), "--backend", self.backend]
        if connection:
            argv += ["--connection", connection]
        argv += list(args)
        if json_out:
            argv.append("--json")
        r = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           timeout=600)
        assert r.returncode in (0, 1), f"{argv} exited {r.returncode}:\n{r.stderr}"
        return r

    def json(self, command: str, *args: str, **kw) -> tuple[int, dict]:
        r = self.run(command, *args, json_out=True, **kw)
        return r.returncode, json.loads(r.stdout)


def write_conf(path: Path, node, agent_key, root: str, catalog_url: str) -> Path:
    path.write_text(
        f"[DEFAULT]\nstate_path = {path.parent}\nenabled_backends = {BACKEND}\n\n"
        f"[{BACKEND}]\n"
        "volume_driver = cinder_zfs_ocfs2.driver.ZFSOCFS2Driver\n"
        "volume_backend_name = zfs-ft\n"
        f"zfs_root_dataset = {root}\n"
        "zfs_agent_mode = ssh\n"
        "zfs_ssh_host = 127.0.0.1\n"
        f"zfs_ssh_port = {node.port}\n"
        f"zfs_ssh_private_key = {agent_key}\n"
        f"zfs_ssh_known_hosts_file = {node.known_hosts}\n"
        f"zfs_catalog_connection = {catalog_url}\n")
    return path


@pytest.fixture
def cli(node, dataset, agent_key, tmp_path):
    """The CLI on the catalog the `make_driver` drivers of this test write into."""
    return CLI(write_conf(tmp_path / "cinder.conf", node, agent_key, f"{dataset}/cinder",
                          f"sqlite:///{tmp_path}/catalog.sqlite"), BACKEND)


def project() -> str:
    return uuid.uuid4().hex   # the shape of a Keystone project id


def zvol(drv, volume) -> str:
    return drv.ops.names.volume(volume.project_id, volume.id)


def snap_name(drv, snapshot) -> str:
    return drv.ops.names.snapshot(zvol(drv, snapshot.volume), snapshot.id)


def pool_state(node, root: str) -> list[str]:
    """Everything under root with what reconciliation could conceivably touch."""
    out = node.run(f"zfs list -H -p -t all -o name,guid,createtxg,userrefs,"
                   f"org.openstack.cinder:hidden -r {root}").stdout
    return sorted(out.splitlines())


def pool_snapshots(node, root: str) -> list[dict]:
    out = node.run(f"zfs list -H -p -t snapshot -o {POOL_COLUMNS} -r {root}").stdout
    rows = []
    for line in out.splitlines():
        name, creation, txg, guid, proj, vol = line.split("\t")
        rows.append({"name": name, "creation": int(creation), "createtxg": int(txg),
                     "guid": int(guid), "project": proj, "volume": vol})
    return rows


def pool_nearest(rows: list[dict], volume_id: str, at: int) -> dict | None:
    cands = [r for r in rows if r["volume"] == volume_id and r["creation"] <= at]
    return max(cands, key=lambda r: (r["creation"], r["createtxg"])) if cands else None


def drift_set(report: dict) -> set[tuple[str, str]]:
    return {(d["what"], d["zfs_name"]) for d in report["drift"]}


def volume_in_each_of_two_projects(drv):
    pa, pb = project(), project()
    va, vb = volume_obj(project_id=pa), volume_obj(project_id=pb)
    for v in (va, vb):
        drv.create_volume(v)
    return pa, pb, va, vb


# -- drift ---------------------------------------------------------------------------------

def test_drift_verify_reports_it_reconcile_fixes_it_pool_untouched(node, make_driver, cli,
                                                                   tmp_path):
    drv = make_driver(section=BACKEND)   # the CLI's section: the same catalog scope
    root = drv.ops.names.root
    pa, pb, va, vb = volume_in_each_of_two_projects(drv)
    snaps = [snapshot_obj(v) for v in (va, va, vb)]
    for s in snaps:
        drv.create_snapshot(s)
    assert drv.ops.index.flush(timeout=120)  # rows are completed from the pool in the background

    # Write-through alone keeps the catalog in step with what the driver did.
    code, report = cli.json("verify")
    assert code == 0 and report["in_sync"], report["drift"]
    assert report["listed"] == 3 and report["catalog_rows"] == 3

    # The admin, behind the driver's back: two snapshots made, one of Cinder's destroyed.
    made = [f"{zvol(drv, va)}@before-upgrade", f"{zvol(drv, vb)}@manual-{int(time.time())}"]
    gone = snap_name(drv, snaps[1])
    node.run(f"zfs snapshot {made[0]} {made[1]} && zfs destroy {gone}")
    # And a crash between an intent row and its ZFS call: the snapshot never reached the pool.
    lost_id = str(uuid.uuid4())
    never = drv.ops.names.snapshot(zvol(drv, vb), lost_id)
    # (through the driver's own catalog: rows belong to the backend's scope)
    drv.ops.index.catalog.begin_snapshot(never, snapshot_id=lost_id, volume_id=vb.id,
                                         project_id=pb, backend="zfs-ft")
    before = pool_state(node, root)

    table = cli.run("verify", "--stale-after", "0")
    assert table.returncode == 1, table.stdout
    for name in (*made, gone, never):
        assert name in table.stdout
    assert "drift (not written)" in table.stdout

    code, report = cli.json("verify", "--stale-after", "0")
    assert code == 1 and not report["in_sync"] and report["dry_run"]
    assert drift_set(report) == {("added", made[0]), ("added", made[1]), ("removed", gone),
                                 ("missing", never)}
    assert (report["added"], report["removed"], report["marked_missing"]) == (2, 1, 1)
    # verify wrote nothing: the catalog still has the destroyed snapshot, not the new ones
    code, found = cli.json("search", "--name", gone)
    assert [s["zfs_name"] for s in found["snapshots"]] == [gone]

    code, report = cli.json("reconcile", "--stale-after", "0")
    assert code == 0 and not report["dry_run"]
    assert (report["added"], report["removed"], report["marked_missing"]) == (2, 1, 1)
    assert pool_state(node, root) == before   # reconciliation never touches the pool

    code, report = cli.json("verify", "--stale-after", "0")
    assert code == 0 and report["in_sync"] and report["drift"] == [], report["drift"]
    assert report["missing"] == 1            # the dead intent stays visible as 'missing'
    ok = cli.run("verify")
    assert ok.returncode == 0 and "in sync" in ok.stdout

    # The catalog now describes the pool: the admin's snapshots, out-of-band, in their tenant.
    code, found = cli.json("search", "--project", pa, "--limit", "100")
    rows = {s["zfs_name"]: s for s in found["snapshots"]}
    assert set(rows) == {snap_name(drv, snaps[0]), made[0]}
    assert rows[made[0]]["kind"] == "out-of-band" and rows[made[0]]["volume_id"] == va.id
    code, found = cli.json("search", "--name", gone)
    assert found["snapshots"] == []
    code, found = cli.json("search", "--name", never)
    assert [s["state"] for s in found["snapshots"]] == ["missing"]
    assert pool_state(node, root) == before


# -- answers equal the pool's ---------------------------------------------------------------

def test_nearest_and_tenant_search_answer_what_the_pool_says(node, make_driver, cli):
    drv = make_driver(section=BACKEND)   # the CLI's section: the same catalog scope
    root = drv.ops.names.root
    pa, pb = project(), project()
    target, other, foreign = (volume_obj(project_id=pa), volume_obj(project_id=pa),
                              volume_obj(project_id=pb))
    for v in (target, other, foreign):
        drv.create_volume(v)
    for i in range(4):
        # One second apart: every snapshot of `target` has its own creation second.
        drv.create_snapshot(snapshot_obj(target))
        drv.create_snapshot(snapshot_obj(other if i % 2 else foreign))
        time.sleep(1.1)
    assert drv.ops.index.flush(timeout=120)
    node.run(f"zfs snapshot {zvol(drv, target)}@admin-{int(time.time())}")
    assert cli.run("reconcile").returncode == 0     # the admin's snapshot is a row too

    pool = pool_snapshots(node, root)
    mine = sorted((r for r in pool if r["volume"] == target.id), key=lambda r: r["creation"])
    assert len(mine) == 5 and len({r["creation"] for r in mine}) >= 4
    times = sorted({r["creation"] for r in mine})
    probes = [times[0] - 1] + times + [t + 1 for t in times] + [times[-1] + 3600]
    for at in probes:
        want = pool_nearest(pool, target.id, at)
        code, got = cli.json("nearest", "--volume", target.id, "--at", str(at))
        if want is None:
            assert code == 1 and got["snapshot"] is None, at
        else:
            assert code == 0, at
            assert (got["snapshot"]["zfs_name"], int(got["snapshot"]["guid"])) == (
                want["name"], want["guid"]), at
    # ISO 8601 time, as people type it
    iso = datetime.datetime.fromtimestamp(times[1], datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    code, got = cli.json("nearest", "--volume", target.id, "--at", iso)
    assert got["snapshot"]["zfs_name"] == pool_nearest(pool, target.id, times[1])["name"]

    # The tenant's snapshots: exactly the pool's, newest first, also when paged.
    for tenant in (pa, pb):
        want = {(r["name"], r["guid"]) for r in pool if r["project"] == tenant}
        code, got = cli.json("search", "--project", tenant, "--limit", "1000")
        rows = got["snapshots"]
        assert {(s["zfs_name"], int(s["guid"])) for s in rows} == want
        assert len(rows) == len(want) and got["next"] is None
        assert [s["creation"] for s in rows] == sorted((s["creation"] for s in rows),
                                                       reverse=True)
    paged, after = [], None
    while True:
        extra = ["--after", after] if after else []
        code, got = cli.json("search", "--project", pa, "--limit", "3", *extra)
        paged += [s["zfs_name"] for s in got["snapshots"]]
        after = got["next"]
        if after is None:
            break
    assert sorted(paged) == sorted(r["name"] for r in pool if r["project"] == pa)


# -- tenant isolation through the CLI -------------------------------------------------------

def test_cli_tenant_search_never_shows_another_tenants_rows(node, make_driver, cli):
    drv = make_driver(section=BACKEND)   # the CLI's section: the same catalog scope
    root = drv.ops.names.root
    pa, pb, va, vb = volume_in_each_of_two_projects(drv)
    for v in (va, vb, vb):
        drv.create_snapshot(snapshot_obj(v))
    assert drv.ops.index.flush(timeout=120)
    node.run(f"zfs snapshot {zvol(drv, vb)}@oob-{int(time.time())}")   # B's, out-of-band
    assert cli.run("reconcile").returncode == 0
    b_names = {r["name"] for r in pool_snapshots(node, root) if r["project"] == pb}
    assert len(b_names) == 3

    table = cli.run("search", "--project", pa)
    assert table.returncode == 0
    for leak in (pb, vb.id, zvol(drv, vb)):
        assert leak not in table.stdout
    assert len(table.stdout.splitlines()) == 2 + 1     # header, rule, A's one snapshot

    code, got = cli.json("search", "--project", pa, "--limit", "1")
    while True:
        assert all(s["project_id"] == pa for s in got["snapshots"])
        assert not {s["zfs_name"] for s in got["snapshots"]} & b_names
        if not got["next"]:
            break
        code, got = cli.json("search", "--project", pa, "--limit", "1", "--after", got["next"])

    # B's volume seen through A's scope: nothing.
    code, got = cli.json("search", "--volume", vb.id, "--project", pa)
    assert code == 0 and got["snapshots"] == []
    code, got = cli.json("nearest", "--volume", vb.id, "--project", pa,
                         "--at", str(int(time.time()) + 60))
    assert code == 1 and got["snapshot"] is None
    code, got = cli.json("report", "--project", pa)
    assert [p["snapshots"] for p in got["projects"]] == [1]
    # ...and through B's own scope, all of B's.
    code, got = cli.json("search", "--project", pb)
    assert {s["zfs_name"] for s in got["snapshots"]} == b_names


# -- a real database server -----------------------------------------------------------------

@pytest.fixture
def server_catalog(mariadb_url):
    """test_catalog_server_db's catalog, on the private MariaDB: empty before and after."""
    engine = sa.create_engine(mariadb_url, poolclass=sa.pool.NullPool)
    server_db._wipe(engine)
    clock = Clock()
    cat = Catalog.from_url(mariadb_url, clock=clock)
    cat.clock = clock
    cat.ping()   # opening connects lazily: create the schema now
    yield cat
    cat.close()
    server_db._wipe(engine)
    engine.dispose()


# The server-database tests themselves, collected here under a mariadb_ prefix: the unit run
# skips them without CATALOG_TEST_DB_URL, the functional run always has a server.
for _name, _test in vars(server_db).items():
    if _name.startswith("test_") and callable(_test):
        globals()[f"test_mariadb_{_name[len('test_'):]}"] = _test
del _name, _test


def test_mariadb_two_drivers_share_one_catalog(node, dataset, agent_key, mariadb, tmp_path):
    """Active-active: two cinder-volume hosts, one backend root, one MariaDB catalog."""
    url = mariadb.new_database("catalog_aa")
    root = f"{dataset}/cinder"
    drivers = [build_driver(node, agent_key, root, url, section=BACKEND) for _ in range(2)]
    try:
        p = project()
        vols = [volume_obj(project_id=p) for _ in range(2)]
        snaps = {}
        for drv, vol in zip(drivers, vols, strict=True):
            drv.create_volume(vol)
            snaps[vol.id] = [snapshot_obj(vol), snapshot_obj(vol)]
            for snap in snaps[vol.id]:
                drv.create_snapshot(snap)
            assert drv.ops.index.flush(timeout=120)
        stats = drivers[0].get_volume_stats(refresh=True)
        assert stats["total_snapshots"] == 4
        cli = CLI(write_conf(tmp_path / "cinder.conf", node, agent_key, root, url), BACKEND)
        code, report = cli.json("verify")
        assert code == 0 and report["in_sync"] and report["catalog_rows"] == 4
        code, got = cli.json("search", "--project", p)
        assert {s["volume_id"] for s in got["snapshots"]} == {v.id for v in vols}
        for drv, vol in zip(drivers[::-1], vols, strict=True):   # each deletes the other's
            for snap in snaps[vol.id]:
                drv.delete_snapshot(snap)
            drv.delete_volume(vol)
        code, report = cli.json("verify")
        assert code == 0 and report["catalog_rows"] == 0
    finally:
        for drv in drivers:
            drv.transport.close()
