"""Remote mode: ONE persistent SSH session to the storage node's agent, shared by all callers.

A new SSH handshake costs seconds on a slow node, so the session is opened once and every
request is multiplexed over it: callers send a JSON line with an id and wait for the reply with
that id, which a reader thread hands over. A broken session fails the calls in flight with
TransportError (their outcome on the node is unknown) and is reopened, with backoff, by the
next call. Host keys are checked strictly against a known_hosts file unless configured off.

A call's deadline is "no reply and no progress for ``timeout`` seconds", not its total time:
long operations (send|receive) report progress while they run, so a copy of any size
completes, and a node that stops answering is still noticed within ``timeout``.
"""

from __future__ import annotations

import itertools
import logging as std_logging
import threading
import time
from typing import Any

import paramiko
from oslo_log import log as logging

from cinder_zfs_ocfs2.agent import protocol
from cinder_zfs_ocfs2.zfs import errors

LOG = logging.getLogger(__name__)


PROGRESS_LOG_INTERVAL = 30.0  # seconds between INFO lines about one call's progress


class _Pending:
    __slots__ = ("event", "reply", "op", "heard_at", "logged_at")

    def __init__(self, op: str):
        self.event = threading.Event()
        self.reply: dict | None = None
        self.op = op
        self.heard_at = self.logged_at = time.monotonic()  # last reply or progress


def _read_hello(stdout, where: str) -> dict:
    line = stdout.readline()
    try:
        hello = protocol.decode(line)
    except ValueError:
        raise errors.TransportError(
            f"{where} did not answer as cinder-zfs-agent (got {line[:200]!r}); check "
            f"the forced command of the driver's key in the node's authorized_keys") from None
    if hello.get("type") != "hello" or hello.get("protocol") != protocol.PROTOCOL_VERSION:
        raise errors.TransportError(
            f"{where} speaks agent protocol {hello.get('protocol')!r}, this driver "
            f"speaks {protocol.PROTOCOL_VERSION}; install the matching agent on the node")
    return hello


def _result(reply: dict) -> Any:
    if reply.get("ok"):
        return reply.get("result")
    raise errors.from_dict(reply.get("error") or {})


class _ChannelWriter:
    def __init__(self, channel):
        self.write = channel.sendall


