"""cinder-zfs-catalog: config reading, table and JSON output, verify's exit code."""

from __future__ import annotations

import json

import pytest

from cinder_zfs_ocfs2.catalog import Catalog
from cinder_zfs_ocfs2.cmd import catalog as cli
from tests.unit.catalog.helpers import ROOT, T0, snap, uid, volume_ds

V = uid(1)
DS = volume_ds("p1", V)


def pool():
    return [snap(DS, f"snapshot-{uid(10 + i)}", guid=100 + i, creation=T0 + 60 * i,
                 used=1 << 20) for i in range(3)] + [
        snap(volume_ds("p2", uid(2)), "daily", guid=200, creation=T0 + 30)]


class FakeClient:
    """Only a lister: a reconcile that tried anything else on the pool would fail."""

    def __init__(self, snapshots):
        self.snapshots = list(snapshots)
        self.calls = []

    def list_snapshots(self, root):
        self.calls.append(("list_snapshots", root))
        return [s for s in self.snapshots if s.name.startswith(root + "/")]


@pytest.fixture
def conf_file(tmp_path):
    path = tmp_path / "cinder.conf"
    path.write_text(f"[DEFAULT]\nstate_path = {tmp_path}\nenabled_backends = zfs1\n\n"
                    f"[zfs1]\nvolume_driver = x\nzfs_root_dataset = {ROOT}\n")
    return str(path)


@pytest.fixture
def fake_pool(monkeypatch):
    client = FakeClient(pool())
    seen = {}

    def factory(conf, backend):
        seen["backend"] = backend
        return client

    monkeypatch.setattr(cli, "_pool_client", factory)
    client.seen = seen
    return client


def run(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_reconcile_then_search_reads_cinder_conf(conf_file, tmp_path, fake_pool, capsys):
    code, out, _ = run(capsys, "reconcile", "--config-file", conf_file)
    assert code == 0 and "added 4" in out
    assert fake_pool.seen["backend"] == "zfs1"
    assert fake_pool.calls == [("list_snapshots", ROOT)]
    # The default catalog of backend zfs1 lives under state_path.
    assert (tmp_path / "zfs_catalog-zfs1.sqlite").exists()

    code, out, _ = run(capsys, "search", "--config-file", conf_file, "--project", "p1")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["CREATED", "(UTC)", "PROJECT"]
    assert len(lines) == 2 + 3 and all("p1" in line for line in lines[2:])
    assert "2023-11-14T22:15:20Z" in lines[2]   # newest first
    assert "1.0M" in lines[2]


def test_json_output_and_paging(conf_file, fake_pool, capsys):
    run(capsys, "reconcile", "--config-file", conf_file)
    code, out, _ = run(capsys, "search", "--config-file", conf_file, "--project", "p1",
                       "--limit", "2", "--json")
    data = json.loads(out)
    assert code == 0 and len(data["snapshots"]) == 2 and data["next"]
    assert data["snapshots"][0]["guid"] == "102"
    code, out, _ = run(capsys, "search", "--config-file", conf_file, "--project", "p1",
                       "--limit", "2", "--after", data["next"], "--json")
    second = json.loads(out)
    assert [s["guid"] for s in second["snapshots"]] == ["100"] and second["next"] is None


def test_search_other_selectors(conf_file, fake_pool, capsys):
    run(capsys, "reconcile", "--config-file", conf_file)
    base = ("search", "--config-file", conf_file, "--json")
    assert [s["guid"] for s in json.loads(run(capsys, *base, "--volume", V)[1])["snapshots"]] \
        == ["102", "101", "100"]
    got = json.loads(run(capsys, *base, "--since", "2023-11-14T22:13:20Z",
                         "--until", str(T0 + 61))[1])["snapshots"]
    assert [s["guid"] for s in got] == ["100", "200", "101"]
    assert json.loads(run(capsys, *base, "--guid", "200")[1])["snapshots"][0]["project_id"] \
        == "p2"
    name = f"{DS}@snapshot-{uid(10)}"
    assert json.loads(run(capsys, *base, "--name", name)[1])["snapshots"][0]["guid"] == "100"
    code, _, err = run(capsys, "search", "--config-file", conf_file)
    assert code == 2 and "needs --project" in err


def test_nearest(conf_file, fake_pool, capsys):
    run(capsys, "reconcile", "--config-file", conf_file)
    code, out, _ = run(capsys, "nearest", "--config-file", conf_file, "--volume", V,
                       "--at", str(T0 + 90), "--json")
    assert code == 0 and json.loads(out)["snapshot"]["guid"] == "101"
    code, out, _ = run(capsys, "nearest", "--config-file", conf_file, "--volume", V,
                       "--at", "2000-01-01T00:00:00")
    assert code == 1 and "no snapshot" in out


def test_dependents(conf_file, fake_pool, capsys):
    fake_pool.snapshots.append(snap(DS, "origin", guid=400, clones=[volume_ds("p1", uid(5))]))
    run(capsys, "reconcile", "--config-file", conf_file)
    code, out, _ = run(capsys, "dependents", "--config-file", conf_file, "--guid", "400",
                       "--json")
    assert code == 0 and json.loads(out)["dependents"] == [volume_ds("p1", uid(5))]
    code, out, _ = run(capsys, "dependents", "--config-file", conf_file, "--name",
                       f"{DS}@snapshot-{uid(10)}")
    assert code == 0 and "no clones" in out
    assert run(capsys, "dependents", "--config-file", conf_file)[0] == 2


def test_report(conf_file, fake_pool, capsys):
    run(capsys, "reconcile", "--config-file", conf_file)
    code, out, _ = run(capsys, "report", "--config-file", conf_file)
    assert code == 0
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[2:]}
    assert rows == {"p1": "3", "p2": "1", "TOTAL": "4"}
    data = json.loads(run(capsys, "report", "--config-file", conf_file, "--project", "p1",
                          "--json")[1])
    assert data["projects"] == [{"project_id": "p1", "snapshots": 3, "used": 3 << 20,
                                 "referenced": 0, "written": 0}]


