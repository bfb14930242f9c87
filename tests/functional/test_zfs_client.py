"""Every ZFS client operation on real OpenZFS: through the SSH agent, and through the local
transport run inside the guest with its own python3 and pyzfs (issue 3)."""

from __future__ import annotations

import json
import pathlib

from tests.functional import client_scenario
from tests.functional.driver_env import AGENT_DIR

HERE = pathlib.Path(__file__).resolve().parent


def test_every_operation_through_the_ssh_agent(node, dataset, agent_transport_factory):
    from cinder_zfs_ocfs2.zfs.client import ZFSClient

    transport = agent_transport_factory()
    facts = client_scenario.run(ZFSClient(transport), dataset)
    assert transport.info["pyzfs"] is True       # libzfs_core on the node
    assert facts["pool"] == "ONLINE"


def test_every_operation_through_the_local_transport_in_the_guest(node, dataset, agent_key):
    # agent_key installed the package at AGENT_DIR; the guest has python3 + pyzfs, no oslo.
    node.put_bytes((HERE / "client_scenario.py").read_bytes(), "/tmp/client_scenario.py")
    node.put_bytes(client_scenario.GUEST_MAIN.encode(), "/tmp/client_scenario_main.py")
    out = node.run(f"cd {AGENT_DIR} && python3 /tmp/client_scenario_main.py {dataset}").stdout
    facts = json.loads(out.strip().splitlines()[-1])
    assert facts["pyzfs"] is True and facts["pool"] == "ONLINE"


def test_real_agent_answers_bad_input_with_structured_errors_and_keeps_serving(node, agent_key):
    huge = b'{"id": 5, "op": "exists", "args": {"name": "' + b"x" * (2 * 1024 * 1024) + b'"}}'
    frames = [b"not json", b'{"id": 2, "op": "rm_rf", "args": {}}',
              b'{"id": 3, "op": "destroy", "args": {"name": "rpool/ROOT"}}',
              b'{"id": 4, "op": "destroy", "args": {"name": "tank/../etc"}}', huge,
              b'{"id": 6, "op": "exists", "args": {"name": "tank"}}']
    out = node.run(f"cd {AGENT_DIR} && python3 -m cinder_zfs_ocfs2.agent --root tank",
                   input=b"\n".join(frames) + b"\n").stdout
    replies = [json.loads(line) for line in out.splitlines()]
    assert replies[0]["type"] == "hello"
    by_id = {r["id"]: r for r in replies[1:]}
    assert [r["error"]["code"] for r in replies[1:] if r["id"] is None] == ["invalid"]
    # the oversized frame is answered by the id at its start: its caller fails at once
    assert all(by_id[i]["error"]["code"] == "invalid" for i in (2, 3, 4, 5))
    assert by_id[6] == {"id": 6, "ok": True, "result": True}   # still serving
