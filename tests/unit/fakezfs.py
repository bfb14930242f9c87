"""An in-memory storage node with real ZFS semantics, at the transport boundary.

``FakeZFS(root)`` is a transport (``.info``, ``.call(op, **args)``, ``.close()``) that performs
the operations of cinder_zfs_ocfs2.agent.ops.NodeOperations, with the same argument names and
checks (names confined to the root by NameSpace.check, properties, tags and sizes by the
agent's own allow-list, agent.policy), the same error types, and the behaviour of OpenZFS itself:

- datasets (filesystem, volume) and snapshots with guid, createtxg, creation; one txg per
  operation, one txg for all the snapshots of one ``snapshot`` call (all-or-nothing);
- properties: native ones as ``zfs get -p`` prints them, inheritable ones (compression, user
  properties ``a:b``) resolved through the parents; a snapshot inherits from its dataset,
  *live*, unless set on the snapshot;
- clones and origins by object, so renames and promotes update every name that refers to them;
- destroy: a held snapshot is busy, a cloned one has dependents unless ``defer`` (then it goes
  when its last clone and hold go); a dataset with snapshots or children has dependents unless
  ``recursive``, which is refused as a whole, before anything is destroyed, when a clone outside
  the tree depends on one of its snapshots (`zfs destroy -r` never destroys clones);
- promote: the clone takes the origin's snapshots up to and including its origin snapshot, the
  former origin becomes a clone of ``<clone>@<that snapshot>``, other clones follow;
- rollback only to the newest snapshot (NotLatest otherwise), data and volsize revert;
- send_receive: an independent full copy, the target gets the snapshot too (same guid);
- data: each volume has a byte blob; snapshots freeze it, clones and receives start from it.
  Tests use ``write``/``read``.

Errors have the types the agent would produce: pyzfs exception classes for the libzfs_core
operations, ``errors.from_cli`` over the CLI's own message where the agent runs the CLI.

Test hooks: ``write``, ``read``, ``tree``, ``fail`` (inject an error into the next matching
call), ``calls`` (every request), ``open_devices`` (zvols in use: destroy is busy).
Space is approximated (used = max(refreservation, bytes written); snapshots are free), which is
enough for NoSpace on thick volumes and for capacity reports.
"""

from __future__ import annotations

import inspect
import json
import random

from cinder_zfs_ocfs2.agent import policy
from cinder_zfs_ocfs2.agent.ops import _check_list
from cinder_zfs_ocfs2.zfs import errors
from cinder_zfs_ocfs2.zfs.names import NameSpace

GiB = 1024 ** 3
DEFAULT_VOLBLOCKSIZE = 16 * 1024  # OpenZFS >= 2.2
OPERATIONS = ("version", "pool_capacity", "exists", "create_volume", "create_filesystem",
              "snapshot", "clone", "destroy", "promote", "rollback", "rename", "get", "set",
              "inherit", "list", "hold", "release", "holds", "send_receive", "wait_for_device")
# Native properties that inherit (with their default at the top); user properties inherit too.
INHERITABLE = {"compression": "off", "readonly": "off", "snapdev": "hidden",
               "volmode": "default"}
SETTABLE = set(INHERITABLE) | {"volsize", "refreservation", "reservation", "quota", "canmount",
                               "mountpoint"}
READONLY = {"name", "type", "guid", "createtxg", "creation", "used", "referenced", "available",
            "written", "clones", "defer_destroy", "userrefs", "origin", "volblocksize"}
COMPRESSION = ({"on", "off", "lzjb", "gzip", "zle", "lz4", "zstd", "zstd-fast"}
               | {f"gzip-{i}" for i in range(1, 10)} | {f"zstd-{i}" for i in range(1, 20)}
               | {f"zstd-fast-{i}" for i in (*range(1, 11), 20, 50, 100, 500, 1000)})
