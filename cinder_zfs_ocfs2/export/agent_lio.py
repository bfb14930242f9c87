"""Cinder's LioAdm with every cinder-rtstool call run by the storage node's agent (ssh mode).

LioAdm stays in charge of everything it does for the LVM driver (IQN naming, CHAP generation,
provider_location/provider_auth, connection properties, its error handling); only the place
where it shells out to `cinder-rtstool <subcommand> ...` changes: the same arguments become
the agent's lio_* operation on the node, and the reply comes back as the (stdout, stderr) that
LioAdm parses, or as the ProcessExecutionError it expects on failure.
"""

from __future__ import annotations

from typing import Any

from cinder.volume.targets import lio
from oslo_concurrency import processutils
from oslo_log import log as logging

from cinder_zfs_ocfs2.zfs import errors

LOG = logging.getLogger(__name__)

RTSTOOL = "cinder-rtstool"


class RtstoolUsageError(ValueError):
    """Arguments cinder-rtstool itself would refuse (it prints its usage and exits 1)."""


def _parse_create(args: list[str]) -> dict:
    """`create path name userid password iser [initiators] [-a<ip,...>] [-p<port>]`."""
    if not 5 <= len(args) <= 8:
        raise RtstoolUsageError("create takes 5 to 8 arguments")
    path, name, userid, password, iser = args[:5]
    call = {"device": path, "name": name, "userid": userid, "password": password,
            "iser": iser == "True"}
    if "@" in path:  # a ZFS snapshot device is read-only: LIO opens it so, initiators see it so
        call["readonly"] = True
    for arg in args[5:]:
        if arg.startswith("-a"):
            ips = [ip for ip in arg[2:].split(",") if ip]
            if not ips:
                raise RtstoolUsageError("-a needs at least one IP address")
            call["portals_ips"] = ips
        elif arg.startswith("-p"):
            try:
                call["portals_port"] = int(arg[2:])
            except ValueError:
                raise RtstoolUsageError(f"invalid port {arg[2:]!r}") from None
        else:
            call["initiator_iqns"] = [i.strip() for i in arg.split(",") if i.strip()]
    return call


def _no_file(sub: str, args: list[str]) -> dict:
    # LioAdm always uses rtslib's default save file; the agent offers no other path.
    if args:
        raise RtstoolUsageError(f"{sub} with a file path is not supported by the agent")
    return {}


def _exactly(count: int, *keys: str):
    # Like rtstool: too few arguments is a usage error, extra ones are ignored.
    def parse(args: list[str]) -> dict:
        if len(args) < count:
            raise RtstoolUsageError(f"expected {count} arguments, got {len(args)}")
        return dict(zip(keys, args[:count], strict=True))
    return parse


# subcommand -> (agent operation, argument parser, index of the CHAP password in the args)
_SUBCOMMANDS: dict[str, tuple[str, Any, int | None]] = {
    "create": ("lio_create", _parse_create, 3),
    "add-initiator": ("lio_add_initiator",
                      _exactly(4, "iqn", "userid", "password", "initiator_iqn"), 2),
    "delete-initiator": ("lio_delete_initiator", _exactly(2, "iqn", "initiator_iqn"), None),
    "delete": ("lio_delete", _exactly(1, "iqn"), None),
    "get-targets": ("lio_targets", lambda a: {}, None),
    "verify": ("lio_verify", lambda a: {}, None),
    "save": ("lio_save", lambda a: _no_file("save", a), None),
    "restore": ("lio_restore", lambda a: _no_file("restore", a), None),
}


def _masked(cmd: list[str], secret_index: int | None) -> str:
    shown = list(cmd)
    if secret_index is not None and len(shown) > secret_index + 2:
        shown[secret_index + 2] = "***"
    return " ".join(shown)


class AgentLioAdm(lio.LioAdm):
    """LioAdm whose cinder-rtstool runs on the storage node, through ``transport``.

    Constructed like every target helper (``configuration=``, ``executor=``) plus
    ``transport``: an object with ``call(op, **args)`` (the driver's SSH transport). Like
    LioAdm it verifies the node's rtslib when constructed, so the node must be reachable then:
    build it in do_setup, not in the driver's __init__.
    """

    def __init__(self, *args: Any, transport: Any, **kwargs: Any):
        self.transport = transport  # before LioAdm's __init__, which verifies through it
        super().__init__(*args, **kwargs)

    def _verify_rtstool(self) -> None:
        try:
            info = self._execute(RTSTOOL, "verify")
        except processutils.ProcessExecutionError:
            LOG.error("LIO export is not usable on the storage node: install "
                      "python3-rtslib-fb (and targetcli-fb) there and check configfs")
            raise
        LOG.debug("Storage node LIO: %s", info[0].strip())

    def _execute(self, *cmd: Any, **kwargs: Any) -> tuple[str, str]:
        """Run a cinder-rtstool command on the node; kwargs (run_as_root...) do not apply."""
        cmd = [str(c) for c in cmd]  # as processutils.execute would: iser comes as a bool
        if len(cmd) < 2 or cmd[0] != RTSTOOL or cmd[1] not in _SUBCOMMANDS:
            raise processutils.ProcessExecutionError(
                exit_code=1, cmd=" ".join(cmd[:2]),
                description="only cinder-rtstool subcommands run on the storage node")
        op, parse, secret = _SUBCOMMANDS[cmd[1]]
        shown = _masked(cmd, secret)
        try:
            args = parse(cmd[2:])
        except RtstoolUsageError as exc:
            raise processutils.ProcessExecutionError(
                exit_code=1, cmd=shown, stderr=str(exc),
                description="invalid cinder-rtstool arguments") from None
        try:
            result = self.transport.call(op, **args)
        except errors.ZFSError as exc:
            raise processutils.ProcessExecutionError(
                exit_code=1, cmd=shown, stderr=f"{exc.code}: {exc.message}",
                description=f"agent operation {op} failed on the storage node") from None
        return self._stdout(op, result), self._stderr(op, result)

    @staticmethod
    def _stdout(op: str, result: Any) -> str:
        if op == "lio_targets":
            return "".join(f"{iqn}\n" for iqn in result or [])
        if op == "lio_verify":
            return f"{result}\n"
        return ""

    @staticmethod
    def _stderr(op: str, result: Any) -> str:
        if op == "lio_restore" and result:
            return "".join(f"{problem}\n" for problem in result)
        return ""
