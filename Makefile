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

# The fast loop: seconds, no VM, no root.
unit: venv
	$(PY) -m pytest -q tests/unit

sample-config: venv
	$(VENV)/bin/oslo-config-generator --namespace cinder_zfs_ocfs2 > etc/cinder-zfs-ocfs2.conf.sample

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
test: lint unit functional
