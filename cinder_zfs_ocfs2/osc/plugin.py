"""The openstackclient plugin module (entry point ``openstack.cli.extension``)."""

from __future__ import annotations

import argparse

from osc_lib import utils

from cinder_zfs_ocfs2.osc import client

API_NAME = "zfs_catalog"
API_VERSION_OPTION = "os_zfs_catalog_api_version"
DEFAULT_API_VERSION = "1"
API_VERSIONS = ("1",)


def make_client(instance) -> client.CatalogClient:
    """The catalog API client for an openstackclient ClientManager."""
    return client.CatalogClient(instance.session, interface=instance.interface,
                                region_name=instance.region_name)


def build_option_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--os-zfs-catalog-api-version", metavar="<zfs-catalog-api-version>",
        default=utils.env("OS_ZFS_CATALOG_API_VERSION"),
        help=f"Snapshot catalog API version, default={DEFAULT_API_VERSION} "
             "(Env: OS_ZFS_CATALOG_API_VERSION)")
    return parser
