"""LIO iSCSI export on the storage node with python3-rtslib-fb, for remote ("ssh") mode.

The operations mirror cinder-rtstool (cinder/cmd/rtstool.py), so Cinder's LioAdm drives them
unchanged through export.agent_lio.AgentLioAdm: a block storage object and an iSCSI target both
named after the target IQN, one TPG with CHAP required (authentication=1), LUN 0, node ACLs with
CHAP credentials and mapped LUN 0, portals on the given IPs (all addresses by default).

Differences from cinder-rtstool, all on the safe side:
- every argument is validated: the device must be /dev/zvol/<name inside the root dataset>,
  IQNs/CHAP/ports/IPs must be well formed; nothing runs otherwise;
- objects whose backing device lies outside the root dataset are never modified or deleted;
- a create that fails half way removes what it created (rtstool left a broken target that a
  retry then reported as existing);
- restore keeps existing objects (clear_existing=False): Cinder only restores when no target
  exists, and a restore must never tear down live exports of another backend.

rtslib is imported on first use: the agent starts (and serves ZFS) without python3-rtslib-fb.
Standard library + rtslib_fb only.
"""

from __future__ import annotations

import fcntl
import functools
import importlib
import importlib.util
import ipaddress
import logging
import os
import re
import threading
from collections.abc import Callable
from typing import Any

from cinder_zfs_ocfs2.zfs import errors

LOG = logging.getLogger(__name__)

ZVOL_DIR = "/dev/zvol/"
# Shared with every agent on the node (one per backend): rtslib races with itself
# (rtslib-fb issue 36, the reason LioAdm serialises cinder-rtstool).
LOCK_FILE = "/run/lock/cinder-zfs-agent-lio.lock"
MAX_LIST = 64  # initiators or portals in one request

# RFC 3720/3722 names. rtslib refuses '_' in an iqn and lower-cases every WWN; so do we.
_IQN = re.compile(r"^iqn\.\d{4}-(0[1-9]|1[0-2])\.[a-z0-9]([a-z0-9-]*[a-z0-9])?"
                  r"(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[a-z0-9.:-]+)?$")
_EUI = re.compile(r"^eui\.[0-9a-f]{16}$")
_NAA = re.compile(r"^naa\.[0-9a-f]{16}([0-9a-f]{16})?$")
_CHAP = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no whitespace
_RTSLIB_MEMBERS = ("BlockStorageObject", "FabricModule", "LUN", "MappedLUN", "NetworkPortal",
                   "NodeACL", "root", "Target", "TPG")
DEFAULT_PORTALS = ("0.0.0.0", "[::]")
OPTIONAL_PORTALS = ("[::]",)  # binding IPv6 may fail on a v4-only node: warn, like rtstool


# -- argument validation ---------------------------------------------------------------------

def check_wwn(value, what: str = "IQN") -> str:
    """A strict iqn./eui./naa. name, lower-cased (rtslib's canonical form)."""
    if not isinstance(value, str) or not 0 < len(value) <= 223:
        raise errors.InvalidArgument(f"invalid {what} {value!r}")
    wwn = value.lower()
    if not (_IQN.fullmatch(wwn) or _EUI.fullmatch(wwn) or _NAA.fullmatch(wwn)):
        raise errors.InvalidArgument(f"invalid {what} {value!r}: expected an iqn., eui. or "
                                     f"naa. name")
    return wwn


def check_chap(value, what: str) -> str:
    if not isinstance(value, str) or not _CHAP.fullmatch(value):
        raise errors.InvalidArgument(f"invalid {what}: 1-255 printable characters without "
                                     f"whitespace expected")
    return value


