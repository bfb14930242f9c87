"""A typed ZFS client over a transport. Knows ZFS; knows nothing of Cinder.

Every method maps to one agent operation (cinder_zfs_ocfs2.agent.ops) and returns typed records;
failures arrive as cinder_zfs_ocfs2.zfs.errors types whichever transport carried them.
"""

from __future__ import annotations

import logging  # stdlib: the client also runs on a node without oslo (local mode)
import os
import time

from cinder_zfs_ocfs2.zfs import errors
from cinder_zfs_ocfs2.zfs.types import USER_PROP_PREFIX, PoolCapacity, Snapshot, Volume

_USER_PROPS = ("volume_id", "project_id", "backend", "snapshot_id", "group_snapshot_id",
               "hidden", "operation", "internal", "cinder_snapshot")
USER_PROPS = tuple(USER_PROP_PREFIX + p for p in _USER_PROPS)
SNAPSHOT_PROPS = ("name", "guid", "createtxg", "creation", "used", "referenced", "written",
                  "clones", "defer_destroy", "userrefs") + USER_PROPS
VOLUME_PROPS = ("name", "guid", "volsize", "volblocksize", "used", "referenced", "origin",
                "creation") + USER_PROPS


def _int(row: dict, key: str) -> int:
    value = row.get(key, "-")
    if value in ("-", "", None):
        return 0
    try:
        return int(value)
    except ValueError:
        raise errors.InvalidArgument(f"unparsable {key}={value!r} for {row.get('name')}") from None


def _user_props(row: dict) -> dict:
    return {k: v for k, v in row.items() if k.startswith(USER_PROP_PREFIX) and v not in ("-", "")}


def parse_snapshot(row: dict) -> Snapshot:
    clones = row.get("clones", "-")
    return Snapshot(
        name=row["name"], guid=_int(row, "guid"), createtxg=_int(row, "createtxg"),
        creation=_int(row, "creation"), used=_int(row, "used"),
        referenced=_int(row, "referenced"), written=_int(row, "written"),
        clones=tuple(sorted(c for c in clones.split(",") if c)) if clones not in ("-", "") else (),
        defer_destroy=row.get("defer_destroy") == "on", userrefs=_int(row, "userrefs"),
        user_props=_user_props(row))


def parse_volume(row: dict) -> Volume:
    origin = row.get("origin", "-")
    return Volume(
        name=row["name"], guid=_int(row, "guid"), volsize=_int(row, "volsize"),
        volblocksize=_int(row, "volblocksize"), used=_int(row, "used"),
        referenced=_int(row, "referenced"), origin=None if origin in ("-", "") else origin,
        creation=_int(row, "creation"), user_props=_user_props(row))


LOG = logging.getLogger(__name__)
MiB = 1024 * 1024
# Seconds between INFO lines about one image transfer (Cinder logs its own copies alike).
TRANSFER_LOG_INTERVAL = 30.0
_clock = time.monotonic  # the transfer log's clock (tests replace it, never time.monotonic)