CHOICES = {"compression": COMPRESSION, "readonly": {"on", "off"},
           "snapdev": {"hidden", "visible"}, "canmount": {"on", "off", "noauto"},
           "volmode": {"default", "full", "geom", "dev", "none"}}


class _Dataset:
    def __init__(self, name, kind, txg, creation, guid, volsize=None, volblocksize=None,
                 data=b""):
        self.name, self.kind = name, kind
        self.createtxg, self.creation, self.guid = txg, creation, guid
        self.volsize, self.volblocksize, self.data = volsize, volblocksize, data
        self.local: dict[str, str] = {}   # properties set on this dataset
        self.origin: _Snapshot | None = None
        self.snaps: dict[str, _Snapshot] = {}  # short name -> snapshot

    def snapshots(self) -> list[_Snapshot]:
        return sorted(self.snaps.values(), key=lambda s: s.createtxg)


class _Snapshot:
    def __init__(self, ds, short, txg, creation, guid):
        self.ds, self.short = ds, short
        self.createtxg, self.creation, self.guid = txg, creation, guid
        self.data, self.volsize = ds.data, ds.volsize
        self.local: dict[str, str] = {}
        self.clones: list[_Dataset] = []
        self.defer_destroy = False
        self.holds: set[str] = set()

    @property
    def name(self) -> str:
        return f"{self.ds.name}@{self.short}"


