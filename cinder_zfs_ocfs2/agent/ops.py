"""ZFS operations as performed on the storage node, by name, with JSON-able arguments.

pyzfs (libzfs_core) does snapshot/clone/destroy/rollback/promote/holds/exists; the zfs and zpool
CLIs do create, listing and properties (pyzfs has no working list/get/set). Without pyzfs every
operation runs through the CLI. Before anything runs, every dataset argument is checked against
the root dataset(s) and everything else a request carries against the allow-list in
agent.policy (properties and their values, tags, sizes, flags, ZFS's length limits).
Every child process has a deadline (policy.DEADLINES). Standard library + pyzfs only.
"""

from __future__ import annotations

import inspect
import logging
import os
import subprocess
import time

from cinder_zfs_ocfs2.agent import lio, ocfs2, policy, protocol
from cinder_zfs_ocfs2.agent.sendrecv import SendReceive
from cinder_zfs_ocfs2.zfs import errors
from cinder_zfs_ocfs2.zfs.names import Confinement

LOG = logging.getLogger(__name__)

BUSY_RETRIES = 10
# Operations that report progress while they run (see protocol: progress frames).
PROGRESS_OPS = frozenset({"send_receive"})


def load_pyzfs():
    """libzfs_core (Debian python3-pyzfs) or None. The PyPI 'pyzfs' fork is never used."""
    try:
        import libzfs_core  # noqa: PLC0415
    except ImportError:
        return None
    return libzfs_core


def _check_list(values, what: str) -> list[str]:
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise errors.InvalidArgument(f"{what} must be a non-empty list of strings")
    return values


def _options(props: dict[str, str]) -> list[str]:
    """`-o key=value` for each property (names and values already checked by the policy)."""
    return [arg for key, value in props.items() for arg in ("-o", f"{key}={value}")]


