"""The Cinder driver over the fake storage node, with Cinder's own objects and configuration."""

import threading
import uuid
from unittest import mock

import pytest
from cinder import context, exception, objects
from cinder.volume import configuration
from cinder.volume import driver as cinder_driver
from cinder.volume.targets.fake import FakeTarget
from oslo_config import cfg

from cinder_zfs_ocfs2 import options, transport
from cinder_zfs_ocfs2.driver import ZFSOCFS2Driver
from cinder_zfs_ocfs2.zfs import errors
from cinder_zfs_ocfs2.zfs.names import NameSpace
from cinder_zfs_ocfs2.zfs.types import PROP_HIDDEN
from tests.unit.fakezfs import FakeZFS, GiB

objects.register_all()

ROOT = "tank/cinder"
GROUP = "zfs_unit"
PROJECT = "p1"
NS = NameSpace(ROOT)
CTX = context.get_admin_context()


@pytest.fixture
def overrides():
    done = []

    def override(**values):
        for key, value in values.items():
            cfg.CONF.set_override(key, value, group=GROUP)
            done.append(key)

    yield override
    for key in done:
        cfg.CONF.clear_override(key, group=GROUP)


@pytest.fixture
def make_driver(monkeypatch, overrides):
    def build(fake=None, check=True, **opts):
        conf = configuration.Configuration(options.ALL_OPTS + cinder_driver.volume_opts,
                                           config_group=GROUP)
        overrides(**{"zfs_agent_mode": "local", "zfs_root_dataset": ROOT,
                     "target_helper": "fake", "volume_backend_name": "zfs-unit",
                     "zfs_catalog_connection": "sqlite://",
                     "zfs_snapshot_batch_window_ms": 0, **opts})
        fake = fake if fake is not None else FakeZFS(ROOT)
        monkeypatch.setattr(transport, "from_config", lambda configuration: fake)
        drv = ZFSOCFS2Driver(configuration=conf)
        drv.do_setup(CTX)
        if check:
            drv.check_for_setup_error()
            drv.ops.index.wait_for_reconcile()  # the start-up pass runs in the background
        return drv, fake

    return build


@pytest.fixture
def drv(make_driver):
    return make_driver()


def volume_obj(size=1, extra_specs=None, multiattach=False, attachments=(), project=PROJECT,
               **fields):
    kwargs = {"volume_type_id": None, **fields}
    if extra_specs is not None:
        vtype = objects.VolumeType(context=CTX, id=str(uuid.uuid4()), name="zfs-type",
                                   extra_specs=extra_specs)
        kwargs.update(volume_type_id=vtype.id, volume_type=vtype)
    return objects.Volume(
        context=CTX, id=str(uuid.uuid4()), _name_id=None, project_id=project, size=size,
        multiattach=multiattach, display_name="tenant text; never a name",
        volume_attachment=objects.VolumeAttachmentList(objects=list(attachments)), **kwargs)


def snapshot_obj(volume):
    return objects.Snapshot(context=CTX, id=str(uuid.uuid4()), volume_id=volume.id,
                            volume=volume, volume_size=volume.size)


def connector(host):
    return {"host": host, "initiator": f"iqn.1994-05.com.redhat:{host}", "ip": "10.0.0.2"}


def attachment(volume, host):
    return objects.VolumeAttachment(context=CTX, id=str(uuid.uuid4()), volume_id=volume.id,
                                    connector=connector(host))


def zvol(volume):
    return NS.volume(volume.project_id, volume.id)


def zsnap(snapshot):
    return NS.snapshot(zvol(snapshot.volume), snapshot.id)


def leftovers(fake):
    return [n for n in fake.tree(ROOT) if n not in (ROOT, f"{ROOT}/.trash", NS.tenant(PROJECT))]


def write(fake, name, data):
    fake.write(name, data.ljust(64, b"\0"))


def read(fake, name):
    return fake.read(name).rstrip(b"\0")


# -- set-up ----------------------------------------------------------------------------------

def test_setup_plugs_in_cinders_target_helper_and_the_transport(drv):
    drv, fake = drv
    assert isinstance(drv.target_driver, FakeTarget)
    assert drv.protocol == "iSCSI"
    assert drv.transport is fake
    assert drv.snapshot_revert_use_temp_snapshot() is False


def test_check_for_setup_error_creates_the_root_when_configured(make_driver):
    bare = FakeZFS(ROOT, create_root=False)
    make_driver(bare, zfs_create_root_dataset=True)
    assert bare.tree() == ["tank", ROOT, f"{ROOT}/.trash"]


