"""The catalog API with a real SQLite catalog: what each caller sees through every endpoint.

alice (project-a) and bob (project-b) are project members, admin has the admin role. Auth is
faked only at the keystonemiddleware boundary (see fixtures.Caller).
"""

from __future__ import annotations

import pytest

from tests.unit.api import fixtures as f
from tests.unit.api.fixtures import T0, VA1, VA2, VB1

ENDPOINTS = [f"/v1/volumes/{VA1}/snapshots", "/v1/snapshots", "/v1/usage"]


def ids(body: dict) -> list[str]:
    return [s["id"] for s in body["snapshots"]]


def walk(client, path: str, **params) -> list[dict]:
    """Every page of a listing, following next markers."""
    rows, marker = [], None
    while True:
        status, body = client.get(path, **params, **({"marker": marker} if marker else {}))
        assert status == 200, body
        rows.extend(body["snapshots"])
        marker = body["next_marker"]
        if marker is None:
            return rows


def test_versions_need_no_token_but_every_read_does(app):
    anonymous = f.Client(app, None)
    status, body = anonymous.get("/")
    assert status == 200 and body["versions"][0]["id"] == "v1.0"
    for path in ENDPOINTS:
        status, body = anonymous.get(path)
        assert (status, body["unauthorized"]["code"]) == (401, 401)


def test_history_newest_first_with_what_the_pool_knows(alice):
    status, body = alice.get(f"/v1/volumes/{VA1}/snapshots")
    assert status == 200
    assert ids(body) == [f.snapshot_id(k) for k in ("a3", "a2", "a1")]
    newest = body["snapshots"][0]
    assert newest == {"id": f.snapshot_id("a3"), "volume_id": VA1, "project_id": "project-a",
                      "group_snapshot_id": None, "created_at": "2023-11-14T22:16:40Z",
                      "createtxg": 300, "used": 3000, "referenced": 6000, "written": 1500,
                      "state": "available", "kind": "cinder"}
    assert body["next_marker"] is None and body["snapshots_links"] == []


def test_history_pages_cover_the_volume_without_repeats(alice):
    rows = walk(alice, f"/v1/volumes/{VA1}/snapshots", limit=1)
    assert [r["id"] for r in rows] == [f.snapshot_id(k) for k in ("a3", "a2", "a1")]
    status, body = alice.get(f"/v1/volumes/{VA1}/snapshots", limit=2)
    assert body["snapshots_links"][0]["rel"] == "next"
    assert "marker=" + body["next_marker"] in body["snapshots_links"][0]["href"]


@pytest.mark.parametrize("volume", [VB1, f.uid(0xDEAD), "not-a-uuid", "../" + VB1])
def test_another_projects_volume_looks_like_no_volume(alice, volume):
    for path in (f"/v1/volumes/{volume}/snapshots", f"/v1/volumes/{volume}/snapshots/nearest"):
        status, body = alice.get(path, at=T0 + 1000)
        assert status == 404, (path, body)
        assert set(body) == {"itemNotFound"} and "not found" in body["itemNotFound"]["message"]
    status, body = alice.get("/v1/snapshots/nearest", at=T0 + 1000, volume_id=[VA1, volume])
    assert status == 404


def test_guessed_ids_never_reach_bobs_rows(alice):
    # Every id bob's snapshots carry, tried where an id goes.
    for value in (VB1, f.snapshot_id("b1"), f.snapshot_id("b2"), f.BOB_PROJECT):
        for path in (f"/v1/volumes/{value}/snapshots",
                     f"/v1/volumes/{value}/snapshots/nearest"):
            assert alice.get(path, at=T0 + 1000)[0] == 404
        status, body = alice.get("/v1/snapshots", project_id=value)
        assert status == 404, body


def test_listing_and_time_ranges_stay_in_the_callers_project(alice, bob):
    everything = {"since": T0 - 10, "until": T0 + 10_000}
    assert {r["id"] for r in walk(alice, "/v1/snapshots", limit=1, **everything)} == {
        f.snapshot_id(k) for k in f.ALICE_VISIBLE}
    assert {r["id"] for r in walk(bob, "/v1/snapshots", **everything)} == {
        f.snapshot_id(k) for k in f.BOB_VISIBLE}
    # A range that holds only bob's snapshots is empty for alice.
    status, body = alice.get("/v1/snapshots", since=T0 + 50, until=T0 + 51)
    assert (status, body["snapshots"]) == (200, [])
    status, body = alice.get("/v1/snapshots", since="2023-11-14T22:15:00Z",
                             until="2023-11-14T22:15:01Z")
    assert sorted(ids(body)) == sorted([f.snapshot_id("a2"), f.snapshot_id("a4")])


