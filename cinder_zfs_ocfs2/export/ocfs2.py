"""OCFS2-ready volumes: the ocfs2: extra specs, and the node calls that format and re-identify.

    ocfs2:format         true | false   format new volumes of this type with OCFS2
    ocfs2:slots          1 .. 255        hosts that can mount it at once (default: option)
    ocfs2:cluster_stack  local | o2cb    o2cb for multi-host mounts (default: option)
    ocfs2:label          text            filesystem label (default: vol-<first 8 of the id>)
    ocfs2:cluster_name   text            o2cb cluster name (default: ocfs2)

The volume's filesystem facts are kept as user properties on its zvol and handed to Cinder as
volume metadata (ocfs2_uuid, ocfs2_label, ocfs2_slots, ocfs2_cluster_stack).
"""

from __future__ import annotations

import dataclasses

from cinder_zfs_ocfs2.agent.ocfs2 import check_cluster_name, check_label, check_slots, check_stack
from cinder_zfs_ocfs2.operations.specs import parse_bool
from cinder_zfs_ocfs2.zfs.errors import InvalidArgument
from cinder_zfs_ocfs2.zfs.types import PROP_FILESYSTEM
from cinder_zfs_ocfs2.zfs.types import PROP_OCFS2_STACK as PROP_STACK

NAMESPACE = "ocfs2:"
__all__ = ["PROP_FILESYSTEM", "PROP_STACK", "OCFS2Spec", "OCFS2Volumes", "ocfs2_spec"]
_KEYS = ("format", "slots", "cluster_stack", "label", "cluster_name")


@dataclasses.dataclass(frozen=True)
class OCFS2Spec:
    slots: int
    cluster_stack: str
    label: str | None
    cluster_name: str


def ocfs2_spec(extra_specs: dict | None, default_slots: int,
               default_stack: str) -> OCFS2Spec | None:
    """The type's OCFS2 settings, or None when volumes of this type are not formatted."""
    given = {k[len(NAMESPACE):]: v for k, v in (extra_specs or {}).items()
             if k.startswith(NAMESPACE)}
    unknown = set(given) - set(_KEYS)
    if unknown:
        raise InvalidArgument(f"unknown extra spec(s) {', '.join(NAMESPACE + k for k in unknown)}"
                              f"; known: {', '.join(NAMESPACE + k for k in _KEYS)}")
    if not parse_bool("ocfs2:format", given.get("format", "false")):
        return None
    try:
        slots = int(given.get("slots", default_slots))
    except ValueError:
        raise InvalidArgument(f"ocfs2:slots={given['slots']!r}: expected a number 1-255") from None
    label = given.get("label")
    return OCFS2Spec(slots=check_slots(slots),
                     cluster_stack=check_stack(given.get("cluster_stack", default_stack)),
                     label=check_label(label) if label is not None else None,
                     cluster_name=check_cluster_name(given.get("cluster_name", "ocfs2")))


class OCFS2Volumes:
    """Formatting and re-identifying zvols through the node's transport."""

    def __init__(self, transport):
        self.transport = transport

    def format(self, dataset: str, spec: OCFS2Spec, volume_id: str) -> dict:
        info = self.transport.call("ocfs2_format", name=dataset, slots=spec.slots,
                                   cluster_stack=spec.cluster_stack,
                                   label=spec.label or f"vol-{volume_id[:8]}",
                                   cluster_name=spec.cluster_name)
        return {**info, "cluster_stack": spec.cluster_stack}

    def new_identity(self, dataset: str, label: str, cluster_stack: str) -> dict:
        info = self.transport.call("ocfs2_new_identity", name=dataset, label=label)
        return {**info, "cluster_stack": cluster_stack}

    @staticmethod
    def properties(info: dict) -> dict[str, str]:
        return {PROP_FILESYSTEM: "ocfs2", PROP_STACK: info["cluster_stack"]}

    @staticmethod
    def metadata(info: dict) -> dict[str, str]:
        return {"ocfs2_uuid": info["uuid"], "ocfs2_label": info["label"],
                "ocfs2_slots": str(info["slots"]), "ocfs2_cluster_stack": info["cluster_stack"]}
