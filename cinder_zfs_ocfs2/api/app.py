"""The catalog API: a small WSGI application over the snapshot catalog, for tenants.

It sits behind keystonemiddleware's auth_token (see wsgi.build_app), which validates the token
and sets X-Identity-Status, X-Project-Id, X-Roles, ...; this application trusts only those
headers (auth_token strips any a client sends). Every answer is JSON; errors in Cinder's shape
({"itemNotFound": {"code": 404, "message": ...}}). 404 for anything the caller may not see
(another project's volume looks like no volume), 400 for bad times, limits and markers.

Routes (v1):
  GET /v1/volumes/{volume_id}/snapshots            a volume's history, newest first, paged
  GET /v1/volumes/{volume_id}/snapshots/nearest    at=T: the newest snapshot at or before T
  GET /v1/snapshots                                the scope's snapshots, since/until, paged
  GET /v1/snapshots/nearest                        at=T, for every volume of the project (or
                                                   volume_id=...), grouped by txg
  GET /v1/usage                                    counts and bytes per project
"""

from __future__ import annotations

import datetime
import json
import math
import secrets
import urllib.parse
from collections.abc import Callable

import routes
import webob
import webob.dec
import webob.exc
from oslo_context import context as oslo_context
from oslo_log import log as logging
from oslo_policy import policy as oslo_policy
from oslo_utils import strutils, uuidutils

from cinder_zfs_ocfs2.api import markers, policies, queries
from cinder_zfs_ocfs2.catalog import Catalog, SnapshotEntry, Usage

LOG = logging.getLogger(__name__)

# Cinder's fault names (cinder.api.openstack.wsgi.Fault).
_FAULT_NAMES = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
                405: "badMethod", 409: "conflictingRequest", 413: "overLimit",
                415: "badMediaType", 501: "notImplemented", 503: "serviceUnavailable"}

VERSION = {"id": "v1.0", "status": "CURRENT", "updated": "2026-12-01T00:00:00Z"}


