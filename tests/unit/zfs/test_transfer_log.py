"""Long image transfers say in cinder-volume's log how far they are, how fast, and how long
they still take (issue 22), whichever transport carries the bytes."""

import logging

from cinder_zfs_ocfs2.zfs import client as zfs_client
from cinder_zfs_ocfs2.zfs.client import MiB, ZFSClient, _TransferLog

VOLUME = "tank/cinder/p/volume-a"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_lines_carry_amount_percent_rate_and_eta(caplog):
    caplog.set_level(logging.INFO, logger="cinder_zfs_ocfs2")
    clock = Clock()
    log = _TransferLog("image into v", 100 * MiB, clock=clock, interval=30)
    for _ in range(10):                     # 10 MiB every 10 s: 1 MiB/s
        clock.now += 10
        log.add(10 * MiB)
    log.finish()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "image into v: 30 of 100 MiB (30%) in 30 s, 1.0 MiB/s, about 70 s left"
    assert len(lines) == 4 and lines[-1] == "image into v: 100 MiB in 100 s (1.0 MiB/s)"


class StreamingTransport:
    """Moves the bytes the way the agent transports do: chunk by chunk, a clock tick each."""

    def __init__(self, clock, data: bytes):
        self.clock, self.data = clock, data

    def write_volume(self, name, source, size):
        got = 0
        while chunk := source.read(MiB):
            got += len(chunk)
            self.clock.now += 10
        return got

    def read_volume(self, name, sink):
        for i in range(0, len(self.data), MiB):
            sink.write(self.data[i:i + MiB])
            self.clock.now += 10
        return len(self.data)

    def call(self, op, **args):
        assert op == "get"
        return {"volsize": str(len(self.data))}


def test_image_writes_and_reads_log_their_progress(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="cinder_zfs_ocfs2")
    clock = Clock()
    monkeypatch.setattr(zfs_client, "_clock", clock)
    data = b"\x01" * (8 * MiB)
    client = ZFSClient(StreamingTransport(clock, data))
    image = tmp_path / "image.raw"
    image.write_bytes(data)
    assert client.write_volume_from_file(VOLUME, str(image)) == len(data)
    assert client.read_volume_to_file(VOLUME, str(tmp_path / "back.raw")) == len(data)
    lines = [r.getMessage() for r in caplog.records]
    for what in (f"image into {VOLUME}", f"volume {VOLUME} into an image"):
        progress = [m for m in lines if m.startswith(f"{what}: ") and " of 8 MiB (" in m]
        assert progress and all("MiB/s, about" in m and m.endswith("s left") for m in progress)
        assert f"{what}: 8 MiB in 80 s (0.1 MiB/s)" in lines, lines


def test_the_client_and_the_agent_import_without_oslo():
    """Both run on the storage node (local mode, the agent), where only python3 and pyzfs are:
    an oslo import there breaks the node, which only the functional tests would show."""
    import subprocess
    import sys

    blocker = ("import sys\n"
               "class Block:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] in ('oslo_log', 'oslo_config', 'cinder'):\n"
               "            raise ImportError(f'{name} is not on the node')\n"
               "sys.meta_path.insert(0, Block())\n"
               "import cinder_zfs_ocfs2.zfs.client, cinder_zfs_ocfs2.agent.server\n")
    r = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