def check_port(value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        raise errors.InvalidArgument(f"invalid port {value!r}")
    return value


def check_portal_ip(value) -> str:
    """An IP address in rtslib's form: IPv6 in brackets. Host names are refused."""
    text = value.strip() if isinstance(value, str) else ""
    try:
        addr = ipaddress.ip_address(text[1:-1] if text.startswith("[") and text.endswith("]")
                                    else text)
    except ValueError:
        raise errors.InvalidArgument(f"invalid portal IP address {value!r}") from None
    return str(addr) if addr.version == 4 else f"[{addr.compressed}]"


def check_bool(value, what: str) -> bool:
    if not isinstance(value, bool):
        raise errors.InvalidArgument(f"{what} must be true or false")
    return value


def _check_items(values, what: str, check: Callable) -> list:
    if values is None:
        return []
    if not isinstance(values, list) or len(values) > MAX_LIST:
        raise errors.InvalidArgument(f"{what} must be a list of at most {MAX_LIST} items")
    return [check(v) for v in values]


# -- operations ------------------------------------------------------------------------------

def load_rtslib():
    """The rtslib_fb module; ZFSError when python3-rtslib-fb is missing or broken."""
    try:
        return importlib.import_module("rtslib_fb")
    except ImportError as exc:
        raise errors.ZFSError(f"python3-rtslib-fb is not usable on this node: {exc}") from None


def _serialised(func):
    """One LIO change at a time on the node, mapped to our error types."""

    @functools.wraps(func)
    def wrapper(self, *args, **kwargs):
        with self._lock, self._node_lock():
            try:
                return func(self, *args, **kwargs)
            except errors.ZFSError:
                raise
            except Exception as exc:
                raise _mapped(self._rts, func.__name__, exc) from None

    return wrapper


def _mapped(rts, op: str, exc: Exception) -> Exception:
    """rtslib and OS errors as our types; anything else (a TypeError of bad arguments) as is."""
    utils = getattr(rts, "utils", None)
    # RTSLibNotInCFSError in rtslib-fb >= 2.2, RTSLibNotInCFS before.
    not_in_cfs = tuple(getattr(utils, n) for n in ("RTSLibNotInCFSError", "RTSLibNotInCFS")
                       if hasattr(utils, n))
    if not_in_cfs and isinstance(exc, not_in_cfs):
        return errors.NotFound(f"{op}: {exc}")
    if isinstance(exc, OSError) or (utils is not None and isinstance(exc, utils.RTSLibError)):
        return errors.ZFSError(f"{op}: {type(exc).__name__}: {exc}")
    return exc


class LioOperations:
    """cinder-rtstool's operations, confined to zvols under one root dataset."""

    def __init__(self, names, rtslib=None, resolve: Callable[[str], str | None] | None = None,
                 lock_file: str | None = LOCK_FILE):
        self.names = names
        self._rts = rtslib
        self._resolve = resolve or _resolve
        self._lock_file = lock_file
        self._lock = threading.Lock()

    @property
    def rts(self):
        if self._rts is None:
            self._rts = load_rtslib()
        return self._rts

    def _node_lock(self):
        return _FileLock(self._lock_file)

    # -- helpers -----------------------------------------------------------------------------

    def check_device(self, device) -> str:
        """``device`` if it is /dev/zvol/<dataset or snapshot inside the root>."""
        # Printable ASCII only: a trailing newline slips through a '$'-anchored name check.
        if not isinstance(device, str) or not re.fullmatch(ZVOL_DIR + r"[\x21-\x7e]+", device):
            raise errors.InvalidArgument(f"device {device!r} is not under {ZVOL_DIR}")
        self.names.check(device[len(ZVOL_DIR):], allow_root=False)
        return device

    def _check_present(self, device: str) -> None:
        real = self._resolve(device)
        if real is None:
            raise errors.NotFound(f"{device} does not exist (udev not done yet, or a snapshot "
                                  f"without snapdev=visible)", device[len(ZVOL_DIR):])
        # udev links /dev/zvol/<name> to /dev/zdN; a partition (zdNpM) or anything else is not
        # a zvol of ours, even when its link name looks like a dataset.
        if not re.fullmatch(r"/dev/zd\d+", real):
            raise errors.InvalidArgument(f"{device} resolves to {real}, not a whole zvol")

    def _inside_root(self, device) -> bool:
        try:
            self.check_device(device)
        except errors.InvalidArgument:
            return False
        return True

    def _check_owned_so(self, so) -> None:
        device = getattr(so, "udev_path", None)
        if so.plugin != "block" or not self._inside_root(device):
            raise errors.InvalidArgument(
                f"storage object {so.name} is backed by {device!r}, outside the root dataset "
                f"{self.names.root}: not touched")

    def _check_owned_target(self, target) -> None:
        for tpg in target.tpgs:
            for lun in tpg.luns:
                self._check_owned_so(lun.storage_object)

    def _find_target(self, root, iqn: str):
        return next((t for t in root.targets if t.wwn == iqn), None)

    def _find_so(self, root, name: str):
        return next((so for so in root.storage_objects if so.name == name), None)

    def _lookup_target(self, iqn: str):
        target = self._find_target(self.rts.root.RTSRoot(), iqn)
        if target is None:
            raise errors.NotFound(f"iSCSI target {iqn} does not exist", iqn)
        self._check_owned_target(target)
        tpg = next(iter(target.tpgs), None)
        if tpg is None:
            raise errors.NotFound(f"iSCSI target {iqn} has no TPG", iqn)
        return tpg

    def _same_device(self, a: str, b: str) -> bool:
        return a == b or (self._resolve(a) or a) == (self._resolve(b) or b)

    # -- operations --------------------------------------------------------------------------

    def lio_verify(self) -> dict:
        """rtstool verify (rtslib has what we use), plus configfs and the target core usable."""
        rts = self.rts
        missing = [m for m in _RTSLIB_MEMBERS if not hasattr(rts, m)]
        if missing:
            raise errors.ZFSError(f"rtslib_fb lacks {', '.join(missing)}: python3-rtslib-fb "
                                  f"is too old")
        with self._lock:
            try:
                rts.root.RTSRoot()
            except rts.utils.RTSLibError as exc:
                raise errors.ZFSError(f"LIO is not usable (configfs mounted at "
                                      f"/sys/kernel/config, target_core_mod loaded?): "
                                      f"{exc}") from None
        try:
            from importlib.metadata import version  # noqa: PLC0415
            rts_version = version("rtslib-fb")
        except Exception:
            rts_version = "unknown"
        return {"rtslib_fb": rts_version, "save_file": rts.root.default_save_file}

    @_serialised
    def lio_create(self, device: str, name: str, userid: str, password: str,
                   initiator_iqns: list | None = None, portals_ips: list | None = None,
                   portals_port: int = 3260, readonly: bool = False,
                   iser: bool = False) -> None:
        """Export ``device`` as LUN 0 of target ``name``; nothing to do when it exists."""
        self.check_device(device)
        name = check_wwn(name, "target name")
        check_chap(userid, "CHAP user")
        check_chap(password, "CHAP password")
        initiators = _check_items(initiator_iqns, "initiator_iqns",
                                  lambda i: check_wwn(i, "initiator IQN"))
        ips = _check_items(portals_ips, "portals_ips", check_portal_ip)
        port = check_port(portals_port)
        check_bool(readonly, "readonly")
        check_bool(iser, "iser")

        rts = self.rts
        root = rts.root.RTSRoot()
        so = self._find_so(root, name)
        if so is not None:
            self._check_owned_so(so)
            if not self._same_device(so.udev_path, device) or bool(so.readonly) != readonly:
                raise errors.AlreadyExists(
                    f"storage object {name} exists on {so.udev_path} (readonly "
                    f"{bool(so.readonly)}), not on {device} (readonly {readonly})", name)
        target = self._find_target(root, name)
        if target is not None:
            self._check_owned_target(target)
            if so is not None:
                return  # rtstool: already exported
            raise errors.AlreadyExists(f"iSCSI target {name} exists without its storage "
                                       f"object; delete it first", name)

        created = []
        try:
            if so is None:
                self._check_present(device)
                so = rts.BlockStorageObject(name=name, dev=device, readonly=readonly)
                created.append(so)
            target = rts.Target(rts.FabricModule("iscsi"), name, "create")
            created.append(target)
            tpg = rts.TPG(target, mode="create")
            tpg.set_attribute("authentication", "1")
            lun = rts.LUN(tpg, storage_object=so)
            for initiator in initiators:
                acl = rts.NodeACL(tpg, initiator, mode="create")
                acl.chap_userid = userid
                acl.chap_password = password
                rts.MappedLUN(acl, lun.lun, lun.lun)
            tpg.enable = True
            for ip in ips or DEFAULT_PORTALS:
                try:
                    portal = rts.NetworkPortal(tpg, ip, port, mode="any")
                except rts.utils.RTSLibError as exc:
                    if ips or ip not in OPTIONAL_PORTALS:
                        raise rts.utils.RTSLibError(
                            f"cannot create portal {ip}:{port} (in use by another "
                            f"service?): {exc}") from None
                    LOG.warning("no portal on %s:%d: %s", ip, port, exc)
                    continue
                if iser:
                    portal.iser = True
        except Exception:
            for obj in reversed(created):
                try:
                    obj.delete()
                except Exception:  # keep the original error; the leftover is logged
                    LOG.exception("could not remove %s after a failed create", obj)
            raise
        LOG.info("exported %s as %s (readonly %s)", device, name, readonly)

    @_serialised
    def lio_delete(self, iqn: str) -> None:
        """Remove target ``iqn`` and its storage object; nothing to do when they are gone."""
        iqn = check_wwn(iqn, "target IQN")
        root = self.rts.root.RTSRoot()
        target = self._find_target(root, iqn)
        so = self._find_so(root, iqn)
        # Check both before deleting either: never half-delete something that is not ours.
        if target is not None:
            self._check_owned_target(target)
        if so is not None:
            self._check_owned_so(so)
        if target is not None:
            target.delete()
        if so is not None:
            so.delete()
        LOG.info("removed iSCSI target %s", iqn)

    @_serialised
    def lio_add_initiator(self, iqn: str, initiator_iqn: str, userid: str,
                          password: str) -> None:
        """Let ``initiator_iqn`` log in to ``iqn`` with CHAP and see LUN 0 (idempotent)."""
        iqn = check_wwn(iqn, "target IQN")
        initiator = check_wwn(initiator_iqn, "initiator IQN")
        check_chap(userid, "CHAP user")
        check_chap(password, "CHAP password")
        tpg = self._lookup_target(iqn)
        if any(acl.node_wwn.lower() == initiator for acl in tpg.node_acls):
            return  # rtstool keeps an existing ACL as it is
        rts = self.rts
        acl = rts.NodeACL(tpg, initiator, mode="create")
        try:
            acl.chap_userid = userid
            acl.chap_password = password
            rts.MappedLUN(acl, 0, tpg_lun=0)
        except Exception:
            acl.delete()  # an ACL without CHAP or LUN must not stay behind
            raise

    @_serialised
    def lio_delete_initiator(self, iqn: str, initiator_iqn: str) -> None:
        """Remove the ACL of ``initiator_iqn``; an unknown initiator is not an error."""
        iqn = check_wwn(iqn, "target IQN")
        initiator = check_wwn(initiator_iqn, "initiator IQN")
        tpg = self._lookup_target(iqn)
        for acl in tpg.node_acls:
            if acl.node_wwn.lower() == initiator:
                acl.delete()
                return
        LOG.info("lio_delete_initiator: no ACL for %s on %s", initiator, iqn)

    @_serialised
    def lio_targets(self) -> list[str]:
        """Every target's WWN on the node, like rtstool get-targets."""
        return [t.wwn for t in self.rts.root.RTSRoot().targets]

    @_serialised
    def lio_save(self) -> str:
        """Persist the configuration to rtslib's default save file; returns its path."""
        path = self.rts.root.default_save_file
        os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
        self.rts.root.RTSRoot().save_to_file(path)
        return path

    @_serialised
    def lio_restore(self) -> list[str]:
        """Restore rtslib's default save file; returns the errors rtslib reported."""
        path = self.rts.root.default_save_file
        if not os.path.exists(path):
            raise errors.NotFound(f"no saved LIO configuration at {path}")
        problems = self.rts.root.RTSRoot().restore_from_file(path, clear_existing=False)
        return [str(p) for p in problems or []]


def _resolve(path: str) -> str | None:
    return os.path.realpath(path) if os.path.exists(path) else None


class _FileLock:
    """flock on the node-wide lock file; a missing /run/lock degrades to the thread lock."""

    def __init__(self, path: str | None):
        self._path = path
        self._fd: int | None = None

    def __enter__(self):
        if self._path:
            try:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                LOG.warning("cannot open %s (%s): LIO calls are serialised per agent only",
                            self._path, exc)
            else:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc_info):
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


OPERATION_NAMES = ("lio_verify", "lio_create", "lio_delete", "lio_add_initiator",
                   "lio_delete_initiator", "lio_targets", "lio_save", "lio_restore")


def operations(node_ops, rtslib: Any = None) -> dict[str, Callable]:
    """The LIO operations for NodeOperations' allow-list; empty without python3-rtslib-fb.

    ``rtslib`` is the rtslib_fb module or a fake; by default ``node_ops.rtslib`` if the class
    sets one (False: no LIO, for fakes that must not touch the host), else "auto": found
    without importing it, so an agent that never exports does not pay for the import.
    """
    if rtslib is None:
        rtslib = getattr(node_ops, "rtslib", "auto")
    if rtslib is False:
        return {}
    if isinstance(rtslib, str):
        if importlib.util.find_spec("rtslib_fb") is None:
            return {}
        rtslib = None
    lio = LioOperations(node_ops.names, rtslib)
    return {name: getattr(lio, name) for name in OPERATION_NAMES}