def test_bobs_markers_reveal_nothing_to_alice(alice, bob):
    status, page = bob.get(f"/v1/volumes/{VB1}/snapshots", limit=1)
    bob_history_marker = page["next_marker"]
    status, page = bob.get("/v1/snapshots", limit=1)
    bob_list_marker = page["next_marker"]
    assert bob_history_marker and bob_list_marker
    for marker in (bob_history_marker, bob_list_marker):
        status, body = alice.get(f"/v1/volumes/{VA1}/snapshots", marker=marker)
        assert status == 400 and "marker" in body["badRequest"]["message"]
        status, body = alice.get("/v1/snapshots", marker=marker)
        assert status == 400 and "marker" in body["badRequest"]["message"]
    # Nor does bob's marker work for bob with another query (filters are part of the query).
    assert bob.get("/v1/snapshots", limit=1, since=T0, marker=bob_list_marker)[0] == 400


@pytest.mark.parametrize("marker", ["garbage", "WzE3MDAwMDAxMDAsMl0.", ".", "a.b.c",
                                    "WzE3MDAwMDAxMDAsMl0.AAAAAAAAAAAAAAAAAAAAAA"])
def test_forged_markers_are_bad_requests(alice, marker):
    status, body = alice.get(f"/v1/volumes/{VA1}/snapshots", marker=marker)
    assert status == 400 and body["badRequest"]["code"] == 400


def test_a_tampered_marker_is_refused(alice):
    status, body = alice.get("/v1/snapshots", limit=1)
    payload, _, signature = body["next_marker"].partition(".")
    forged = "WzE5OTk5OTk5OTksOTk5XQ" + "." + signature   # [1999999999, 999], old signature
    assert alice.get("/v1/snapshots", limit=1, marker=forged)[0] == 400


@pytest.mark.parametrize("params", [{"since": "yesterday"}, {"until": "2026-13-01"},
                                    {"since": "nan"}, {"since": "-5"}, {"since": "1e99"},
                                    {"since": T0 + 10, "until": T0}, {"limit": 0},
                                    {"limit": "ten"}, {"limit": 1001},
                                    {"all_projects": "maybe"}])
def test_bad_times_limits_and_flags_are_bad_requests(alice, params):
    status, body = alice.get("/v1/snapshots", **params)
    assert status == 400 and "message" in body["badRequest"]


def test_nearest_needs_a_valid_time(alice):
    for params in ({}, {"at": "soon"}):
        status, body = alice.get(f"/v1/volumes/{VA1}/snapshots/nearest", **params)
        assert status == 400, body
        assert alice.get("/v1/snapshots/nearest", **params)[0] == 400


def test_nearest_of_one_volume(alice):
    def nearest(at):
        status, body = alice.get(f"/v1/volumes/{VA1}/snapshots/nearest", at=at)
        assert status == 200
        return body["snapshot"] and body["snapshot"]["id"]

    assert nearest(T0 + 199) == f.snapshot_id("a2")   # the clone temp at +150 is internal
    assert nearest(T0 + 200) == f.snapshot_id("a3")   # "at or before"
    assert nearest("2023-11-14T22:13:20Z") == f.snapshot_id("a1")
    assert nearest(T0 - 1) is None                     # the volume is visible, no snapshot yet


def test_nearest_across_a_project_is_one_consistent_set_when_one_txg(alice):
    status, body = alice.get("/v1/snapshots/nearest", at=T0 + 110)
    assert status == 200 and body["consistent"] is True
    assert body["sets"] == [{"createtxg": 200, "created_at": "2023-11-14T22:15:00Z",
                             "volume_ids": [VA1, VA2],
                             "snapshot_ids": [f.snapshot_id("a2"), f.snapshot_id("a4")]}]
    status, body = alice.get("/v1/snapshots/nearest", at=T0 + 250)
    assert body["consistent"] is False
    assert [s["createtxg"] for s in body["sets"]] == [300, 200]
    assert {s["project_id"] for s in body["snapshots"]} == {"project-a"}


def test_nearest_of_chosen_volumes_reports_those_without_a_snapshot(alice):
    status, body = alice.get("/v1/snapshots/nearest", at=T0 + 10, volume_id=[VA1, VA2])
    assert status == 200
    assert ids(body) == [f.snapshot_id("a1")]
    assert body["volumes_without_snapshot"] == [VA2]


def test_usage_counts_the_callers_project_only(alice, bob):
    status, body = alice.get("/v1/usage")
    assert body["usage"] == [{"project_id": "project-a", "snapshots": 4, "used": 10000,
                              "referenced": 20000, "written": 5000}]
    status, body = bob.get("/v1/usage")
    assert body["usage"] == [{"project_id": "project-b", "snapshots": 2, "used": 30000,
                              "referenced": 60000, "written": 15000}]
    assert alice.get("/v1/usage", project_id="project-b")[0] == 404


def test_members_may_not_read_across_projects(alice):
    for path in ("/v1/snapshots", "/v1/usage", "/v1/snapshots/nearest"):
        status, body = alice.get(path, all_projects="true", at=T0)
        assert status == 403 and "zfs_catalog:all_projects" in body["forbidden"]["message"]
        assert alice.get(path, project_id="project-b", at=T0)[0] == 404
    # Her own project named explicitly is fine.
    assert alice.get("/v1/snapshots", project_id="project-a")[0] == 200


