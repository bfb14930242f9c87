"""The service's pipeline and configuration: auth_token in front, config from files."""

from __future__ import annotations

import webob

from cinder_zfs_ocfs2.api import app as api_app
from cinder_zfs_ocfs2.api import wsgi
from tests.unit.api import fixtures as f


def _config_file(tmp_path, catalog) -> str:
    path = tmp_path / "cinder-zfs-catalog-api.conf"
    path.write_text(
        "[catalog_api]\n"
        f"catalog_connection = {catalog.engine.url.render_as_string(hide_password=False)}\n"
        "marker_key = 0123456789abcdef0123\n"
        "max_limit = 5\n"
        "[keystone_authtoken]\n"
        "www_authenticate_uri = http://127.0.0.1:5000\n"
        "auth_url = http://127.0.0.1:5000\n")
    return str(path)


def test_config_comes_from_the_files_in_the_environment(tmp_path, catalog, monkeypatch):
    monkeypatch.setenv(wsgi.CONFIG_FILES_ENV, _config_file(tmp_path, catalog))
    conf = wsgi.load_config()
    inner = wsgi.build_catalog_app(conf)
    assert isinstance(inner, api_app.CatalogAPI) and inner.max_limit == 5
    status, body = f.Client(inner, f.ALICE).get(f"/v1/volumes/{f.VA1}/snapshots")
    assert status == 200 and len(body["snapshots"]) == 3


def test_auth_token_guards_the_application(tmp_path, catalog):
    pipeline = wsgi.build_app(wsgi.load_config(config_files=[_config_file(tmp_path,
                                                                          catalog)]))
    # No token: auth_token answers 401 itself; the application is never reached.
    resp = webob.Request.blank(f"/v1/volumes/{f.VA1}/snapshots").get_response(pipeline)
    assert resp.status_int == 401
    assert "127.0.0.1:5000" in resp.headers["WWW-Authenticate"]
    # Headers a client makes up to look authenticated are stripped, not trusted.
    forged = webob.Request.blank(f"/v1/volumes/{f.VA1}/snapshots", headers=f.ALICE.headers())
    assert forged.get_response(pipeline).status_int == 401
    # The request-id middleware is in front.
    assert resp.headers["x-openstack-request-id"].startswith("req-")
    # Version discovery (and the stack's health check) needs no token.
    for path in ("/", "/v1"):
        assert webob.Request.blank(path).get_response(pipeline).status_int == 200


def test_the_gunicorn_entry_reads_no_config_at_import():
    assert callable(wsgi.application)
