"""Volume-type extra specs in the zfs: namespace, validated into a VolumeSpec.

    provisioning:type thin | thick          Cinder's standard key: the scheduler reads it too
    zfs:sparse        true | false          the same choice in the driver's words (thin = true)
    zfs:compression   off | lz4 | zstd ...  any compression ZFS accepts
    zfs:volblocksize  512 .. 128K           power of two; sizes are rounded up to it
    zfs:clone_mode    linked | independent  how volumes are made from snapshots/volumes

Namespaced keys are ignored by Cinder's capabilities filter, so they never affect scheduling:
a thick type should say `provisioning:type=thick`, or the scheduler over-subscribes it as
thin. When both keys are given they must agree. A bad value is refused before anything is
created.
"""

from __future__ import annotations

import dataclasses
import re

from cinder_zfs_ocfs2.zfs.errors import InvalidArgument

NAMESPACE = "zfs:"
PROVISIONING = "provisioning:type"
COMPRESSION = frozenset(
    ["on", "off", "lz4", "lzjb", "zle", "gzip", "zstd", "zstd-fast"]
    + [f"gzip-{i}" for i in range(1, 10)] + [f"zstd-{i}" for i in range(1, 20)])
CLONE_MODES = ("linked", "independent")
_TRUE = ("true", "yes", "on", "1", "<is> true")
_FALSE = ("false", "no", "off", "0", "<is> false")
_SIZE = re.compile(r"^(\d+)\s*([KkMm]?)$")


@dataclasses.dataclass(frozen=True)
class VolumeSpec:
    sparse: bool
    compression: str
    volblocksize: int
    clone_mode: str

    def zfs_properties(self) -> dict[str, str]:
        return {"compression": self.compression}


def parse_bool(key: str, value: str) -> bool:
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidArgument(f"extra spec {key}={value!r}: expected true or false")


def parse_blocksize(key: str, value: str) -> int:
    match = _SIZE.match(str(value).strip())
    if not match:
        raise InvalidArgument(f"{key}={value!r}: expected a size such as 8K or 16384")
    size = int(match.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[match.group(2).lower()]
    if size < 512 or size > 128 * 1024 or size & (size - 1):
        raise InvalidArgument(f"{key}={value!r}: volblocksize must be a power of two from 512 "
                              f"to 128K")
    return size


def parse_compression(key: str, value: str) -> str:
    text = str(value).strip().lower()
    if text not in COMPRESSION:
        raise InvalidArgument(f"{key}={value!r}: expected one of {', '.join(sorted(COMPRESSION))}")
    return text


def parse_clone_mode(key: str, value: str) -> str:
    text = str(value).strip().lower()
    if text not in CLONE_MODES:
        raise InvalidArgument(f"{key}={value!r}: expected linked or independent")
    return text


_PARSERS = {
    "sparse": parse_bool,
    "compression": parse_compression,
    "volblocksize": parse_blocksize,
    "clone_mode": parse_clone_mode,
}


def parse_provisioning(key: str, value: str) -> bool:
    """provisioning:type -> sparse."""
    text = str(value).strip().lower()
    if text not in ("thin", "thick"):
        raise InvalidArgument(f"extra spec {key}={value!r}: expected thin or thick")
    return text == "thin"


def volume_spec(extra_specs: dict | None, defaults: VolumeSpec) -> VolumeSpec:
    """The spec of a volume: the type's provisioning:type and zfs: extra specs over the
    backend's defaults."""
    values = dataclasses.asdict(defaults)
    specs = extra_specs or {}
    if PROVISIONING in specs:
        values["sparse"] = parse_provisioning(PROVISIONING, specs[PROVISIONING])
        given = specs.get(NAMESPACE + "sparse")
        if given is not None and parse_bool(NAMESPACE + "sparse", given) != values["sparse"]:
            raise InvalidArgument(f"extra specs {PROVISIONING}={specs[PROVISIONING]!r} and "
                                  f"{NAMESPACE}sparse={given!r} disagree; keep "
                                  f"{PROVISIONING} alone (the scheduler reads it)")
    for key, value in specs.items():
        if not key.startswith(NAMESPACE):
            continue
        field = key[len(NAMESPACE):]
        parser = _PARSERS.get(field)
        if parser is None:
            raise InvalidArgument(f"unknown extra spec {key!r}; known: "
                                  f"{', '.join(NAMESPACE + k for k in sorted(_PARSERS))}")
        values[field] = parser(key, value)
    return VolumeSpec(**values)


def round_up(size: int, block: int) -> int:
    return -(-size // block) * block
