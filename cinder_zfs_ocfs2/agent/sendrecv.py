"""`zfs send | zfs receive` as two child processes with a pump between them, that never wedge.

The pump (a thread) moves the stream from send's stdout to receive's stdin; the caller's thread
watches both processes:

- receive fails (pool full, quota, target exists): the pump's next write breaks, and `zfs send`
  is stopped at once (it would block forever on a pipe nobody reads, keeping its hold on the
  source snapshot and a worker of the agent);
- send fails: receive gets the end of the stream and fails by itself; it is stopped if it does
  not within seconds;
- no data moves for ``stall`` seconds: both are stopped. There is no total deadline: a copy of
  any size must be able to complete;
- ``progress(info)`` is called every PROGRESS_INTERVAL seconds while data moves (the agent
  sends it to the client, whose deadline is "no progress for zfs_ssh_timeout"), and the agent
  logs every LOG_EVERY bytes. A progress report that cannot be delivered means the caller is
  gone: the copy is stopped, nobody would use it.

The error raised is the first real one (receive's "out of space", not send's "broken pipe"),
typed by errors.from_cli. Cleaning up what receive left is the caller's job (it knows whether
the target existed before). Standard library only.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable

from cinder_zfs_ocfs2.zfs import errors

LOG = logging.getLogger(__name__)

CHUNK = 1024 * 1024
POLL = 0.2                     # seconds between looks at the two processes
STOP_GRACE = 5.0               # SIGTERM, then SIGKILL after this long
RECEIVE_GRACE = 10.0           # after send failed, receive must notice the end within this
PROGRESS_INTERVAL = 5.0        # seconds between progress reports to the client
LOG_EVERY = 256 * 1024 * 1024  # bytes between progress lines in the agent's log
_STDERR_KEEP = 64 * 1024


class _Child:
    """One child process whose stderr is collected (the tail of it) while it runs."""

    def __init__(self, argv: list[str], **popen):
        self.argv = argv
        self.proc = subprocess.Popen(argv, stderr=subprocess.PIPE, **popen)
        self.stopped = False  # stopped by us: its failure is a consequence, not the cause
        self._stderr = bytearray()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        for chunk in iter(lambda: self.proc.stderr.read(4096), b""):
            self._stderr += chunk
            del self._stderr[:-_STDERR_KEEP]

    def stderr(self) -> str:
        self._reader.join(STOP_GRACE)
        return self._stderr.decode(errors="replace").strip()

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    @property
    def failed(self) -> bool:
        return self.proc.poll() not in (None, 0)

    def stop(self) -> None:
        if self.running:
            self.stopped = True
            stop_process(self.proc, STOP_GRACE)


def stop_process(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM, then SIGKILL when ``proc`` is still there after ``grace`` seconds; reaped."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class SendReceive:
    def __init__(self, send_argv: list[str], recv_argv: list[str], label: str,
                 stall: float, progress: Callable[[dict], None] | None = None):
        self.send_argv, self.recv_argv = send_argv, recv_argv
        self.label = label  # "<snapshot> -> <target>", for the log and errors
        self.stall = stall
        self.progress = progress
        self.copied = 0
        self.moved_at = time.monotonic()
        self._pipe_broke = False

    def _pump(self, send: _Child, recv: _Child) -> None:
        source, sink = send.proc.stdout.fileno(), recv.proc.stdin
        try:
            while chunk := os.read(source, CHUNK):
                sink.write(chunk)
                sink.flush()
                self.copied += len(chunk)
                self.moved_at = time.monotonic()
        except OSError:  # receive exited (EPIPE): the watcher stops send
            self._pipe_broke = True
        finally:
            try:
                sink.close()  # end of stream: receive finishes (or fails on a short stream)
            except OSError:
                self._pipe_broke = True

    def run(self) -> int:
        """Copy; returns the bytes moved or raises the first real error as a ZFSError."""
        send = _Child(self.send_argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        try:
            recv = _Child(self.recv_argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        except BaseException:
            send.stop()
            raise
        pump = threading.Thread(target=self._pump, args=(send, recv), daemon=True,
                                name=f"send|receive {self.label}")
        started = time.monotonic()
        next_report, next_log = started + PROGRESS_INTERVAL, LOG_EVERY
        send_failed_at = None
        stalled = caller_gone = False
        pump.start()
        try:
            while pump.is_alive() or send.running or recv.running:
                pump.join(POLL)
                now = time.monotonic()
                if self._pipe_broke or recv.failed:
                    send.stop()          # nobody reads its stream any more
                if send.failed and not send.stopped:
                    send_failed_at = send_failed_at or now
                    if now - send_failed_at > RECEIVE_GRACE:
                        recv.stop()      # it should have seen the end of the stream by now
                if now - self.moved_at > self.stall:
                    stalled = True
                    break
                if self.copied >= next_log:
                    LOG.info("send|receive %s: %d MiB copied in %.0f s", self.label,
                             self.copied >> 20, now - started)
                    next_log += LOG_EVERY
                # Also while receive commits what it got (seconds on a loaded node): the
                # caller's deadline is silence, and the copy is not done until receive is.
                if self.progress is not None and now >= next_report:
                    next_report = now + PROGRESS_INTERVAL
                    try:
                        self.progress({"bytes": self.copied, "seconds": round(now - started)})
                    except Exception as exc:  # the session is gone: nobody awaits this copy
                        LOG.error("send|receive %s: cannot report progress (%s); stopping it",
                                  self.label, exc)
                        caller_gone = True
                        break
        finally:
            send.stop()
            recv.stop()
            pump.join(STOP_GRACE)
            send.proc.stdout.close()
        if stalled:
            raise errors.ZFSError(
                f"send|receive {self.label} stopped: no data moved for {self.stall:.0f} s "
                f"(after {self.copied >> 20} MiB); check the pool's health and load")
        if caller_gone:
            raise errors.TransportError(f"send|receive {self.label} stopped: the client went "
                                        f"away")
        if send.failed and not send.stopped:
            raise _failure("zfs send", self.label, send.stderr(), self.copied)
        if recv.failed:
            raise _failure("zfs receive", self.label, recv.stderr(), self.copied)
        if send.failed:
            raise _failure("zfs send", self.label, send.stderr() or "stopped", self.copied)
        LOG.info("send|receive %s: done, %d MiB in %.0f s", self.label, self.copied >> 20,
                 time.monotonic() - started)
        return self.copied


def _failure(command: str, label: str, stderr: str, copied: int) -> errors.ZFSError:
    cause = errors.from_cli(stderr)
    return type(cause)(f"{command} failed in send|receive {label} after {copied >> 20} MiB: "
                       f"{cause.message}")
