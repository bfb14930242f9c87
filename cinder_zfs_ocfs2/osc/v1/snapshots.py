"""`openstack volume snapshot history | nearest | usage`: the snapshot catalog's answers."""

from __future__ import annotations

from osc_lib import exceptions
from osc_lib.command import command
from oslo_utils import uuidutils

SNAPSHOT_COLUMNS = ("id", "volume_id", "created_at", "createtxg", "used", "referenced",
                    "written", "state")
SNAPSHOT_HEADERS = ("ID", "Volume ID", "Created At", "Createtxg", "Used", "Referenced",
                    "Written", "State")


def _volume_id(app, name_or_id: str) -> str:
    """A volume's id; names are resolved through the block-storage API (the caller's view)."""
    if uuidutils.is_uuid_like(name_or_id):
        return name_or_id
    volume = app.client_manager.sdk_connection.block_storage.find_volume(
        name_or_id, ignore_missing=False)
    return volume.id


def _server_volume_ids(app, name_or_id: str) -> list[str]:
    """The volumes attached to a server, from Cinder's attachment records."""
    server_id = name_or_id
    if not uuidutils.is_uuid_like(name_or_id):
        server_id = app.client_manager.sdk_connection.compute.find_server(
            name_or_id, ignore_missing=False).id
    volumes = app.client_manager.sdk_connection.block_storage.volumes(details=True)
    ids = sorted(v.id for v in volumes
                 if any(a.get("server_id") == server_id for a in v.attachments or ()))
    if not ids:
        raise exceptions.CommandError(f"no volumes are attached to server {name_or_id}")
    return ids


def _rows(snapshots, columns) -> list[tuple]:
    return [tuple(s.get(c) for c in columns) for s in snapshots]


class ShowHistory(command.Lister):
    """List a volume's snapshots from the snapshot catalog, newest first."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("volume", metavar="<volume>", help="Volume (name or ID)")
        parser.add_argument("--limit", type=int, metavar="<num-snapshots>",
                            help="Show at most this many snapshots")
        parser.add_argument("--marker", metavar="<marker>",
                            help="Start after this page marker (from a previous page)")
        parser.add_argument("--include-internal", action="store_true",
                            help="Also internal snapshots: clone temps, hidden (admin only)")
        return parser

    def take_action(self, parsed_args):
        api = self.app.client_manager.zfs_catalog
        volume_id = _volume_id(self.app, parsed_args.volume)
        columns, headers = SNAPSHOT_COLUMNS, SNAPSHOT_HEADERS
        if parsed_args.include_internal:
            columns, headers = columns + ("kind",), headers + ("Kind",)
        rows = api.history(volume_id, limit=parsed_args.limit, marker=parsed_args.marker,
                           include_internal=parsed_args.include_internal)
        return headers, _rows(rows, columns)


class FindNearest(command.Lister):
    """Find the newest snapshot at or before a time: of a volume, a server's volumes, or
    every volume of the project. Snapshots taken in one transaction group share a set."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("volume", metavar="<volume>", nargs="?",
                            help="Volume (name or ID); default: every volume of the project")
        parser.add_argument("--at", required=True, metavar="<time>",
                            help="ISO 8601 time (2026-01-31T12:00:00Z) or epoch seconds")
        parser.add_argument("--server", metavar="<server>",
                            help="The volumes attached to this server (name or ID)")
        parser.add_argument("--project", metavar="<project-id>",
                            help="Every volume of this project (admin)")
        return parser

    def take_action(self, parsed_args):
        api = self.app.client_manager.zfs_catalog
        if parsed_args.volume and parsed_args.server:
            raise exceptions.CommandError("give a volume or --server, not both")
        headers = ("Volume ID", "Snapshot ID", "Created At", "Createtxg", "Used", "Set")
        if parsed_args.volume:
            body = api.nearest(_volume_id(self.app, parsed_args.volume), parsed_args.at)
            snapshot = body["snapshot"]
            return headers, ([(snapshot["volume_id"], snapshot["id"], snapshot["created_at"],
                               snapshot["createtxg"], snapshot["used"], 1)] if snapshot else [])
        volume_ids = (_server_volume_ids(self.app, parsed_args.server)
                      if parsed_args.server else None)
        body = api.nearest_set(parsed_args.at, volume_ids=volume_ids,
                               project_id=parsed_args.project)
        # Set: 1 for the newest transaction group, 2 for the next...: one number for all rows
        # means one consistent set.
        set_of = {sid: n for n, s in enumerate(body["sets"], 1) for sid in s["snapshot_ids"]}
        return headers, [(s["volume_id"], s["id"], s["created_at"], s["createtxg"], s["used"],
                          set_of.get(s["id"])) for s in body["snapshots"]]


class ShowUsage(command.Lister):
    """Show snapshot counts and bytes per project from the snapshot catalog."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument("--project", metavar="<project-id>",
                           help="This project (admin); default: the token's project")
        scope.add_argument("--all-projects", action="store_true",
                           help="Every project (admin)")
        return parser

    def take_action(self, parsed_args):
        body = self.app.client_manager.zfs_catalog.usage(
            project_id=parsed_args.project, all_projects=parsed_args.all_projects)
        columns = ("project_id", "snapshots", "used", "referenced", "written")
        return (("Project", "Snapshots", "Used", "Referenced", "Written"),
                _rows(body["usage"], columns))
