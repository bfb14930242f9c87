import pathlib
import subprocess
import sys

from cinder_zfs_ocfs2 import options

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_every_option_is_prefixed_and_documented():
    for opt in options.ALL_OPTS:
        assert opt.name.startswith(("zfs_", "ocfs2_")), opt.name
        assert opt.help and len(opt.help) > 20, opt.name


def test_checked_in_sample_config_is_current():
    generator = pathlib.Path(sys.executable).with_name("oslo-config-generator")
    fresh = subprocess.run([str(generator), "--namespace", "cinder_zfs_ocfs2"],
                           capture_output=True, text=True, check=True).stdout
    sample = (ROOT / "etc" / "cinder-zfs-ocfs2.conf.sample").read_text()
    assert fresh == sample, "etc/cinder-zfs-ocfs2.conf.sample is stale: run `make sample-config`"
