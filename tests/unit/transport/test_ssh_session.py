"""The SSH transport's session multiplexing, against a real agent over a socket pair."""

import concurrent.futures
import io
import logging
import socket
import threading
import time

import pytest

from cinder_zfs_ocfs2.agent.server import AgentServer
from cinder_zfs_ocfs2.transport import ssh
from cinder_zfs_ocfs2.transport.ssh import _Session
from cinder_zfs_ocfs2.zfs import errors
from cinder_zfs_ocfs2.zfs.client import ZFSClient
from tests.unit.zfs.fakes import RecordingOperations


class FakeChannel:
    """The three things _Session uses of a paramiko Channel, over a socket."""

    def __init__(self, sock):
        self.sock = sock

    def makefile(self, mode):
        return self.sock.makefile(mode)

    def makefile_stderr(self, mode):
        return io.BytesIO(b"")

    def sendall(self, data):
        self.sock.sendall(data)


class FakeClient:
    def close(self):
        pass


@pytest.fixture
def session():
    ours, theirs = socket.socketpair()
    ops = RecordingOperations(replies={"list": "tank/cinder/p/v@s\t42\n"})
    server = AgentServer(ops, theirs.makefile("rb"), theirs.makefile("wb"), workers=4)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    s = _Session(FakeClient(), FakeChannel(ours), "test-node")
    yield s, theirs
    ours.close()
    theirs.close()


class SessionTransport:
    def __init__(self, s):
        self.s = s
        self.info = s.hello

    def call(self, op, **args):
        return self.s.request(op, args, timeout=5)


def test_concurrent_callers_get_their_own_replies(session):
    s, _ = session
    client = ZFSClient(SessionTransport(s))
    names = [f"tank/cinder/p/volume-{i}" for i in range(40)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(client.exists, names))
    assert results == [True] * 40
    assert s.hello["root"] == "tank/cinder"


def test_errors_arrive_typed(session):
    s, _ = session
    with pytest.raises(errors.InvalidArgument, match="outside the root"):
        s.request("destroy", {"name": "tank/elsewhere"}, timeout=5)


def test_listing_is_parsed(session):
    s, _ = session
    rows = s.request("list", {"name": "tank/cinder", "types": ["snapshot"],
                              "properties": ["name", "guid"]}, timeout=5)
    assert rows == [{"name": "tank/cinder/p/v@s", "guid": "42"}]


def test_broken_session_fails_calls_with_transport_error(session):
    s, theirs = session
    theirs.shutdown(socket.SHUT_RDWR)
    with pytest.raises(errors.TransportError):
        s.request("exists", {"name": "tank/cinder/p/v"}, timeout=5)
    assert s.closed


class SlowOperations(RecordingOperations):
    """send_receive takes 3 s and reports progress every 0.1 s; promote takes 3 s, silent."""

    def send_receive(self, snapshot, target, properties=None, progress=None):
        for step in range(30):
            time.sleep(0.1)
            if progress is not None:
                progress({"bytes": step << 20, "seconds": step / 10})
        return {"bytes": 30 << 20, "seconds": 3.0}

    def promote(self, name):
        time.sleep(3)


@pytest.fixture
def slow_session():
    ours, theirs = socket.socketpair()
    server = AgentServer(SlowOperations(), theirs.makefile("rb"), theirs.makefile("wb"),
                         workers=4)
    threading.Thread(target=server.serve, daemon=True).start()
    yield _Session(FakeClient(), FakeChannel(ours), "test-node")
    ours.close()
    theirs.close()


def test_the_deadline_is_no_progress_for_timeout_not_total_time(slow_session, caplog,
                                                                monkeypatch):
    monkeypatch.setattr(ssh, "PROGRESS_LOG_INTERVAL", 0.5)
    caplog.set_level(logging.INFO)
    result = slow_session.request("send_receive", {"snapshot": "tank/cinder/p/v@s",
                                                   "target": "tank/cinder/p/w"}, timeout=1)
    assert result["bytes"] == 30 << 20  # three times its timeout, but it kept reporting
    assert any("send_receive on test-node:" in r.getMessage() and "MiB copied" in r.getMessage()
               for r in caplog.records if r.levelno == logging.INFO)


def test_a_silent_call_times_out(slow_session):
    started = time.monotonic()
    with pytest.raises(errors.TransportError, match="no reply to promote and no progress within"):
        slow_session.request("promote", {"name": "tank/cinder/p/v"}, timeout=1)
    assert time.monotonic() - started < 2.5  # at its timeout, not when promote ends (3 s)


def test_an_oversized_request_fails_at_once_not_at_its_timeout(session):
    s, _ = session
    started = time.monotonic()
    with pytest.raises(errors.InvalidArgument, match="exceeds"):
        s.request("exists", {"name": "x" * (2 * 1024 * 1024)}, timeout=60)
    assert time.monotonic() - started < 10
