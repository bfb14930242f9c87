"""Tenant isolation: a tenant-scoped query never returns another tenant's row."""

from __future__ import annotations

import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cinder_zfs_ocfs2.catalog import Catalog
from tests.unit.catalog.helpers import ROOT, T0, snap, uid, volume_ds

PROJECTS = ["p1", "p2", "p3", "p_4"]

# A snapshot: (owning project, volume number, creation offset, props project override).
# Volumes are numbered per pool, not per project, so the same volume id can appear under two
# projects (a transferred volume, a stale row): scoping must still hold.
snapshot_st = st.tuples(st.sampled_from(PROJECTS), st.integers(0, 5), st.integers(0, 50),
                        st.sampled_from([None] + PROJECTS))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(snapshots=st.lists(snapshot_st, max_size=40), tenant=st.sampled_from(PROJECTS),
       limit=st.integers(1, 7), at=st.integers(-5, 60), volume=st.integers(0, 5))
def test_tenant_scoped_queries_never_leak(snapshots, tenant, limit, at, volume):
    with tempfile.TemporaryDirectory() as tmp, \
            Catalog.from_url(f"sqlite:///{tmp}/c.sqlite") as catalog:
        listing = []
        for i, (project, vol, offset, prop_project) in enumerate(snapshots):
            props = {"org.openstack.cinder:project_id": prop_project} if prop_project else {}
            listing.append(snap(volume_ds(project, uid(vol)), f"snapshot-{uid(10_000 + i)}",
                                guid=i + 1, creation=T0 + offset, props=props))
        catalog.reconcile(listing, ROOT)
        owner = {s.name: (s.user_props.get("org.openstack.cinder:project_id")
                          or s.name.split("/")[2]) for s in listing}
        expected = {n for n, p in owner.items() if p == tenant}

        seen, after = [], None
        while True:
            page = catalog.list_by_project(tenant, limit=limit, after=after)
            seen.extend(page.rows)
            if page.next is None:
                break
            after = page.next
        assert all(r.project_id == tenant for r in seen)
        assert sorted(r.zfs_name for r in seen) == sorted(expected)  # no gaps, no repeats

        history = catalog.volume_history(uid(volume), project_id=tenant)
        assert all(r.project_id == tenant for r in history)
        assert {r.zfs_name for r in history} == {
            n for n in expected if f"volume-{uid(volume)}@" in n}

        nearest = catalog.nearest_before(uid(volume), T0 + at, project_id=tenant)
        candidates = [s for s in listing if s.name in expected
                      and f"volume-{uid(volume)}@" in s.name and s.creation <= T0 + at]
        if candidates:
            assert nearest is not None and nearest.project_id == tenant
            assert nearest.creation == max(s.creation for s in candidates)
        else:
            assert nearest is None

        assert catalog.project_usage(tenant).snapshots == len(expected)
