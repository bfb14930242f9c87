"""The snapshot catalog for tenants, end to end: real Keystone tokens, the catalog API in the
stack (service type zfs-catalog), and the real `openstack volume snapshot history|nearest|usage`.

alice and bob are members of project-a and project-b; admin has the admin role.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.e2e import stacklib
from tests.e2e.test_stack import create_snapshot, create_volume
from tests.unit import entry_points

SERVICE_TYPE = "zfs-catalog"


@pytest.fixture(scope="module")
def cli_env(stack, tmp_path_factory):
    # This checkout's plugin entry points, whatever checkout the venv was installed from.
    env = entry_points.subprocess_env(tmp_path_factory.mktemp("entry-points"))
    env.update(OS_CLIENT_CONFIG_FILE=stack.clouds_yaml)
    env.pop("OS_CLOUD", None)
    return env


def openstack(cli_env, cloud: str, *args: str, check: bool = True):
    argv = [str(stacklib.VENV / "bin" / "openstack"), "--os-cloud", cloud, *args]
    r = subprocess.run(argv, capture_output=True, text=True, env=cli_env,
                       stdin=subprocess.DEVNULL, timeout=300)
    if check and r.returncode != 0:
        raise stacklib.CLIError(r.returncode, argv, r.stdout, r.stderr)
    return r


def api_get(stack, cloud: str, path: str, **params):
    """GET on the catalog API with the cloud's real token, through Keystone's catalog."""
    resp = stack.sdk(cloud).session.get(
        path, params=params, raise_exc=False,
        endpoint_filter={"service_type": SERVICE_TYPE, "interface": "public"})
    return resp.status_code, resp.json()


@pytest.fixture(scope="module")
def volumes(stack):
    """A volume with two snapshots for alice, one with one snapshot for bob."""
    cleanup = stacklib.Cleanup(stack)
    try:
        alice_vol = create_volume(stack, cleanup, "alice")
        first = create_snapshot(stack, cleanup, "alice", alice_vol)
        time.sleep(1.1)   # catalog times are whole seconds: keep the two apart
        second = create_snapshot(stack, cleanup, "alice", alice_vol)
        bob_vol = create_volume(stack, cleanup, "bob")
        bob_snap = create_snapshot(stack, cleanup, "bob", bob_vol)
        yield {"alice_volume": alice_vol, "alice_snapshots": [second, first],
               "bob_volume": bob_vol, "bob_snapshot": bob_snap}
    finally:
        cleanup.run()


def test_the_service_is_in_keystones_catalog(stack):
    endpoint = stack.sdk("alice").session.get_endpoint(service_type=SERVICE_TYPE,
                                                       interface="public")
    assert endpoint.startswith("http://127.0.0.1:") and endpoint.endswith("/v1")


def test_history_newest_first_through_the_cli(cli_env, volumes):
    rows = json.loads(openstack(cli_env, "alice", "volume", "snapshot", "history",
                                volumes["alice_volume"], "-f", "json").stdout)
    assert [r["ID"] for r in rows] == volumes["alice_snapshots"]
    assert all(r["State"] == "available" and r["Createtxg"] for r in rows)


def test_alice_never_sees_bobs_volume(cli_env, stack, volumes):
    for command in (("history", volumes["bob_volume"]),
                    ("nearest", volumes["bob_volume"], "--at", str(int(time.time()) + 60))):
        r = openstack(cli_env, "alice", "volume", "snapshot", *command, check=False)
        assert r.returncode == 1 and "not found" in r.stderr, r.stderr
    status, body = api_get(stack, "alice", f"/volumes/{volumes['bob_volume']}/snapshots")
    assert status == 404 and "itemNotFound" in body
    # A time range holding bob's snapshot lists only alice's own.
    status, body = api_get(stack, "alice", "/snapshots", since=0,
                           until=int(time.time()) + 60)
    ids = {s["id"] for s in body["snapshots"]}
    assert volumes["bob_snapshot"] not in ids
    assert set(volumes["alice_snapshots"]) <= ids
    assert {s["project_id"] for s in body["snapshots"]} == {stack.project_id("alice")}


def test_a_marker_from_another_projects_page_is_refused(stack, volumes):
    # alice has two snapshots, so her first page of one has a marker; bob tries it.
    status, body = api_get(stack, "alice", f"/volumes/{volumes['alice_volume']}/snapshots",
                           limit=1)
    assert status == 200 and body["next_marker"]
    marker = body["next_marker"]
    for path in (f"/volumes/{volumes['bob_volume']}/snapshots", "/snapshots"):
        status, body = api_get(stack, "bob", path, marker=marker)
        assert status == 400 and "marker" in body["badRequest"]["message"]


def test_nearest_before_now_is_alices_newest(cli_env, volumes):
    rows = json.loads(openstack(cli_env, "alice", "volume", "snapshot", "nearest",
                                volumes["alice_volume"], "--at",
                                str(int(time.time()) + 60), "-f", "json").stdout)
    assert [r["Snapshot ID"] for r in rows] == [volumes["alice_snapshots"][0]]


def test_usage_alice_own_admin_all(cli_env, stack, volumes):
    rows = json.loads(openstack(cli_env, "alice", "volume", "snapshot", "usage",
                                "-f", "json").stdout)
    assert [r["Project"] for r in rows] == [stack.project_id("alice")]
    assert rows[0]["Snapshots"] >= 2
    every = json.loads(openstack(cli_env, "admin", "volume", "snapshot", "usage",
                                 "--all-projects", "-f", "json").stdout)
    projects = {r["Project"] for r in every}
    assert {stack.project_id("alice"), stack.project_id("bob")} <= projects
    refused = openstack(cli_env, "alice", "volume", "snapshot", "usage", "--all-projects",
                        check=False)
    assert refused.returncode == 1 and "zfs_catalog:all_projects" in refused.stderr


def test_admin_sees_both_volumes(stack, volumes):
    for volume in (volumes["alice_volume"], volumes["bob_volume"]):
        status, body = api_get(stack, "admin", f"/volumes/{volume}/snapshots")
        assert status == 200 and body["snapshots"], body
