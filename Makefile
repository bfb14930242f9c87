# One entry point for developers and CI. `make test` is what CI runs (see README).
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv lint unit functional test node-image node-up node-down node-status node-shell sample-config clean-venv

venv: $(STAMP)

$(STAMP): setup.cfg requirements-test.txt tools/bootstrap-venv.sh
	tools/bootstrap-venv.sh $(VENV)
	touch $(STAMP)

lint: venv
	$(VENV)/bin/ruff check cinder_zfs_ocfs2 tests tools benchmarks
	shellcheck -s bash devstack/plugin.sh devstack/settings devstack/override-defaults \
	    tools/storage-node/load

# The fast loop: seconds, no VM, no root.
unit: venv
	$(PY) -m pytest -q tests/unit tests/devstack

sample-config: venv
	$(VENV)/bin/oslo-config-generator --namespace cinder_zfs_ocfs2 > etc/cinder-zfs-ocfs2.conf.sample
	$(VENV)/bin/oslo-config-generator --namespace cinder_zfs_ocfs2.api \
	    --namespace keystonemiddleware.auth_token --namespace oslo.policy \
	    > etc/cinder-zfs-catalog-api.conf.sample
	$(VENV)/bin/oslopolicy-sample-generator --namespace cinder_zfs_ocfs2.api \
	    --output-file etc/cinder-zfs-catalog-api.policy.yaml.sample

node-image:
	tools/storage-node/build-image

node-up: node-image
	tools/storage-node/node start

node-down:
	tools/storage-node/node stop

node-status:
	tools/storage-node/node status

node-shell:
	tools/storage-node/node shell

# Real OpenZFS / OCFS2 / LIO in the storage-node VM (built and booted when missing).
functional: venv node-image
	$(PY) -m pytest -q -p no:cacheprovider tests/functional

# Everything: what CI runs.
test: lint unit functional e2e tempest

# A real OpenStack on this machine: Keystone + Cinder + this driver against the storage node
# (tools/stack; state in ~/.cache/cinder-zfs-ocfs2/stack, everything on 127.0.0.1).
.PHONY: stack-up stack-down stack-status demo e2e
stack-up: venv
	tools/stack/up

stack-down:
	tools/stack/down

stack-status:
	tools/stack/status

# The main job (README "Quick start"): build what is missing, boot the node, bring the stack up,
# run the narrated demo with the real openstack CLI.
demo: venv
	tools/stack/up
	$(PY) tools/stack/demo.py

# The real openstack CLI and openstacksdk against the stack (brought up, or reused, first).
e2e: venv
	$(PY) -m pytest -q -p no:cacheprovider tests/e2e

# Issue 10: chain-free ZFS snapshots vs qcow2 backing chains, O(1) snapshot/clone cost, in the
# storage-node VM (~1 h under emulation). Results: benchmarks/results/chain-*.{json,png},
# docs/benchmarks.md. Extra args: make bench-chain BENCH_CHAIN_ARGS="--depths 0,16 --repeat 3".
.PHONY: bench-chain
bench-chain: venv node-image
	$(PY) -c 'import matplotlib' 2>/dev/null || $(VENV)/bin/pip install -q -r benchmarks/requirements.txt
	$(PY) benchmarks/chain/run.py $(BENCH_CHAIN_ARGS)

# The upstream Tempest volume tests (tempest.api.volume + cinder_tempest_plugin.api.volume)
# against the stack (brought up, or reused, first); tempest and the plugin in their own venv.
# Summary and subunit in ~/.cache/cinder-zfs-ocfs2/tempest (README "Tempest").
.PHONY: tempest
tempest: venv
	tools/tempest/run $(TEMPEST_ARGS)