def test_check_for_setup_error_without_the_root_says_what_to_do(make_driver):
    bare = FakeZFS(ROOT, create_root=False)
    drv, _ = make_driver(bare, check=False, zfs_create_root_dataset=False)
    with pytest.raises(exception.VolumeBackendAPIException) as info:
        drv.check_for_setup_error()
    message = str(info.value)
    assert ROOT in message and "zfs create -p" in message
    assert "zfs_create_root_dataset" in message
    assert bare.tree() == ["tank"]


@pytest.mark.parametrize("health", ["FAULTED", "UNAVAIL", "SUSPENDED"])
def test_unhealthy_pool_is_refused(make_driver, health):
    drv, fake = make_driver(FakeZFS(ROOT, health=health), check=False)
    with pytest.raises(exception.VolumeBackendAPIException) as info:
        drv.check_for_setup_error()
    assert health in str(info.value) and "zpool status" in str(info.value)


def test_degraded_pool_is_accepted(make_driver):
    make_driver(FakeZFS(ROOT, health="DEGRADED"))


@pytest.mark.parametrize("opts", [{"zfs_root_dataset": "tank//cinder"},
                                  {"zfs_volblocksize": "3K"}, {"zfs_compression": "xz"}])
def test_bad_configuration_is_invalid_input(make_driver, opts):
    with pytest.raises(exception.InvalidInput):
        make_driver(check=False, **opts)


def test_start_up_repairs_and_reclaims(make_driver):
    drv, fake = make_driver()
    vol = volume_obj()
    drv.create_volume(vol)
    snap = snapshot_obj(vol)
    drv.create_snapshot(snap)
    clone = volume_obj()
    drv.create_volume_from_snapshot(clone, snap)
    drv.delete_snapshot(snap)
    drv.delete_volume(vol)
    fake.call("destroy", name=zvol(clone))  # the clone went while the driver was down
    make_driver(fake)  # a new driver over the same node
    assert leftovers(fake) == []


# -- volumes ---------------------------------------------------------------------------------

def test_create_volume_sparse_by_default(drv):
    drv, fake = drv
    vol = volume_obj(size=2)
    drv.create_volume(vol)
    v = drv.zfs.get_volume(zvol(vol))
    assert v.volsize == 2 * GiB and v.volblocksize == 16384
    assert drv.zfs.get_properties(v.name, ["refreservation", "compression"]) == \
        {"refreservation": "0", "compression": "lz4"}
    assert "tenant" not in v.name


def test_create_volume_thick_by_extra_spec(drv):
    drv, fake = drv
    vol = volume_obj(extra_specs={"zfs:sparse": "<is> False", "zfs:volblocksize": "64K",
                                  "zfs:compression": "zstd"})
    drv.create_volume(vol)
    v = drv.zfs.get_volume(zvol(vol))
    assert v.volblocksize == 65536
    assert drv.zfs.get_properties(v.name, ["refreservation", "compression"]) == \
        {"refreservation": str(GiB), "compression": "zstd"}


def test_thick_by_option(make_driver):
    drv, fake = make_driver(zfs_sparse_volumes=False)
    vol = volume_obj()
    drv.create_volume(vol)
    assert drv.zfs.get_properties(zvol(vol), ["refreservation"]) == {"refreservation": str(GiB)}


@pytest.mark.parametrize("extra", [{"zfs:volblocksize": "3K"}, {"zfs:volblocksize": "256K"},
                                   {"zfs:foo": "1"}, {"zfs:sparse": "perhaps"},
                                   {"zfs:compression": "xz"}, {"zfs:clone_mode": "deep"}])
def test_bad_extra_spec_is_invalid_input_and_creates_nothing(drv, extra):
    drv, fake = drv
    before = fake.tree()
    with pytest.raises(exception.InvalidInput):
        drv.create_volume(volume_obj(extra_specs=extra))
    assert fake.tree() == before and not fake.called("create_volume")


def test_extend_of_a_thick_volume_beyond_the_pool_says_out_of_space(make_driver):
    drv, fake = make_driver(FakeZFS(ROOT, pool_size=4 * GiB))
    vol = volume_obj(size=2, extra_specs={"zfs:sparse": "false"})
    drv.create_volume(vol)
    with pytest.raises(exception.VolumeBackendAPIException) as info:
        drv.extend_volume(vol, 8)
    assert drv.zfs.get_volume(zvol(vol)).volsize == 2 * GiB
    assert "out of space" in str(info.value)


