"""send|receive with real child processes (a scripted `zfs`): whichever side fails, the other
is stopped within seconds, the partial target is destroyed, the first real error is reported;
long copies report progress; a stalled copy is stopped."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from cinder_zfs_ocfs2.agent import policy, sendrecv
from cinder_zfs_ocfs2.agent.ops import NodeOperations
from cinder_zfs_ocfs2.zfs import errors

SNAP = "tank/cinder/p/volume-a@snapshot-1"
TARGET = "tank/cinder/p/volume-b"

# A `zfs` for send, receive, list (exists) and destroy, steered by environment variables; the
# datasets it "has" are files in $FAKE_STATE, every process it runs writes its pid there.
FAKE_ZFS = textwrap.dedent('''
    import os, sys, time
    state = os.environ["FAKE_STATE"]
    cmd, args = sys.argv[2], sys.argv[3:]  # sys.argv[1] is "zfs"
    path = lambda name: os.path.join(state, name.replace("/", "_"))
    open(os.path.join(state, f"pid-{cmd}-{os.getpid()}"), "w").close()
    env = lambda key, default: os.environ.get(key, default)
    if cmd == "send":
        chunk, sent = b"z" * 65536, 0
        limit = int(env("SEND_BYTES", "1048576"))
        fail_after = int(env("SEND_FAIL_AFTER", "-1"))
        while sent < limit:
            if sent == fail_after:
                sys.stderr.write(f"cannot send {args[-1]}: I/O error\\n")
                sys.exit(1)
            if sent == int(env("SEND_HANG_AFTER", "-1")):
                time.sleep(3600)
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            sent += len(chunk)
            time.sleep(float(env("SEND_DELAY", "0")))
    elif cmd == "receive":
        target = args[-1]
        open(path(target), "w").close()  # what a receive leaves half-made
        got, fail_after = 0, int(env("RECV_FAIL_AFTER", "-1"))
        while data := sys.stdin.buffer.read(65536):
            got += len(data)
            if 0 <= fail_after <= got:
                sys.stderr.write("cannot receive new filesystem stream: out of space\\n")
                sys.exit(1)
        if got < int(env("SEND_BYTES", "1048576")):
            sys.stderr.write("cannot receive: failed to read from stream\\n")
            sys.exit(1)
        time.sleep(float(env("RECV_COMMIT_DELAY", "0")))  # committing what it got
    elif cmd == "list":
        if not os.path.exists(path(args[-1])):
            sys.stderr.write(f"cannot open '{args[-1]}': dataset does not exist\\n")
            sys.exit(1)
        print(args[-1])
    elif cmd == "destroy":
        os.remove(path(args[-1]))
    else:
        sys.exit(f"unexpected zfs {cmd}")
''')


@pytest.fixture
def node(tmp_path, monkeypatch):
    script = tmp_path / "zfs.py"
    script.write_text(FAKE_ZFS)
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("FAKE_STATE", str(state))
    # Every command runs as [python, zfs.py, "zfs", "send", ...].
    ops = NodeOperations("tank/cinder", pyzfs=None, command_prefix=[sys.executable, str(script)])
    ops.state = state
    return ops


def alive(state) -> list[str]:
    """The scripted processes that still run."""
    running = []
    for entry in os.listdir(state):
        if entry.startswith("pid-"):
            pid = int(entry.rsplit("-", 1)[1])
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split()[2] != "Z":
                    running.append(entry)
    return running


def exists(node, name) -> bool:
    return os.path.exists(node.state / name.replace("/", "_"))


def test_a_copy_reports_progress_and_returns_its_size(node, monkeypatch):
    monkeypatch.setenv("SEND_BYTES", str(40 * 65536))
    monkeypatch.setenv("SEND_DELAY", "0.02")
    monkeypatch.setattr(sendrecv, "PROGRESS_INTERVAL", 0.2)
    reports = []
    result = node.send_receive(SNAP, TARGET, {"compression": "lz4"}, progress=reports.append)
    assert result["bytes"] == 40 * 65536
    assert len(reports) >= 2 and all(set(r) == {"bytes", "seconds"} for r in reports)
    assert [r["bytes"] for r in reports] == sorted(r["bytes"] for r in reports)
    assert exists(node, TARGET) and alive(node.state) == []


def test_progress_goes_on_while_receive_commits_after_the_stream(node, monkeypatch):
    """The caller's deadline is silence: a receive still committing after the last byte (long
    on a loaded node) must keep the call alive."""
    monkeypatch.setenv("SEND_BYTES", str(4 * 65536))
    monkeypatch.setenv("RECV_COMMIT_DELAY", "1.5")
    monkeypatch.setattr(sendrecv, "PROGRESS_INTERVAL", 0.2)
    reports = []
    started = time.monotonic()
    node.send_receive(SNAP, TARGET, progress=lambda info: reports.append(
        (time.monotonic() - started, info["bytes"])))
    late = [at for at, copied in reports if copied == 4 * 65536 and at > 1.0]
    assert late, f"no progress while receive committed: {reports}"


def test_receive_failing_mid_stream_stops_send_and_destroys_the_partial_target(node,
                                                                               monkeypatch):
    monkeypatch.setenv("SEND_BYTES", str(10 * 1024**3))  # would take minutes
    monkeypatch.setenv("RECV_FAIL_AFTER", str(1024**2))
    started = time.monotonic()
    with pytest.raises(errors.NoSpace) as info:
        node.send_receive(SNAP, TARGET)
    assert time.monotonic() - started < 15
    message = info.value.message
    assert "zfs receive failed" in message and "out of space" in message
    assert f"the partial copy {TARGET} was destroyed" in message
    assert info.value.name == TARGET
    assert not exists(node, TARGET)
    assert alive(node.state) == []  # no zfs send left behind


def test_send_failing_reports_sends_error_not_the_short_stream(node, monkeypatch):
    monkeypatch.setenv("SEND_FAIL_AFTER", str(4 * 65536))
    with pytest.raises(errors.ZFSError) as info:
        node.send_receive(SNAP, TARGET)
    assert "zfs send failed" in info.value.message and "I/O error" in info.value.message
    assert "failed to read from stream" not in info.value.message
    assert not exists(node, TARGET) and alive(node.state) == []


def test_a_stalled_copy_is_stopped(node, monkeypatch):
    monkeypatch.setenv("SEND_HANG_AFTER", str(2 * 65536))
    monkeypatch.setattr(policy, "SEND_RECEIVE_STALL", 1.0)
    started = time.monotonic()
    with pytest.raises(errors.ZFSError, match="no data moved for 1 s"):
        node.send_receive(SNAP, TARGET)
    assert time.monotonic() - started < 15
    assert not exists(node, TARGET) and alive(node.state) == []


def test_a_caller_that_went_away_stops_the_copy(node, monkeypatch):
    monkeypatch.setenv("SEND_BYTES", str(10 * 1024**3))
    monkeypatch.setenv("SEND_DELAY", "0.01")
    monkeypatch.setattr(sendrecv, "PROGRESS_INTERVAL", 0.2)

    def gone(info):
        raise BrokenPipeError("the session is closed")
    with pytest.raises(errors.TransportError, match="the client went away"):
        node.send_receive(SNAP, TARGET, progress=gone)
    assert not exists(node, TARGET) and alive(node.state) == []


def test_an_existing_target_is_never_touched(node):
    (node.state / TARGET.replace("/", "_")).write_text("")
    with pytest.raises(errors.AlreadyExists):
        node.send_receive(SNAP, TARGET)
    assert exists(node, TARGET)
    assert not any(e.startswith(("pid-send", "pid-receive")) for e in os.listdir(node.state))


def test_a_child_that_ignores_sigterm_is_killed(monkeypatch):
    monkeypatch.setattr(sendrecv, "STOP_GRACE", 0.5)
    child = sendrecv._Child([sys.executable, "-c",
                             "import signal, time; signal.signal(signal.SIGTERM, "
                             "signal.SIG_IGN); print(flush=True); time.sleep(60)"],
                            stdout=subprocess.PIPE)
    child.proc.stdout.readline()  # SIGTERM is ignored from here on
    started = time.monotonic()
    child.stop()
    assert child.proc.returncode == -signal.SIGKILL
    assert time.monotonic() - started < sendrecv.STOP_GRACE + 2