class NodeOperations:
    """The allow-listed operations of a storage node, confined to one root dataset."""

    def __init__(self, root: str | list[str], pyzfs="auto",
                 command_prefix: list[str] | None = None):
        self.names = Confinement(root if isinstance(root, list) else [root])
        for name in self.names.roots:  # every name the agent passes on starts with a root
            policy.option_safe(name, "root dataset")
        self.busy_retries = BUSY_RETRIES
        self.lzc = load_pyzfs() if pyzfs == "auto" else pyzfs
        # In front of every command the agent runs (the tests run a scripted `zfs` this way).
        self._prefix = list(command_prefix or [])
        self._ops = {
            "version": self.version,
            "pool_capacity": self.pool_capacity,
            "exists": self.exists,
            "create_volume": self.create_volume,
            "create_filesystem": self.create_filesystem,
            "snapshot": self.snapshot,
            "clone": self.clone,
            "destroy": self.destroy,
            "promote": self.promote,
            "rollback": self.rollback,
            "rename": self.rename,
            "get": self.get,
            "set": self.set,
            "inherit": self.inherit,
            "list": self.list,
            "hold": self.hold,
            "release": self.release,
            "holds": self.holds,
            "send_receive": self.send_receive,
            "wait_for_device": self.wait_for_device,
        }
        self._ops.update(lio.operations(self))  # LIO export, when python3-rtslib-fb is there
        self._ops.update(ocfs2.operations(self))

    @property
    def operations(self) -> list[str]:
        return sorted(self._ops)

    def dispatch(self, op: str, args: dict, progress=None):
        """Run operation ``op``; anything not in the allow-list or badly shaped is refused.

        ``progress(info)``, when given, receives progress reports of the long operations
        (PROGRESS_OPS) while they run."""
        func = self._ops.get(op) if isinstance(op, str) else None
        if func is None:
            raise errors.InvalidArgument(f"unknown operation {policy.show(op)}")
        if not isinstance(args, dict):
            raise errors.InvalidArgument("args must be an object")
        if "progress" in args:
            raise errors.InvalidArgument(f"{op}: 'progress' is not an argument")
        try:
            # Wrong or missing argument names: refuse before anything runs.
            inspect.signature(func).bind(**args)
        except TypeError as exc:
            raise errors.InvalidArgument(f"{op}: {exc}") from None
        if op in PROGRESS_OPS:
            return func(**args, progress=progress)
        return func(**args)

    # -- helpers ---------------------------------------------------------------------------

    def _settle(self) -> None:
        """Let udev finish with new or closed zvols (device links, blkid probes)."""
        try:
            self._run(["udevadm", "settle", "--timeout=10"])
        except (errors.ZFSError, OSError) as exc:
            LOG.debug("udevadm settle: %s", exc)

    def _run(self, argv: list[str], name: str | None = None, input: bytes | None = None) -> str:
        # Never let a child inherit stdin: in the agent it is the protocol stream, and a
        # prompting tool (mkfs "Proceed (y/N)") would swallow requests.
        deadline = policy.deadline(argv)
        try:
            proc = subprocess.run(self._prefix + argv, input=input, capture_output=True,
                                  stdin=None if input is not None else subprocess.DEVNULL,
                                  check=False, timeout=deadline)
        except subprocess.TimeoutExpired:  # subprocess.run killed it
            raise errors.ZFSError(
                f"`{' '.join(argv[:2])}` did not finish within {deadline:g} s and was "
                f"stopped; its effect on {name or 'the node'} is unknown: check the node "
                f"(zpool status, dmesg) before retrying", name) from None
        if proc.returncode != 0:
            raise errors.from_cli(proc.stderr.decode(errors="replace"), name)
        return proc.stdout.decode(errors="replace")

    def _lzc_call(self, name: str, func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except errors.ZFSError:
            raise
        except Exception as exc:  # libzfs_core raises its own hierarchy; map by class name
            raise errors.from_pyzfs(exc, name) from None

    def _check(self, name, allow_root: bool = False) -> str:
        return self.names.check(name, allow_root=allow_root)

    def _check_snapshot(self, name) -> str:
        self._check(name)
        if "@" not in name:
            raise errors.InvalidArgument(f"{name!r} is not a snapshot name")
        return name

    def _check_dataset(self, name, allow_root: bool = False) -> str:
        self._check(name, allow_root)
        if "@" in name:
            raise errors.InvalidArgument(f"{name!r} is a snapshot, a dataset was expected")
        return name

    # -- operations ------------------------------------------------------------------------

    def version(self) -> dict:
        out = self._run(["zfs", "version"]).split()
        return {"zfs": out[0] if out else "unknown", "pyzfs": self.lzc is not None,
                "root": self.names.root, "roots": self.names.roots}

    def pool_capacity(self, pool: str | None = None) -> dict:
        pool = self.names.pools[0] if pool is None else pool
        if not isinstance(pool, str) or pool not in self.names.pools:
            raise errors.InvalidArgument(f"pool {policy.show(pool)} holds none of the agent's "
                                         f"roots")
        out = self._run(["zpool", "list", "-Hp", "-o", "name,size,allocated,free,health",
                         pool], pool)
        fields = out.strip().split("\t")
        if len(fields) != 5:
            raise errors.ZFSError(f"cannot parse `zpool list` of {pool}: {policy.show(out)}",
                                  pool)
        name, size, alloc, free, health = fields
        return {"name": name, "size": int(size), "allocated": int(alloc), "free": int(free),
                "health": health}

    def exists(self, name: str) -> bool:
        self._check(name, allow_root=True)
        if self.lzc is not None:
            return bool(self._lzc_call(name, self.lzc.lzc_exists, name.encode()))
        try:
            self._run(["zfs", "list", "-H", "-o", "name", "-t", "all", name], name)
        except errors.NotFound:
            return False
        return True

    def create_volume(self, name: str, size: int, sparse: bool = True,
                      volblocksize: int | None = None, properties: dict | None = None) -> None:
        self._check_dataset(name)
        argv = ["zfs", "create", "-V", str(policy.size(size))]
        if policy.boolean(sparse, "sparse"):
            argv.append("-s")
        if volblocksize is not None:  # the one way to choose it: the policy checks the value
            policy.size(volblocksize, "volblocksize")
            properties = {**(properties or {}), "volblocksize": str(volblocksize)}
        self._run(argv + _options(policy.properties("create_volume", properties)) + [name],
                  name)

    def create_filesystem(self, name: str, properties: dict | None = None) -> None:
        """A parent dataset (root, tenant, trash); parents are created too. Never mounted."""
        self._check_dataset(name, allow_root=True)
        argv = ["zfs", "create", "-p", "-o", "canmount=off", "-o", "mountpoint=none"]
        props = policy.properties("create_filesystem", properties)
        self._run(argv + _options(props) + [name], name)

    def snapshot(self, names: list, properties: dict | None = None) -> None:
        """All snapshots in ONE call: one txg, all-or-nothing."""
        for name in _check_list(names, "names"):
            self._check_snapshot(name)
        props = policy.properties("snapshot", properties)
        if self.lzc is not None:
            self._lzc_call(names[0], self.lzc.lzc_snapshot, [n.encode() for n in names],
                           {k.encode(): v.encode() for k, v in props.items()} or None)
            return
        self._run(["zfs", "snapshot"] + _options(props) + names, names[0])

    def clone(self, snapshot: str, name: str, properties: dict | None = None) -> None:
        self._check_snapshot(snapshot)
        self._check_dataset(name)
        props = policy.properties("clone", properties)
        if self.lzc is not None:
            # libzfs_core takes native properties as numbers in the nvlist, not as the
            # strings the CLI parses: clone with the user properties, then set the rest.
            user = {k.encode(): v.encode() for k, v in props.items() if ":" in k}
            native = [f"{k}={v}" for k, v in props.items() if ":" not in k]
            self._lzc_call(name, self.lzc.lzc_clone, name.encode(), snapshot.encode(),
                           user or None)
            if native:
                try:
                    self._run(["zfs", "set"] + native + [name], name)
                except errors.ZFSError:
                    self._lzc_call(name, self.lzc.lzc_destroy, name.encode())
                    raise
            return
        self._run(["zfs", "clone"] + _options(props) + [snapshot, name], name)

    def destroy(self, name: str, defer: bool = False, recursive: bool = False) -> None:
        """Destroy a snapshot (defer: destroy when its last clone goes) or a dataset.

        ``recursive`` is `zfs destroy -r`: a dataset with its snapshots and children. It fails
        with HasDependents when a clone elsewhere depends on one of them; `-R`, which would
        destroy those clones, is never used.
        """
        self._check(name)
        policy.boolean(defer, "defer")
        policy.boolean(recursive, "recursive")
        if "@" in name:
            if not self.exists(name):
                raise errors.NotFound(f"snapshot {name} does not exist", name)
            if self.lzc is not None:
                self._lzc_call(name, self.lzc.lzc_destroy_snaps, [name.encode()], defer)
                return
            self._run(["zfs", "destroy"] + (["-d"] if defer else []) + [name], name)
            return
        if defer:
            raise errors.InvalidArgument("deferred destroy applies to snapshots only", name)
        # udev probes a zvol (blkid) right after a tool closes it, keeping it busy for a
        # moment: wait for udev and retry a "busy" a few times before giving up.
        for attempt in range(self.busy_retries):
            try:
                if self.lzc is not None and not recursive:
                    self._lzc_call(name, self.lzc.lzc_destroy, name.encode())
                else:
                    self._run(["zfs", "destroy"] + (["-r"] if recursive else []) + [name], name)
                return
            except errors.HasDependents:
                raise
            except errors.Busy:
                if attempt == self.busy_retries - 1:
                    raise
                self._settle()
                time.sleep(0.5)

    def promote(self, name: str) -> None:
        self._check_dataset(name)
        if self.lzc is not None:
            self._lzc_call(name, self.lzc.lzc_promote, name.encode())
            return
        self._run(["zfs", "promote", name], name)

    def rollback(self, snapshot: str) -> None:
        """Roll back to ``snapshot``, which must be the latest: never `rollback -r`."""
        self._check_snapshot(snapshot)
        dataset = snapshot.partition("@")[0]
        if self.lzc is not None:
            self._lzc_call(snapshot, self.lzc.lzc_rollback_to, dataset.encode(),
                           snapshot.encode())
            return
        self._run(["zfs", "rollback", snapshot], snapshot)

    def rename(self, name: str, new_name: str) -> None:
        self._check(name)
        self._check(new_name)
        if ("@" in name) != ("@" in new_name):
            raise errors.InvalidArgument("cannot rename between a dataset and a snapshot")
        self._run(["zfs", "rename"] + ([] if "@" in name else ["-p"]) + [name, new_name], name)

    def get(self, name: str, properties: list) -> dict:
        """Property values, parsable (-p); a user property that is unset comes back as None."""
        self._check(name, allow_root=True)
        props = policy.readable(properties)
        out = self._run(["zfs", "get", "-H", "-p", "-o", "property,value,source",
                         ",".join(props), name], name)
        values: dict = {}
        for line in out.splitlines():
            prop, value, source = (line.split("\t") + ["", ""])[:3]
            values[prop] = None if (source == "-" and ":" in prop and value == "-") else value
        return values

    def set(self, name: str, properties: dict) -> None:
        self._check(name, allow_root=True)
        props = policy.properties("set", properties)
        if not props:
            raise errors.InvalidArgument("no properties to set")
        if "volsize" in props:  # a volume only grows: shrinking it destroys the data beyond
            current = int(self.get(name, ["volsize"])["volsize"])
            if int(props["volsize"]) < current:
                raise errors.InvalidArgument(
                    f"volsize of {name} can only grow: {props['volsize']} < {current}", name)
        self._run(["zfs", "set"] + [f"{k}={v}" for k, v in props.items()] + [name], name)

    def inherit(self, name: str, property: str) -> None:  # noqa: A002 - zfs's own word
        self._check(name)
        self._run(["zfs", "inherit", policy.inheritable(property), name], name)

    def list(self, name, types: list, properties: list, depth: int | None = None) -> list:
        """Rows of {property: raw string} under ``name`` (recursive unless ``depth``).

        ``name`` may be a list of names, listed in one command (e.g. a batch of snapshots).
        """
        targets = name if isinstance(name, list) else [name]
        for target in _check_list(targets, "name"):
            self._check(target, allow_root=True)
        kinds = _check_list(types, "types")
        if not set(kinds) <= {"filesystem", "volume", "snapshot"}:
            raise errors.InvalidArgument(f"invalid types {kinds!r}")
        props = policy.readable(properties)
        argv = ["zfs", "list", "-H", "-p", "-t", ",".join(kinds), "-o", ",".join(props)]
        if depth is None:
            argv.append("-r")
        elif isinstance(depth, int) and not isinstance(depth, bool) and depth >= 0:
            argv += ["-d", str(depth)]
        else:
            raise errors.InvalidArgument(f"invalid depth {depth!r}")
        out = self._run(argv + targets, targets[0])
        rows = []
        for line in out.splitlines():
            fields = line.split("\t")
            if len(fields) != len(props):
                # A value with a tab, set out of band (the agent refuses them).
                raise errors.ZFSError(
                    f"cannot parse the listing of {targets[0]}: {len(fields)} fields for "
                    f"{len(props)} properties in {policy.show(line)}; remove the tab from "
                    f"that property value (zfs set / zfs inherit) and retry", targets[0])
            rows.append(dict(zip(props, fields, strict=True)))
        return rows

    def hold(self, snapshot: str, tag: str) -> None:
        self._check_snapshot(snapshot)
        policy.tag(tag)  # before libzfs_core: an over-long tag panics the kernel
        if self.lzc is not None:
            self._lzc_call(snapshot, self.lzc.lzc_hold, {snapshot.encode(): tag.encode()})
            return
        self._run(["zfs", "hold", tag, snapshot], snapshot)

    def release(self, snapshot: str, tag: str) -> None:
        self._check_snapshot(snapshot)
        policy.tag(tag)
        if self.lzc is not None:
            self._lzc_call(snapshot, self.lzc.lzc_release, {snapshot.encode(): [tag.encode()]})
            return
        self._run(["zfs", "release", tag, snapshot], snapshot)

    def holds(self, snapshot: str) -> list:
        self._check_snapshot(snapshot)
        if self.lzc is not None:
            held = self._lzc_call(snapshot, self.lzc.lzc_get_holds, snapshot.encode())
            return sorted(k.decode() if isinstance(k, bytes) else k for k in held)
        out = self._run(["zfs", "holds", "-H", snapshot], snapshot)
        return sorted(line.split("\t")[1] for line in out.splitlines() if line)

    def send_receive(self, snapshot: str, target: str, properties: dict | None = None,
                     progress=None) -> dict:
        """Full copy of ``snapshot`` into a new dataset ``target`` (no link to the origin).

        Fails cleanly (agent.sendrecv): the first real error, nothing of ``target`` left behind,
        no process left running. ``progress(info)`` gets {"bytes", "seconds"} while it runs."""
        self._check_snapshot(snapshot)
        self._check_dataset(target)
        props = policy.properties("send_receive", properties)
        if self.exists(target):  # what the cleanup destroys must be what this copy made
            raise errors.AlreadyExists(f"cannot receive into {target}: it already exists",
                                       target)
        copy = SendReceive(self._prefix + ["zfs", "send", "-c", snapshot],
                           self._prefix + ["zfs", "receive"] + _options(props) + [target],
                           label=f"{snapshot} -> {target}", stall=policy.SEND_RECEIVE_STALL,
                           progress=progress)
        started = time.monotonic()
        try:
            copied = copy.run()
        except errors.ZFSError as exc:
            raise type(exc)(exc.message + self._remove_partial(target), target) from None
        return {"bytes": copied, "seconds": round(time.monotonic() - started, 3)}

    def _remove_partial(self, target: str) -> str:
        """Destroy what a failed receive left; returns a sentence for the error message."""
        try:
            if not self.exists(target):
                return ""
            self.destroy(target, recursive=True)
        except errors.ZFSError as exc:
            LOG.error("could not destroy the partial copy %s: %s", target, exc)
            return (f"; the partial copy {target} could not be destroyed ({exc.message}): "
                    f"destroy it with `zfs destroy -r {target}`")
        LOG.info("destroyed the partial copy %s", target)
        return f"; the partial copy {target} was destroyed"

    # -- volume data streams (not in the allow-list: they take file objects; the server
    #    runs them on a channel of their own, see protocol.STREAM_OPS) ---------------------

    def _open_volume(self, name, writable: bool):
        self._check_dataset(name)
        if self.get(name, ["type"])["type"] != "volume":
            raise errors.InvalidArgument(f"{name} is not a volume", name)
        device = open(self.wait_for_device(name), "r+b" if writable else "rb")  # noqa: SIM115
        size = device.seek(0, os.SEEK_END)
        device.seek(0)
        return device, size

    def write_volume(self, name: str, size: int, source, ready=None) -> int:
        """Write ``size`` bytes from ``source`` at the start of volume ``name`` and fsync.
        ``ready(volsize)`` is called once the request is accepted, before data flows."""
        size = policy.size(size)
        device, volsize = self._open_volume(name, writable=True)
        with device:
            if size > volsize:
                raise errors.InvalidArgument(
                    f"{size} bytes do not fit in volume {name} of {volsize} bytes", name)
            if ready:
                ready(volsize)
            copied = protocol.copy_exact(source, device, size)
            device.flush()
            os.fsync(device.fileno())
        if copied < size:
            raise errors.TransportError(f"the data ended after {copied} of {size} bytes; "
                                        f"volume {name} holds a partial copy", name)
        return copied

    def read_volume(self, name: str, sink, ready=None) -> int:
        """Copy all of volume ``name`` to ``sink``; ``ready(volsize)`` as for write_volume."""
        device, volsize = self._open_volume(name, writable=False)
        with device:
            if ready:
                ready(volsize)
            return protocol.copy_exact(device, sink, volsize)

    def wait_for_device(self, name: str, timeout: float = 60.0) -> str:
        """Wait for udev to create /dev/zvol/<name> (a zvol, or a snapshot with snapdev
        visible); returns the path."""
        self._check(name)
        timeout = policy.timeout(timeout)  # NaN, inf, negative, huge: refused
        path = f"/dev/zvol/{name}"
        started = time.monotonic()
        deadline = started + timeout
        if not os.path.exists(path):
            self._settle()  # a busy node's udev queue can lag the ZFS call by seconds
        retriggered = False
        while not os.path.exists(path):
            now = time.monotonic()
            if now > deadline:
                raise errors.Busy(f"{path} did not appear within {timeout} s (udev)", name)
            if not retriggered and now - started > 10:
                # A zvol's "add" event can be lost under load: replay it for zvols once.
                retriggered = True
                try:
                    self._run(["udevadm", "trigger", "--action=add", "--subsystem-match=block",
                               "--sysname-match=zd*"])
                except (errors.ZFSError, OSError) as exc:
                    LOG.debug("udevadm trigger: %s", exc)
                self._settle()
            time.sleep(0.1)
        return path