class _Session:
    """One SSH channel running the agent, with its reader threads and pending requests."""

    def __init__(self, client: paramiko.SSHClient, channel, where: str):
        self.client = client
        self.channel = channel
        self.where = where
        self._stdout = channel.makefile("rb")
        self._stderr = channel.makefile_stderr("rb")
        self._write_lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._pending_lock = threading.Lock()
        self._ids = itertools.count(1)
        self.closed = False
        self.hello = self._read_hello()
        for target in (self._read_replies, self._drain_stderr):
            threading.Thread(target=target, daemon=True, name=f"zfs-agent-{where}").start()

    def _read_hello(self) -> dict:
        return _read_hello(self._stdout, self.where)

    def _read_replies(self) -> None:
        reason = "session closed by the node"
        try:
            for line in self._stdout:
                try:
                    reply = protocol.decode(line)
                except ValueError:
                    LOG.error("Unparsable reply from %s: %r", self.where, line[:200])
                    continue
                if reply.get("id") is None:
                    LOG.error("Agent on %s refused a frame: %s", self.where, reply.get("error"))
                    continue
                if "progress" in reply and "ok" not in reply:
                    self._progress(reply)
                    continue
                with self._pending_lock:
                    pending = self._pending.pop(reply["id"], None)
                if pending is not None:
                    pending.reply = reply
                    pending.event.set()
        except Exception as exc:  # socket errors end the session, never the process
            reason = f"session broke: {exc}"
        self.fail_all(reason)

    def _progress(self, frame: dict) -> None:
        with self._pending_lock:
            pending = self._pending.get(frame["id"])
        if pending is None:
            return
        now = pending.heard_at = time.monotonic()
        info = frame.get("progress") or {}
        level = std_logging.DEBUG
        if now - pending.logged_at >= PROGRESS_LOG_INTERVAL:
            pending.logged_at, level = now, std_logging.INFO
        LOG.log(level, "%s on %s: %s MiB copied in %s s", pending.op, self.where,
                int(info.get("bytes", 0)) >> 20, info.get("seconds"))

    def _drain_stderr(self) -> None:
        # The channel's flow-control window is shared: unread stderr would stall stdout.
        try:
            for line in self._stderr:
                LOG.debug("agent@%s: %s", self.where, line.decode(errors="replace").rstrip())
        except Exception:  # noqa: S110 - the stdout reader reports the broken session
            pass

    def fail_all(self, reason: str) -> None:
        self.closed = True
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        for item in pending.values():
            item.reply = protocol.error(None, errors.TransportError.code,
                                        f"{self.where}: {reason}; the operation's outcome on "
                                        f"the node is unknown")
            item.event.set()

    def request(self, op: str, args: dict, timeout: float) -> Any:
        """Run ``op`` on the node; TransportError when neither its reply nor progress from it
        came for ``timeout`` seconds."""
        request_id = next(self._ids)
        pending = _Pending(op)
        with self._pending_lock:
            self._pending[request_id] = pending
        data = protocol.encode({"id": request_id, "op": op, "args": args, "progress": True})
        try:
            with self._write_lock:
                self.channel.sendall(data)
        except Exception as exc:
            with self._pending_lock:
                self._pending.pop(request_id, None)
            self.fail_all(f"send failed: {exc}")
            raise errors.TransportError(f"{self.where}: cannot send {op}: {exc}") from None
        while not pending.event.wait(max(0.0, pending.heard_at + timeout - time.monotonic())):
            if time.monotonic() - pending.heard_at >= timeout:
                with self._pending_lock:
                    self._pending.pop(request_id, None)
                raise errors.TransportError(
                    f"{self.where}: no reply to {op} and no progress within {timeout} s; it may "
                    f"still complete on the node (zfs_ssh_timeout)")
        return _result(pending.reply)

    def close(self) -> None:
        self.closed = True
        try:
            self.client.close()
        except Exception:  # noqa: S110 - closing a broken session
            pass


class AgentTransport:
    """A transport to a cinder-zfs-agent: one session shared by every call, and a channel of
    its own per volume data stream. Subclasses say how a channel running the agent is opened."""

    unreachable_hint = "Check that the agent can run"  # ends "cannot reach" errors

    def __init__(self, where: str, timeout: float, retries: int, backoff: float):
        self.where = where
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self._session: _Session | None = None
        self._connect_lock = threading.Lock()

    @property
    def info(self) -> dict:
        return dict(self._get_session().hello)

    def _open(self) -> _Session:
        """A new session: a channel running the agent, its hello read."""
        raise NotImplementedError

    def _stream_channel(self):
        """A new channel running the agent, for one volume data stream."""
        raise NotImplementedError

    def _get_session(self) -> _Session:
        session = self._session
        if session is not None and not session.closed:
            return session
        with self._connect_lock:
            if self._session is not None and not self._session.closed:
                return self._session
            last: Exception | None = None
            for attempt in range(self._retries):
                if attempt:
                    time.sleep(self._backoff * 2 ** (attempt - 1))
                try:
                    self._session = self._open()
                    LOG.info("Connected to cinder-zfs-agent on %s (root %s, pyzfs %s)",
                             self.where, self._session.hello.get("root"),
                             self._session.hello.get("pyzfs"))
                    return self._session
                except errors.TransportError as exc:
                    last = exc
                    LOG.warning("Attempt %d/%d to reach %s failed: %s", attempt + 1,
                                self._retries, self.where, exc)
            raise errors.TransportError(
                f"{last}. {self.unreachable_hint} (tried {self._retries} times)")

    def call(self, op: str, **args: Any) -> Any:
        return self._get_session().request(op, args, self._timeout)

    # -- volume data: a channel of its own per stream --------------------------------------

    def _open_stream(self, op: str, args: dict):
        channel = self._stream_channel()
        try:
            reader = channel.makefile("rb")
            _read_hello(reader, self.where)
            channel.sendall(protocol.encode({"id": 1, "op": op, "args": args}))
            volsize = _result(self._reply(reader, op))["size"]
        except (paramiko.SSHException, OSError) as exc:
            channel.close()
            raise errors.TransportError(f"{self.where}: cannot open a {op} stream: "
                                        f"{exc}") from None
        except errors.ZFSError:  # refused by the agent: this channel is done
            channel.close()
            raise
        return channel, reader, volsize

    def _reply(self, reader, op: str) -> dict:
        try:
            return protocol.decode(reader.readline())
        except ValueError:
            raise errors.TransportError(f"{self.where}: the {op} stream ended without a "
                                        f"reply; its outcome on the node is unknown") from None

    def write_volume(self, name: str, source, size: int) -> int:
        channel, reader, _ = self._open_stream("write_volume", {"name": name, "size": size})
        try:
            try:
                if protocol.copy_exact(source, _ChannelWriter(channel), size) < size:
                    channel.shutdown_write()  # the agent sees the end and answers with an error
            except (paramiko.SSHException, OSError) as exc:
                # The agent stopped reading: its answer says why.
                LOG.warning("write_volume %s: sending stopped (%s)", name, exc)
            return _result(self._reply(reader, "write_volume"))["bytes"]
        finally:
            channel.close()

    def read_volume(self, name: str, sink) -> int:
        channel, reader, volsize = self._open_stream("read_volume", {"name": name})
        try:
            copied = protocol.copy_exact(reader, sink, volsize)
        except (paramiko.SSHException, OSError) as exc:
            raise errors.TransportError(f"{self.where}: read_volume {name} broke: {exc}") from None
        finally:
            channel.close()
        if copied < volsize:
            raise errors.TransportError(f"{self.where}: read_volume {name} ended after "
                                        f"{copied} of {volsize} bytes (see the node's log)")
        return copied

    def close(self) -> None:
        with self._connect_lock:
            if self._session is not None:
                self._session.close()
                self._session = None


