"""iSCSI export: Cinder's own target helper in local mode, LioAdm through the agent in ssh mode.

Local mode plugs the helper in exactly as the LVM driver does (target_mapping[target_helper] +
importutils.import_object). In ssh mode the target must live on the storage node, so only LIO
is offered: AgentLioAdm, which is LioAdm with cinder-rtstool run by the node's agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cinder import exception
from cinder.i18n import _
from oslo_utils import importutils

# The helpers the design names, should the caller not pass its driver's target_mapping.
DEFAULT_TARGET_MAPPING = {
    "lioadm": "cinder.volume.targets.lio.LioAdm",
    "tgtadm": "cinder.volume.targets.tgt.TgtAdm",
}


def target_driver_for(configuration: Any, executor: Any, transport: Any, mode: str,
                      target_mapping: Mapping[str, str] | None = None) -> Any:
    """The target helper object for a backend.

    ``mode`` is zfs_agent_mode ("local" or "ssh"); ``target_mapping`` is the driver's
    ``self.target_mapping`` (BaseVD's helper name -> class path). In ssh mode the helper
    is constructed against the node (it verifies rtslib there), so call this from do_setup.
    """
    helper = configuration.safe_get("target_helper") or "lioadm"
    if mode == "local":
        mapping = target_mapping or DEFAULT_TARGET_MAPPING
        if helper not in mapping:
            raise exception.InvalidConfigurationValue(option="target_helper", value=helper)
        return importutils.import_object(mapping[helper], configuration=configuration,
                                         executor=executor)
    if mode == "ssh":
        if helper != "lioadm":
            raise exception.InvalidConfigurationValue(message=_(
                "target_helper=%(helper)s is not supported with zfs_agent_mode=ssh: the iSCSI "
                "target is configured on the storage node by the agent, with LIO only. Set "
                "target_helper=lioadm, or run cinder-volume on the node with "
                "zfs_agent_mode=local.") % {"helper": helper})
        from cinder_zfs_ocfs2.export.agent_lio import AgentLioAdm  # noqa: PLC0415

        return AgentLioAdm(configuration=configuration, executor=executor, transport=transport)
    raise exception.InvalidConfigurationValue(option="zfs_agent_mode", value=mode)
