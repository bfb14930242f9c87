"""Entry point: `python3 -m cinder_zfs_ocfs2.agent --root tank/cinder` (or cinder-zfs-agent).

Meant as the forced command of the driver's SSH key (etc/agent-authorized_keys.example).
Logs go to stderr (the SSH session's stderr, or syslog via the caller); stdout is the protocol.
"""

from __future__ import annotations

import argparse
import logging
import sys

from cinder_zfs_ocfs2.agent.ops import NodeOperations
from cinder_zfs_ocfs2.agent.server import AgentServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cinder-zfs-agent", description=__doc__)
    parser.add_argument("--root", required=True, action="append",
                        help="root dataset; every name the agent touches must be inside one "
                             "(repeat for several backends on this node)")
    parser.add_argument("--no-pyzfs", action="store_true",
                        help="use the zfs CLI even when libzfs_core is importable")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if args.debug else logging.INFO,
                        format="cinder-zfs-agent %(levelname)s %(message)s")
    ops = NodeOperations(args.root, pyzfs=None if args.no_pyzfs else "auto")
    if ops.lzc is None:
        logging.warning("libzfs_core (python3-pyzfs) is not importable: using the zfs CLI for "
                        "every operation")
    AgentServer(ops, sys.stdin.buffer, sys.stdout.buffer).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
