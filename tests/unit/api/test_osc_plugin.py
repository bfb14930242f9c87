"""The openstackclient plugin: the real `openstack` CLI against the catalog API on loopback.

The API runs in a thread (wsgiref on 127.0.0.1); a stand-in for auth_token maps each test
token to the headers auth_token would set. The CLI runs as a subprocess with this checkout's
entry points (tests/unit/entry_points.py) and the admin_token auth type, so the plugin's
service-type lookup resolves to the test endpoint.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import threading
from wsgiref import simple_server

import pytest

from tests.unit import entry_points
from tests.unit.api import fixtures as f
from tests.unit.api.fixtures import T0, VA1, VA2, VB1

OPENSTACK = pathlib.Path(sys.executable).with_name("openstack")
TOKENS = {"alice-token": f.ALICE, "bob-token": f.BOB, "admin-token": f.ADMIN}


class FakeAuthToken:
    """What keystonemiddleware's auth_token does for a valid token, for known test tokens."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        caller = TOKENS.get(environ.get("HTTP_X_AUTH_TOKEN", ""))
        for key in [k for k in environ if k.startswith("HTTP_X_")]:
            del environ[key]   # auth_token removes client-sent identity headers too
        if caller is not None:
            for name, value in caller.headers().items():
                environ["HTTP_" + name.upper().replace("-", "_")] = value
        return self.app(environ, start_response)


class _Quiet(simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    from cinder_zfs_ocfs2.catalog import Catalog

    path = tmp_path_factory.mktemp("catalog") / "zfs_catalog.sqlite"
    catalog = Catalog.from_url(f"sqlite:///{path}")
    f.populate(catalog)
    server = simple_server.make_server("127.0.0.1", 0,
                                       FakeAuthToken(f.make_app(catalog)),
                                       handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()
    server.server_close()
    catalog.close()


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    env = entry_points.subprocess_env(tmp_path_factory.mktemp("entry-points"))
    for key in [k for k in env if k.startswith("OS_")]:
        del env[key]
    return env


def openstack(endpoint, env, token, *args, check=True):
    proc = subprocess.run([str(OPENSTACK), "--os-auth-type", "admin_token",
                           "--os-endpoint", endpoint, "--os-token", token, *args],
                          capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                          timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_history_as_json_newest_first(endpoint, cli_env):
    out = openstack(endpoint, cli_env, "alice-token", "volume", "snapshot", "history", VA1,
                    "-f", "json").stdout
    rows = json.loads(out)
    assert [r["ID"] for r in rows] == [f.snapshot_id(k) for k in ("a3", "a2", "a1")]
    assert rows[0]["Used"] == 3000 and rows[0]["Createtxg"] == 300


def test_nearest_of_the_project_value_format_and_bobs_volume(endpoint, cli_env):
    out = openstack(endpoint, cli_env, "alice-token", "volume", "snapshot", "nearest",
                    "--at", str(T0 + 110), "-f", "value", "-c", "Volume ID", "-c", "Set").stdout
    assert out.split("\n")[:2] == [f"{VA1} 1", f"{VA2} 1"]   # one consistent set
    denied = openstack(endpoint, cli_env, "alice-token", "volume", "snapshot", "nearest", VB1,
                       "--at", str(T0 + 1000), check=False)
    assert denied.returncode == 1 and f"volume {VB1} not found" in denied.stderr


def test_usage_table_for_alice_and_all_projects_for_admin(endpoint, cli_env):
    table = openstack(endpoint, cli_env, "alice-token", "volume", "snapshot", "usage").stdout
    assert "project-a" in table and "project-b" not in table and "Snapshots" in table
    rows = json.loads(openstack(endpoint, cli_env, "admin-token", "volume", "snapshot",
                                "usage", "--all-projects", "-f", "json").stdout)
    assert [(r["Project"], r["Snapshots"]) for r in rows] == [("project-a", 4),
                                                              ("project-b", 2)]
    refused = openstack(endpoint, cli_env, "bob-token", "volume", "snapshot", "usage",
                        "--all-projects", check=False)
    assert refused.returncode == 1 and "zfs_catalog:all_projects" in refused.stderr
