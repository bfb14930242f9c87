"""A catalog with alice's (project-a) and bob's (project-b) snapshots, and the callers.

Authentication is faked only where keystonemiddleware's auth_token hands over: the headers it
sets on a validated request (X-Identity-Status, X-Project-Id, X-Roles, OpenStack-System-Scope).
"""

from __future__ import annotations

import dataclasses
import json

import webob
from oslo_config import cfg
from oslo_policy import opts as policy_opts

from cinder_zfs_ocfs2.api import app as api_app
from cinder_zfs_ocfs2.api import policies
from cinder_zfs_ocfs2.catalog import Catalog
from cinder_zfs_ocfs2.zfs.types import PROP_HIDDEN
from tests.unit.catalog.helpers import ROOT, T0, snap, uid, volume_ds

ALICE_PROJECT, BOB_PROJECT, ADMIN_PROJECT = "project-a", "project-b", "admin"
VA1, VA2, VB1 = uid(0xA1), uid(0xA2), uid(0xB1)


def sid(n: int) -> str:
    return uid(0x5000 + n)


# name -> (project, volume, snapshot short name, creation, createtxg, used)
SNAPSHOTS = {
    "a1": (ALICE_PROJECT, VA1, f"snapshot-{sid(1)}", T0, 100, 1000),
    # a2 and a4 were taken in one ZFS call (one txg): a consistent set of alice's two volumes.
    "a2": (ALICE_PROJECT, VA1, f"snapshot-{sid(2)}", T0 + 100, 200, 2000),
    "a4": (ALICE_PROJECT, VA2, f"snapshot-{sid(4)}", T0 + 100, 200, 4000),
    "a3": (ALICE_PROJECT, VA1, f"snapshot-{sid(3)}", T0 + 200, 300, 3000),
    # Internal: a clone temp and a hidden (deleted, still cloned) snapshot of alice's volume.
    "a_clone": (ALICE_PROJECT, VA1, f"clone-{uid(0xC1)}", T0 + 150, 250, 500),
    "a_hidden": (ALICE_PROJECT, VA1, f"snapshot-{sid(9)}", T0 + 50, 150, 700),
    "b1": (BOB_PROJECT, VB1, f"snapshot-{sid(11)}", T0 + 50, 160, 10000),
    "b2": (BOB_PROJECT, VB1, f"snapshot-{sid(12)}", T0 + 120, 210, 20000),
}
ALICE_VISIBLE = {"a1", "a2", "a3", "a4"}
BOB_VISIBLE = {"b1", "b2"}


def snapshot_id(key: str) -> str | None:
    short = SNAPSHOTS[key][2]
    return short.removeprefix("snapshot-") if short.startswith("snapshot-") else None


def populate(catalog: Catalog) -> None:
    listing = []
    for i, (key, (project, volume, short, creation, txg, used)) in enumerate(SNAPSHOTS.items()):
        props = {PROP_HIDDEN: "true"} if key == "a_hidden" else {}
        listing.append(snap(volume_ds(project, volume), short, guid=i + 1, creation=creation,
                            createtxg=txg, used=used, referenced=2 * used, written=used // 2,
                            props=props))
    catalog.reconcile(listing, ROOT)


@dataclasses.dataclass(frozen=True)
class Caller:
    """What auth_token tells the application about a validated token."""

    project_id: str | None
    roles: tuple[str, ...]
    system_scope: str | None = None

    def headers(self) -> dict:
        headers = {"X-Identity-Status": "Confirmed", "X-Roles": ",".join(self.roles),
                   "X-User-Id": f"user-of-{self.project_id or 'system'}"}
        if self.project_id:
            headers["X-Project-Id"] = self.project_id
        if self.system_scope:
            headers["OpenStack-System-Scope"] = self.system_scope
        return headers


# Keystone's default roles imply one another (admin > member > reader); tokens carry them all.
ALICE = Caller(ALICE_PROJECT, ("member", "reader"))
BOB = Caller(BOB_PROJECT, ("member", "reader"))
ADMIN = Caller(ADMIN_PROJECT, ("admin", "member", "reader"))
SYSTEM_READER = Caller(None, ("reader",), system_scope="all")
ALICE_NO_ROLE = Caller(ALICE_PROJECT, ("load-balancer_observer",))


def make_conf(policy_file: str | None = None) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf([], project="cinder", default_config_files=[])
    policy_opts.set_defaults(conf, policy_file=policy_file or "no-such-policy.yaml")
    return conf


def make_app(catalog: Catalog, policy_file: str | None = None, **kwargs) -> api_app.CatalogAPI:
    enforcer = policies.get_enforcer(make_conf(policy_file))
    return api_app.CatalogAPI(catalog, enforcer, marker_key=b"k" * 32, **kwargs)


class Client:
    def __init__(self, app, caller: Caller | None):
        self.app = app
        self.caller = caller

    def get(self, path: str, **params) -> tuple[int, dict]:
        query = []
        for key, value in params.items():
            for v in value if isinstance(value, list | tuple) else [value]:
                query.append((key, v))
        req = webob.Request.blank(path, headers=self.caller.headers() if self.caller else {},
                                  POST=None)
        if query:
            from urllib.parse import urlencode
            req.query_string = urlencode(query)
        resp = req.get_response(self.app)
        assert resp.content_type == "application/json", resp
        return resp.status_int, json.loads(resp.body)
