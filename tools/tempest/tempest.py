#!/usr/bin/env python3
"""The upstream Tempest volume tests against the local stack (Keystone, Glance, Cinder + driver).

    tools/tempest/run                       # everything: venv, stack, tempest.conf, run, summary
    tools/tempest/run --config-only         # venv + tempest.conf only (prints the path)
    tools/tempest/run --regex 'test_volume_manage'   # a subset (debugging)
    tools/tempest/run --summary             # print the summary of the last run again

Steps, each idempotent:
  1. Tempest and cinder-tempest-plugin (tools/tempest/requirements.txt, pinned) in their own venv,
     <state>/venv; reinstalled only when the requirements file changes.
  2. tools/stack/up (reuses a healthy stack; restarts cinder-volume when the driver changed).
  3. <state>/workspace: a `tempest init` workspace (registered in <state>/workspace.yaml, not in
     ~/.tempest) and its etc/tempest.conf for the stack: Keystone admin credentials for dynamic
     credentials, cinder and glance the only services ([compute] image_ref: the stack's test
     image, from <stack>/test-image.json), the volume feature flags of what the driver supports
     (FEATURES below: each flag says why).
  4. `tempest run --regex '^(tempest\\.api\\.volume|cinder_tempest_plugin\\.api\\.volume)'`.
  5. The run's subunit stream in <state>/results/<time>.subunit and a summary (pass / fail / skip
     counts, skipped tests grouped by skip reason, failures, run time) in
     <state>/results/<time>.summary.{txt,json}, also as <state>/last-summary.{txt,json}; printed.

<state> is ${CZO_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/cinder-zfs-ocfs2}/tempest. Exit status 0
only when at least one test ran and none failed. Everything talks to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tools" / "stack"))
import stack  # noqa: E402  (tools/stack/stack.py: the stack's paths, ports and names)

STATE = Path(os.environ.get("TEMPEST_STATE_DIR") or stack.CACHE / "tempest").absolute()
TVENV = STATE / "venv"
WORKSPACE = STATE / "workspace"
WORKSPACE_FILE = STATE / "workspace.yaml"
WORKSPACE_NAME = "cinder-zfs-ocfs2"
CONF_FILE = WORKSPACE / "etc" / "tempest.conf"
RESULTS = STATE / "results"
REQUIREMENTS = HERE / "requirements.txt"

REGEX = r"^(tempest\.api\.volume|cinder_tempest_plugin\.api\.volume)"
# 2 cores, but the workers mostly wait for cinder-volume and the emulated storage node:
# measured for the whole suite, 3 workers 18 min 09 s, 4 workers 13 min 57 s.
CONCURRENCY = int(os.environ.get("TEMPEST_CONCURRENCY", "4"))
# Volume operations under QEMU software emulation take seconds, a loaded node tens of seconds.
BUILD_TIMEOUT = int(os.environ.get("TEMPEST_BUILD_TIMEOUT", "600"))

# [volume-feature-enabled]: what the driver really supports (cinder_zfs_ocfs2/driver.py).
FEATURES = {
    "snapshot": True,                  # create_snapshot / delete_snapshot (zfs snapshot)
    "clone": True,                     # create_cloned_volume (zfs clone)
    "extend_volume_with_snapshot": True,   # volsize grows with snapshots present
    # Online extend is reported (online_extend_support) but only testable through Nova.
    "extend_attached_volume": False,
    "extend_attached_encrypted_volume": False,
    "manage_volume": True,             # manage_existing / unmanage, source-name volume-<id>
    "manage_snapshot": True,           # manage_existing_snapshot, source-name snapshot-<id>
    "volume_revert": True,             # revert_to_snapshot (rollback / clone-and-swap)
    "consistency_group": True,         # generic groups with consistent group snapshots
    "backup": False,                   # no cinder-backup service in the stack
    "multi_backend": False,            # the stack has one backend (see backend_names)
    "replication": False,              # no replication in the driver
    # Images, volumes from them, images from those, deleted in every order: needs Glance and
    # the driver's image data path (copy_image_to_volume / copy_volume_to_image via the agent).
    "enable_volume_image_dep_tests": True,
    "api_extensions": "all",
}


class RunError(Exception):
    pass


def say(msg: str) -> None:
    print(f"[tempest {time.time() - stack.T0:7.1f}s] {msg}", flush=True)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ 1. the venv
def ensure_venv() -> None:
    stamp = TVENV / ".czo-requirements"
    want = digest(REQUIREMENTS)
    if (TVENV / "bin" / "tempest").exists() and stamp.exists() and stamp.read_text() == want:
        return
    t = time.time()
    say(f"installing {REQUIREMENTS.relative_to(REPO)} into {TVENV}")
    if not (TVENV / "bin" / "python").exists():
        base = getattr(sys, "_base_executable", None) or sys.executable
        subprocess.run([base, "-m", "venv", str(TVENV)], check=True)
    r = subprocess.run([str(TVENV / "bin" / "pip"), "install", "-q", "-r", str(REQUIREMENTS)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RunError(f"pip install -r {REQUIREMENTS} failed:\n{(r.stdout + r.stderr)[-4000:]}")
    stamp.write_text(want)
    say(f"tempest venv ready in {time.time() - t:.0f}s")


def tempest_version() -> str:
    r = subprocess.run([str(TVENV / "bin" / "python"), "-c",
                        "from importlib.metadata import version as v; "
                        "print(v('tempest'), v('cinder-tempest-plugin'))"],
                       capture_output=True, text=True, check=True)
    t, p = r.stdout.split()
    return f"tempest {t}, cinder-tempest-plugin {p}"


# ------------------------------------------------------------------ 2. the stack
def ensure_stack() -> None:
    say("tools/stack/up (reuses a healthy stack)")
    r = subprocess.run([str(REPO / "tools" / "stack" / "up")], stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RunError("tools/stack/up failed (its output is above)")


def max_microversion() -> str:
    url = f"http://{stack.HOST}:{stack.PORTS['cinder-api']}/"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            versions = json.load(r)["versions"]
    except urllib.error.HTTPError as e:  # the version document answers 300 Multiple Choices
        versions = json.load(e)["versions"]
    return next(v["version"] for v in versions if v["id"] == "v3.0")


# ------------------------------------------------------------------ 3. workspace and tempest.conf
def ensure_workspace() -> None:
    if (WORKSPACE / "etc").is_dir() and WORKSPACE_FILE.exists():
        return
    say(f"tempest init {WORKSPACE}")
    if WORKSPACE.exists():
        shutil.rmtree(WORKSPACE)
    subprocess.run([str(TVENV / "bin" / "tempest"), "init", "--workspace-path",
                    str(WORKSPACE_FILE), "--name", WORKSPACE_NAME, str(WORKSPACE)],
                   check=True, stdout=subprocess.DEVNULL)


def ini(sections: dict[str, dict]) -> str:
    out = ["# Written by tools/tempest/run for the local stack (tools/stack). Do not edit:",
           "# it is rewritten on every run."]
    for name, opts in sections.items():
        out.append(f"\n[{name}]")
        for k, v in opts.items():
            if isinstance(v, bool):
                v = str(v)
            out.append(f"{k} = {v}")
    return "\n".join(out) + "\n"


def test_image() -> dict | None:
    """The stack's test image (tools/stack/up uploads it to Glance), or None without one."""
    try:
        return json.loads(stack.TEST_IMAGE_STATE.read_text())
    except (OSError, ValueError):
        return None


