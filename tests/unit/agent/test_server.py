"""The agent's protocol: framing, validation, structured errors, and it keeps serving."""

import io
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from cinder_zfs_ocfs2.agent import protocol
from cinder_zfs_ocfs2.agent.server import AgentServer
from tests.unit.zfs.fakes import RecordingOperations


def serve(lines: list[bytes], ops=None):
    ops = ops or RecordingOperations()
    out = io.BytesIO()
    AgentServer(ops, io.BytesIO(b"".join(lines)), out, workers=1).serve()
    frames = [json.loads(x) for x in out.getvalue().splitlines()]
    return frames[0], {f["id"]: f for f in frames[1:] if f["id"] is not None}, \
        [f for f in frames[1:] if f["id"] is None], ops


def req(i, op, **args):
    return protocol.encode({"id": i, "op": op, "args": args})


def test_hello_then_one_reply_per_request():
    hello, replies, _, ops = serve([
        req(1, "snapshot", names=["tank/cinder/p/volume-a@s1", "tank/cinder/p/volume-b@s1"]),
        req(2, "exists", name="tank/cinder/p/volume-a"),
    ])
    assert hello["type"] == "hello" and hello["protocol"] == protocol.PROTOCOL_VERSION
    assert hello["root"] == "tank/cinder" and "snapshot" in hello["operations"]
    assert replies[1] == {"id": 1, "ok": True, "result": None}
    assert replies[2]["ok"] is True
    # One CLI call for both snapshots: one txg.
    assert ops.commands[0] == ["zfs", "snapshot", "tank/cinder/p/volume-a@s1",
                               "tank/cinder/p/volume-b@s1"]


def test_bad_requests_get_structured_errors_and_agent_keeps_serving():
    huge = b'{"id": 9, "op": "exists", "args": {"name": "' + b"a" * (2 * protocol.MAX_FRAME) + \
        b'"}}\n'
    hello, replies, anonymous, ops = serve([
        b"this is not json\n",
        b"[1, 2]\n",
        b'{"op": "exists"}\n',
        huge,
        req(3, "rm_rf", path="/"),
        req(4, "destroy", name="tank/other/volume"),
        req(5, "destroy", name="tank/cinder/../etc"),
        req(6, "create_volume", name="tank/cinder/p/v", size=-1),
        req(7, "snapshot", names="tank/cinder/p/v@s"),
        req(8, "exists", name="tank/cinder/p/v", extra=1),
        req(10, "exists", name="tank/cinder/p/v"),
    ])
    assert len(anonymous) == 3
    assert all(a["error"]["code"] == "invalid" for a in anonymous)
    for i in (3, 4, 5, 6, 7, 8, 9):  # 9: oversized, answered by the id at its start
        assert replies[i]["ok"] is False and replies[i]["error"]["code"] == "invalid", i
    assert replies[10]["ok"] is True
    # Nothing refused reached the CLI.
    assert ops.commands == [["zfs", "list", "-H", "-o", "name", "-t", "all", "tank/cinder/p/v"]]


def test_cli_failures_travel_as_codes():
    ops = RecordingOperations(replies={"destroy": (1, "cannot destroy: dataset is busy")})
    _, replies, _, _ = serve([req(1, "destroy", name="tank/cinder/p/v")], ops)
    assert replies[1]["error"]["code"] == "busy"
    assert replies[1]["error"]["name"] == "tank/cinder/p/v"


def test_never_runs_recursive_dependents_destroy():
    ops = RecordingOperations()
    serve([req(1, "destroy", name="tank/cinder/p/v", recursive=True)], ops)
    assert ops.commands == [["zfs", "destroy", "-r", "tank/cinder/p/v"]]
    assert not any("-R" in c for c in ops.commands)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.binary(max_size=200),
    st.builds(lambda op, args: json.dumps({"id": 1, "op": op, "args": args}).encode(),
              st.sampled_from(sorted(RecordingOperations().operations) + ["x"]),
              st.dictionaries(st.sampled_from(["name", "names", "snapshot", "size", "target",
                                               "properties", "depth", "types", "tag"]),
                              st.one_of(st.text(max_size=40), st.integers(), st.none(),
                                        st.lists(st.text(max_size=40), max_size=3)),
                              max_size=4)),
), max_size=8))
def test_random_frames_never_crash_or_escape_the_root(frames):
    lines = [f.replace(b"\n", b" ") + b"\n" for f in frames] + [req(99, "version")]
    _, replies, _, ops = serve(lines)
    assert 99 in replies  # still serving after whatever came before
    for argv in ops.commands:
        for arg in argv[2:]:
            if "/" in arg and not arg.startswith("-") and "=" not in arg:
                assert arg == "tank" or arg.startswith("tank/cinder"), argv
