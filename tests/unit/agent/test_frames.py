"""Every frame gets an answer, by id when one can be read, and the agent keeps serving."""

import inspect
import io
import json

import pytest

from cinder_zfs_ocfs2.agent import protocol
from cinder_zfs_ocfs2.agent.server import AgentServer
from tests.unit.zfs.fakes import RecordingOperations

VOL = "tank/cinder/p/volume-a"


def serve(frames: list[bytes], ops=None) -> list[dict]:
    """The replies (after the hello) to ``frames`` and then a `version` request with id "end"."""
    out = io.BytesIO()
    ending = protocol.encode({"id": "end", "op": "version", "args": {}})
    server = AgentServer(ops or RecordingOperations(), io.BytesIO(b"".join(frames) + ending),
                         out, workers=2)
    server.serve()
    replies = [json.loads(line) for line in out.getvalue().splitlines()][1:]
    assert replies[-1]["id"] == "end" or any(r["id"] == "end" and r["ok"] for r in replies)
    return [r for r in replies if r["id"] != "end"]


def one(frame: bytes, ops=None) -> dict:
    (reply,) = serve([frame.rstrip(b"\n") + b"\n"], ops)
    assert reply["ok"] is False and reply["error"]["code"] == "invalid", reply
    return reply


def test_a_frame_nested_200000_deep():
    reply = one(b"[" * 200_000)
    assert reply["id"] is None and "nested too deeply" in reply["error"]["message"]


def test_deep_nesting_inside_a_request_keeps_its_id():
    reply = one(b'{"id": 4, "op": "exists", "args": {"name": ' + b"[" * 100_000 + b"]" * 100_000
                + b"}}")
    assert reply["id"] == 4


@pytest.mark.parametrize("frame,why", [
    (b'{"id": 1, "op": "exists", "args": {"name": NaN}}', "NaN"),
    (b'{"id": 1, "op": "exists", "args": {"name": -Infinity}}', "Infinity"),
    (b'{"id": 1, "op": "create_volume", "args": {"size": 1e999}}', "out of range"),
    (b'{"id": 1, "op": "create_volume", "args": {"size": ' + b"9" * 5000 + b"}}", "digits"),
    (b'{"id": 1, "op": "destroy", "args": {"name": "a", "name": "b"}}', "duplicate key"),
    (b'{"id": 1, "id": 2, "op": "version", "args": {}}', "duplicate key"),
    (b'{"id": 1, "op": "exists", "args": {"name": "\xff\xfe"}}', "utf-8"),
    (b'{"id": 1, "op": "exists", "args": {"name": "caf\xc3"}}', "utf-8"),
])
def test_numbers_constants_duplicates_and_bad_utf8_are_refused_by_id(frame, why):
    reply = one(frame)
    assert reply["id"] == 1 and why in reply["error"]["message"]


def test_utf16_is_not_guessed():
    reply = one('{"id": 1, "op": "version", "args": {}}'.encode("utf-16"))
    assert reply["id"] is None


@pytest.mark.parametrize("request_id", [True, 1.5, None, [], {}, 2**64, "", "x" * 65])
def test_ids_the_agent_cannot_answer_by(request_id):
    reply = one(json.dumps({"id": request_id, "op": "version", "args": {}}).encode())
    assert reply["id"] is None and "valid id" in reply["error"]["message"]


def test_an_oversized_frame_is_answered_by_its_id_at_once():
    big = b'{"id": 77, "op": "exists", "args": {"name": "' + b"a" * (2 * protocol.MAX_FRAME)
    reply = one(big + b'"}}')
    assert reply["id"] == 77 and "exceeds" in reply["error"]["message"]
    assert len(json.dumps(reply)) < 1000
    reply = one(b'{"id": "req-8", "op": "x", "args": ' + b"[" * (2 * protocol.MAX_FRAME))
    assert reply["id"] == "req-8"


def test_a_malformed_frame_with_a_readable_id_is_answered_by_it():
    assert one(b'{"id": 12, "op": "version", "args": {}')["id"] == 12
    assert one(b'{"id": 12 "op"}')["id"] is None  # not the start of a request


def test_error_messages_never_echo_a_whole_frame():
    reply = one(json.dumps({"id": 3, "op": "x" * 500_000, "args": {}}).encode())
    assert len(reply["error"]["message"]) <= protocol.MAX_MESSAGE + 40


# Values of every JSON type, and strings hostile on a command line.
WRONG = [None, True, 0, -1, 2**63, 1.5, "", "x", "-r", "x" * 300, "a\tb", [], ["x"], [1],
         {}, {"a": 1}, {"compression": "lz4"}, [[[]]]]


def _requests():
    ops = RecordingOperations()
    for op in ops.operations:
        params = inspect.signature(ops._ops[op]).parameters
        for param in params:
            for value in WRONG:
                args = {p: "tank/cinder/p/volume-a" for p in params
                        if params[p].default is inspect.Parameter.empty}
                args[param] = value
                yield op, args


def test_wrong_types_of_every_argument_of_every_operation_get_a_structured_answer(caplog):
    requests = list(_requests())
    frames = [protocol.encode({"id": i, "op": op, "args": args})
              for i, (op, args) in enumerate(requests)]
    replies = {r["id"]: r for r in serve(frames)}
    assert len(replies) == len(requests)
    # Every answer is a ZFS error the agent meant to give, never an exception it did not expect
    # (the server logs those with their traceback).
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