def tempest_conf(sec: dict, max_version: str, image: dict | None = None) -> str:
    keystone = stack.keystone_url()
    glance = image is not None
    return ini({
        "DEFAULT": {
            "log_dir": WORKSPACE / "logs",
            "log_file": "tempest.log",
            "debug": True,
        },
        "auth": {
            # A project and users per test class, made with the Keystone admin (system scope:
            # Keystone runs with enforce_scope, so the admin's project token cannot).
            "use_dynamic_credentials": True,
            "admin_username": "admin",
            "admin_password": sec["admin"],
            "admin_project_name": "admin",
            "admin_domain_name": "Default",
            "admin_user_domain_name": "Default",
            "admin_project_domain_name": "Default",
            "admin_system": "all",
            "create_isolated_networks": False,
        },
        "identity": {
            "uri_v3": f"{keystone}/v3",
            "auth_version": "v3",
            "region": stack.REGION,
            "v3_endpoint_type": "public",
        },
        "identity-feature-enabled": {"api_v2": False},
        # Every service runs with [oslo_policy] enforce_new_defaults and enforce_scope.
        "enforce_scope": {"cinder": True, "keystone": True, "glance": glance},
        "service_available": {
            "cinder": True, "nova": False, "glance": glance, "swift": False,
            "neutron": False, "barbican": False,
        },
        # The volume tests take their image from [compute] (there is no Nova): one image, so
        # image_ref_alt is the same (as tempest's help says). qcow2, 32 MiB virtual.
        **({"compute": {"image_ref": image["id"], "image_ref_alt": image["id"]},
            "image": {"catalog_type": "image", "region": stack.REGION,
                      "endpoint_type": "publicURL", "container_formats": "bare"}}
           if glance else {}),
        "volume": {
            "catalog_type": "block-storage",
            "region": stack.REGION,
            "endpoint_type": "publicURL",
            # One backend: the stack's [zfs] (tools/stack/stack.py BACKEND).
            "backend_names": stack.BACKEND,
            "storage_protocol": "iSCSI",
            "vendor_name": "cinder-zfs-ocfs2",     # ZFSOCFS2Driver.VENDOR, in its stats
            "manage_volume_ref": "source-name,volume-%s",
            "manage_snapshot_ref": "source-name,snapshot-%s",
            "min_microversion": "3.0",
            "max_microversion": max_version,   # what cinder-api reports
            "build_timeout": BUILD_TIMEOUT,
            "build_interval": 1,
            "volume_size": 1,
            # Upload to image: copy_volume_to_image reads the zvol through the agent, Cinder's
            # upload_volume converts with qemu-img to the requested format.
            "disk_format": "raw,qcow2",
        },
        "volume-feature-enabled": FEATURES,
        # Cinder honours the multiattach extra spec with this driver (stats: multiattach True);
        # in tempest.api.volume the flag only gates the retype-to-multiattach test (no Nova).
        "compute-feature-enabled": {"volume_multiattach": True},
    })