class SSHTransport(AgentTransport):
    """Remote mode: the agent is the forced command of the driver's key on the node."""

    unreachable_hint = "Check zfs_ssh_host/port/user/private_key and that the node is up"

    def __init__(self, host: str, port: int, user: str, key_file: str, known_hosts: str | None,
                 strict_host_key: bool = True, command: str = "cinder-zfs-agent",
                 timeout: float = 300, connect_retries: int = 3, connect_timeout: float = 30,
                 backoff: float = 1.0):
        super().__init__(f"{user}@{host}:{port}", timeout, connect_retries, backoff)
        self._connect_args = dict(hostname=host, port=port, username=user,
                                  key_filename=key_file, look_for_keys=False, allow_agent=False,
                                  timeout=connect_timeout, banner_timeout=connect_timeout,
                                  auth_timeout=connect_timeout)
        self._known_hosts = known_hosts
        self._strict = strict_host_key
        self._command = command

    def _open(self) -> _Session:
        client = paramiko.SSHClient()
        if self._known_hosts:
            try:
                client.load_host_keys(self._known_hosts)
            except FileNotFoundError:
                if self._strict:
                    raise errors.TransportError(
                        f"known_hosts file {self._known_hosts} does not exist: add the storage "
                        f"node's host key to it (zfs_ssh_known_hosts_file)") from None
        client.set_missing_host_key_policy(
            paramiko.RejectPolicy() if self._strict else paramiko.WarningPolicy())
        try:
            client.connect(**self._connect_args)
            channel = client.get_transport().open_session()
            channel.exec_command(self._command)
            return _Session(client, channel, self.where)
        except errors.ZFSError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise errors.TransportError(
                f"host key of {self.where} does not match {self._known_hosts}: {exc}. If the "
                f"node was rebuilt, replace its entry; otherwise treat this as an attack") from None
        except (paramiko.SSHException, OSError) as exc:
            client.close()
            raise errors.TransportError(f"cannot reach storage node {self.where}: {exc}") from None

    def _stream_channel(self):
        # Same SSH connection, a new channel: no handshake per stream.
        try:
            channel = self._get_session().client.get_transport().open_session()
            channel.settimeout(self._timeout)
            channel.exec_command(self._command)
        except (paramiko.SSHException, OSError) as exc:
            raise errors.TransportError(f"{self.where}: cannot open a stream channel: "
                                        f"{exc}") from None
        return channel
