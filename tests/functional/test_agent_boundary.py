"""The storage-node agent as a security boundary, on the real node (issue 14).

- every string longer than ZFS takes (the 100,000-character hold tag that panicked OpenZFS 2.1,
  names, property names and values) is refused by the agent, and the node's ZFS still answers;
- a seeded fuzz of thousands of frames over the agent's SSH channel, across every operation of
  its hello, changes nothing outside its root (decoys planted beside it) and leaves nothing in
  it mountable or shared, and the agent answers after every frame;
- `zfs receive` failing mid-stream (a quota too small): the error arrives within 30 s and names
  the cause; no partial dataset, no `zfs send`, no hold remains; the agent still serves;
- with zfs_ssh_timeout = 15 s, an independent clone that takes several times longer completes
  and the log shows its progress.

The agent runs from its own copy of this branch's package (AGENT_DIR) with the root given on
its command line, over the node's root key: no other test session's agent install is touched.
Before a hostile frame goes to the node, the same frames go through an in-process agent whose
libzfs_core fails the test if reached: nothing that could panic the node's kernel is sent.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import logging
import random
import re
import shlex
import threading
import time
import uuid

import pytest

from cinder_zfs_ocfs2.agent import policy, protocol
from cinder_zfs_ocfs2.agent.sendrecv import PROGRESS_INTERVAL
from cinder_zfs_ocfs2.agent.server import AgentServer
from tests.functional import driver_env
from tests.unit.agent.guarded import GuardedOperations

AGENT_DIR = "/opt/cinder-zfs-ocfs2-agent-boundary"
# A fuzzed wait_for_device on a name that never gets a device holds a worker for its 60 s.
PROBE_TIMEOUT = 300.0
# Datasets of other test sessions on the shared node (fixtures' prefixes): they may change
# while the fuzz runs; the fuzz never names them, so the agent cannot have touched them.
OTHER_SESSION = re.compile(r"^[^/]+/(ft|ab|bench|e2e|cinder)[-_]")


def agent_command(root: str) -> str:
    return f"cd {AGENT_DIR} && exec python3 -m cinder_zfs_ocfs2.agent --root {shlex.quote(root)}"


@pytest.fixture(scope="module")
def agent_installed(node):
    node.put_bytes(driver_env.package_tarball(), "/tmp/cinder-zfs-ocfs2-agent-boundary.tgz")
    node.run(f"rm -rf {AGENT_DIR} && mkdir -p {AGENT_DIR} && "
             f"tar -xzf /tmp/cinder-zfs-ocfs2-agent-boundary.tgz -C {AGENT_DIR}")
    return AGENT_DIR


@pytest.fixture
def area(node, agent_installed):
    """`<pool>/ab-<hex>`: the agent's root `.../root` (never mountable), and decoys beside it
    that share its prefix, each with a snapshot and a hold."""
    parent = node.new_dataset("ab")
    root = f"{parent}/root"
    decoys = [f"{parent}/root-decoy", f"{parent}/rootx", f"{parent}/root-decoy/volume-d"]
    node.run(f"zfs create -o canmount=off -o mountpoint=none {root} && "
             f"zfs create -o mountpoint=none {decoys[0]} && "
             f"zfs create -s -V 16M {decoys[1]} && zfs create -s -V 16M {decoys[2]} && "
             + " && ".join(f"zfs snapshot {d}@keep && zfs hold decoy {d}@keep" for d in decoys))
    yield {"parent": parent, "root": root, "decoys": decoys}
    # Every hold below the parent (the decoys', and any a fuzzed request made in the root).
    node.run(f"zfs list -H -o name -t snapshot -r {parent} | xargs -r -n1 zfs holds -H | "
             f"while IFS=$'\\t' read -r snap tag _; do zfs release \"$tag\" \"$snap\"; done",
             check=False)
    node.destroy_dataset(parent)


class AgentChannel:
    """The agent on one SSH channel of the node's connection: frames out, replies by id."""

    def __init__(self, node, root: str):
        self.channel = node._transport().open_session(timeout=30)
        self.channel.exec_command(agent_command(root))
        self.replies: dict = {}
        self.anonymous: list = []
        self.cond = threading.Condition()
        stdout = self.channel.makefile("rb")
        self.hello = json.loads(stdout.readline())
        threading.Thread(target=self._read, args=(stdout,), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.channel.makefile_stderr("rb"),),
                         daemon=True).start()

    def _read(self, stdout) -> None:
        for line in stdout:
            reply = json.loads(line)
            with self.cond:
                if reply.get("id") is None:
                    self.anonymous.append(reply)
                elif "progress" not in reply:
                    self.replies[reply["id"]] = reply
                self.cond.notify_all()

    @staticmethod
    def _drain(stderr) -> None:
        for _ in stderr:
            pass

    def send(self, data: bytes) -> None:
        self.channel.sendall(data)

    def wait(self, ids, anonymous: int = 0, timeout: float = PROBE_TIMEOUT) -> None:
        """Until every id in ``ids`` and ``anonymous`` id-less replies are in."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not (set(ids) <= self.replies.keys() and len(self.anonymous) >= anonymous):
                left = deadline - time.monotonic()
                missing = sorted(set(ids) - self.replies.keys(), key=str)[:5]
                assert left > 0, f"the agent stopped answering: missing {missing}, " \
                                 f"{len(self.anonymous)}/{anonymous} id-less replies"
                self.cond.wait(left)

    def call(self, request_id, op: str, **args) -> dict:
        self.send(protocol.encode({"id": request_id, "op": op, "args": args}))
        self.wait([request_id])
        return self.replies[request_id]

    def close(self) -> None:
        self.channel.close()


def in_process(frames: list[bytes], root: str) -> tuple[dict, list]:
    """The replies by id of an in-process agent (libzfs_core untouchable, CLI recorded) to
    ``frames``, and the commands it ran: what it does not refuse is never sent to the node."""
    ops = GuardedOperations(root)
    out = io.BytesIO()
    AgentServer(ops, io.BytesIO(b"".join(f.rstrip(b"\n") + b"\n" for f in frames)), out,
                workers=1).serve()
    replies = [json.loads(line) for line in out.getvalue().splitlines()[1:]]
    return {r["id"]: r for r in replies}, ops.commands


def zfs_answers(node) -> None:
    """The node's ZFS is alive: a listing and a pool status come back promptly."""
    node.run("zfs list -H -o name >/dev/null && zpool status -x", timeout=60)


