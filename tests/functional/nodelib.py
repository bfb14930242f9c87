"""The storage-node VM as the functional tests see it.

`start_node()` runs `tools/storage-node/node start --json` (which boots the VM, or reuses one that
is running and healthy, building the image first when it is missing or out of date) and returns a
connected `Node`. A `Node` holds ONE paramiko SSH connection to the guest (root, key auth, host key
pinned by the run's known_hosts): every `run()` is an `exec_command` on a new channel of that same
transport and `put()`/`put_bytes()`/`get_bytes()` use one SFTP session on it. A new SSH handshake
costs ~2 s under emulation, so never open one per command. `run()` is thread-safe.

A node can die under a test (a kernel panic, QEMU killed, the VM out of memory): `why_dead()`
says so with the console's last lines, and `restart()` starts it again on the same SSH port
(the node tool keeps it per run dir) and runs the hooks registered with `on_restart()` (the
agent's installation, for instance), so one broken test does not take the rest down.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import paramiko

REPO = Path(__file__).resolve().parents[2]
NODE_TOOL = REPO / "tools" / "storage-node" / "node"
DEFAULT_TIMEOUT = 600.0
# What the guest prints when it is going down for good (with -no-reboot QEMU then exits).
CONSOLE_DEATHS = ("Kernel panic", "INITRD-FAILED", "ZFS-FAILED", "panic forced after error",
                  "reboot: Restarting system", "Out of memory: Killed process")
LIVENESS_TIMEOUT = 60.0


class NodeStartError(RuntimeError):
    """The storage node could not be started (the message says why)."""


class NodeCommandError(subprocess.CalledProcessError):
    """A command run on the node exited non-zero (raised by `Node.run(check=True)`)."""

    def __str__(self) -> str:
        def tail(s: str | None) -> str:
            s = (s or "").strip()
            return s[-2000:] if s else "(empty)"

        return (
            f"command on the storage node exited {self.returncode}: {self.cmd}\n"
            f"--- stdout:\n{tail(self.stdout)}\n--- stderr:\n{tail(self.stderr)}"
        )


def start_node(timeout: float | None = None) -> Node:
    """Start the storage node (or reuse a running healthy one) and connect to it."""
    node = Node(node_start_state(timeout))
    try:
        node.connect()
    except Exception as e:
        raise NodeStartError(f"cannot connect to the node at {node.host}:{node.port}: {e!r}") from e
    return node


def node_start_state(timeout: float | None = None, fresh_pool_if_lost: bool = False) -> dict:
    """`node start --json`: boots the node, or reuses a running healthy one; its state."""
    argv = [sys.executable, str(NODE_TOOL), "start", "--json"]
    if fresh_pool_if_lost:
        argv.append("--fresh-pool-if-lost")
    if timeout:
        argv += ["--timeout", str(timeout)]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except OSError as e:
        raise NodeStartError(f"cannot run {NODE_TOOL}: {e}") from e
    if r.returncode != 0:
        raise NodeStartError(
            f"`{NODE_TOOL} start` exited {r.returncode}:\n{r.stderr[-6000:]}{r.stdout[-2000:]}"
        )
    try:
        return json.loads(r.stdout)
    except ValueError as e:
        raise NodeStartError(
            f"`node start` printed no state: {r.stdout!r} {r.stderr[-2000:]}"
        ) from e


def qemu_alive(pid: int | None) -> bool:
    if not pid:
        return True  # not known: let SSH tell
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return os.path.basename(argv0).startswith(b"qemu-system")


def text_tail(path: str | os.PathLike | None, lines: int = 25) -> str:
    try:
        text = Path(path).read_text(errors="replace") if path else ""
    except OSError:
        return "(no console log)"
    return "\n".join(text.splitlines()[-lines:]) or "(console empty)"


def load_state(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text())


class Node:
    """A running storage node: `run`, `put`, `put_bytes`, `get_bytes` over one SSH connection."""

    def __init__(self, state: dict):
        self._lock = threading.Lock()
        self._sftp_lock = threading.Lock()
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._restart_hooks: list = []
        self.restarts = 0
        self._adopt(state)

    def _adopt(self, state: dict) -> None:
        self.state = state
        self.host: str = state.get("host", "127.0.0.1")
        self.port: int = int(state["port"])
        self.user: str = state.get("user", "root")
        self.key_path: str = state["key_path"]
        self.known_hosts: str = state["known_hosts"]
        self.pool: str = state.get("pool", "tank")
        self.pid: int | None = state.get("pid")
        self.run_dir: str | None = state.get("run_dir")
        self.console_log: str | None = state.get("console_log")
        self._console_seen = self._console_size()

    def _console_size(self) -> int:
        try:
            return os.path.getsize(self.console_log) if self.console_log else 0
        except OSError:
            return 0

    # ---------------------------------------------------------------- liveness
    def why_dead(self) -> str | None:
        """None when the node answers; else what is wrong, with the console's last lines."""
        reason = None
        if not qemu_alive(self.pid):
            reason = f"its QEMU (pid {self.pid}) is gone"
        else:
            try:
                with open(self.console_log or os.devnull, "rb") as f:
                    f.seek(self._console_seen)
                    fresh = f.read().decode(errors="replace")
            except OSError:
                fresh = ""
            seen = [mark for mark in CONSOLE_DEATHS if mark in fresh]
            if seen:
                reason = f"its console says {seen[0]!r}"
            else:
                try:
                    self.run("true", timeout=LIVENESS_TIMEOUT)
                except Exception as e:  # refused, reset, timed out: all mean the same here
                    reason = f"SSH to {self.host}:{self.port} fails ({e!r})"
        if reason is None:
            return None
        return (f"the storage node died: {reason}.\n--- its console, last lines "
                f"({self.console_log}):\n{text_tail(self.console_log)}")

    def on_restart(self, hook, once: bool = False) -> None:
        """Call `hook(node)` after the next restart (`once`) or after every one (to reinstall
        what a test session put on the node)."""
        self._restart_hooks.append((hook, once))

    def restart(self) -> None:
        """Start the node again (same run dir and SSH port; new pool disks only when the old
        pool cannot be imported) and reconnect."""
        self.close()
        self._adopt(node_start_state(fresh_pool_if_lost=True))
        self.connect()
        self.restarts += 1
        hooks, self._restart_hooks = self._restart_hooks, [
            (hook, once) for hook, once in self._restart_hooks if not once]
        for hook, _ in hooks:
            hook(self)

    def __repr__(self) -> str:
        return f"<Node {self.user}@{self.host}:{self.port} pool={self.pool}>"

    # ---------------------------------------------------------------- connection
    def connect(self) -> None:
        """(Re)open the one SSH connection; host key checked against known_hosts."""
        with self._lock:
            self._connect_locked()

    def _connect_locked(self) -> None:
        self._close_locked()
        client = paramiko.SSHClient()
        client.load_host_keys(self.known_hosts)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            self.host, port=self.port, username=self.user, key_filename=self.key_path,
            look_for_keys=False, allow_agent=False, timeout=30, banner_timeout=60,
            auth_timeout=60,
        )
        client.get_transport().set_keepalive(30)
        self._client = client

    def _transport(self) -> paramiko.Transport:
        with self._lock:
            t = self._client.get_transport() if self._client else None
            if t is None or not t.is_active():
                self._connect_locked()
                t = self._client.get_transport()
            return t

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._sftp is not None:
            try:
                self._sftp.close()
            except Exception:
                pass
            self._sftp = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- commands
    def run(
        self,
        cmd: str,
        check: bool = True,
        input: bytes | str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> subprocess.CompletedProcess:
        """Run `cmd` with the node's root shell; stdout/stderr come back decoded (UTF-8).

        Raises NodeCommandError when check and the exit status is not 0, and
        subprocess.TimeoutExpired after `timeout` seconds (the channel is closed then).
        """
        out, err, rc = self._exec(cmd, input, timeout)
        res = subprocess.CompletedProcess(
            cmd, rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        )
        if check and rc != 0:
            raise NodeCommandError(rc, cmd, res.stdout, res.stderr)
        return res

    def run_bytes(
        self, cmd: str, check: bool = True, input: bytes | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> bytes:
        """Run `cmd` and return its raw stdout."""
        out, err, rc = self._exec(cmd, input, timeout)
        if check and rc != 0:
            raise NodeCommandError(rc, cmd, out.decode("utf-8", "replace"),
                                   err.decode("utf-8", "replace"))
        return out

    def _exec(self, cmd: str, input, timeout) -> tuple[bytes, bytes, int]:
        chan = self._transport().open_session(timeout=30)
        try:
            chan.exec_command(cmd)
            out: list[bytes] = []
            err: list[bytes] = []

            def reader(recv, sink):
                try:
                    while True:
                        data = recv(1 << 16)
                        if not data:
                            return
                        sink.append(data)
                except Exception:
                    return

            threads = [
                threading.Thread(target=reader, args=(chan.recv, out), daemon=True),
                threading.Thread(target=reader, args=(chan.recv_stderr, err), daemon=True),
            ]
            if input is not None:
                data = input.encode() if isinstance(input, str) else bytes(input)

                def writer():
                    try:
                        chan.sendall(data)
                        chan.shutdown_write()
                    except Exception:
                        pass

                threads.append(threading.Thread(target=writer, daemon=True))
            else:
                chan.shutdown_write()
            for t in threads:
                t.start()
            if not chan.status_event.wait(timeout):
                chan.close()
                raise subprocess.TimeoutExpired(cmd, timeout, b"".join(out), b"".join(err))
            rc = chan.recv_exit_status()
            for t in threads[:2]:
                t.join(60)
            return b"".join(out), b"".join(err), rc
        finally:
            chan.close()

    # ---------------------------------------------------------------- files
    def _sftp_client(self) -> paramiko.SFTPClient:
        t = self._transport()
        if self._sftp is None or self._sftp.get_channel().get_transport() is not t:
            self._sftp = paramiko.SFTPClient.from_transport(t)
        return self._sftp

    def put(self, local_path: str | os.PathLike, remote_path: str) -> None:
        """Copy a local file to `remote_path` on the node (SFTP on the same connection)."""
        with self._sftp_lock:
            self._sftp_client().put(os.fspath(local_path), remote_path)

    def put_bytes(self, data: bytes, remote_path: str) -> None:
        """Write `data` to `remote_path` on the node."""
        with self._sftp_lock:
            with self._sftp_client().open(remote_path, "wb") as f:
                f.set_pipelined(True)
                f.write(data)

    def get_bytes(self, remote_path: str) -> bytes:
        """Read a file of the node."""
        with self._sftp_lock:
            with self._sftp_client().open(remote_path, "rb") as f:
                f.prefetch()
                return f.read()

    # ---------------------------------------------------------------- helpers
    def wait_for_path(self, path: str, timeout: float = 30.0) -> None:
        """Wait until `path` exists on the node (udev links such as /dev/zvol/...)."""
        q = shlex.quote(path)
        self.run(
            f"udevadm settle -t {int(timeout)}; i=0; while [ ! -e {q} ]; do "
            f"i=$((i+1)); [ $i -gt {int(timeout * 10)} ] && exit 1; sleep 0.1; done",
            timeout=timeout * 2 + 10,
        )

    def new_dataset(self, prefix: str = "ft") -> str:
        """Create and return a uniquely named filesystem dataset `<pool>/<prefix>-<hex>`."""
        name = f"{self.pool}/{prefix}-{secrets.token_hex(4)}"
        self.run(f"zfs create {shlex.quote(name)}")
        return name

    def destroy_dataset(self, name: str, attempts: int = 5, timeout: float = 600) -> None:
        """`zfs destroy -r` with a few retries (a zvol can stay busy while udev looks at it)."""
        q = shlex.quote(name)
        for i in range(attempts):
            r = self.run(f"zfs list -H -o name {q} >/dev/null 2>&1 || exit 0; "
                         f"udevadm settle -t 10; zfs destroy -r {q}", check=False,
                         timeout=timeout)
            if r.returncode == 0:
                return
            if i == attempts - 1:
                raise NodeCommandError(r.returncode, r.args, r.stdout, r.stderr)
            time.sleep(1 + i)
