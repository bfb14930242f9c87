"""tools/stack (Glance in the local stack) and tools/tempest: the generated configuration.

Nothing runs: the functions that render glance-api.conf, cinder.conf and tempest.conf are
called with fake secrets and parsed back with oslo.config, with Glance's own option types
where a wrong syntax only shows at request time (enabled_import_methods wants [brackets]).
"""

import hashlib
import importlib.util
import sys
from pathlib import Path

import pytest
from oslo_config import cfg, types

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "stack"))

import stack  # noqa: E402

# tools/tempest/tempest.py, under a name that is not the tempest package's
_spec = importlib.util.spec_from_file_location("czo_tempest_run",
                                               REPO / "tools" / "tempest" / "tempest.py")
tempest_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tempest_run)

SECRETS = {k: f"pw-{k}" for k in stack.SECRET_KEYS}
MiB = 1024 * 1024


def parse(text: str, tmp_path: Path, opts: dict[str, list]) -> cfg.ConfigOpts:
    path = tmp_path / "x.conf"
    path.write_text(text)
    conf = cfg.ConfigOpts()
    for group, group_opts in opts.items():
        conf.register_opts(group_opts, group=None if group == "DEFAULT" else group)
    conf([], default_config_files=[str(path)])
    return conf


def test_glance_conf_parses_with_glances_option_types(tmp_path):
    conf = parse(stack.glance_conf(SECRETS), tmp_path, {
        "DEFAULT": [
            # as glance/common/config.py declares them
            cfg.ListOpt("enabled_import_methods", item_type=types.String(quotes=True),
                        bounds=True),
            cfg.DictOpt("enabled_backends"),
        ],
        "glance_store": [cfg.StrOpt("default_backend")],
        "file": [cfg.StrOpt("filesystem_store_datadir")],
        "os_glance_staging_store": [cfg.StrOpt("filesystem_store_datadir")],
        "os_glance_tasks_store": [cfg.StrOpt("filesystem_store_datadir")],
        "paste_deploy": [cfg.StrOpt("flavor"), cfg.StrOpt("config_file")],
        "keystone_authtoken": [cfg.StrOpt("username"), cfg.StrOpt("password"),
                               cfg.StrOpt("auth_url")],
        "database": [cfg.StrOpt("connection")],
    })
    assert conf.enabled_import_methods == ["glance-direct"]  # no web-download: no fetching
    assert conf.enabled_backends == {"file": "file"}
    assert conf.glance_store.default_backend == "file"
    for group, sub in (("file", "images"), ("os_glance_staging_store", "staging"),
                       ("os_glance_tasks_store", "tasks")):
        assert conf[group].filesystem_store_datadir == f"{stack.GLANCE_DIR / sub}/"
    assert conf.paste_deploy.flavor == "keystone"
    assert conf.keystone_authtoken.username == "glance"
    assert conf.keystone_authtoken.password == "pw-glance_service"
    assert conf.keystone_authtoken.auth_url == stack.keystone_url()
    assert conf.database.connection.startswith("mysql+pymysql://glance:pw-db_glance@127.0.0.1:")


def test_cinder_conf_points_at_the_stacks_glance_with_a_service_token(tmp_path):
    conf = parse(stack.cinder_conf(SECRETS, 2222), tmp_path, {
        "DEFAULT": [cfg.ListOpt("glance_api_servers")],
        "service_user": [cfg.BoolOpt("send_service_user_token"), cfg.StrOpt("username"),
                         cfg.StrOpt("auth_type"), cfg.StrOpt("password")],
    })
    assert conf.glance_api_servers == [f"http://127.0.0.1:{stack.PORTS['glance-api']}"]
    assert conf.service_user.send_service_user_token is True
    assert conf.service_user.auth_type == "password"
    assert (conf.service_user.username, conf.service_user.password) == (
        "cinder", "pw-cinder_service")


def test_every_server_is_on_loopback():
    assert stack.HOST == "127.0.0.1"
    assert stack.glance_url() == f"http://127.0.0.1:{stack.PORTS['glance-api']}"
    assert "glance-api" in stack.SERVICES and "glance-api" in stack.ENV_OF_PORT


def test_test_image_content():
    first, raw_sha = stack.test_image_data()
    assert len(first) == MiB
    assert 0 not in first
    assert first[:3] == b"\x01\x02\x03" and first[250:252] == b"\xfb\x01"
    assert raw_sha == hashlib.sha256(first + bytes(stack.TEST_IMAGE_SIZE - MiB)).hexdigest()


def test_secrets_get_adds_new_keys_and_keeps_old_ones(tmp_path, monkeypatch):
    path = tmp_path / "secrets.json"
    path.write_text('{"admin": "kept"}')
    monkeypatch.setattr(stack, "SECRETS", path)
    sec = stack.secrets_get()
    assert sec["admin"] == "kept"
    assert set(stack.SECRET_KEYS) <= set(sec)
    assert stack.secrets_get() == sec  # stable from then on


@pytest.mark.parametrize("with_image", [False, True])
def test_tempest_conf_glance_follows_the_test_image(tmp_path, with_image):
    image = {"id": "11111111-2222-3333-4444-555555555555"} if with_image else None
    conf = parse(tempest_run.tempest_conf(SECRETS, "3.71", image), tmp_path, {
        "service_available": [cfg.BoolOpt("glance")],
        "enforce_scope": [cfg.BoolOpt("glance")],
        "compute": [cfg.StrOpt("image_ref"), cfg.StrOpt("image_ref_alt")],
        "volume": [cfg.ListOpt("disk_format")],
        "volume-feature-enabled": [cfg.BoolOpt("enable_volume_image_dep_tests")],
    })
    assert conf.service_available.glance is with_image
    assert conf.enforce_scope.glance is with_image
    assert conf.compute.image_ref == (image["id"] if with_image else None)
    assert conf.compute.image_ref_alt == conf.compute.image_ref
    assert conf.volume.disk_format == ["raw", "qcow2"]
    assert conf["volume-feature-enabled"].enable_volume_image_dep_tests is True