# -- over-long strings --------------------------------------------------------------------------

def test_every_string_longer_than_zfs_takes_is_refused_and_zfs_still_answers(node, area):
    root = area["root"]
    agent = AgentChannel(node, root)
    try:
        vol, snap = f"{root}/p/volume-a", f"{root}/p/volume-a@s"
        for i, (op, args) in enumerate([("create_filesystem", {"name": f"{root}/p"}),
                                        ("create_volume", {"name": vol, "size": 16 << 20}),
                                        ("snapshot", {"names": [snap]})]):
            assert agent.call(f"setup-{i}", op, **args)["ok"], op
        user = policy.USER_NAMESPACE
        long_name = f"{root}/p/" + "n" * (256 - len(root) - 3)       # 256 characters
        hostile = [
            ("hold", {"snapshot": snap, "tag": "x" * 100_000}),  # panicked OpenZFS 2.1.11
            *[("hold", {"snapshot": snap, "tag": "t" * n}) for n in (256, 300, 32_768, 65_536)],
            *[("release", {"snapshot": snap, "tag": "t" * n}) for n in (256, 100_000)],
            *[(op, {"name": long_name}) for op in ("exists", "create_filesystem", "promote")],
            ("create_volume", {"name": long_name, "size": 1 << 20}),
            ("create_volume", {"name": f"{root}/p/" + "n" * 100_000, "size": 1 << 20}),
            ("snapshot", {"names": [f"{vol}@" + "s" * (256 - len(vol) - 1)]}),
            ("snapshot", {"names": [f"{vol}@" + "s" * 100_000]}),
            ("rename", {"name": vol, "new_name": long_name}),
            ("clone", {"snapshot": snap, "name": long_name}),
            ("send_receive", {"snapshot": snap, "target": long_name}),
            ("hold", {"snapshot": f"{vol}@" + "s" * 300, "tag": "t"}),
            *[("set", {"name": vol, "properties": {user + "p" * n: "1"}}) for n in (65, 300)],
            ("get", {"name": vol, "properties": ["p" * 256]}),
            ("list", {"name": vol, "types": ["volume"], "properties": ["p" * 100_000]}),
            ("inherit", {"name": vol, "property": user + "p" * 100_000}),
            *[("set", {"name": vol, "properties": {user + "volume_id": "v" * n}})
              for n in (policy.MAX_USER_VALUE_LEN + 1, 8192, 8193, 100_000)],
            ("snapshot", {"names": [f"{vol}@t"], "properties": {user + "x": "v" * 100_000}}),
        ]
        frames = [protocol.encode({"id": i, "op": op, "args": args})
                  for i, (op, args) in enumerate(hostile)]
        local, commands = in_process(frames, root)
        assert commands == [] and len(local) == len(frames)
        assert all(r["ok"] is False and r["error"]["code"] == "invalid" for r in local.values())
        agent.send(b"".join(frames))
        agent.wait(range(len(frames)))
        for i, (op, _) in enumerate(hostile):
            reply = agent.replies[i]
            assert reply["ok"] is False and reply["error"]["code"] == "invalid", (op, reply)
        zfs_answers(node)
        assert agent.call("after-hold", "hold", snapshot=snap, tag="t" * 255)["ok"]
        assert agent.call("after-holds", "holds", snapshot=snap)["result"] == ["t" * 255]
        assert agent.call("after-release", "release", snapshot=snap, tag="t" * 255)["ok"]
        assert node.run(f"zfs list -H -o name {vol}").stdout.strip() == vol
    finally:
        agent.close()


