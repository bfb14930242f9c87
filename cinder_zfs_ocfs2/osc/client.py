"""A small client of the catalog API over a keystoneauth session."""

from __future__ import annotations

from collections.abc import Iterator

from keystoneauth1 import adapter
from osc_lib import exceptions

# The service type the catalog API is registered under in Keystone's catalog.
SERVICE_TYPE = "zfs-catalog"


class CatalogClient:
    def __init__(self, session, *, interface: str | None = None,
                 region_name: str | None = None, endpoint_override: str | None = None):
        self._api = adapter.Adapter(session, service_type=SERVICE_TYPE, interface=interface,
                                    region_name=region_name,
                                    endpoint_override=endpoint_override)

    def _get(self, path: str, params: dict) -> dict:
        params = {k: v for k, v in params.items() if v is not None and v is not False}
        resp = self._api.get(path, params=params, raise_exc=False,
                             headers={"Accept": "application/json"})
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code >= 400:
            # Cinder-style faults: {"itemNotFound": {"code": 404, "message": "..."}}
            fault = next(iter(body.values()), {}) if isinstance(body, dict) else {}
            message = fault.get("message") if isinstance(fault, dict) else None
            raise exceptions.ClientException(resp.status_code,
                                              message or resp.reason or "request failed")
        return body

    def _pages(self, path: str, params: dict, limit: int | None) -> Iterator[dict]:
        """Rows of a paged listing, following next markers (at most ``limit`` rows)."""
        seen = 0
        while True:
            page_limit = None if limit is None else min(limit - seen, 1000)
            body = self._get(path, dict(params, limit=page_limit))
            for row in body["snapshots"]:
                yield row
                seen += 1
                if limit is not None and seen >= limit:
                    return
            if not body.get("next_marker"):
                return
            params = dict(params, marker=body["next_marker"])

    def history(self, volume_id: str, *, limit: int | None = None, marker: str | None = None,
                include_internal: bool = False) -> Iterator[dict]:
        return self._pages(f"/volumes/{volume_id}/snapshots",
                           {"marker": marker, "include_internal": include_internal and "true"},
                           limit)

    def snapshots(self, *, since: str | None = None, until: str | None = None,
                  project_id: str | None = None, all_projects: bool = False,
                  include_internal: bool = False, limit: int | None = None,
                  marker: str | None = None) -> Iterator[dict]:
        return self._pages("/snapshots", {
            "since": since, "until": until, "project_id": project_id,
            "all_projects": all_projects and "true",
            "include_internal": include_internal and "true", "marker": marker}, limit)

    def nearest(self, volume_id: str, at: str, *, include_internal: bool = False) -> dict:
        return self._get(f"/volumes/{volume_id}/snapshots/nearest",
                         {"at": at, "include_internal": include_internal and "true"})

    def nearest_set(self, at: str, *, volume_ids: list[str] | None = None,
                    project_id: str | None = None) -> dict:
        return self._get("/snapshots/nearest", {"at": at, "volume_id": volume_ids,
                                                "project_id": project_id})

    def usage(self, *, project_id: str | None = None, all_projects: bool = False) -> dict:
        return self._get("/usage", {"project_id": project_id,
                                    "all_projects": all_projects and "true"})
