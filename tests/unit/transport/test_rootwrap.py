"""Local mode as the cinder user: the agent under the root helper is the only root command."""

import os
import sys
import textwrap
from pathlib import Path

import pytest
from oslo_rootwrap import wrapper

from cinder_zfs_ocfs2.transport.rootwrap import RootHelperAgentTransport
from cinder_zfs_ocfs2.zfs import errors
from cinder_zfs_ocfs2.zfs.client import ZFSClient

REPO = Path(__file__).resolve().parents[3]
FILTERS = REPO / "etc" / "rootwrap.d"

# A root helper that checks what it is asked to run, then serves a recording agent.
HELPER = textwrap.dedent(f'''
    import sys
    sys.path.insert(0, {str(REPO)!r})
    from cinder_zfs_ocfs2.agent.server import AgentServer
    from tests.unit.zfs.fakes import RecordingOperations
    assert sys.argv[1:3] == ["cinder-zfs-agent", "--root"], sys.argv
    ops = RecordingOperations(sys.argv[3], replies={{"list": "tank/cinder/p/v\\n"}})
    AgentServer(ops, sys.stdin.buffer, sys.stdout.buffer).serve()
''')


@pytest.fixture
def transport(tmp_path):
    helper = tmp_path / "helper.py"
    helper.write_text(HELPER)
    t = RootHelperAgentTransport("tank/cinder", f"{sys.executable} {helper}", timeout=30)
    yield t
    t.close()


def test_calls_go_through_the_agent_and_its_allow_list(transport):
    client = ZFSClient(transport)
    assert client.exists("tank/cinder/p/v") is True
    assert transport.info["root"] == "tank/cinder"
    with pytest.raises(errors.InvalidArgument, match="mountpoint"):
        client.set_properties("tank/cinder/p/v", {"mountpoint": "/etc"})
    with pytest.raises(errors.InvalidArgument, match="outside the root"):
        client.destroy("tank/other")


def test_closing_ends_the_agent(transport):
    ZFSClient(transport).exists("tank/cinder/p/v")
    process = transport._session.channel.proc
    transport.close()
    assert process.poll() is not None


def test_a_helper_that_refuses_says_what_to_check(tmp_path):
    t = RootHelperAgentTransport("tank/cinder", f"{sys.executable} -c exit(99)", timeout=5)
    with pytest.raises(errors.TransportError, match="rootwrap.d/zfs-ocfs2.filters"):
        t.call("exists", name="tank/cinder/p/v")


@pytest.fixture
def exec_dir(tmp_path):
    for name in ("cinder-zfs-agent", "zfs", "zpool", "mkfs.ocfs2", "tunefs.ocfs2"):
        path = tmp_path / name
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    return [str(tmp_path)]


@pytest.mark.parametrize("argv", [
    ["cinder-zfs-agent", "--root", "tank/cinder"],
    ["cinder-zfs-agent", "--root", "tank"],
    ["cinder-zfs-agent", "--root", "pool-2/a.b/c_d:e"],
])
def test_the_filters_grant_the_agent_for_a_root(exec_dir, argv):
    filters = wrapper.load_filters([str(FILTERS)])
    assert wrapper.match_filter(filters, argv, exec_dirs=exec_dir).name == "cinder-zfs-agent"


@pytest.mark.parametrize("argv", [
    ["zfs", "destroy", "-r", "tank"], ["zfs", "set", "mountpoint=/etc", "tank/x"],
    ["zfs", "list"], ["zpool", "destroy", "tank"], ["mkfs.ocfs2", "/dev/sda"],
    ["tunefs.ocfs2", "-y", "/dev/sda"], ["cinder-zfs-agent", "--root", "-x"],
    ["cinder-zfs-agent", "--root", "tank/../etc"], ["cinder-zfs-agent", "--root", "tank/./x"],
    ["cinder-zfs-agent", "--root", "/tank"],
    ["cinder-zfs-agent", "--root", "tank", "--root", "rpool"],
    ["cinder-zfs-agent", "--root", "tank", "--no-pyzfs"], ["cinder-zfs-agent"],
    ["cinder-zfs-agent", "--root", "tank;sh"], ["cinder-zfs-agent", "--root", "tank cinder"],
])
def test_nothing_else_runs_as_root(exec_dir, argv):
    filters = wrapper.load_filters([str(FILTERS)])
    with pytest.raises(wrapper.NoFilterMatched):
        wrapper.match_filter(filters, argv, exec_dirs=exec_dir)
    assert os.path.exists(os.path.join(exec_dir[0], argv[0]))