# -- the fuzz -----------------------------------------------------------------------------------

STATE_PROPS = ("name,guid,type,mountpoint,canmount,mounted,reservation,refreservation,quota,"
               "refquota,sharenfs,sharesmb,volsize,readonly,compression,sync,checksum,userrefs")


def pool_state(node) -> dict[str, str]:
    out = node.run(f"zfs list -H -p -t all -o {STATE_PROPS}", timeout=300).stdout
    return {line.split("\t", 1)[0]: line for line in out.splitlines()}


class Fuzz:
    """Seeded hostile frames: names, properties, values, types, garbage, nesting, sizes."""

    def __init__(self, seed: int, root: str, area: dict, operations: list[str]):
        self.rng = random.Random(seed)
        self.root = root
        self.operations = operations
        parent = area["parent"]
        pool = root.split("/")[0]
        inside = [f"{root}/p", f"{root}/p/volume-a", f"{root}/p/volume-a@s", root,
                  f"{root}/p/volume-{uuid.UUID(int=7)}", f"{root}/q@x"]
        self.outside = [
            *area["decoys"], *(f"{d}@keep" for d in area["decoys"]), parent, pool,
            f"{parent}/rootx@keep", f"{root}-decoy", f"{root}x", f"{root}x/volume-a",
            "rpool/ROOT", "rpool", "ftmig", "ftmig/x", f"{pool}/../etc", f"{root}/../rootx",
            f"{root}/./p", f"{root}//p", f"/{root}/p", f"{root}/p/", f"{root}/%recv",
            f"{root}/p#bm", f"{root}/p@a@b", f"{root}/p\n", f"{root}/p\0x", f"-{root}",
            f"{root}/-r", f"{root}/p@-r", f"{root}/{'n' * 300}", f"{parent}/root-decoy@keep",
            f"{root} {parent}/rootx", f"{root},{parent}/rootx", "/dev/zvol/" + root,
            f"/dev/zvol/{parent}/rootx", "../../etc/passwd", "",
        ]
        self.names = inside + self.outside
        native = ["mountpoint", "canmount", "sharenfs", "sharesmb", "reservation", "quota",
                  "refreservation", "volsize", "compression", "readonly", "snapdev", "sync",
                  "checksum", "copies", "dedup", "keylocation", "volmode", "zoned", "-o",
                  "mountpoint=/mnt", policy.USER_NAMESPACE + "volume_id",
                  policy.USER_NAMESPACE + "hidden", "org.evil:x", "a" * 300]
        values = ["/mnt/x", "/", "on", "off", "none", "auto", "100T", "-1", "0", "1",
                  "lz4", "zstd-19", "visible", "a\tb", "a\nb", "a\0b", "x" * 9000, "-r",
                  str(2**64), "legacy", "rw=@0.0.0.0/0"]
        self.props = native
        self.values = values

    def value(self, depth: int = 0):
        r = self.rng.random()
        if r < 0.35:
            return self.rng.choice(self.names)
        if r < 0.45:
            return self.rng.choice(self.values)
        if r < 0.55:
            return self.rng.choice([0, -1, 1, 2**63, 2**64, -(2**63), 10**19, 1.5, 1e308,
                                    True, False, None])
        if r < 0.7 and depth < 3:
            return [self.value(depth + 1) for _ in range(self.rng.randint(0, 3))]
        if r < 0.85 and depth < 3:
            return {self.rng.choice(self.props): self.rng.choice(self.values)
                    for _ in range(self.rng.randint(0, 3))}
        return "".join(self.rng.choice("abc-@/%#.: \t\n\0é") for _ in range(
            self.rng.randint(0, 20)))

    def args(self, op: str) -> dict:
        keys = ["name", "names", "snapshot", "target", "new_name", "size", "sparse",
                "volblocksize", "properties", "property", "defer", "recursive", "types",
                "depth", "tag", "timeout", "pool", "device", "slots", "cluster_stack", "label",
                "iqn", "initiator_iqn", "userid", "password", "initiator_iqns", "portals_ips",
                "portals_port", "readonly", "iser", "cluster_name"]
        args = {k: self.value() for k in self.rng.sample(keys, self.rng.randint(0, 4))}
        if op in ("set", "create_volume", "create_filesystem", "clone", "send_receive",
                  "snapshot") and self.rng.random() < 0.6:
            args["properties"] = {self.rng.choice(self.props): self.rng.choice(self.values)}
        if self.rng.random() < 0.5:  # mostly the right argument names, hostile values
            for k in ("name", "snapshot", "target", "new_name"):
                if k in args or self.rng.random() < 0.3:
                    args[k] = self.rng.choice(self.outside)
        return args

    def frame(self, request_id: int) -> tuple[bytes, bool]:
        """One frame and whether its reply carries ``request_id`` (else id null)."""
        kind = self.rng.random()
        if kind < 0.80:
            op = self.rng.choice(self.operations + ["write_volume", "read_volume", "rm_rf"])
            return protocol.encode({"id": request_id, "op": op, "args": self.args(op)}), True
        if kind < 0.86:
            garbage = bytes(self.rng.getrandbits(8) for _ in range(self.rng.randint(1, 300)))
            return garbage.replace(b"\n", b" ").strip() or b"x", False
        if kind < 0.90:
            depth = self.rng.choice([1000, 50_000, 200_000])
            return f'{{"id": {request_id}, "op": "exists", "args": '.encode() + b"[" * depth, True
        if kind < 0.93:
            return (f'{{"id": {request_id}, "op": "hold", "args": {{"tag": "'.encode()
                    + b"x" * (protocol.MAX_FRAME + 10) + b'"}}'), True
        if kind < 0.96:
            return self.rng.choice([
                f'{{"id": {request_id}, "op": "exists", "args": {{"name": NaN}}}}',
                f'{{"id": {request_id}, "op": "create_volume", "args": {{"size": 1e999}}}}',
                f'{{"id": {request_id}, "op": "exists", "args": {{"name": "a", "name": "b"}}}}',
                f'{{"id": {request_id}, "op": "create_volume", "args": {{"size": {"9" * 400}}}}}',
            ]).encode(), True
        if kind < 0.98:
            return (f'{{"id": {request_id}, "op": "exists", "args": {{"name": "'.encode()
                    + b"\xff\xfe\xc3" + b'"}}'), True
        return json.dumps({"id": self.rng.choice([True, 1.5, None, [], "x" * 100]),
                           "op": "version", "args": {}}).encode(), False


