"""cinder-zfs-backend-conf: the backend section of cinder.conf for this driver.

The one source of truth for that section: the DevStack plugin (devstack/plugin.sh) writes
what this prints with ``iniset``, the local stack (tools/stack) renders the same pairs into
its cinder.conf, so the two cannot drift. Every key is checked against the option it sets
(the driver's options.py, or the Cinder option the driver reads) and every value is parsed
with that option's type, so a typo or a renamed option fails here, not in cinder-volume.

    cinder-zfs-backend-conf --backend-name zfs --root-dataset tank/cinder \\
        --agent-mode local --target-ip-address 192.0.2.10
    volume_driver=cinder_zfs_ocfs2.driver.ZFSOCFS2Driver
    volume_backend_name=zfs
    ...

``--format ini`` prints a whole ``[backend]`` section instead of ``key=value`` lines.
``--set KEY=VALUE`` (repeatable) adds any other option of the driver or one of the Cinder
options in CINDER_OPTIONS. An empty value leaves a setting out (convenient from shell).
Exit codes: 0 ok, 2 invalid settings (the reason on stderr).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Mapping, Sequence

from oslo_config import cfg

from cinder_zfs_ocfs2 import options

PROG = "cinder-zfs-backend-conf"
VOLUME_DRIVER = "cinder_zfs_ocfs2.driver.ZFSOCFS2Driver"

# The Cinder options (registered by cinder.volume.driver / cinder.volume.manager) this section
# may set, with the types and the subset of Cinder's choices this driver supports.
# tests/devstack/test_backend_conf.py checks each against Cinder's own registration.
CINDER_OPTIONS: dict[str, cfg.Opt] = {opt.dest: opt for opt in (
    cfg.StrOpt("volume_driver"),
    cfg.StrOpt("volume_backend_name"),
    cfg.StrOpt("target_helper", choices=["lioadm", "tgtadm"]),
    cfg.StrOpt("target_protocol", choices=["iscsi"]),
    cfg.StrOpt("target_ip_address"),
    cfg.PortOpt("target_port"),
    cfg.StrOpt("target_prefix"),
    cfg.IntOpt("reserved_percentage", min=0, max=100),
    cfg.StrOpt("max_over_subscription_ratio"),
)}
DRIVER_OPTIONS: dict[str, cfg.Opt] = {opt.dest: opt for opt in options.ALL_OPTS}

# backend_section keyword -> option it sets, in the order the section lists them.
SETTINGS: dict[str, str] = {
    "root_dataset": "zfs_root_dataset",
    "agent_mode": "zfs_agent_mode",
    "ssh_host": "zfs_ssh_host",
    "ssh_port": "zfs_ssh_port",
    "ssh_user": "zfs_ssh_user",
    "ssh_key": "zfs_ssh_private_key",
    "ssh_known_hosts": "zfs_ssh_known_hosts_file",
    "sparse_volumes": "zfs_sparse_volumes",
    "volblocksize": "zfs_volblocksize",
    "compression": "zfs_compression",
    "clone_mode": "zfs_clone_mode",
    "max_clone_depth": "zfs_max_clone_depth",
    "snapshot_batch_window_ms": "zfs_snapshot_batch_window_ms",
    "catalog_connection": "zfs_catalog_connection",
    "ocfs2_slots": "ocfs2_default_slots",
    "ocfs2_cluster_stack": "ocfs2_default_cluster_stack",
    "target_helper": "target_helper",
    "target_protocol": "target_protocol",
    "target_ip_address": "target_ip_address",
    "target_port": "target_port",
    "target_prefix": "target_prefix",
}
SSH_SETTINGS = ("ssh_host", "ssh_port", "ssh_user", "ssh_key", "ssh_known_hosts")


class InvalidSettings(ValueError):
    """The settings cannot make a working backend section."""


def _option(key: str) -> cfg.Opt:
    opt = DRIVER_OPTIONS.get(key) or CINDER_OPTIONS.get(key)
    if opt is None:
        raise InvalidSettings(
            f"{key} is not an option of the driver ({options.__name__}) nor one of the Cinder "
            f"options a backend section of this driver sets ({', '.join(sorted(CINDER_OPTIONS))})")
    return opt


def _value(key: str, value: object) -> str:
    """``value`` parsed with the option's type (choices, ranges, ports) and written back."""
    opt = _option(key)
    if isinstance(value, str) and ("\n" in value or "\r" in value):
        raise InvalidSettings(f"{key}: a value cannot span lines")
    try:
        parsed = opt.type(value)
    except (ValueError, TypeError) as exc:
        raise InvalidSettings(f"{key}={value!r}: {exc}") from None
    if isinstance(parsed, bool):
        return "true" if parsed else "false"
    return str(parsed)