def test_extend_volume_updates_the_export(drv):
    drv, fake = drv
    vol = volume_obj()
    drv.create_volume(vol)
    with mock.patch.object(drv.target_driver, "extend_target") as extend_target:
        drv.extend_volume(vol, 3)
    extend_target.assert_called_once_with(vol)
    assert drv.zfs.get_volume(zvol(vol)).volsize == 3 * GiB
    with pytest.raises(exception.InvalidInput):
        drv.extend_volume(vol, 1)


def test_delete_of_a_volume_already_gone_succeeds(drv):
    drv, fake = drv
    vol = volume_obj()
    drv.delete_volume(vol)
    drv.create_volume(vol)
    fake.call("destroy", name=zvol(vol))
    drv.delete_volume(vol)


# -- error mapping ---------------------------------------------------------------------------

def test_delete_volume_busy_is_volume_is_busy(drv):
    drv, fake = drv
    vol = volume_obj()
    drv.create_volume(vol)
    fake.call("snapshot", names=[f"{zvol(vol)}@admin-backup"])
    with pytest.raises(exception.VolumeIsBusy) as info:
        drv.delete_volume(vol)
    assert "admin-backup" in str(info.value) and vol.id in str(info.value)
    assert fake.call("exists", name=f"{zvol(vol)}@admin-backup")


def test_delete_volume_with_a_cinder_snapshot_is_volume_is_busy(drv):
    drv, fake = drv
    vol = volume_obj()
    drv.create_volume(vol)
    drv.create_snapshot(snapshot_obj(vol))
    with pytest.raises(exception.VolumeIsBusy):
        drv.delete_volume(vol)


def test_delete_snapshot_busy_is_snapshot_is_busy(drv):
    drv, fake = drv
    vol = volume_obj()
    drv.create_volume(vol)
    snap = snapshot_obj(vol)
    drv.create_snapshot(snap)
    fake.call("hold", snapshot=zsnap(snap), tag="backup")
    with pytest.raises(exception.SnapshotIsBusy) as info:
        drv.delete_snapshot(snap)
    assert snap.id in str(info.value)


def test_no_space_is_a_backend_error_an_operator_can_act_on(make_driver):
    drv, fake = make_driver(FakeZFS(ROOT, pool_size=GiB))
    with pytest.raises(exception.VolumeBackendAPIException) as info:
        drv.create_volume(volume_obj(size=2, extra_specs={"zfs:sparse": "false"}))
    assert "out of space" in str(info.value) and "add disks" in str(info.value)
    assert leftovers(fake) == []


def test_transport_error_is_a_backend_error(drv):
    drv, fake = drv
    fake.fail("create_volume", errors.TransportError("agent session closed"))
    with pytest.raises(exception.VolumeBackendAPIException) as info:
        drv.create_volume(volume_obj())
    assert "storage node unreachable" in str(info.value)
    assert "agent session closed" in str(info.value)


def test_other_zfs_errors_are_backend_errors(drv):
    drv, fake = drv
    vol = volume_obj()
    drv.create_volume(vol)
    snap = snapshot_obj(vol)
    drv.create_snapshot(snap)
    drv.create_snapshot(snapshot_obj(vol))
    with pytest.raises(exception.VolumeBackendAPIException) as info:
        drv.revert_to_snapshot(CTX, vol, snap)  # not the latest
    assert snap.id in str(info.value)


# -- snapshots, clones, revert through the driver --------------------------------------------

def test_lifecycle_snapshot_clone_delete_all(drv):
    drv, fake = drv
    vol = volume_obj()
    drv.create_volume(vol)
    write(fake, zvol(vol), b"origin data")
    snap = snapshot_obj(vol)
    drv.create_snapshot(snap)
    write(fake, zvol(vol), b"later")
    clone = volume_obj(size=2)
    drv.create_volume_from_snapshot(clone, snap)
    assert drv.zfs.get_volume(zvol(clone)).volsize == 2 * GiB

    drv.delete_snapshot(snap)  # has a clone: succeeds for Cinder, hidden on the pool
    hidden = drv.zfs.get_snapshot(zsnap(snap))
    assert hidden.defer_destroy and hidden.user_props[PROP_HIDDEN] == "true"
    drv.delete_volume(vol)
    assert not fake.call("exists", name=zvol(vol))
    assert read(fake, zvol(clone)) == b"origin data"

    drv.delete_volume(clone)
    drv.ops.reclaim()  # at the latest on the periodic pass
    assert leftovers(fake) == []