def test_verify_exit_code_and_drift(conf_file, fake_pool, capsys):
    code, out, _ = run(capsys, "verify", "--config-file", conf_file)
    assert code == 1 and "added" in out and "drift (not written)" in out
    run(capsys, "reconcile", "--config-file", conf_file)
    code, out, _ = run(capsys, "verify", "--config-file", conf_file, "--json")
    assert code == 0 and json.loads(out)["in_sync"] is True
    # An admin destroys one snapshot and makes another behind the driver's back.
    fake_pool.snapshots = fake_pool.snapshots[1:] + [snap(DS, "admin", guid=300)]
    code, out, _ = run(capsys, "verify", "--config-file", conf_file, "--json")
    report = json.loads(out)
    assert code == 1
    assert sorted(d["what"] for d in report["drift"]) == ["added", "removed"]
    assert run(capsys, "reconcile", "--config-file", conf_file)[0] == 0
    assert run(capsys, "verify", "--config-file", conf_file)[0] == 0
    # Nothing but listings ever reached the pool.
    assert {c[0] for c in fake_pool.calls} == {"list_snapshots"}


def test_connection_override_and_conf_option(tmp_path, conf_file, capsys):
    url = f"sqlite:///{tmp_path}/elsewhere.sqlite"
    with Catalog.from_url(url) as cat:
        cat.reconcile(pool(), ROOT)
    code, out, _ = run(capsys, "report", "--connection", url, "--json")
    assert code == 0 and json.loads(out)["total"]["snapshots"] == 4
    conf2 = tmp_path / "c2.conf"
    conf2.write_text(f"[DEFAULT]\nenabled_backends = a,b\n[b]\nzfs_catalog_connection = {url}\n")
    code, _, err = run(capsys, "report", "--config-file", str(conf2))
    assert code == 2 and "--backend" in err
    code, out, _ = run(capsys, "report", "--config-file", str(conf2), "--backend", "b",
                       "--json")
    assert code == 0 and json.loads(out)["total"]["snapshots"] == 4


def test_missing_config_file(capsys, tmp_path):
    code, _, err = run(capsys, "report", "--config-file", str(tmp_path / "nope.conf"))
    assert code == 2 and "nope.conf" in err


def test_reconcile_needs_a_backend(tmp_path, capsys):
    code, _, err = run(capsys, "reconcile", "--connection", f"sqlite:///{tmp_path}/x.sqlite")
    assert code == 2 and "--backend" in err


def test_parse_time():
    assert cli.parse_time("1700000000") == 1700000000
    assert cli.parse_time("2023-11-14T22:13:20Z") == T0
    assert cli.parse_time("2023-11-14T22:13:20") == T0
    assert cli.parse_time("2023-11-14T23:13:20+01:00") == T0
    with pytest.raises(Exception, match="not a time"):
        cli.parse_time("yesterday")