class FakeZFS:
    """A storage node holding one pool, reached through ``call`` like any transport."""

    def __init__(self, root: str = "tank/cinder", create_root: bool = True,
                 pool_size: int = 1024 * GiB, health: str = "ONLINE", seed: int = 0):
        self.names = NameSpace(root)
        self.pool_size, self.health = pool_size, health
        self.datasets: dict[str, _Dataset] = {}
        self.txg, self.clock, self.seconds_per_txg = 1, 1_700_000_000, 1
        self.calls: list[tuple[str, dict]] = []
        self.open_devices: set[str] = set()
        self._failures: list[list] = []
        self._random = random.Random(seed)
        self._add(self.names.pool, "filesystem")
        if create_root:
            self.create_filesystem(root)
        self.info = {"type": "fake", "root": self.names.root, "pyzfs": True,
                     "operations": sorted(OPERATIONS)}

    # -- the transport ---------------------------------------------------------------------

    def call(self, op: str, **args):
        args = json.loads(json.dumps(args))  # only what survives the wire
        self.calls.append((op, args))
        if op not in OPERATIONS:
            raise errors.InvalidArgument(f"unknown operation {op!r}")
        func = getattr(self, op)
        try:
            inspect.signature(func).bind(**args)
        except TypeError as exc:
            raise errors.InvalidArgument(f"{op}: {exc}") from None
        self._injected_failure(op, args)
        return json.loads(json.dumps(func(**args)))

    def _injected_failure(self, op: str, args: dict) -> None:
        for failure in self._failures:
            fop, exc, when, _ = failure
            if fop == op and (when is None or when(args)):
                failure[3] -= 1
                if failure[3] <= 0:
                    self._failures.remove(failure)
                raise exc

    def close(self) -> None:
        pass

    # volume data streams, as the transports carry them (agent.ops write_volume/read_volume)

    def _stream_volume(self, op: str, name, size=None) -> _Dataset:
        self.calls.append((op, {"name": name, "size": size}))
        self._injected_failure(op, {"name": name})
        self._check_dataset(name)
        ds = self._ds(name)
        if ds.kind != "volume":
            raise errors.InvalidArgument(f"{name} is not a volume", name)
        return ds

    def write_volume(self, name: str, source, size: int) -> int:
        ds = self._stream_volume("write_volume", name, policy.size(size))
        if size > ds.volsize:
            raise errors.InvalidArgument(
                f"{size} bytes do not fit in volume {name} of {ds.volsize} bytes", name)
        data = source.read(size)
        if len(data) < size:
            raise errors.TransportError(f"the data ended after {len(data)} of {size} bytes; "
                                        f"volume {name} holds a partial copy", name)
        self.write(name, data)
        return size

    def read_volume(self, name: str, sink) -> int:
        ds = self._stream_volume("read_volume", name)
        sink.write(ds.data)
        for offset in range(len(ds.data), ds.volsize, 1 << 20):
            sink.write(bytes(min(1 << 20, ds.volsize - offset)))
        return ds.volsize

    # -- test hooks ------------------------------------------------------------------------

    def fail(self, op: str, exc: Exception, when=None, times: int = 1) -> None:
        """Raise ``exc`` instead of running the next ``times`` calls of ``op`` (matching
        ``when(args)`` if given). Nothing is changed by a failed call."""
        self._failures.append([op, exc, when, times])

    def called(self, op: str) -> list[dict]:
        return [args for name, args in self.calls if name == op]

    def write(self, name: str, data: bytes, offset: int = 0) -> None:
        ds = self._ds(name)
        if ds.kind != "volume":
            raise ValueError(f"{name} is not a volume")
        if offset + len(data) > ds.volsize:
            raise ValueError(f"write past the end of {name} ({ds.volsize} bytes)")
        blob = ds.data.ljust(offset, b"\0")
        new = blob[:offset] + data + blob[offset + len(data):]
        if len(new) - self._used(ds) > self._available():
            raise errors.NoSpace("out of space", name)
        ds.data = new

    def read(self, name: str) -> bytes:
        return self._obj(name).data

    def tree(self, under: str | None = None) -> list[str]:
        """Every dataset and snapshot name (under ``under``), sorted."""
        out = []
        for ds in self.datasets.values():
            out.append(ds.name)
            out.extend(s.name for s in ds.snaps.values())
        if under is not None:
            out = [n for n in out if n == under or n.startswith((under + "/", under + "@"))]
        return sorted(out)

    # -- internals -------------------------------------------------------------------------

    def _next_txg(self) -> int:
        self.txg += 1
        self.clock += self.seconds_per_txg
        return self.txg

    def _guid(self) -> int:
        return self._random.getrandbits(64) | 1

    def _add(self, name, kind, **kw) -> _Dataset:
        ds = _Dataset(name, kind, self._next_txg(), self.clock, self._guid(), **kw)
        self.datasets[name] = ds
        return ds

    def _ds(self, name) -> _Dataset:
        ds = self.datasets.get(name)
        if ds is None:
            raise errors.NotFound(f"cannot open '{name}': dataset does not exist", name)
        return ds

    def _snap(self, name) -> _Snapshot:
        dataset, _, short = name.partition("@")
        snap = self.datasets.get(dataset) and self.datasets[dataset].snaps.get(short)
        if not snap:
            raise errors.NotFound(f"cannot open '{name}': dataset does not exist", name)
        return snap

    def _obj(self, name):
        return self._snap(name) if "@" in name else self._ds(name)

    def _check(self, name, allow_root=False) -> str:
        return self.names.check(name, allow_root=allow_root)

    def _check_snapshot(self, name) -> str:
        self._check(name)
        if "@" not in name:
            raise errors.InvalidArgument(f"{name!r} is not a snapshot name")
        return name

    def _check_dataset(self, name, allow_root=False) -> str:
        self._check(name, allow_root)
        if "@" in name:
            raise errors.InvalidArgument(f"{name!r} is a snapshot, a dataset was expected")
        return name

    def _parent_for(self, name) -> None:
        parent = self.datasets.get(name.rpartition("/")[0])
        if parent is None:
            raise errors.NotFound(f"cannot create '{name}': parent does not exist", name)
        if parent.kind != "filesystem":
            raise errors.InvalidArgument(f"cannot create '{name}': parent is not a filesystem")

    def _create_parents(self, name) -> None:
        parts = name.split("/")
        for i in range(2, len(parts)):
            path = "/".join(parts[:i])
            if path not in self.datasets:
                self._parent_for(path)
                self._add(path, "filesystem")

    def _descendants(self, ds) -> list[_Dataset]:
        return [d for d in self.datasets.values() if d.name.startswith(ds.name + "/")]

    def _children(self, ds) -> list[_Dataset]:
        return sorted((d for d in self._descendants(ds) if "/" not in d.name[len(ds.name) + 1:]),
                      key=lambda d: d.name)

    def _used(self, ds) -> int:
        if ds.kind == "volume":
            return max(int(ds.local.get("refreservation", 0)), len(ds.data))
        return sum(self._used(d) for d in self._children(ds))

    def _available(self) -> int:
        return max(self.pool_size - self._used(self.datasets[self.names.pool]), 0)

    def _maybe_gone(self, snap) -> None:
        """Deferred destroy: a marked snapshot goes with its last clone and hold."""
        if snap.defer_destroy and not snap.clones and not snap.holds:
            snap.ds.snaps.pop(snap.short, None)

    def _drop(self, ds) -> None:
        del self.datasets[ds.name]
        if ds.origin is not None:
            ds.origin.clones.remove(ds)
            self._maybe_gone(ds.origin)

    # -- properties ------------------------------------------------------------------------

    def _native(self, obj, prop) -> str:
        snap = isinstance(obj, _Snapshot)
        kind = "snapshot" if snap else obj.kind
        volume = (obj.ds if snap else obj).kind == "volume"
        values = {
            "name": obj.name, "type": kind, "guid": obj.guid, "createtxg": obj.createtxg,
            "creation": obj.creation, "referenced": len(obj.data), "written": len(obj.data),
            "used": 0 if snap else self._used(obj),
            "available": "-" if snap else self._available(),
            "volsize": obj.volsize if volume else "-",
            "volblocksize": (obj.ds if snap else obj).volblocksize if volume else "-",
            "clones": ",".join(sorted(c.name for c in obj.clones)) if snap else "-",
            "defer_destroy": ("on" if obj.defer_destroy else "off") if snap else "-",
            "userrefs": len(obj.holds) if snap else "-",
            "origin": obj.origin.name if not snap and obj.origin else "-",
            "refreservation": "-" if snap else 0, "reservation": "-" if snap else 0,
            "quota": "-" if snap or volume else 0,
            "canmount": "on" if kind == "filesystem" else "-",
            "mountpoint": f"/{obj.name}" if kind == "filesystem" else "-",
        }
        if prop not in values:
            raise errors.InvalidArgument(f"bad property list: invalid property '{prop}'")
        return str(values[prop])

    def _value(self, obj, prop) -> str | None:
        """The effective value; None for an unset user property."""
        if prop in obj.local:
            return obj.local[prop]
        if ":" in prop or prop in INHERITABLE:
            if isinstance(obj, _Snapshot):
                return self._value(obj.ds, prop)
            parent = self.datasets.get(obj.name.rpartition("/")[0])
            if parent is not None:
                return self._value(parent, prop)
            return None if ":" in prop else INHERITABLE[prop]
        return self._native(obj, prop)

    def _normalize(self, obj, prop, value: str, volsize: int | None = None) -> str:
        """A settable value as ZFS stores it, or InvalidArgument/NoSpace. Changes nothing."""
        if ":" in prop:
            return value
        if isinstance(obj, _Snapshot):
            raise errors.InvalidArgument(f"cannot set property for '{obj.name}': this property "
                                         f"can not be modified for snapshots")
        if prop in READONLY:
            raise errors.InvalidArgument(f"cannot set property for '{obj.name}': "
                                         f"'{prop}' is readonly")
        if prop not in SETTABLE:
            raise errors.InvalidArgument(f"invalid property '{prop}'")
        if prop in CHOICES and value not in CHOICES[prop]:
            raise errors.InvalidArgument(f"bad property value '{value}' for '{prop}'")
        if prop in ("volsize", "refreservation", "reservation", "quota"):
            if prop == "volsize" and obj.kind != "volume":
                raise errors.InvalidArgument("'volsize' does not apply to datasets of this type")
            if value == "none" and prop != "volsize":
                return "0"
            if value == "auto" and prop == "refreservation" and obj.kind == "volume":
                # libzfs sizes it for the volsize set in the same call, if any (the metadata
                # overhead is left out here)
                return str(volsize or obj.volsize)
            if not value.isdigit():
                raise errors.InvalidArgument(f"bad numeric value '{value}' for '{prop}'")
            if prop == "volsize" and (int(value) == 0 or int(value) % obj.volblocksize):
                raise errors.InvalidArgument("volume size must be a multiple of volume block "
                                             "size")
        return value

    def _apply(self, obj, props: dict[str, str]) -> None:
        volsize = int(props["volsize"]) if str(props.get("volsize")).isdigit() else None
        normalized = {k: self._normalize(obj, k, v, volsize) for k, v in props.items()}
        grow = 0
        if isinstance(obj, _Dataset) and obj.kind == "volume":
            refres = int(normalized.get("refreservation", obj.local.get("refreservation", 0)))
            if "volsize" in normalized and "refreservation" not in normalized \
                    and refres == obj.volsize:
                refres = int(normalized["volsize"])  # a thick volume stays thick
                normalized["refreservation"] = str(refres)
            grow = max(refres, len(obj.data)) - self._used(obj)
        if grow > self._available():
            # libzfs's text for ENOSPC on (ref)reservation, classified as the agent would
            raise errors.from_cli(f"cannot set property for '{obj.name}': size is greater "
                                  f"than available space", obj.name)
        for prop, value in normalized.items():
            if prop == "volsize":
                obj.volsize = int(value)
            else:
                obj.local[prop] = value

    # -- operations (NodeOperations' names, arguments and checks) --------------------------

    def version(self) -> dict:
        return {"zfs": "zfs-2.2.2-fake", "pyzfs": True, "root": self.names.root}

    def pool_capacity(self, pool: str | None = None) -> dict:
        if pool not in (None, self.names.pool):
            raise errors.InvalidArgument(f"pool {pool!r} holds none of the agent's roots")
        allocated = self._used(self.datasets[self.names.pool])
        return {"name": self.names.pool, "size": self.pool_size, "allocated": allocated,
                "free": self.pool_size - allocated, "health": self.health}

    def exists(self, name: str) -> bool:
        self._check(name, allow_root=True)
        try:
            self._obj(name)
        except errors.NotFound:
            return False
        return True

    def create_volume(self, name: str, size: int, sparse: bool = True,
                      volblocksize: int | None = None, properties: dict | None = None) -> None:
        self._check_dataset(name)
        size = policy.size(size)
        block = DEFAULT_VOLBLOCKSIZE if volblocksize is None else policy.size(volblocksize)
        props = policy.properties("create_volume", properties)
        if block < 512 or block > 128 * 1024 or block & (block - 1):
            raise errors.InvalidArgument("'volblocksize' must be power of 2 from 512B to 128KB")
        if size % block:
            raise errors.InvalidArgument("volume size must be a multiple of volume block size")
        if name in self.datasets:
            raise errors.AlreadyExists(f"cannot create '{name}': dataset already exists", name)
        self._parent_for(name)
        probe = _Dataset(name, "volume", 0, 0, 0, volsize=size, volblocksize=block)
        props = {k: self._normalize(probe, k, v) for k, v in props.items()}
        if not sparse and "refreservation" not in props:
            props["refreservation"] = str(size)
        if int(props.get("refreservation", 0)) > self._available():
            raise errors.NoSpace(f"cannot create '{name}': out of space", name)
        self._add(name, "volume", volsize=size, volblocksize=block).local.update(props)

    def create_filesystem(self, name: str, properties: dict | None = None) -> None:
        self._check_dataset(name, allow_root=True)
        props = policy.properties("create_filesystem", properties)
        existing = self.datasets.get(name)
        if existing is not None:  # `zfs create -p` is content with an existing filesystem
            if existing.kind != "filesystem":
                raise errors.AlreadyExists(f"cannot create '{name}': dataset already exists")
            return
        probe = _Dataset(name, "filesystem", 0, 0, 0)
        props = {k: self._normalize(probe, k, v) for k, v in props.items()}
        props.update(canmount="off", mountpoint="none")
        self._create_parents(name)
        self._add(name, "filesystem").local.update(props)

    def snapshot(self, names: list, properties: dict | None = None) -> None:
        for name in _check_list(names, "names"):
            self._check_snapshot(name)
        props = policy.properties("snapshot", properties)
        targets = [n.partition("@") for n in names]
        if len({d for d, _, _ in targets}) != len(targets):
            raise errors.InvalidArgument("one snapshot per dataset in one call")
        for dataset, _, short in targets:
            if short in self._ds(dataset).snaps:
                raise errors.AlreadyExists(f"snapshot {dataset}@{short} already exists",
                                           f"{dataset}@{short}")
        txg = self._next_txg()
        for dataset, _, short in targets:
            snap = _Snapshot(self.datasets[dataset], short, txg, self.clock, self._guid())
            snap.local.update(props)
            self.datasets[dataset].snaps[short] = snap

    def clone(self, snapshot: str, name: str, properties: dict | None = None) -> None:
        self._check_snapshot(snapshot)
        self._check_dataset(name)
        props = policy.properties("clone", properties)
        snap = self._snap(snapshot)
        if name in self.datasets:
            raise errors.AlreadyExists(f"cannot create '{name}': dataset already exists", name)
        self._parent_for(name)
        probe = _Dataset(name, snap.ds.kind, 0, 0, 0, volsize=snap.volsize,
                         volblocksize=snap.ds.volblocksize)
        props = {k: self._normalize(probe, k, v) for k, v in props.items()}
        ds = self._add(name, snap.ds.kind, volsize=snap.volsize,
                       volblocksize=snap.ds.volblocksize, data=snap.data)
        ds.local.update(props)
        ds.origin = snap
        snap.clones.append(ds)

    def destroy(self, name: str, defer: bool = False, recursive: bool = False) -> None:
        self._check(name)
        if "@" in name:
            snap = self._snap(name)
            if defer:  # destroyed now if nothing holds it, else when the last clone/hold goes
                snap.defer_destroy = True
                self._maybe_gone(snap)
                return
            if snap.holds:
                raise errors.Busy(f"cannot destroy snapshot {name}: dataset is busy", name)
            if snap.clones:
                raise errors.HasDependents(
                    f"cannot destroy '{name}': snapshot has dependent clones\nuse '-R' to "
                    f"destroy the following datasets:\n" + "\n".join(c.name for c in snap.clones),
                    name)
            del snap.ds.snaps[snap.short]
            return
        if defer:
            raise errors.InvalidArgument("deferred destroy applies to snapshots only", name)
        ds = self._ds(name)
        tree = [ds] + self._descendants(ds)
        if not recursive and len(tree) + len(ds.snaps) > 1:
            raise errors.HasDependents(
                f"cannot destroy '{name}': {ds.kind} has children\nuse '-r' to destroy the "
                f"following datasets:\n" + "\n".join(self.tree(name)[1:]), name)
        snaps = [s for d in tree for s in d.snaps.values()]
        outside = sorted(c.name for s in snaps for c in s.clones if c not in tree)
        if outside:
            raise errors.HasDependents(
                f"cannot destroy '{name}': filesystem has dependent clones\nuse '-R' to destroy "
                f"the following datasets:\n" + "\n".join(outside), name)
        if any(s.holds for s in snaps) or any(d.name in self.open_devices for d in tree):
            raise errors.Busy(f"cannot destroy '{name}': dataset is busy", name)
        for d in sorted(tree, key=lambda d: d.name.count("/"), reverse=True):
            d.snaps.clear()  # clones inside the tree go with it
        for d in tree:
            if d.origin is not None and d.origin.ds in tree:
                d.origin = None
        for d in tree:
            self._drop(d)

    def promote(self, name: str) -> None:
        self._check_dataset(name)
        clone = self._ds(name)
        point = clone.origin
        if point is None:
            raise errors.ZFSError(f"cannot promote '{name}': not a cloned filesystem", name)
        former = point.ds
        moved = [s for s in former.snapshots() if s.createtxg <= point.createtxg]
        conflicts = [s.short for s in moved if s.short in clone.snaps]
        if conflicts:
            raise errors.AlreadyExists(f"cannot promote '{name}': snapshot name "
                                       f"'{conflicts[0]}' from origin conflicts with "
                                       f"'{name}@{conflicts[0]}' from target", name)
        for snap in moved:
            del former.snaps[snap.short]
            snap.ds = clone
            clone.snaps[snap.short] = snap
        clone.origin, former.origin = former.origin, point
        if clone.origin is not None:
            clone.origin.clones[clone.origin.clones.index(former)] = clone
        point.clones[point.clones.index(clone)] = former
        self._next_txg()

    def rollback(self, snapshot: str) -> None:
        self._check_snapshot(snapshot)
        snap = self._snap(snapshot)
        if snap.ds.snapshots()[-1] is not snap:
            raise errors.NotLatest(f"cannot rollback to '{snapshot}': more recent snapshots or "
                                   f"bookmarks exist", snapshot)
        snap.ds.data, snap.ds.volsize = snap.data, snap.volsize
        self._next_txg()

    def rename(self, name: str, new_name: str) -> None:
        self._check(name)
        self._check(new_name)
        if ("@" in name) != ("@" in new_name):
            raise errors.InvalidArgument("cannot rename between a dataset and a snapshot")
        if "@" in name:
            snap = self._snap(name)
            dataset, _, short = new_name.partition("@")
            if dataset != snap.ds.name:
                raise errors.InvalidArgument("snapshots must be part of same dataset", name)
            if short in snap.ds.snaps:
                raise errors.AlreadyExists(f"cannot rename to '{new_name}': dataset already "
                                           f"exists", new_name)
            del snap.ds.snaps[snap.short]
            snap.short = short
            snap.ds.snaps[short] = snap
            return
        ds = self._ds(name)
        if new_name in self.datasets:
            raise errors.AlreadyExists(f"cannot rename to '{new_name}': dataset already exists",
                                       new_name)
        if new_name.startswith(name + "/"):
            raise errors.InvalidArgument(f"cannot rename '{name}' to a descendant of itself")
        self._create_parents(new_name)  # -p
        self._parent_for(new_name)
        for d in [ds] + self._descendants(ds):
            del self.datasets[d.name]
            d.name = new_name + d.name[len(name):]
            self.datasets[d.name] = d
        self._next_txg()

    def get(self, name: str, properties: list) -> dict:
        self._check(name, allow_root=True)
        props = policy.readable(properties)
        obj = self._obj(name)
        return {p: self._value(obj, p) for p in props}

    def set(self, name: str, properties: dict) -> None:
        self._check(name, allow_root=True)
        props = policy.properties("set", properties)
        if not props:
            raise errors.InvalidArgument("no properties to set")
        self._apply(self._obj(name), props)
        self._next_txg()

    def inherit(self, name: str, property: str) -> None:  # noqa: A002 - zfs's own word
        self._check(name)
        prop = policy.inheritable(property)
        obj = self._obj(name)
        if ":" not in prop and prop not in INHERITABLE:
            raise errors.InvalidArgument(f"'{prop}' property cannot be inherited")
        obj.local.pop(prop, None)

    def list(self, name, types: list, properties: list, depth: int | None = None) -> list:
        if isinstance(name, list):  # several names in one command, as the agent allows
            rows = []
            for one in _check_list(name, "name"):
                if self.exists(one):
                    rows.extend(self.list(one, types, properties, depth))
            return rows
        self._check(name, allow_root=True)
        kinds = _check_list(types, "types")
        if not set(kinds) <= {"filesystem", "volume", "snapshot"}:
            raise errors.InvalidArgument(f"invalid types {kinds!r}")
        props = policy.readable(properties)
        if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool)
                                  or depth < 0):
            raise errors.InvalidArgument(f"invalid depth {depth!r}")
        top = self._obj(name)
        found: list = []

        def visit(obj, level):
            found.append(obj)
            if isinstance(obj, _Snapshot) or (depth is not None and level >= depth):
                return
            for child in obj.snapshots() + self._children(obj):
                visit(child, level + 1)

        visit(top, 0)
        # zfs list order: by dataset name, a dataset before its snapshots, those by createtxg
        found.sort(key=lambda o: (o.ds.name, 1, o.createtxg) if isinstance(o, _Snapshot)
                   else (o.name, 0, 0))
        rows = []
        for obj in found:
            kind = "snapshot" if isinstance(obj, _Snapshot) else obj.kind
            if kind in kinds:
                rows.append({p: (lambda v: "-" if v is None else v)(self._value(obj, p))
                             for p in props})
        return rows

    def hold(self, snapshot: str, tag: str) -> None:
        self._check_snapshot(snapshot)
        policy.tag(tag)
        snap = self._snap(snapshot)
        if tag in snap.holds:
            raise errors.AlreadyExists(f"cannot hold snapshot '{snapshot}': tag already exists "
                                       f"on this dataset", snapshot)
        snap.holds.add(tag)

    def release(self, snapshot: str, tag: str) -> None:
        self._check_snapshot(snapshot)
        policy.tag(tag)
        snap = self._snap(snapshot)
        if tag not in snap.holds:
            raise errors.NotFound(f"cannot release hold from snapshot '{snapshot}': no such "
                                  f"tag on this dataset", snapshot)
        snap.holds.discard(tag)
        self._maybe_gone(snap)

    def holds(self, snapshot: str) -> list:
        self._check_snapshot(snapshot)
        return sorted(self._snap(snapshot).holds)

    def send_receive(self, snapshot: str, target: str, properties: dict | None = None,
                     progress=None) -> dict:
        self._check_snapshot(snapshot)
        self._check_dataset(target)
        props = policy.properties("send_receive", properties)
        snap = self._snap(snapshot)
        if target in self.datasets:
            raise errors.from_cli(f"cannot receive new filesystem stream: destination "
                                  f"'{target}' exists\nmust specify -F to overwrite it", target)
        self._parent_for(target)
        probe = _Dataset(target, snap.ds.kind, 0, 0, 0, volsize=snap.volsize,
                         volblocksize=snap.ds.volblocksize)
        props = {k: self._normalize(probe, k, v) for k, v in props.items()}
        if len(snap.data) > self._available():
            raise errors.NoSpace(f"cannot receive into '{target}': out of space", target)
        ds = self._add(target, snap.ds.kind, volsize=snap.volsize,
                       volblocksize=snap.ds.volblocksize, data=snap.data)
        ds.local.update(props)  # `zfs send` without -p carries no properties
        copy = _Snapshot(ds, snap.short, ds.createtxg, ds.creation, snap.guid)
        ds.snaps[snap.short] = copy
        if progress is not None:  # the agent reports while it copies; here all at once
            progress({"bytes": len(snap.data), "seconds": 0})
        return {"bytes": len(snap.data), "seconds": 0.0}

    def wait_for_device(self, name: str, timeout: float = 60.0) -> str:
        self._check_dataset(name)
        ds = self.datasets.get(name)
        if ds is None or ds.kind != "volume":
            raise errors.Busy(f"/dev/zvol/{name} did not appear within {timeout} s (udev)", name)
        return f"/dev/zvol/{name}"