def test_fuzzed_frames_change_nothing_outside_the_root(node, area):
    root = area["root"]
    agent = AgentChannel(node, root)
    try:
        for i, (op, args) in enumerate([
                ("create_filesystem", {"name": f"{root}/p"}),
                ("create_volume", {"name": f"{root}/p/volume-a", "size": 16 << 20}),
                ("snapshot", {"names": [f"{root}/p/volume-a@s"]})]):
            assert agent.call(f"setup-{i}", op, **args)["ok"], op
        operations = agent.hello["operations"]
        before = pool_state(node)
        fuzz = Fuzz(seed=1414, root=root, area=area, operations=operations)
        frames = [fuzz.frame(i) for i in range(2000)]
        # A tag longer than ZFS takes goes to the node only when refused in process first.
        long_tags = [f for f, _ in frames if _long_tag(f)]
        local, _ = in_process(long_tags, root)
        assert len(local) == len(long_tags)
        assert all(r["error"]["code"] == "invalid" for r in local.values()), local
        started, anonymous = time.monotonic(), 0
        for batch in range(0, len(frames), 100):
            chunk, ids = [], []
            for i in range(batch, min(batch + 100, len(frames))):
                frame, by_id = frames[i]
                anonymous += not by_id
                # After each frame, a probe: the agent still answers, through libzfs_core.
                probe = f"probe-{i}"
                chunk += [frame + b"\n", protocol.encode(
                    {"id": probe, "op": "exists", "args": {"name": root}})]
                ids += [probe] + ([i] if by_id else [])
            agent.send(b"".join(chunk))
            agent.wait(ids, anonymous)
            for i in range(batch, min(batch + 100, len(frames))):
                assert agent.replies[f"probe-{i}"] == {
                    "id": f"probe-{i}", "ok": True, "result": True}, i
        elapsed = time.monotonic() - started
        codes = {}
        for i, (_, by_id) in enumerate(frames):
            if by_id:
                reply = agent.replies[i]
                key = "ok" if reply["ok"] else reply["error"]["code"]
                codes[key] = codes.get(key, 0) + 1
        logging.getLogger(__name__).info("%d fuzzed frames answered in %.0f s: %s",
                                         len(frames), elapsed, codes)
        assert codes.get("invalid", 0) > 1000, codes

        # Streams on other names: each on a channel of its own, refused before any byte.
        for i, name in enumerate(fuzz.outside[:6]):
            stream = AgentChannel(node, root)
            try:
                op = "read_volume" if i % 2 else "write_volume"
                reply = stream.call(1, op, name=name, size=1 << 20)
                assert reply["ok"] is False and reply["error"]["code"] == "invalid", reply
            finally:
                stream.close()
        assert agent.call("last", "version")["ok"]
    finally:
        agent.close()

    after = pool_state(node)

    def in_root(name: str) -> bool:
        return name == root or name.startswith((root + "/", root + "@"))

    def compared(name: str) -> bool:
        return not in_root(name) and (name in fuzz.names or not OTHER_SESSION.match(name))

    changed = sorted(n for n in before.keys() | after.keys()
                     if compared(n) and before.get(n) != after.get(n))
    assert changed == [], "\n".join(f"{n}:\n  before {before.get(n)}\n  after  {after.get(n)}"
                                     for n in changed)
    assert all(d in after for d in area["decoys"])
    inside_root = [n for n in after if in_root(n)]
    # Nothing inside the root can be mounted or shared.
    fields = STATE_PROPS.split(",")
    for name in inside_root:
        row = dict(zip(fields, after[name].split("\t"), strict=True))
        assert row["mounted"] in ("no", "-"), row
        assert row["sharenfs"] in ("off", "-") and row["sharesmb"] in ("off", "-"), row
        if row["type"] == "filesystem":
            assert row["canmount"] == "off" or row["mountpoint"] == "none", row