def test_clone_of_a_volume_and_two_in_a_row(drv):
    drv, fake = drv
    src = volume_obj()
    drv.create_volume(src)
    write(fake, zvol(src), b"one")
    first = volume_obj()
    drv.create_cloned_volume(first, src)
    write(fake, zvol(src), b"two")
    second = volume_obj()
    drv.create_cloned_volume(second, src)
    assert (read(fake, zvol(first)), read(fake, zvol(second))) == (b"one", b"two")
    drv.delete_volume(first)
    drv.delete_volume(second)
    assert fake.tree(zvol(src)) == [zvol(src)]


def test_revert_to_snapshot(drv):
    drv, fake = drv
    vol = volume_obj()
    drv.create_volume(vol)
    write(fake, zvol(vol), b"good")
    snap = snapshot_obj(vol)
    drv.create_snapshot(snap)
    write(fake, zvol(vol), b"bad")
    clone = volume_obj()
    drv.create_cloned_volume(clone, vol)  # a newer temp snapshot with a dependent
    drv.revert_to_snapshot(CTX, vol, snap)
    assert read(fake, zvol(vol)) == b"good" and read(fake, zvol(clone)) == b"bad"


def test_snapshots_requested_together_are_one_call(make_driver, tmp_path):
    drv, fake = make_driver(zfs_snapshot_batch_window_ms=300,
                            zfs_catalog_connection=f"sqlite:///{tmp_path}/catalog.sqlite")
    vols = [volume_obj(), volume_obj(), volume_obj()]
    for vol in vols:
        drv.create_volume(vol)
    snaps = [snapshot_obj(v) for v in vols]
    threads = [threading.Thread(target=drv.create_snapshot, args=(s,)) for s in snaps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (call,) = fake.called("snapshot")
    assert sorted(call["names"]) == sorted(zsnap(s) for s in snaps)
    txgs = {drv.zfs.get_snapshot(zsnap(s)).createtxg for s in snaps}
    assert len(txgs) == 1


# -- export ----------------------------------------------------------------------------------

def test_create_export_waits_for_the_device(drv):
    drv, fake = drv
    vol = volume_obj()
    drv.create_volume(vol)
    with mock.patch.object(drv.target_driver, "create_export",
                           return_value={"location": "10.0.0.1:3260,1 iqn.x 0",
                                         "auth": "CHAP user secret"}) as create_export:
        model = drv.create_export(CTX, vol, {})
    create_export.assert_called_once_with(CTX, vol, f"/dev/zvol/{zvol(vol)}")
    assert model == {"provider_location": "10.0.0.1:3260,1 iqn.x 0",
                     "provider_auth": "CHAP user secret"}
    with pytest.raises(exception.VolumeBackendAPIException):
        drv.create_export(CTX, volume_obj(), {})  # no zvol: its device never appears


def test_terminate_connection_single_attachment(drv):
    drv, _ = drv
    vol = volume_obj()
    vol.volume_attachment.objects.append(attachment(vol, "h1"))
    with mock.patch.object(drv.target_driver, "terminate_connection") as terminate:
        assert drv.terminate_connection(vol, connector("h1")) is False
    terminate.assert_called_once()


def test_terminate_connection_multiattach_same_host_keeps_the_acl(drv):
    drv, _ = drv
    vol = volume_obj(multiattach=True)
    vol.volume_attachment.objects.extend([attachment(vol, "h1"), attachment(vol, "h1")])
    with mock.patch.object(drv.target_driver, "terminate_connection") as terminate:
        assert drv.terminate_connection(vol, connector("h1")) is True
    terminate.assert_not_called()


def test_terminate_connection_multiattach_other_hosts_keep_the_export(drv):
    drv, _ = drv
    vol = volume_obj(multiattach=True)
    vol.volume_attachment.objects.extend([attachment(vol, "h1"), attachment(vol, "h2")])
    with mock.patch.object(drv.target_driver, "terminate_connection") as terminate:
        assert drv.terminate_connection(vol, connector("h1")) is True  # export stays
    terminate.assert_called_once()


def test_terminate_connection_without_connector_data(drv):
    drv, _ = drv
    vol = volume_obj(multiattach=True)
    bare = objects.VolumeAttachment(context=CTX, id=str(uuid.uuid4()), volume_id=vol.id,
                                    connector=None)
    vol.volume_attachment.objects.extend([bare, attachment(vol, "h1")])
    with mock.patch.object(drv.target_driver, "terminate_connection") as terminate:
        assert drv.terminate_connection(vol, connector("h1")) is True
    terminate.assert_called_once()


# -- stats -----------------------------------------------------------------------------------

def test_stats(drv):
    drv, fake = drv
    thick = volume_obj(size=2, extra_specs={"zfs:sparse": "false"})
    drv.create_volume(thick)
    drv.create_volume(volume_obj(size=3))
    drv.create_snapshot(snapshot_obj(thick))
    stats = drv.get_volume_stats(refresh=True)
    for key in ("total_capacity_gb", "free_capacity_gb", "catalog_state",
                "thin_provisioning_support", "thick_provisioning_support", "multiattach",
                "online_extend_support", "location_info", "driver_version",
                "vendor_name", "storage_protocol", "reserved_percentage",
                "max_over_subscription_ratio", "volume_backend_name"):
        assert key in stats, key
    assert stats["total_capacity_gb"] == 1024
    assert stats["free_capacity_gb"] == 1022
    # Provisioned space is Cinder's allocated_capacity_gb: counting it would list every zvol.
    assert "provisioned_capacity_gb" not in stats and "total_volumes" not in stats
    assert stats["total_snapshots"] == 1  # the catalog, written through
    assert stats["catalog_state"] == "ok"
    assert stats["thin_provisioning_support"] and stats["thick_provisioning_support"]
    assert stats["multiattach"] and stats["online_extend_support"]
    assert stats["storage_protocol"] == "iSCSI"
    assert stats["volume_backend_name"] == "zfs-unit"
    assert stats["driver_version"] == ZFSOCFS2Driver.VERSION
    assert stats["location_info"].startswith("ZFSOCFS2Driver:")
    assert stats["location_info"].endswith(f":{ROOT}")


def test_stats_when_the_node_is_unreachable_say_down_and_recover(drv):
    drv, fake = drv
    assert drv.get_volume_stats(refresh=True)["backend_state"] == "up"
    fake.fail("pool_capacity", errors.TransportError("timed out"))
    stats = drv.get_volume_stats(refresh=True)  # never raises: the service stays up
    assert stats["backend_state"] == "down" and "timed out" in stats["backend_state_reason"]
    assert stats["free_capacity_gb"] == 0 and stats["total_capacity_gb"] == 0
    assert stats["volume_backend_name"] == "zfs-unit" and stats["location_info"]
    stats = drv.get_volume_stats(refresh=True)  # the node answers again
    assert stats["backend_state"] == "up" and stats["free_capacity_gb"] == 1024


def test_a_node_unreachable_at_start_up_leaves_the_backend_down_until_it_answers(make_driver):
    """cinder-volume starting while the node reboots: no failed init (Cinder would give up
    on the driver for good); down until the node answers, then the start-up steps run."""
    fake = FakeZFS(ROOT)
    fake.fail("version", errors.TransportError("connection refused"), times=2)
    drv, fake = make_driver(fake=fake)                 # check_for_setup_error did not raise
    stats = drv.get_volume_stats(refresh=True)
    assert stats["backend_state"] == "down" and "refused" in stats["backend_state_reason"]
    assert stats["free_capacity_gb"] == 0
    assert not fake.called("pool_capacity")            # nothing past the failed check
    stats = drv.get_volume_stats(refresh=True)         # the node is back
    assert stats["backend_state"] == "up" and stats["free_capacity_gb"] > 0
    assert len(fake.called("version")) == 3 and fake.called("pool_capacity")
    drv.create_volume(volume_obj())
    drv.get_volume_stats(refresh=True)                 # the start-up steps ran once
    assert len(fake.called("version")) == 3


def test_a_faulted_pool_at_start_up_still_fails_the_backend(make_driver):
    fake = FakeZFS(ROOT)
    fake.health = "FAULTED"
    with pytest.raises(exception.VolumeBackendAPIException, match="FAULTED"):
        make_driver(fake=fake)


def test_a_failing_periodic_reclaim_never_fails_the_stats(make_driver):
    drv, fake = make_driver(zfs_catalog_reconcile_interval=1)
    drv.ops.index.last_reconcile = 0  # the interval has passed
    fake.fail("list", errors.ZFSError("I/O error"),
              when=lambda a: a["name"] == drv.ops.names.trash_root)
    stats = drv.get_volume_stats(refresh=True)
    assert stats["backend_state"] == "up"
    assert fake.called("list")  # the reclaim did run (and failed)


def test_total_snapshots_counts_only_cinder_snapshots(drv):
    drv, fake = drv
    vol = volume_obj()
    drv.create_volume(vol)
    kept, hidden = snapshot_obj(vol), snapshot_obj(vol)
    drv.create_snapshot(kept)
    drv.create_snapshot(hidden)
    drv.create_volume_from_snapshot(volume_obj(), hidden)
    drv.delete_snapshot(hidden)                  # hidden: Cinder no longer has it
    drv.create_cloned_volume(volume_obj(), vol)  # a clone temp
    fake.call("snapshot", names=[f"{zvol(vol)}@admin"])
    drv.ops.index.reconcile("test")              # the admin's snapshot is in the catalog too
    assert drv.get_volume_stats(refresh=True)["total_snapshots"] == 1


def test_provisioning_type_is_honoured_and_the_scheduler_view_adds_up(drv):
    drv, fake = drv
    thick = volume_obj(size=2, extra_specs={"provisioning:type": "thick"})
    thin = volume_obj(size=3, extra_specs={"provisioning:type": "thin"})
    drv.create_volume(thick)
    drv.create_volume(thin)
    assert drv.zfs.get_properties(zvol(thick), ["refreservation"]) == \
        {"refreservation": str(2 * GiB)}
    assert drv.zfs.get_properties(zvol(thin), ["refreservation"]) == {"refreservation": "0"}
    stats = drv.get_volume_stats(refresh=True)
    # provisioned space is Cinder's own allocated_capacity_gb (no listing in the stats poll)
    assert "provisioned_capacity_gb" not in stats
    assert stats["free_capacity_gb"] == stats["total_capacity_gb"] - 2  # only thick reserves
    with pytest.raises(exception.InvalidInput):
        drv.create_volume(volume_obj(extra_specs={"provisioning:type": "thick",
                                                  "zfs:sparse": "true"}))


# -- images: streamed through the agent ----------------------------------------------------

@pytest.fixture
def scratch(tmp_path):
    cfg.CONF.set_override("image_conversion_dir", str(tmp_path / "conversion"))
    yield tmp_path / "conversion"
    cfg.CONF.clear_override("image_conversion_dir")


def test_image_to_volume_converts_here_and_streams_to_the_zvol(drv, scratch, monkeypatch):
    from cinder.image import image_utils

    drv, fake = drv
    vol = volume_obj(size=1)
    drv.create_volume(vol)
    image = b"\x7fBOOT" + bytes(range(256)) * 64
    seen = {}

    def fetch_to_raw(context, image_service, image_id, dest, blocksize, **kwargs):
        seen.update(kwargs, image_id=image_id)
        with open(dest, "wb") as f:
            f.write(image)

    monkeypatch.setattr(image_utils, "fetch_to_raw", fetch_to_raw)
    drv.copy_image_to_volume(CTX, vol, None, "img-1")
    assert fake.read(zvol(vol)) == image
    assert seen == {"image_id": "img-1", "size": 1, "run_as_root": False,
                    "disable_sparse": False}
    assert list(scratch.iterdir()) == []   # the scratch copy is gone


def test_image_larger_than_the_volume_is_refused_and_nothing_is_written(drv, scratch,
                                                                        monkeypatch):
    from cinder.image import image_utils

    drv, fake = drv
    vol = volume_obj(size=1)
    drv.create_volume(vol)

    def fetch_to_raw(context, image_service, image_id, dest, blocksize, **kwargs):
        with open(dest, "wb") as f:
            f.truncate(GiB + 512)

    monkeypatch.setattr(image_utils, "fetch_to_raw", fetch_to_raw)
    with pytest.raises(exception.InvalidInput, match="do not fit"):
        drv.copy_image_to_volume(CTX, vol, None, "img-big")
    assert fake.read(zvol(vol)) == b"" and list(scratch.iterdir()) == []


def test_volume_to_image_reads_the_zvol_into_a_sparse_file(drv, scratch, monkeypatch):
    from cinder.volume import volume_utils

    drv, fake = drv
    vol = volume_obj(size=1)
    drv.create_volume(vol)
    fake.write(zvol(vol), b"data" * 1024)
    uploaded = {}

    def upload_volume(context, image_service, image_meta, path, volume, **kwargs):
        import os

        st = os.stat(path)
        with open(path, "rb") as f:
            head = f.read(8192)
        uploaded.update(size=st.st_size, allocated=st.st_blocks * 512, head=head,
                        image=image_meta["id"], **kwargs)

    monkeypatch.setattr(volume_utils, "upload_volume", upload_volume)
    drv.copy_volume_to_image(CTX, vol, None, {"id": "img-2", "disk_format": "raw"})
    assert uploaded["size"] == GiB and uploaded["allocated"] < 1024 * 1024   # holes
    assert uploaded["head"] == (b"data" * 1024).ljust(8192, b"\0")
    assert uploaded["image"] == "img-2" and uploaded["run_as_root"] is False
    assert list(scratch.iterdir()) == []


def test_image_to_a_missing_volume_names_it(drv, scratch, monkeypatch):
    from cinder.image import image_utils

    drv, _ = drv
    monkeypatch.setattr(image_utils, "fetch_to_raw",
                        lambda c, s, i, dest, b, **k: open(dest, "wb").write(b"x"))
    vol = volume_obj()
    with pytest.raises(exception.VolumeBackendAPIException, match=vol.id):
        drv.copy_image_to_volume(CTX, vol, None, "img-3")


# -- issue 16: OCFS2 identity on every path, manage, migration, retype ----------------------

OCFS2_TYPE = {"ocfs2:format": "true", "ocfs2:slots": "2", "ocfs2:cluster_stack": "o2cb"}


@pytest.fixture
def ocfs2_node(drv):
    """The driver with the node's OCFS2 calls faked (the fake node has no mkfs.ocfs2)."""
    drv, fake = drv
    made = []

    def fmt(dataset, spec, volume_id):
        return {"uuid": f"uuid-{len(made)}", "label": "l", "slots": spec.slots,
                "cluster_stack": spec.cluster_stack}

    def new_identity(dataset, label, stack):
        made.append(dataset)
        return {"uuid": f"uuid-{len(made)}", "label": label, "slots": 2, "cluster_stack": stack}

    drv.ocfs2 = mock.Mock(format=mock.Mock(side_effect=fmt),
                          new_identity=mock.Mock(side_effect=new_identity))
    return drv, fake, made


def volume_with_snapshot(drv, **kw):
    vol = volume_obj(**kw)
    drv.create_volume(vol)
    snap = snapshot_obj(vol)
    drv.create_snapshot(snap)
    return vol, snap


def test_a_clone_of_a_reverted_ocfs2_volume_gets_a_new_uuid(ocfs2_node):
    drv, fake, reidentified = ocfs2_node
    vol, snap = volume_with_snapshot(drv, extra_specs=OCFS2_TYPE)
    first = volume_obj()
    drv.create_cloned_volume(first, vol)      # a newer temp snapshot with a dependent
    drv.revert_to_snapshot(CTX, vol, snap)    # by clone-and-swap
    assert fake.called("promote")
    later = volume_obj()
    update = drv.create_cloned_volume(later, vol)
    assert reidentified == [zvol(first), zvol(later)]
    assert update["metadata"]["ocfs2_cluster_stack"] == "o2cb"


def test_bad_ocfs2_specs_are_refused_before_a_clone_exists(ocfs2_node):
    drv, fake, _ = ocfs2_node
    vol, snap = volume_with_snapshot(drv, extra_specs=OCFS2_TYPE)
    before = fake.tree()
    bad = {**OCFS2_TYPE, "ocfs2:slots": "0"}
    with pytest.raises(exception.InvalidInput):
        drv.create_volume_from_snapshot(volume_obj(extra_specs=bad), snap)
    with pytest.raises(exception.InvalidInput):
        drv.create_cloned_volume(volume_obj(extra_specs=bad), vol)
    assert fake.tree() == before and not fake.called("clone")


def test_retype_that_changes_ocfs2_specs_is_not_done_in_place(drv):
    drv, fake = drv
    vol = volume_obj(extra_specs={"zfs:compression": "lz4"})
    vol.host = "h@zfs-unit#zfs-unit"
    drv.create_volume(vol)
    host = {"host": "h@zfs-unit#zfs-unit"}
    calls = len(fake.calls)
    assert drv.retype(CTX, vol, {"extra_specs": {"ocfs2:format": "true"}}, {}, host) == \
        (False, None)
    assert not [op for op, _ in fake.calls[calls:] if op == "set"]
    with pytest.raises(exception.InvalidInput):
        drv.retype(CTX, vol, {"extra_specs": {"ocfs2:slots": "x", "ocfs2:format": "true"}},
                   {}, host)
    assert drv.retype(CTX, vol, {"extra_specs": {"zfs:compression": "zstd",
                                                 "ocfs2:format": "false"}}, {}, host) == \
        (True, None)
    assert drv.zfs.get_properties(zvol(vol), ["compression"]) == {"compression": "zstd"}


def test_manage_refusals_are_invalid_references_and_change_nothing(drv):
    drv, fake = drv
    alice, snap = volume_with_snapshot(drv, project="palice")
    drv.create_volume_from_snapshot(volume_obj(project="palice"), snap)
    drv.delete_snapshot(snap)                              # hidden, deferred
    bob = volume_obj(project="pbob")
    before = fake.tree()
    for ref in ({"source-name": f"volume-{alice.id}"}, {"source-name": "no-such-zvol"},
                {"source-name": "a/../b"}, {"wrong-key": "x"}):
        with pytest.raises(exception.ManageExistingInvalidReference):
            drv.manage_existing_get_size(bob, ref)
        with pytest.raises(exception.ManageExistingInvalidReference):
            drv.manage_existing(bob, ref)
    with pytest.raises(exception.ManageExistingInvalidReference) as info:
        drv.manage_existing_snapshot(snapshot_obj(alice),
                                     {"source-name": zsnap(snap).partition("@")[2]})
    assert "hidden" in str(info.value)
    assert fake.tree() == before
    listing = drv.get_manageable_volumes([bob], None, 100, 0, ["size"], ["asc"])
    entry = next(e for e in listing if alice.id in e["reference"]["source-name"])
    assert entry["safe_to_manage"] is False and "palice" in entry["reason_not_safe"]


def test_a_snapshot_unmanaged_then_managed_again_like_tempest_does(drv):
    """Tempest: unmanage a snapshot, then manage it back by its old name. Before unmanage it
    is refused (a live Cinder snapshot keeps the same name) and listed as not safe."""
    drv, fake = drv
    vol, snap = volume_with_snapshot(drv)
    short = zsnap(snap).partition("@")[2]
    other = snapshot_obj(vol)
    with pytest.raises(exception.ManageExistingInvalidReference) as info:
        drv.manage_existing_snapshot(other, {"source-name": short})
    assert "live Cinder snapshot" in str(info.value)
    drv.ops.index.flush()  # the listing comes from the catalog
    (entry,) = drv.get_manageable_snapshots([], None, 100, 0, ["size"], ["asc"])
    assert entry["safe_to_manage"] is False and "unmanage" in entry["reason_not_safe"]
    drv.unmanage_snapshot(snap)
    assert zsnap(snap) in fake.tree()
    drv.ops.index.flush()
    (entry,) = drv.get_manageable_snapshots([], None, 100, 0, ["size"], ["asc"])
    assert entry["safe_to_manage"] is True
    drv.manage_existing_snapshot(other, {"source-name": short})
    assert zsnap(other) in fake.tree() and zsnap(snap) not in fake.tree()
    drv.delete_snapshot(other)
    assert zsnap(other) not in fake.tree()


def test_update_migrated_volume_renames_only_an_available_volume(drv):
    drv, fake = drv
    for status, renamed in (("in-use", False), ("available", True)):
        original = volume_obj()
        migrated = volume_obj(provider_location="127.0.0.1:3260,1 iqn.x:volume-new 0")
        drv.create_volume(migrated)
        update = drv.update_migrated_volume(CTX, original, migrated, status)
        if renamed:
            assert update == {"_name_id": None, "provider_location": None}
            assert drv.zfs.exists(zvol(original)) and not drv.zfs.exists(zvol(migrated))
            assert drv.zfs.get_volume(zvol(original)).user_props["org.openstack.cinder:"
                                                                  "volume_id"] == original.id
        else:  # the export was built from the current name: keep both
            assert update == {"_name_id": migrated.id,
                              "provider_location": migrated.provider_location}
            assert drv.zfs.exists(zvol(migrated)) and not drv.zfs.exists(zvol(original))


def test_storage_assisted_migration_names_the_destination_backend(make_driver):
    fake = FakeZFS("tank")
    src, _ = make_driver(fake, zfs_root_dataset="tank/a")
    dest, _ = make_driver(fake, zfs_root_dataset="tank/b", volume_backend_name="zfs-b")
    vol = volume_obj(status="available", extra_specs={"provisioning:type": "thick"})
    src.create_volume(vol)
    host = {"host": "h@zfs-b#zfs-b", "capabilities": dest.get_volume_stats(refresh=True)}
    assert src.migrate_volume(CTX, vol, host) == (True, None)
    moved = dest.ops.names.volume(vol.project_id, vol.id)
    props = dest.zfs.get_properties(moved, ["org.openstack.cinder:backend", "refreservation"])
    assert props == {"org.openstack.cinder:backend": "zfs-b", "refreservation": str(GiB)}
    assert not src.zfs.exists(src.ops.names.volume(vol.project_id, vol.id))