class _TransferLog:
    """INFO lines for a long image transfer into or out of a volume: how much, rate, ETA."""

    def __init__(self, what: str, total: int, clock=None, interval: float | None = None):
        self.what, self.total, self.done = what, total, 0
        self.clock = clock or _clock
        self.interval = TRANSFER_LOG_INTERVAL if interval is None else interval
        self.started = self.logged = self.clock()

    def add(self, count: int) -> None:
        self.done += count
        now = self.clock()
        if now - self.logged < self.interval:
            return
        self.logged = now
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = f"about {(self.total - self.done) / rate:.0f} s left" if rate else "rate unknown"
        LOG.info("%s: %d of %d MiB (%d%%) in %.0f s, %.1f MiB/s, %s", self.what,
                 self.done // MiB, self.total // MiB,
                 100 * self.done // self.total if self.total else 100, elapsed, rate / MiB, eta)

    def finish(self) -> None:
        elapsed = self.clock() - self.started
        LOG.info("%s: %d MiB in %.0f s (%.1f MiB/s)", self.what, self.done // MiB, elapsed,
                 self.done / elapsed / MiB if elapsed > 0 else 0.0)


class _CountingReader:
    def __init__(self, file, log: _TransferLog):
        self.file, self.log = file, log

    def read(self, size: int = -1) -> bytes:
        chunk = self.file.read(size)
        self.log.add(len(chunk))
        return chunk


class _SparseWriter:
    """A file writer that seeks over all-zero chunks instead of writing them."""

    def __init__(self, file, log: _TransferLog | None = None):
        self.file = file
        self.size = 0
        self.log = log

    def write(self, chunk: bytes) -> None:
        if chunk.count(0) == len(chunk):
            self.file.seek(len(chunk), os.SEEK_CUR)
        else:
            self.file.write(chunk)
        self.size += len(chunk)
        if self.log is not None:
            self.log.add(len(chunk))

    def close(self) -> None:
        self.file.truncate(self.size)  # a trailing hole still counts


class ZFSClient:
    def __init__(self, transport):
        self.transport = transport

    def _call(self, op: str, **args):
        return self.transport.call(op, **args)

    # -- node ------------------------------------------------------------------------------

    def version(self) -> dict:
        return self._call("version")

    def pool_capacity(self, pool: str | None = None) -> PoolCapacity:
        return PoolCapacity(**self._call("pool_capacity", pool=pool))

    # -- datasets --------------------------------------------------------------------------

    def exists(self, name: str) -> bool:
        return bool(self._call("exists", name=name))

    def create_volume(self, name: str, size: int, sparse: bool = True,
                      volblocksize: int | None = None, properties: dict | None = None) -> None:
        self._call("create_volume", name=name, size=size, sparse=sparse,
                   volblocksize=volblocksize, properties=properties or {})

    def create_filesystem(self, name: str, properties: dict | None = None) -> None:
        self._call("create_filesystem", name=name, properties=properties or {})

    def snapshot(self, names: list[str], properties: dict | None = None) -> None:
        """Snapshot every name in ONE call: one txg, all-or-nothing."""
        self._call("snapshot", names=list(names), properties=properties or {})

    def clone(self, snapshot: str, name: str, properties: dict | None = None) -> None:
        self._call("clone", snapshot=snapshot, name=name, properties=properties or {})

    def destroy(self, name: str, defer: bool = False, recursive: bool = False) -> None:
        self._call("destroy", name=name, defer=defer, recursive=recursive)

    def promote(self, name: str) -> None:
        self._call("promote", name=name)

    def rollback(self, snapshot: str) -> None:
        self._call("rollback", snapshot=snapshot)

    def rename(self, name: str, new_name: str) -> None:
        self._call("rename", name=name, new_name=new_name)

    def get_properties(self, name: str, properties: list[str]) -> dict:
        return self._call("get", name=name, properties=list(properties))

    def set_properties(self, name: str, properties: dict) -> None:
        self._call("set", name=name, properties=properties)

    def inherit(self, name: str, prop: str) -> None:
        self._call("inherit", name=name, property=prop)

    def send_receive(self, snapshot: str, target: str, properties: dict | None = None) -> dict:
        return self._call("send_receive", snapshot=snapshot, target=target,
                          properties=properties or {})

    def wait_for_device(self, name: str, timeout: float = 60.0) -> str:
        return self._call("wait_for_device", name=name, timeout=timeout)

    # -- volume data (images): streamed, not JSON; see agent.protocol.STREAM_OPS -------------

    def write_volume_from_file(self, name: str, path: str) -> int:
        """Write the file at ``path`` to the start of volume ``name``; returns bytes written."""
        with open(path, "rb") as source:
            size = os.fstat(source.fileno()).st_size
            if size == 0:
                raise errors.InvalidArgument(f"{path} is empty: nothing to write to {name}")
            log = _TransferLog(f"image into {name}", size)
            written = self.transport.write_volume(name, _CountingReader(source, log), size)
        log.finish()
        return written

    def read_volume_to_file(self, name: str, path: str) -> int:
        """Copy all of volume ``name`` into the file at ``path``, sparse: zero runs become
        holes, so an empty 100 GiB volume takes no space. Returns the volume's size."""
        volsize = str(self.get_properties(name, ["volsize"]).get("volsize"))
        with open(path, "wb") as sink:
            # not a volume ("-"): read_volume below refuses it with the agent's own words
            log = _TransferLog(f"volume {name} into an image",
                               int(volsize) if volsize.isdigit() else 0)
            sparse = _SparseWriter(sink, log)
            size = self.transport.read_volume(name, sparse)
            sparse.close()
        log.finish()
        return size

    # -- listing ---------------------------------------------------------------------------

    def list_rows(self, name: str | list[str], types: list[str], properties: tuple[str, ...],
                  depth: int | None = None) -> list[dict]:
        return self._call("list", name=name, types=list(types), properties=list(properties),
                          depth=depth)

    def list_snapshots(self, name: str, depth: int | None = None) -> list[Snapshot]:
        """Snapshots under ``name`` (recursive), or of one dataset with depth=1."""
        return [parse_snapshot(r) for r in self.list_rows(name, ["snapshot"], SNAPSHOT_PROPS,
                                                          depth)]

    def list_volumes(self, name: str, depth: int | None = None) -> list[Volume]:
        return [parse_volume(r) for r in self.list_rows(name, ["volume"], VOLUME_PROPS, depth)]

    def get_snapshot(self, name: str) -> Snapshot:
        rows = self.list_rows(name, ["snapshot"], SNAPSHOT_PROPS, depth=0)
        if not rows:
            raise errors.NotFound(f"snapshot {name} does not exist", name)
        return parse_snapshot(rows[0])

    def get_snapshots(self, names: list[str]) -> list[Snapshot]:
        """Several named snapshots in one listing (those that exist)."""
        if not names:
            return []
        return [parse_snapshot(r) for r in self.list_rows(list(names), ["snapshot"],
                                                          SNAPSHOT_PROPS, depth=0)]

    def get_volumes(self, names: list[str]) -> list[Volume]:
        """Several named zvols in one listing (those that exist)."""
        if not names:
            return []
        return [parse_volume(r) for r in self.list_rows(list(names), ["volume"], VOLUME_PROPS,
                                                        depth=0)]

    def get_volume(self, name: str) -> Volume:
        rows = self.list_rows(name, ["volume"], VOLUME_PROPS, depth=0)
        if not rows:
            raise errors.NotFound(f"volume {name} does not exist", name)
        return parse_volume(rows[0])

    # -- holds -----------------------------------------------------------------------------

    def hold(self, snapshot: str, tag: str) -> None:
        self._call("hold", snapshot=snapshot, tag=tag)

    def release(self, snapshot: str, tag: str) -> None:
        self._call("release", snapshot=snapshot, tag=tag)

    def holds(self, snapshot: str) -> list[str]:
        return self._call("holds", snapshot=snapshot)


def client_for_backend(conf, backend_section: str) -> ZFSClient:
    """A client for the backend configured in ``[backend_section]`` of ``conf`` (admin tools)."""
    from cinder_zfs_ocfs2 import options, transport

    options.register(conf, group=backend_section)
    return ZFSClient(transport.from_config(conf[backend_section]))