# -- receive failing mid-stream -----------------------------------------------------------------

def _long_tag(frame: bytes) -> bool:
    """A hold or release whose tag is longer than ZFS takes (or a frame too long to tell)."""
    if b'"hold"' not in frame and b'"release"' not in frame:
        return False
    try:
        tag = json.loads(frame).get("args", {}).get("tag")
    except (ValueError, RecursionError, AttributeError):
        return True
    return not isinstance(tag, str) or len(tag) > policy.MAX_TAG_LEN


def _transport(node, root: str, **kw):
    from cinder_zfs_ocfs2.transport.ssh import SSHTransport

    return SSHTransport(host="127.0.0.1", port=node.port, user="root", key_file=node.key_path,
                        known_hosts=node.known_hosts, command=agent_command(root), **kw)


def test_receive_failing_mid_stream_leaves_nothing_and_the_agent_serves(node, area):
    from cinder_zfs_ocfs2.zfs import errors
    from cinder_zfs_ocfs2.zfs.client import ZFSClient

    root = area["root"]
    source, small = f"{root}/p/volume-src", f"{root}/small"
    snap, target = f"{source}@copy", f"{small}/volume-copy"
    transport = _transport(node, root, timeout=60)
    client = ZFSClient(transport)
    try:
        client.create_filesystem(f"{root}/p")
        client.create_volume(source, 64 << 20, properties={"compression": "off"})
        node.wait_for_path(f"/dev/zvol/{source}")
        node.run(f"dd if=/dev/urandom of=/dev/zvol/{source} bs=1M count=64 oflag=direct "
                 f"status=none", timeout=600)
        client.snapshot([snap])
        client.create_filesystem(small)
        node.run(f"zfs set quota=4M {small}")  # the agent may not set quotas: the node admin
        started = time.monotonic()
        with pytest.raises(errors.ZFSError) as info:
            client.send_receive(snap, target)
        took = time.monotonic() - started
        message = info.value.message
        logging.getLogger(__name__).info("send_receive failed after %.0f s: %s", took, message)
        assert took < 30, f"the failure took {took:.0f} s to arrive"
        assert isinstance(info.value, errors.NoSpace), message
        assert "zfs receive failed" in message and ("quota" in message or "space" in message)
        assert not client.exists(target)
        assert node.run(f"zfs list -H -o name -r -t all {small}").stdout.split() == [small]
        # [z]: the shell running pgrep does not match its own pattern.
        assert node.run(f"pgrep -af '[z]fs send.*{snap}'", check=False).stdout.strip() == ""
        assert client.holds(snap) == []
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            calls = [pool.submit(client.get_properties, source, ["volsize"]) for _ in range(4)]
            calls += [pool.submit(client.exists, snap) for _ in range(4)]
            results = [c.result(timeout=120) for c in calls]
        assert results == [{"volsize": str(64 << 20)}] * 4 + [True] * 4
        client.destroy(snap)  # not held by a leftover send
    finally:
        transport.close()


