#!/usr/bin/env bash
# Create the project's virtualenv with Cinder (pinned) and this package, idempotently.
set -euo pipefail
venv=${1:-.venv}
here=$(cd "$(dirname "$0")/.." && pwd)
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    echo "== installing python3-venv (Debian)"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv python3-dev gcc
fi
if ! command -v shellcheck >/dev/null; then
    echo "== installing shellcheck (Debian; lints the devstack plugin)"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q shellcheck
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
start=$SECONDS
echo "== installing Python packages into $venv (cinder 29 and test tools; ~2 min cold)"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -r "$here/requirements-test.txt"
"$venv/bin/pip" install -q -e "$here"
echo "== venv ready in $((SECONDS - start)) s"