def test_internal_snapshots_are_for_admins(alice, admin):
    status, body = alice.get(f"/v1/volumes/{VA1}/snapshots", include_internal="true")
    assert status == 403 and "zfs_catalog:snapshot:internal" in body["forbidden"]["message"]
    # By default admins see what tenants see; include_internal adds the rest.
    status, body = admin.get(f"/v1/volumes/{VA1}/snapshots")
    assert {s["kind"] for s in body["snapshots"]} == {"cinder"}
    status, body = admin.get(f"/v1/volumes/{VA1}/snapshots", include_internal="true")
    kinds_states = {(s["kind"], s["state"]) for s in body["snapshots"]}
    assert ("clone-temp", "available") in kinds_states and ("cinder", "hidden") in kinds_states
    assert len(body["snapshots"]) == 5
    status, body = admin.get(f"/v1/volumes/{VA1}/snapshots/nearest", at=T0 + 199,
                             include_internal="true")
    assert body["snapshot"]["kind"] == "clone-temp"


def test_admin_sees_both_projects(admin):
    for volume, expected in ((VA1, {"a1", "a2", "a3"}), (VB1, {"b1", "b2"})):
        status, body = admin.get(f"/v1/volumes/{volume}/snapshots")
        assert status == 200 and set(ids(body)) == {f.snapshot_id(k) for k in expected}
        # Backend details are for admins.
        assert body["snapshots"][0]["zfs_name"].startswith("tank/cinder/")
    everything = walk(admin, "/v1/snapshots", all_projects="true", limit=3)
    assert {r["id"] for r in everything} == {
        f.snapshot_id(k) for k in f.ALICE_VISIBLE | f.BOB_VISIBLE}
    assert {r["id"] for r in walk(admin, "/v1/snapshots", project_id="project-b")} == {
        f.snapshot_id(k) for k in f.BOB_VISIBLE}
    status, body = admin.get("/v1/usage", all_projects="true")
    assert [u["project_id"] for u in body["usage"]] == ["project-a", "project-b"]
    assert body["total"]["snapshots"] == 6
    # The admin's own project has no snapshots: its default scope is its own project.
    assert admin.get("/v1/snapshots")[1]["snapshots"] == []


def test_a_system_scoped_reader_reads_across_projects(app):
    reader = f.Client(app, f.SYSTEM_READER)
    assert reader.get(f"/v1/volumes/{VB1}/snapshots")[0] == 200
    assert reader.get("/v1/usage", all_projects="true")[1]["total"]["snapshots"] == 6
    # ... but is no admin: no internal snapshots, no backend details.
    assert reader.get("/v1/snapshots", all_projects="true", include_internal="true")[0] == 403
    assert "zfs_name" not in reader.get(f"/v1/volumes/{VB1}/snapshots")[1]["snapshots"][0]
    # A system token has no project: a listing must say whose.
    assert reader.get("/v1/snapshots")[0] == 400


def test_a_caller_without_a_reader_role_is_forbidden(app):
    nobody = f.Client(app, f.ALICE_NO_ROLE)
    assert nobody.get(f"/v1/volumes/{VA1}/snapshots")[0] == 403
    assert nobody.get("/v1/usage")[0] == 403


def test_a_policy_file_changes_who_may_do_what(catalog, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text('"zfs_catalog:volume:history": "rule:context_is_admin"\n'
                      '"zfs_catalog:all_projects": "role:member"\n'
                      '"zfs_catalog:snapshot:internal": "!"\n')
    app = f.make_app(catalog, policy_file=str(policy))
    alice, admin = f.Client(app, f.ALICE), f.Client(app, f.ADMIN)
    status, body = alice.get(f"/v1/volumes/{VA1}/snapshots")
    assert status == 403 and "zfs_catalog:volume:history" in body["forbidden"]["message"]
    assert admin.get(f"/v1/volumes/{VA1}/snapshots")[0] == 200
    # Members now read across projects ...
    assert alice.get("/v1/usage", all_projects="true")[1]["total"]["snapshots"] == 6
    assert alice.get("/v1/snapshots", project_id="project-b")[0] == 200
    # ... and nobody, not even admin, sees internal snapshots.
    assert admin.get("/v1/snapshots", all_projects="true", include_internal="true")[0] == 403


def test_unknown_paths_and_methods_answer_in_cinders_shape(alice):
    status, body = alice.get("/v2/whatever")
    assert status == 404 and body["itemNotFound"]["code"] == 404
    import webob
    req = webob.Request.blank("/v1/snapshots", method="DELETE", headers=f.ALICE.headers())
    resp = req.get_response(alice.app)
    assert resp.status_int == 405 and resp.json["badMethod"]["code"] == 405
