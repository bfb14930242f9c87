"""Volume data streams: a go-ahead, raw bytes, a final answer; refusals before any byte."""

import io
import json

import pytest

from cinder_zfs_ocfs2.agent import protocol
from cinder_zfs_ocfs2.agent.server import AgentServer
from tests.unit.zfs.fakes import RecordingOperations

VOLUME = "tank/cinder/p/volume-a"
VOLSIZE = 4 * 1024 * 1024


class DeviceOperations(RecordingOperations):
    """The zvol's device is a file of VOLSIZE bytes."""

    def __init__(self, device, kind="volume"):
        super().__init__(replies={"get": f"type\t{kind}\t-\n"})
        self.device = device
        device.write_bytes(b"\xee" * VOLSIZE)

    def wait_for_device(self, name, timeout=60.0):
        self.names.check(name)
        return str(self.device)


def stream(ops, request: dict, data: bytes = b"") -> tuple[list[dict], bytes]:
    """Serve one channel; returns the JSON frames after the hello and any raw bytes sent."""
    out = io.BytesIO()
    AgentServer(ops, io.BytesIO(protocol.encode(request) + data), out, workers=1).serve()
    frames, rest = [], out.getvalue()
    while rest.startswith(b"{"):
        line, _, rest = rest.partition(b"\n")
        frames.append(json.loads(line))  # the raw bytes of these tests never start with {
    return frames[1:], rest


@pytest.fixture
def ops(tmp_path):
    return DeviceOperations(tmp_path / "zd0")


def test_write_gets_a_go_ahead_then_writes_and_answers(ops):
    data = b"image" * 1000
    frames, _ = stream(ops, {"id": 1, "op": "write_volume",
                             "args": {"name": VOLUME, "size": len(data)}}, data)
    assert frames == [{"id": 1, "ok": True, "result": {"size": VOLSIZE}},
                      {"id": 1, "ok": True, "result": {"bytes": len(data)}}]
    written = ops.device.read_bytes()
    assert written[:len(data)] == data and written[len(data):] == b"\xee" * (VOLSIZE - len(data))


def test_read_sends_the_whole_volume_after_the_go_ahead(ops):
    frames, raw = stream(ops, {"id": 1, "op": "read_volume", "args": {"name": VOLUME}})
    assert frames == [{"id": 1, "ok": True, "result": {"size": VOLSIZE}}]
    assert raw == b"\xee" * VOLSIZE


@pytest.mark.parametrize("args, code", [
    ({"name": VOLUME, "size": VOLSIZE + 1}, "invalid"),          # does not fit
    ({"name": VOLUME, "size": 0}, "invalid"),
    ({"name": VOLUME, "size": "12"}, "invalid"),
    ({"name": "tank/other/volume-a", "size": 10}, "invalid"),    # outside the root
    ({"name": f"{VOLUME}@snap", "size": 10}, "invalid"),
])
def test_refused_writes_get_no_go_ahead_and_touch_nothing(ops, args, code):
    frames, _ = stream(ops, {"id": 1, "op": "write_volume", "args": args}, b"x" * 10)
    assert len(frames) == 1 and frames[0]["ok"] is False
    assert frames[0]["error"]["code"] == code
    assert ops.device.read_bytes() == b"\xee" * VOLSIZE


def test_a_filesystem_is_not_a_volume(tmp_path):
    ops = DeviceOperations(tmp_path / "zd0", kind="filesystem")
    frames, raw = stream(ops, {"id": 1, "op": "read_volume", "args": {"name": VOLUME}})
    assert frames[0]["error"]["code"] == "invalid" and raw == b""


def test_a_short_stream_is_an_error_naming_the_partial_copy(ops):
    frames, _ = stream(ops, {"id": 1, "op": "write_volume",
                             "args": {"name": VOLUME, "size": 1000}}, b"y" * 600)
    assert frames[0]["ok"] is True
    assert frames[1]["ok"] is False and "600 of 1000" in frames[1]["error"]["message"]
    assert "partial" in frames[1]["error"]["message"]


def test_a_stream_must_have_a_channel_of_its_own(ops):
    requests = (protocol.encode({"id": 1, "op": "exists", "args": {"name": VOLUME}})
                + protocol.encode({"id": 2, "op": "read_volume", "args": {"name": VOLUME}}))
    out = io.BytesIO()
    AgentServer(ops, io.BytesIO(requests), out, workers=1).serve()
    replies = {f["id"]: f for f in map(json.loads, out.getvalue().splitlines()[1:])}
    assert replies[2]["ok"] is False and "channel of its own" in replies[2]["error"]["message"]
    assert replies[1]["ok"] is True


def test_streams_are_not_callable_as_json_operations(ops):
    assert "write_volume" not in ops.operations and "read_volume" not in ops.operations