def _unset(value: object) -> bool:
    return value is None or value == ""


def backend_section(*, backend_name: str, root_dataset: str, agent_mode: str,
                    ssh_host: str | None = None, ssh_port: int | str | None = None,
                    ssh_user: str | None = None, ssh_key: str | None = None,
                    ssh_known_hosts: str | None = None,
                    sparse_volumes: bool | str | None = None, volblocksize: str | None = None,
                    compression: str | None = None, clone_mode: str | None = None,
                    max_clone_depth: int | str | None = None,
                    snapshot_batch_window_ms: int | str | None = None,
                    catalog_connection: str | None = None,
                    ocfs2_slots: int | str | None = None,
                    ocfs2_cluster_stack: str | None = None,
                    target_helper: str | None = "lioadm", target_protocol: str | None = "iscsi",
                    target_ip_address: str | None = None, target_port: int | str | None = None,
                    target_prefix: str | None = None,
                    extra: Mapping[str, object] | None = None) -> list[tuple[str, str]]:
    """The ordered (key, value) pairs of the ``[backend_name]`` section of cinder.conf.

    A setting left None (or '') is left out, so the option's default applies. ``extra`` adds
    further options by their cinder.conf name. Raises InvalidSettings for an unknown key, a
    value the option's type rejects, ssh settings in local mode, or a target helper the
    agent mode cannot export with.
    """
    given = dict(locals())
    extra = dict(extra or {})
    if _unset(backend_name):
        raise InvalidSettings("backend_name is required")
    if _unset(root_dataset):
        raise InvalidSettings("root_dataset is required")
    mode = _value("zfs_agent_mode", agent_mode)
    if mode == "local":
        stray = [name for name in SSH_SETTINGS if not _unset(given[name])]
        stray += [key for key in extra if key.startswith("zfs_ssh_")]
        if stray:
            raise InvalidSettings(f"{', '.join(stray)}: only meaningful with agent_mode=ssh")
    pairs = [("volume_driver", VOLUME_DRIVER),
             ("volume_backend_name", _value("volume_backend_name", backend_name))]
    for name, key in SETTINGS.items():
        if not _unset(given[name]):
            pairs.append((key, _value(key, given[name])))
    named = {key for key, _ in pairs}
    for key, value in extra.items():
        if key in named:
            raise InvalidSettings(f"{key} is set by a named setting already; set it once")
        if not _unset(value):
            pairs.append((key, _value(key, value)))
    # Unset, Cinder's own default (tgtadm) would apply.
    helper = dict(pairs).get("target_helper", "tgtadm (Cinder's default)")
    if mode == "ssh" and helper != "lioadm":
        raise InvalidSettings(
            f"target_helper={helper} cannot be used with agent_mode=ssh: the agent configures "
            "the iSCSI target on the storage node with LIO; set target_helper=lioadm")
    return pairs


def render_ini(backend_name: str, pairs: Sequence[tuple[str, str]]) -> str:
    """The section as cinder.conf text: ``[backend_name]`` then ``key = value`` lines."""
    return "".join([f"[{backend_name}]\n"] + [f"{key} = {value}\n" for key, value in pairs])


def render_lines(pairs: Sequence[tuple[str, str]]) -> str:
    """One ``key=value`` line per pair (what the DevStack plugin reads)."""
    return "".join(f"{key}={value}\n" for key, value in pairs)


def _settings() -> list[str]:
    return [name for name, p in inspect.signature(backend_section).parameters.items()
            if name != "extra" and p.kind is inspect.Parameter.KEYWORD_ONLY]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in _settings():
        key = SETTINGS.get(name, {"backend_name": "volume_backend_name"}.get(name))
        default = inspect.signature(backend_section).parameters[name].default
        required = default is inspect.Parameter.empty
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, required=required,
                            default=None if required else default,
                            help=f"sets {key}" + ("" if required or default is None
                                                  else f" (default: {default})"))
    parser.add_argument("--set", dest="extra", action="append", default=[],
                        metavar="KEY=VALUE", help="any other option of the driver or of "
                        "CINDER_OPTIONS (repeatable)")
    parser.add_argument("--format", choices=["lines", "ini"], default="lines",
                        help="'lines': key=value per line (default); 'ini': a [section]")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    extra: dict[str, str] = {}
    for item in args.extra:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            print(f"{PROG}: --set wants KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        extra[key.strip()] = value.strip()
    settings = {name: getattr(args, name) for name in _settings()}
    try:
        pairs = backend_section(**settings, extra=extra)
    except InvalidSettings as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if args.format == "ini":
        sys.stdout.write(render_ini(args.backend_name, pairs))
    else:
        sys.stdout.write(render_lines(pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
