"""cinder-zfs-catalog: search, report on and reconcile the snapshot catalog.

Subcommands: search, nearest, dependents, report, reconcile, verify.

Reads cinder.conf like cinder-manage (--config-file, default /etc/cinder/cinder.conf); the
backend section (--backend, or the only one in enabled_backends) gives zfs_catalog_connection
and zfs_root_dataset. --connection URL overrides the catalog's location. With a backend the
CLI sees exactly the driver's rows: the scope (section, storage node, root) the driver writes;
without one, every scope in the database. Tables for people, --json for scripts. Exit codes:
0 ok, 1 negative answer (verify found drift, nearest found nothing), 2 usage or configuration
error, 3 the catalog database cannot be reached.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging as std_logging
import os
import sys
import time
from collections.abc import Sequence

from oslo_config import cfg
from oslo_log import log as logging

from cinder_zfs_ocfs2 import options
from cinder_zfs_ocfs2.catalog import (
    Catalog,
    CatalogUnavailable,
    SnapshotEntry,
    Usage,
    default_url,
    to_epoch,
)
from cinder_zfs_ocfs2.catalog.identity import backend_identity

LOG = logging.getLogger(__name__)
DEFAULT_CONFIG = "/etc/cinder/cinder.conf"
PROG = "cinder-zfs-catalog"


class UsageError(Exception):
    pass


# -- configuration ---------------------------------------------------------------------------

def load_config(config_files: Sequence[str] | None) -> cfg.ConfigOpts:
    """cinder.conf as a private ConfigOpts (Cinder's global CONF is left alone)."""
    conf = cfg.ConfigOpts()
    conf.register_opts([
        cfg.StrOpt("state_path", default="/var/lib/cinder"),
        cfg.ListOpt("enabled_backends", default=[]),
    ])
    if config_files is None:
        # Like cinder-manage: the default file if it is there; a --connection may need none.
        config_files = [DEFAULT_CONFIG] if os.path.exists(DEFAULT_CONFIG) else []
    try:
        conf(args=[], project="cinder", prog=PROG, default_config_files=list(config_files))
    except cfg.ConfigFilesNotFoundError as exc:
        raise UsageError(str(exc)) from None
    return conf


def backend_section(conf: cfg.ConfigOpts, backend: str | None) -> str | None:
    if backend:
        return backend
    enabled = [b for b in conf.enabled_backends if b]
    if len(enabled) == 1:
        return enabled[0]
    if len(enabled) > 1:
        raise UsageError("several enabled_backends (%s): choose one with --backend"
                         % ", ".join(enabled))
    return None


def catalog_url(conf: cfg.ConfigOpts, backend: str | None, connection: str | None) -> str:
    if connection:
        return connection
    options.register(conf, group=backend)
    group = conf[backend] if backend else conf
    return group.zfs_catalog_connection or default_url(conf.state_path, backend)


def catalog_identity(conf: cfg.ConfigOpts, backend: str | None):
    """The driver's scope for ``backend`` (None: no backend, every scope)."""
    if not backend:
        return None
    options.register(conf, group=backend)
    return backend_identity(backend, conf[backend])


def _pool_client(conf: cfg.ConfigOpts, backend: str):
    """The ZFS client of a backend; imported here so queries never need the ZFS stack."""
    from cinder_zfs_ocfs2.zfs.client import client_for_backend

    return client_for_backend(conf, backend)


# -- output ----------------------------------------------------------------------------------

def _human(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "K", "M", "G", "T", "P"):
        if abs(value) < 1024 or unit == "P":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return str(n)


def _iso(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in headers]] + [["-" if c is None else str(c) for c in r]
                                           for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


SNAPSHOT_HEADERS = ("CREATED (UTC)", "PROJECT", "VOLUME", "KIND", "STATE", "USED", "GUID",
                    "NAME")


def snapshot_table(rows: Sequence[SnapshotEntry]) -> str:
    return table(SNAPSHOT_HEADERS, [
        (_iso(r.creation), r.project_id, r.volume_id, r.kind, r.state, _human(r.used),
         r.guid, r.zfs_name) for r in rows])


def usage_table(rows: Sequence[Usage], total: Usage) -> str:
    body = [(u.project_id, u.snapshots, _human(u.used), _human(u.referenced),
             _human(u.written)) for u in rows]
    body.append(("TOTAL", total.snapshots, _human(total.used), _human(total.referenced),
                 _human(total.written)))
    return table(("PROJECT", "SNAPSHOTS", "USED", "REFERENCED", "WRITTEN"), body)


def _emit(args: argparse.Namespace, data: object, text: str) -> None:
    if args.json:
        json.dump(data, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(text.rstrip("\n") + "\n")


def parse_time(value: str) -> float:
    """Epoch seconds or ISO 8601 (naive = UTC, 'Z' accepted)."""
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        return to_epoch(datetime.datetime.fromisoformat(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {value!r} (ISO 8601 like 2025-01-31T12:00:00Z, or epoch seconds)"
        ) from None


# -- subcommands -----------------------------------------------------------------------------

def cmd_search(catalog: Catalog, args: argparse.Namespace, _conf, _backend) -> int:
    after = None
    if args.guid is not None:
        rows = catalog.by_guid(args.guid)
    elif args.name:
        entry = catalog.get(args.name)
        rows = [entry] if entry else []
    elif args.volume:
        rows = catalog.volume_history(args.volume, project_id=args.project, limit=args.limit,
                                      newest_first=True)
    elif args.project:
        page = catalog.list_by_project(args.project, limit=args.limit, after=args.after)
        rows, after = page.rows, page.next
    elif args.since is not None or args.until is not None:
        page = catalog.in_time_range(args.since if args.since is not None else 0,
                                     args.until if args.until is not None else time.time() + 1,
                                     limit=args.limit, after=args.after)
        rows, after = page.rows, page.next
    else:
        raise UsageError("search needs --project, --volume, --since/--until, --guid or --name")
    text = snapshot_table(rows) if rows else "no snapshots"
    if after:
        text += f"\n(more: --after {after})"
    _emit(args, {"snapshots": [r.to_dict() for r in rows], "next": after}, text)
    return 0


def cmd_nearest(catalog: Catalog, args: argparse.Namespace, _conf, _backend) -> int:
    entry = catalog.nearest_before(args.volume, args.at, project_id=args.project,
                                   kinds=args.kind or None, states=args.state or None)
    text = snapshot_table([entry]) if entry else (
        f"no snapshot of volume {args.volume} at or before {_iso(int(args.at))}")
    _emit(args, {"snapshot": entry.to_dict() if entry else None}, text)
    return 0 if entry else 1


def cmd_dependents(catalog: Catalog, args: argparse.Namespace, _conf, _backend) -> int:
    if (args.name is None) == (args.guid is None):
        raise UsageError("dependents needs exactly one of --name and --guid")
    deps = catalog.dependents(args.name, guid=args.guid)
    what = args.name or f"guid {args.guid}"
    _emit(args, {"snapshot": args.name, "guid": None if args.guid is None else str(args.guid),
                 "dependents": deps},
          table(("DEPENDENT DATASET",), [(d,) for d in deps]) if deps
          else f"no clones of {what}")
    return 0


def cmd_report(catalog: Catalog, args: argparse.Namespace, _conf, _backend) -> int:
    rows = ([catalog.project_usage(args.project)] if args.project
            else catalog.usage_by_project())
    total = Usage(None, sum(u.snapshots for u in rows), sum(u.used for u in rows),
                  sum(u.referenced for u in rows), sum(u.written for u in rows))
    _emit(args, {"projects": [u.to_dict() for u in rows], "total": total.to_dict()},
          usage_table(rows, total))
    return 0


def _listing(conf: cfg.ConfigOpts, backend: str | None, args: argparse.Namespace):
    if not backend:
        raise UsageError("reconcile/verify need the backend section: --backend NAME")
    options.register(conf, group=backend)
    root = args.root or conf[backend].zfs_root_dataset
    started = time.time()
    snapshots = _pool_client(conf, backend).list_snapshots(root)
    return root, snapshots, started


def _report_text(report) -> str:
    lines = [f"root {report.root}: {report.listed} snapshots on the pool, "
             f"{report.catalog_rows} rows in the catalog",
             f"added {report.added}, removed {report.removed}, updated {report.updated}, "
             f"renamed {report.renamed}, marked missing {report.marked_missing}, "
             f"edges +{report.edges_added}/-{report.edges_removed}/~{report.edges_updated}, "
             f"pending {report.pending}, missing {report.missing}"]
    if report.drift:
        lines.append(table(("DRIFT", "NAME", "DETAIL"),
                           [(d.what, d.zfs_name, d.detail) for d in report.drift]))
    lines.append(("in sync" if report.in_sync else
                  "drift (not written)" if report.dry_run else "catalog updated")
                 + f" in {report.seconds:.3f}s")
    return "\n".join(lines)


def cmd_reconcile(catalog: Catalog, args: argparse.Namespace, conf, backend) -> int:
    root, snapshots, started = _listing(conf, backend, args)
    report = catalog.reconcile(snapshots, root, backend=backend, listed_at=started,
                               stale_after=args.stale_after)
    _emit(args, report.to_dict(), _report_text(report))
    return 0


def cmd_verify(catalog: Catalog, args: argparse.Namespace, conf, backend) -> int:
    root, snapshots, started = _listing(conf, backend, args)
    report = catalog.verify(snapshots, root, backend=backend, listed_at=started,
                            stale_after=args.stale_after)
    _emit(args, report.to_dict(), _report_text(report))
    return 0 if report.in_sync else 1


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config-file", action="append", dest="config_files",
                        metavar="PATH", help=f"cinder.conf (repeatable; default {DEFAULT_CONFIG})")
    common.add_argument("--backend", metavar="SECTION",
                        help="backend section of cinder.conf (default: the only enabled one)")
    common.add_argument("--connection", metavar="URL",
                        help="SQLAlchemy URL of the catalog (overrides zfs_catalog_connection)")
    common.add_argument("--json", action="store_true", help="JSON output for scripts")
    common.add_argument("--debug", action="store_true", help="log debug messages to stderr")

    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("search", parents=[common], help="find snapshots",
                       description="By tenant (newest first, paged), volume (history), "
                                   "time range (all tenants), guid or ZFS name.")
    p.add_argument("--project", help="tenant (project id); with --volume: scope to it")
    p.add_argument("--volume", help="volume id: the volume's history, newest first")
    p.add_argument("--since", type=parse_time, help="time range start (inclusive)")
    p.add_argument("--until", type=parse_time, help="time range end (exclusive)")
    p.add_argument("--guid", type=int, help="ZFS guid (decimal)")
    p.add_argument("--name", help="full ZFS snapshot name")
    p.add_argument("--limit", type=int, default=50, help="rows per page (default 50)")
    p.add_argument("--after", metavar="CURSOR", help="next page: the cursor a page printed")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("nearest", parents=[common],
                       help="a volume's newest snapshot at or before a time")
    p.add_argument("--volume", required=True)
    p.add_argument("--at", required=True, type=parse_time, help="ISO 8601 or epoch seconds")
    p.add_argument("--project", help="scope to this tenant")
    p.add_argument("--kind", action="append", choices=("cinder", "clone-temp", "out-of-band"),
                   help="only these kinds (repeatable)")
    p.add_argument("--state", action="append",
                   choices=("creating", "available", "hidden", "deleting", "missing"),
                   help="only these states (repeatable)")
    p.set_defaults(func=cmd_nearest)

    p = sub.add_parser("dependents", parents=[common],
                       help="datasets cloned from a snapshot (clone edges)")
    p.add_argument("--name", help="full ZFS snapshot name")
    p.add_argument("--guid", type=int, help="ZFS guid of the snapshot (decimal)")
    p.set_defaults(func=cmd_dependents)

    p = sub.add_parser("report", parents=[common], help="snapshot counts and bytes per tenant")
    p.add_argument("--project", help="one tenant only")
    p.set_defaults(func=cmd_report)

    for name, func, text in (
            ("reconcile", cmd_reconcile, "apply the pool listing to the catalog "
                                         "(never changes the pool)"),
            ("verify", cmd_verify, "compare catalog and pool without writing; exit 1 on drift")):
        p = sub.add_parser(name, parents=[common], help=text, description=text)
        p.add_argument("--root", help="root dataset (default: zfs_root_dataset)")
        p.add_argument("--stale-after", type=float, default=600.0, metavar="SECONDS",
                       help="age after which an unconfirmed intent counts (default 600)")
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    std_logging.basicConfig(stream=sys.stderr,
                            level=std_logging.DEBUG if args.debug else std_logging.WARNING,
                            format=f"{PROG} %(levelname)s %(name)s: %(message)s")
    try:
        conf = load_config(args.config_files)
        backend = backend_section(conf, args.backend)
        url = catalog_url(conf, backend, args.connection)
        with Catalog.from_url(url, identity=catalog_identity(conf, backend)) as catalog:
            return args.func(catalog, args, conf, backend)
    except CatalogUnavailable as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 3
    except UsageError as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 2
    except ValueError as exc:   # a bad cursor, a bad limit
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