def write_conf(sec: dict) -> None:
    image = test_image()
    text = tempest_conf(sec, max_microversion(), image)
    stack.write_if_changed(CONF_FILE, text)
    say(f"wrote {CONF_FILE} (glance: "
        + (f"image_ref {image['id']})" if image else "none, no test image recorded)"))


# ------------------------------------------------------------------ 4. run, 5. summary
def tempest_env() -> dict:
    env = dict(os.environ, TEMPEST_CONFIG_DIR=str(CONF_FILE.parent),
               TEMPEST_CONFIG=CONF_FILE.name, NO_PROXY="127.0.0.1,localhost",
               no_proxy="127.0.0.1,localhost")
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env.pop(proxy, None)  # everything is on 127.0.0.1
    return env


def tempest_argv(regex: str) -> list[str]:
    return [str(TVENV / "bin" / "tempest"), "run", "--workspace-path", str(WORKSPACE_FILE),
            "--workspace", WORKSPACE_NAME, "--config-file", str(CONF_FILE), "--regex", regex]


def list_tests(regex: str) -> Path:
    """The test methods the regex selects (to count the ones behind a class-level skip)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(tempest_argv(regex) + ["--list-tests"], cwd=WORKSPACE, env=tempest_env(),
                       capture_output=True, text=True)
    path = RESULTS / "last-list.txt"
    path.write_text("".join(ln + "\n" for ln in r.stdout.splitlines()
                            if ln.startswith(("tempest.", "cinder_tempest_plugin."))))
    return path


def run_tempest(regex: str, concurrency: int, extra: list[str]) -> tuple[int, float]:
    argv = tempest_argv(regex) + ["--concurrency", str(concurrency)] + extra
    say("running: " + " ".join(argv[1:]))
    t = time.time()
    env = tempest_env()
    log = RESULTS / "last-run.log"
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, cwd=WORKSPACE, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
        for line in proc.stdout:
            sys.stdout.write(line)
            out.write(line)
        rc = proc.wait()
    return rc, time.time() - t


def save_results(wall: float, info: dict, listed: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    subunit = RESULTS / f"{stamp}.subunit"
    with open(subunit, "wb") as f:
        r = subprocess.run([str(TVENV / "bin" / "stestr"), "last", "--subunit"], cwd=WORKSPACE,
                           stdout=f, stderr=subprocess.PIPE)
    if r.returncode != 0 and subunit.stat().st_size == 0:
        raise RunError(f"stestr last --subunit failed: {r.stderr.decode()[-2000:]}")
    base = RESULTS / stamp
    subprocess.run([str(TVENV / "bin" / "python"), str(HERE / "summary.py"), str(subunit),
                    "--wall", f"{wall:.1f}", "--info", json.dumps(info),
                    "--out", str(base), "--list", str(listed)], check=True)
    for ext in ("txt", "json"):
        shutil.copyfile(f"{base}.summary.{ext}", STATE / f"last-summary.{ext}")
    return Path(f"{base}.summary.txt")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="tools/tempest/run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--regex", default=REGEX, help=f"tests to run (default {REGEX})")
    ap.add_argument("--concurrency", type=int, default=CONCURRENCY)
    ap.add_argument("--config-only", action="store_true",
                    help="install, bring the stack up, write tempest.conf; run nothing")
    ap.add_argument("--no-stack", action="store_true",
                    help="do not run tools/stack/up (the stack must already be up)")
    ap.add_argument("--summary", action="store_true", help="print the last summary and exit")
    ap.add_argument("extra", nargs="*", help="after --: more `tempest run` arguments")
    args = ap.parse_args(argv)
    if args.summary:
        p = STATE / "last-summary.txt"
        if not p.exists():
            print("no tempest run yet", file=sys.stderr)
            return 1
        print(p.read_text(), end="")
        return 0 if json.loads((STATE / "last-summary.json").read_text())["ok"] else 1
    try:
        STATE.mkdir(parents=True, exist_ok=True)
        ensure_venv()
        if not args.no_stack:
            ensure_stack()
        ensure_workspace()
        write_conf(stack.secrets_get())
        if args.config_only:
            print(CONF_FILE)
            return 0
        listed = list_tests(args.regex)
        rc, wall = run_tempest(args.regex, args.concurrency, args.extra)
        info = {"regex": args.regex, "concurrency": args.concurrency,
                "versions": tempest_version(), "tempest_rc": rc,
                "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - wall))}
        summary = save_results(wall, info, listed)
        print(summary.read_text(), end="")
        say(f"subunit and summary in {RESULTS}; tempest.conf {CONF_FILE}")
        ok = json.loads(Path(str(summary).replace(".txt", ".json")).read_text())["ok"]
        return 0 if ok and rc == 0 else 1
    except (RunError, stack.StackError, subprocess.CalledProcessError, OSError) as e:
        say(f"ERROR: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