class Fault(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def fault_response(code: int, message: str) -> webob.Response:
    name = _FAULT_NAMES.get(code, "computeFault")
    return json_response({name: {"code": code, "message": message}}, status=code)


def json_response(body: object, status: int = 200) -> webob.Response:
    return webob.Response(status=status, content_type="application/json", charset="utf-8",
                          body=json.dumps(body, sort_keys=True).encode())


def parse_time(name: str, value: str | None) -> float | None:
    """ISO 8601 (naive = UTC, 'Z' accepted) or epoch seconds; 400 otherwise."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            when = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise Fault(400, f"invalid {name}: {value!r} (ISO 8601 like "
                             f"2026-01-31T12:00:00Z, or epoch seconds)") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        seconds = when.timestamp()
    if not math.isfinite(seconds) or not 0 <= seconds < 2 ** 41:
        raise Fault(400, f"invalid {name}: {value!r} is out of range")
    return seconds


def iso(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def snapshot_view(row: SnapshotEntry, details: bool) -> dict:
    view = {"id": row.snapshot_id, "volume_id": row.volume_id, "project_id": row.project_id,
            "group_snapshot_id": row.group_snapshot_id, "created_at": iso(row.creation),
            "createtxg": row.createtxg, "used": row.used, "referenced": row.referenced,
            "written": row.written, "state": row.state, "kind": row.kind}
    if details:
        # Pool layout and guids are the operator's business.
        view.update(zfs_name=row.zfs_name, guid=None if row.guid is None else str(row.guid),
                    backend=row.backend, defer_destroy=bool(row.defer_destroy))
    return view


def usage_view(usage: Usage) -> dict:
    return usage.to_dict()


class Request(webob.Request):
    """A request with the caller's oslo.context (from auth_token's headers) attached."""

    @property
    def context(self) -> oslo_context.RequestContext:
        return self.environ["cinder_zfs_ocfs2.context"]


class CatalogAPI:
    """The WSGI application. One instance serves every thread of a process."""

    def __init__(self, catalog: Catalog, enforcer: oslo_policy.Enforcer, *,
                 default_limit: int = 100, max_limit: int = 1000,
                 marker_key: bytes | None = None):
        self.catalog = catalog
        self.enforcer = enforcer
        self.default_limit = default_limit
        self.max_limit = max_limit
        self.markers = markers.MarkerCodec(marker_key or secrets.token_bytes(32))
        self.mapper = routes.Mapper()
        for path, action in (
                ("/", self.versions),
                ("/v1", self.version),
                ("/v1/volumes/{volume_id}/snapshots", self.volume_history),
                ("/v1/volumes/{volume_id}/snapshots/nearest", self.volume_nearest),
                ("/v1/snapshots", self.list_snapshots),
                ("/v1/snapshots/nearest", self.nearest_set),
                ("/v1/usage", self.usage)):
            self.mapper.connect(path, action=action)

    # -- WSGI plumbing -----------------------------------------------------------------------

    @webob.dec.wsgify(RequestClass=Request)
    def __call__(self, req: Request) -> webob.Response:
        match = self.mapper.match(req.path_info.rstrip("/") or "/")
        if match is None:
            return fault_response(404, f"resource {req.path_info} not found")
        if req.method not in ("GET", "HEAD"):
            return fault_response(405, f"{req.method} is not allowed on {req.path_info}")
        action: Callable = match.pop("action")
        try:
            if action not in (self.versions, self.version):
                self._authenticate(req)
            return json_response(action(req, **match))
        except Fault as exc:
            return fault_response(exc.code, exc.message)
        except Exception:
            LOG.exception("Catalog API request %s %s failed", req.method, req.path_qs)
            return fault_response(500, "the catalog API could not answer; see its log")

    @staticmethod
    def _authenticate(req: Request) -> None:
        # auth_token (delay_auth_decision off) refuses bad tokens itself; this catches a
        # pipeline built without it, which must never serve anyone.
        if req.headers.get("X-Identity-Status") != "Confirmed":
            raise Fault(401, "authentication required")
        req.environ["cinder_zfs_ocfs2.context"] = oslo_context.RequestContext.from_environ(
            req.environ)

    def _allowed(self, req: Request, rule: str, project_id: str | None) -> bool:
        return self.enforcer.authorize(rule, {"project_id": project_id}, req.context,
                                       do_raise=False)

    def _authorize(self, req: Request, rule: str, project_id: str | None) -> None:
        if not self._allowed(req, rule, project_id):
            raise Fault(403, f"policy does not allow {rule}")

    # -- parameters ----------------------------------------------------------------------------

    def _limit(self, req: Request) -> int:
        value = req.GET.get("limit")
        if value is None:
            return self.default_limit
        try:
            limit = int(value)
        except ValueError:
            raise Fault(400, f"invalid limit: {value!r}") from None
        if not 1 <= limit <= self.max_limit:
            raise Fault(400, f"limit must be between 1 and {self.max_limit}")
        return limit

    @staticmethod
    def _flag(req: Request, name: str) -> bool:
        value = req.GET.get(name, "false")
        try:
            return strutils.bool_from_string(value, strict=True)
        except ValueError:
            raise Fault(400, f"invalid {name}: {value!r} (true or false)") from None

    def _internal(self, req: Request, project_id: str | None) -> bool:
        if not self._flag(req, "include_internal"):
            return False
        self._authorize(req, policies.INTERNAL, project_id)
        return True

    def _list_scope(self, req: Request, rule: str) -> queries.Scope:
        """The scope of a listing: the caller's project unless asked for more and allowed.

        The action's rule is checked against the caller's own project; reading another
        project is the all_projects rule. project_id=<another project> without it answers
        404, as for a volume of that project.
        """
        own = req.context.project_id
        wanted = req.GET.get("project_id")
        cross = self._flag(req, "all_projects")
        if cross and wanted:
            raise Fault(400, "give all_projects or project_id, not both")
        self._authorize(req, rule, own)
        if cross:
            self._authorize(req, policies.ALL_PROJECTS, own)
            return queries.Scope(None, self._internal(req, own))
        project = wanted or own
        if not project:
            raise Fault(400, "the token has no project: give project_id or all_projects=true")
        if project != own and not self._allowed(req, policies.ALL_PROJECTS, own):
            raise Fault(404, f"project {project} not found")
        return queries.Scope(project, self._internal(req, own))

    def _volume_scope(self, req: Request, rule: str, volume_id: str) -> queries.Scope:
        """Scope for one volume: any project for cross-project readers, else the caller's."""
        if not uuidutils.is_uuid_like(volume_id):
            raise Fault(404, f"volume {volume_id} not found")
        own = req.context.project_id
        self._authorize(req, rule, own)
        if self._allowed(req, policies.ALL_PROJECTS, own):
            project = None
        elif own:
            project = own
        else:
            raise Fault(404, f"volume {volume_id} not found")
        scope = queries.Scope(project, self._internal(req, own))
        if not queries.volume_visible(self.catalog, volume_id, scope):
            raise Fault(404, f"volume {volume_id} not found")
        return scope

    def _position(self, req: Request, query: str) -> queries.Position | None:
        marker = req.GET.get("marker")
        if not marker:
            return None
        try:
            return self.markers.decode(query, marker)
        except markers.InvalidMarker as exc:
            raise Fault(400, str(exc)) from None

    def _page_body(self, req: Request, page: queries.Page, query: str) -> dict:
        details = self._allowed(req, policies.BACKEND_DETAILS, req.context.project_id)
        body: dict = {"snapshots": [snapshot_view(r, details) for r in page.rows],
                      "next_marker": None, "snapshots_links": []}
        if page.last is not None:
            marker = self.markers.encode(query, page.last)
            params = [(k, v) for k, v in req.GET.items() if k != "marker"]
            params.append(("marker", marker))
            next_url = req.path_url + "?" + urllib.parse.urlencode(params)
            body["next_marker"] = marker
            body["snapshots_links"] = [{"rel": "next", "href": next_url}]
        return body

    # -- actions ---------------------------------------------------------------------------------

    def versions(self, req: Request) -> dict:
        return {"versions": [dict(VERSION, links=[{"rel": "self",
                                                   "href": req.host_url + "/v1"}])]}

    def version(self, req: Request) -> dict:
        return {"version": dict(VERSION, links=[{"rel": "self", "href": req.path_url}])}

    def volume_history(self, req: Request, volume_id: str) -> dict:
        limit = self._limit(req)
        scope = self._volume_scope(req, policies.HISTORY, volume_id)
        query = f"history|{volume_id}|{scope.key}"
        page = queries.volume_history(self.catalog, volume_id, scope, limit=limit,
                                      after=self._position(req, query))
        return self._page_body(req, page, query)

    def volume_nearest(self, req: Request, volume_id: str) -> dict:
        at = self._at(req)
        scope = self._volume_scope(req, policies.NEAREST, volume_id)
        row = queries.nearest(self.catalog, volume_id, math.floor(at), scope)
        details = self._allowed(req, policies.BACKEND_DETAILS, req.context.project_id)
        return {"at": iso(math.floor(at)),
                "snapshot": snapshot_view(row, details) if row else None}

    def list_snapshots(self, req: Request) -> dict:
        limit = self._limit(req)
        since = parse_time("since", req.GET.get("since"))
        until = parse_time("until", req.GET.get("until"))
        if since is not None and until is not None and since >= until:
            raise Fault(400, "since must be before until")
        scope = self._list_scope(req, policies.LIST)
        # Catalog times are whole seconds: [since, until) in seconds keeps both ends exact.
        since_s = None if since is None else math.ceil(since)
        until_s = None if until is None else math.ceil(until)
        query = f"snapshots|{scope.key}|{since_s}|{until_s}"
        page = queries.snapshots(self.catalog, scope, since=since_s, until=until_s,
                                 limit=limit, after=self._position(req, query))
        return self._page_body(req, page, query)

    def nearest_set(self, req: Request) -> dict:
        at = math.floor(self._at(req))
        volume_ids = req.GET.getall("volume_id") or None
        if volume_ids is not None:
            volume_ids = list(dict.fromkeys(volume_ids))
            if len(volume_ids) > self.max_limit:
                raise Fault(400, f"at most {self.max_limit} volume_id values")
        scope = self._list_scope(req, policies.NEAREST)
        if volume_ids is not None:
            for volume_id in volume_ids:
                if not (uuidutils.is_uuid_like(volume_id)
                        and queries.volume_visible(self.catalog, volume_id, scope)):
                    raise Fault(404, f"volume {volume_id} not found")
        rows, truncated = queries.nearest_per_volume(
            self.catalog, at, scope, volume_ids=volume_ids, max_volumes=self.max_limit)
        details = self._allowed(req, policies.BACKEND_DETAILS, req.context.project_id)
        found = {r.volume_id for r in rows}
        sets = queries.consistent_sets(rows)
        return {
            "at": iso(at),
            "snapshots": [snapshot_view(r, details) for r in rows],
            "sets": [{"createtxg": s.createtxg, "created_at": iso(s.creation),
                      "volume_ids": sorted(r.volume_id for r in s.rows),
                      "snapshot_ids": [r.snapshot_id for r in s.rows]} for s in sets],
            # One set: every volume's snapshot was taken in one transaction group.
            "consistent": len(sets) == 1,
            "volumes_without_snapshot": sorted(set(volume_ids or ()) - found),
            "truncated": truncated,
        }

    def usage(self, req: Request) -> dict:
        scope = self._list_scope(req, policies.USAGE)
        rows = queries.usage(self.catalog, scope)
        total = Usage(None, sum(u.snapshots for u in rows), sum(u.used for u in rows),
                      sum(u.referenced for u in rows), sum(u.written for u in rows))
        return {"usage": [usage_view(u) for u in rows], "total": usage_view(total)}

    @staticmethod
    def _at(req: Request) -> float:
        at = parse_time("at", req.GET.get("at"))
        if at is None:
            raise Fault(400, "at is required (ISO 8601 or epoch seconds)")
        return at
