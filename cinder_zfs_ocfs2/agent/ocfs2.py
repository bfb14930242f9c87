"""OCFS2 on zvols, on the storage node: format a new volume, give a clone a new identity.

A clone of an OCFS2 zvol is a byte copy: same UUID, same label. Two filesystems with one UUID
in one OCFS2 cluster corrupt each other, so every clone gets `tunefs.ocfs2 --cloned-volume`
(new UUID, new label) before it can be exported. The node never mounts the volume and the
tools close the device when done: LIO needs it exclusively later. Standard library only.
"""

from __future__ import annotations

import re

from cinder_zfs_ocfs2.zfs import errors

CLUSTER_STACKS = ("local", "o2cb")
MAX_SLOTS = 255
_LABEL = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")
_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9_]{1,16}$")


def check_slots(value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_SLOTS:
        raise errors.InvalidArgument(f"OCFS2 node slots must be 1-{MAX_SLOTS}, got {value!r}")
    return value


def check_stack(value) -> str:
    if value not in CLUSTER_STACKS:
        raise errors.InvalidArgument(f"OCFS2 cluster stack must be one of "
                                     f"{', '.join(CLUSTER_STACKS)}, got {value!r}")
    return value


def check_label(value) -> str:
    if not isinstance(value, str) or not _LABEL.fullmatch(value):
        raise errors.InvalidArgument(f"OCFS2 label must be 1-63 of [A-Za-z0-9_.-], got "
                                     f"{value!r}")
    return value


def check_cluster_name(value) -> str:
    if not isinstance(value, str) or not _CLUSTER_NAME.fullmatch(value):
        raise errors.InvalidArgument(f"OCFS2 cluster name must be 1-16 of [A-Za-z0-9_], got "
                                     f"{value!r}")
    return value


class OCFS2Operations:
    def __init__(self, node_ops):
        self.node = node_ops

    def _device(self, name: str) -> str:
        return self.node.wait_for_device(name)

    def ocfs2_info(self, name: str) -> dict:
        out = self.node._run(["tunefs.ocfs2", "-Q", r"%U\t%V\t%N\n", self._device(name)], name)
        fields = out.strip().split("\t")
        if len(fields) != 3:
            raise errors.InvalidArgument(f"{name} does not hold an OCFS2 filesystem", name)
        uuid, label, slots = fields
        return {"uuid": uuid.lower(), "label": label, "slots": int(slots)}

    def ocfs2_format(self, name: str, slots: int, cluster_stack: str, label: str,
                     cluster_name: str = "ocfs2") -> dict:
        """mkfs.ocfs2 on a new zvol. An o2cb filesystem is formatted for its cluster without
        the cluster being online here: the storage node need not be a member."""
        argv = ["mkfs.ocfs2", "-q", "-N", str(check_slots(slots)), "-L", check_label(label)]
        if check_stack(cluster_stack) == "local":
            argv += ["-M", "local"]
        else:
            argv += ["--cluster-stack=o2cb", f"--cluster-name={check_cluster_name(cluster_name)}"]
        device = self._device(name)
        try:
            self.node._run(argv + [device], name)
        except errors.ZFSError as exc:
            raise errors.InvalidArgument(
                f"mkfs.ocfs2 failed on {name} ({exc.message.strip().splitlines()[-1]}); "
                f"a volume too small for its node slots and journals is the usual cause", name
            ) from None
        return self.ocfs2_info(name)

    def ocfs2_new_identity(self, name: str, label: str) -> dict:
        """New UUID and label for a cloned OCFS2 volume (never mounted anywhere yet)."""
        self.node._run(["tunefs.ocfs2", "-y", f"--cloned-volume={check_label(label)}",
                        self._device(name)], name)
        return self.ocfs2_info(name)


def operations(node_ops) -> dict:
    ocfs2 = OCFS2Operations(node_ops)
    return {"ocfs2_info": ocfs2.ocfs2_info, "ocfs2_format": ocfs2.ocfs2_format,
            "ocfs2_new_identity": ocfs2.ocfs2_new_identity}
