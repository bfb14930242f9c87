"""The catalog API's generated samples (config, policy) match the code, like the driver's."""

import pathlib
import subprocess
import sys

import pytest

from cinder_zfs_ocfs2.api import opts, policies
from tests.unit import entry_points

ROOT = entry_points.ROOT
BIN = pathlib.Path(sys.executable).parent

CONFIG_SAMPLE = ROOT / "etc" / "cinder-zfs-catalog-api.conf.sample"
POLICY_SAMPLE = ROOT / "etc" / "cinder-zfs-catalog-api.policy.yaml.sample"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return entry_points.subprocess_env(tmp_path_factory.mktemp("entry-points"))


def test_every_option_is_documented():
    for opt in opts.api_opts:
        assert opt.help and len(opt.help) > 20, opt.name


def test_every_api_rule_is_documented_with_its_operations():
    for rule in policies.api_rules:
        assert rule.name.startswith(policies.PREFIX + ":"), rule.name
        assert rule.description and rule.operations, rule.name


def test_checked_in_config_sample_is_current(env):
    fresh = subprocess.run(
        [str(BIN / "oslo-config-generator"), "--namespace", "cinder_zfs_ocfs2.api",
         "--namespace", "keystonemiddleware.auth_token", "--namespace", "oslo.policy"],
        capture_output=True, text=True, check=True, env=env).stdout
    assert "[catalog_api]" in fresh and "[keystone_authtoken]" in fresh
    assert fresh == CONFIG_SAMPLE.read_text(), (
        f"{CONFIG_SAMPLE.name} is stale: run `make sample-config`")


def test_checked_in_policy_sample_is_current(env, tmp_path):
    out = tmp_path / "policy.yaml.sample"
    subprocess.run([str(BIN / "oslopolicy-sample-generator"), "--namespace",
                    "cinder_zfs_ocfs2.api", "--output-file", str(out)],
                   capture_output=True, text=True, check=True, env=env)
    fresh = out.read_text()
    assert '#"zfs_catalog:volume:history": "rule:project_reader_or_above"' in fresh
    assert fresh == POLICY_SAMPLE.read_text(), (
        f"{POLICY_SAMPLE.name} is stale: run `make sample-config`")