# -- a long independent clone under a short zfs_ssh_timeout --------------------------------------

# zfs_ssh_timeout of the copy: three times the agent's progress interval (5 s), so a late
# progress frame on a loaded node does not end the call, and short enough that the copy
# outlasts it by more than a progress interval.
TIMEOUT = 15
# Data written into the 1 GiB volume (the rest stays unwritten: send|receive skips it): at
# least CLONE_MIB, and for at least WRITE_SECONDS, up to 1000 MiB.
CLONE_MIB = 256
WRITE_SECONDS = 40


def test_an_independent_clone_longer_than_the_timeout_completes_with_progress(
        node, area, tmp_path, caplog, monkeypatch):
    """The copy (send|receive) runs under a zfs_ssh_timeout of TIMEOUT and outlasts it; every
    other call keeps the default deadline, so a node slowed by a background load (a `zfs
    create` taking over 10 s) does not fail the set-up around the copy."""
    from cinder_zfs_ocfs2.zfs.client import ZFSClient

    root = area["root"]
    caplog.set_level(logging.DEBUG, logger="cinder_zfs_ocfs2")
    drv = driver_env.build_driver(
        node, None, f"{root}/cinder", f"sqlite:///{tmp_path}/catalog.sqlite",
        zfs_ssh_private_key=node.key_path, zfs_ssh_agent_command=agent_command(root),
        zfs_create_root_dataset=True)
    short = _transport(node, root, timeout=TIMEOUT)
    monkeypatch.setattr(drv.zfs, "send_receive", ZFSClient(short).send_receive)
    try:
        vol = driver_env.volume_obj(size=1)
        drv.create_volume(vol)
        name = drv._volume_name(vol)
        node.wait_for_path(f"/dev/zvol/{name}")
        # Incompressible data, so the copy moves every byte: as much as the node writes in
        # WRITE_SECONDS (at least CLONE_MIB), so the copy outlasts the timeout whatever the
        # node's speed today (a busy node copies 256 MiB in ~65 s, a quiet one in ~30 s).
        mib = int(node.run(
            f"end=$(($(date +%s) + {WRITE_SECONDS})); i=0; "
            f"while [ $i -lt {CLONE_MIB} ] || [ $(date +%s) -lt $end ]; do "
            f"[ $i -ge 1000 ] && break; dd if=/dev/urandom of=/dev/zvol/{name} bs=1M count=8 "
            f"seek=$i oflag=direct conv=notrunc status=none; i=$((i + 8)); done; echo $i",
            timeout=1800).stdout.split()[-1])
        snap = driver_env.snapshot_obj(vol)
        drv.create_snapshot(snap)
        clone = driver_env.volume_obj(size=1, extra_specs={"zfs:clone_mode": "independent"})
        started = time.monotonic()
        drv.create_volume_from_snapshot(clone, snap)
        took = time.monotonic() - started
        logging.getLogger(__name__).info("independent clone of %d MiB took %.0f s", mib, took)
        assert took > TIMEOUT + PROGRESS_INTERVAL, \
            f"the copy of {mib} MiB took {took:.0f} s: too fast to show anything"
        copy = drv._volume_name(clone)
        assert node.run(f"zfs get -H -o value origin {copy}").stdout.strip() == "-"
        progress = [r.getMessage() for r in caplog.records
                    if "send_receive on" in r.getMessage() and "MiB copied" in r.getMessage()]
        assert len(progress) >= 2, progress
        drv.delete_volume(clone)
        drv.delete_snapshot(snap)
        drv.delete_volume(vol)
    finally:
        short.close()
        drv.transport.close()
