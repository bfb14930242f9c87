"""Retype in place and storage-assisted migration between two pools of one node (issue 7)."""

from __future__ import annotations

import uuid

import pytest

from tests.functional.driver_env import ensure_second_pool, volume_obj
from tests.functional.test_driver import read_hash, settle, write_random


@pytest.fixture
def second_pool(node):   # per test: cheap when there, and a restarted node may have lost it
    return ensure_second_pool(node)


def test_retype_compression_in_place_keeps_data(node, make_driver):
    drv = make_driver()
    vol = volume_obj(extra_specs={"zfs:compression": "lz4"}, host="ft@zfs-ft#zfs-ft")
    drv.create_volume(vol)
    data = write_random(node, settle(node, drv, vol))
    name = drv.ops.names.volume(vol.project_id, vol.id)
    new_type = {"extra_specs": {"zfs:compression": "zstd", "zfs:sparse": "false"}}
    host = {"host": "ft@zfs-ft#zfs-ft"}
    assert drv.retype(None, vol, new_type, {}, host) == (True, None)
    props = node.run(f"zfs get -H -o value compression,refreservation {name}").stdout.split()
    assert props[0] == "zstd" and props[1] != "none"
    assert read_hash(node, settle(node, drv, vol)) == data
    # volblocksize is fixed at creation: the answer is a migration, not a silent no-op
    assert drv.retype(None, vol, {"extra_specs": {"zfs:volblocksize": "64K"}}, {}, host) == \
        (False, None)
    drv.delete_volume(vol)


def test_migrate_between_pools_of_one_node(node, make_driver, second_pool):
    src = make_driver()
    dest_root = f"{second_pool}/ft-{uuid.uuid4().hex[:8]}/cinder"
    dest = make_driver(root=dest_root)
    try:
        vol = volume_obj(status="available")
        src.create_volume(vol)
        data = write_random(node, settle(node, src, vol), mib=8)
        host = {"host": "ft@zfs-dest#zfs-dest",
                "capabilities": dest.get_volume_stats(refresh=True)}
        assert src.migrate_volume(None, vol, host) == (True, None)
        moved = dest.ops.names.volume(vol.project_id, vol.id)
        assert node.run(f"zfs list -H -o name {moved}").returncode == 0
        assert not src.zfs.exists(src.ops.names.volume(vol.project_id, vol.id))
        assert read_hash(node, settle(node, dest, vol), mib=8) == data
        dest.delete_volume(vol)
        # another node's backend: not ours to migrate to
        host["capabilities"] = dict(host["capabilities"],
                                    location_info=f"ZFSOCFS2Driver:10.9.9.9:22:{dest_root}")
        assert src.migrate_volume(None, vol, host) == (False, None)
    finally:
        node.run(f"zfs destroy -r {dest_root.rpartition('/')[0]}", check=False)


def test_image_cache_entry_does_not_pin_the_users_volume(node, make_driver):
    from cinder import context  # noqa: F401 - registers cinder_internal_tenant_*
    from oslo_config import cfg

    cfg.CONF.set_override("cinder_internal_tenant_project_id", "internal-proj")
    try:
        drv = make_driver()
        first = volume_obj(project_id="proj-a")      # the user's volume made from an image
        drv.create_volume(first)
        data = write_random(node, settle(node, drv, first))
        cache = volume_obj(project_id="internal-proj")
        drv.create_cloned_volume(cache, first)       # Cinder's image-volume cache entry
        cache_name = drv.ops.names.volume(cache.project_id, cache.id)
        assert drv.zfs.get_volume(cache_name).origin is None  # independent copy
        drv.delete_volume(first)                     # freed at once, not hidden
        assert "volume-" not in node.run(
            f"zfs list -H -o name -r {drv.ops.names.trash_root}").stdout
        later = volume_obj(project_id="proj-b")      # a new volume from the cached image
        drv.create_cloned_volume(later, cache)
        later_name = drv.ops.names.volume(later.project_id, later.id)
        assert drv.zfs.get_volume(later_name).origin == \
            drv.ops.names.clone_snapshot(cache_name, later.id)   # O(1) linked clone
        assert read_hash(node, settle(node, drv, later)) == data
        drv.delete_volume(later)
        drv.delete_volume(cache)
    finally:
        cfg.CONF.clear_override("cinder_internal_tenant_project_id")
