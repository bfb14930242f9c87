"""The local stack as the e2e tests see it: the real `openstack` CLI and openstacksdk.

`bring_up()` runs tools/stack/up (idempotent; progress goes to the real stderr) and returns a
`Stack`. Each CLI call is a real `openstack --os-cloud <cloud> ...` subprocess (1.5-2.7 s of
Python start-up each); polling for a status goes through openstacksdk (milliseconds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from functools import cached_property
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("VENV") or REPO / ".venv")
UP = REPO / "tools" / "stack" / "up"
STACK_PY = REPO / "tools" / "stack" / "stack.py"
ZFS_ROOT = "tank/cinder"
BACKEND_HOST = "stack@zfs"


class StackUpError(RuntimeError):
    pass


class CLIError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return (f"`{' '.join(self.cmd)}` exited {self.returncode}\n--- stdout:\n"
                f"{(self.stdout or '')[-3000:]}\n--- stderr:\n{(self.stderr or '')[-3000:]}")


def bring_up(timeout: float = 3600) -> Stack:
    t = time.time()
    print("\n[e2e] tools/stack/up (reuses a healthy stack) ...", file=sys.stderr,
          flush=True)
    r = subprocess.run([str(UP)], stdout=sys.stderr, stderr=sys.stderr,
                       stdin=subprocess.DEVNULL, timeout=timeout)
    if r.returncode != 0:
        raise StackUpError(f"tools/stack/up exited {r.returncode} (its output is above)")
    status = subprocess.run([str(VENV / "bin" / "python"), str(STACK_PY), "status", "--json"],
                            capture_output=True, text=True)
    info = json.loads(status.stdout)
    if not info.get("ok"):
        raise StackUpError(f"tools/stack/status is not healthy after up: {status.stdout}")
    print(f"[e2e] stack ready in {time.time() - t:.1f}s", file=sys.stderr, flush=True)
    return Stack(info)


def restart_volume_service() -> None:
    """Stop cinder-volume (by its pid file) and start it again with tools/stack/up, which
    returns once it is up and the backend has reported."""
    r = subprocess.run([str(VENV / "bin" / "python"), "-c",
                        "import sys; sys.path.insert(0, sys.argv[1]); import stack; "
                        "stack.stop_proc('cinder-volume')", str(STACK_PY.parent)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise StackUpError(f"cannot stop cinder-volume: {r.stderr[-2000:]}")
    bring_up()


class Stack:
    def __init__(self, info: dict):
        self.info = info
        self.clouds_yaml = info["clouds_yaml"]
        self.cinder_conf = info["cinder_conf"]
        self.env = dict(os.environ, OS_CLIENT_CONFIG_FILE=self.clouds_yaml)
        self.env.pop("OS_CLOUD", None)
        self._sdk: dict = {}

    # ------------------------------------------------------------------ the CLI
    def cli(self, cloud: str, *args: str, api: str | None = None, check: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess:
        argv = [str(VENV / "bin" / "openstack"), "--os-cloud", cloud]
        if api:
            argv += ["--os-volume-api-version", api]
        argv += [str(a) for a in args]
        r = subprocess.run(argv, capture_output=True, text=True, env=self.env,
                           stdin=subprocess.DEVNULL, timeout=timeout)
        if check and r.returncode != 0:
            raise CLIError(r.returncode, argv, r.stdout, r.stderr)
        return r

    def cli_json(self, cloud: str, *args: str, api: str | None = None):
        return json.loads(self.cli(cloud, *args, "-f", "json", api=api).stdout)

    # ------------------------------------------------------------------ the SDK
    def sdk(self, cloud: str, microversion: str | None = None):
        key = (cloud, microversion)
        if key not in self._sdk:
            import openstack

            os.environ["OS_CLIENT_CONFIG_FILE"] = self.clouds_yaml
            kw = {"block_storage_api_version": microversion} if microversion else {}
            self._sdk[key] = openstack.connect(cloud=cloud, api_timeout=120, **kw)
        return self._sdk[key]

    def new_sdk(self, cloud: str, microversion: str | None = None):
        """A connection of its own (one per thread in the concurrency tests)."""
        import openstack

        os.environ["OS_CLIENT_CONFIG_FILE"] = self.clouds_yaml
        kw = {"block_storage_api_version": microversion} if microversion else {}
        return openstack.connect(cloud=cloud, api_timeout=120, **kw)

    @cached_property
    def admin(self):
        return self.sdk("admin")

    @cached_property
    def test_image(self) -> dict:
        """The image tools/stack/up uploads to Glance: id, sizes, sha256 of its raw content."""
        return json.loads((Path(self.info["stack_dir"]) / "test-image.json").read_text())

    def project_id(self, cloud: str) -> str:
        return self.sdk(cloud).current_project_id

    def zvol(self, project_id: str, volume_id: str) -> str:
        return f"{ZFS_ROOT}/{project_id}/volume-{volume_id}"

    # ------------------------------------------------------------------ waiting
    def wait_volume(self, volume_id: str, status: str = "available", timeout: float = 300):
        return self._wait(lambda: self.admin.block_storage.get_volume(volume_id), status,
                          f"volume {volume_id}", timeout)

    def wait_snapshot(self, snapshot_id: str, status: str = "available",
                      timeout: float = 300):
        return self._wait(lambda: self.admin.block_storage.get_snapshot(snapshot_id), status,
                          f"snapshot {snapshot_id}", timeout)

    def _wait(self, get, status: str, what: str, timeout: float):
        end = time.time() + timeout
        last = None
        while time.time() < end:
            last = get()
            if last.status == status:
                return last
            if last.status.startswith("error") and not status.startswith("error"):
                raise AssertionError(f"{what} went {last.status} (waiting for {status}); "
                                     f"see {Path(self.cinder_conf).parents[1] / 'log'}")
            time.sleep(0.5)
        raise AssertionError(f"{what} is {last.status if last else '?'} after {timeout}s, "
                             f"not {status}")

    def wait_gone(self, kind: str, ident: str, timeout: float = 300) -> None:
        from openstack import exceptions

        get = {"volume": self.admin.block_storage.get_volume,
               "snapshot": self.admin.block_storage.get_snapshot}[kind]
        end = time.time() + timeout
        while time.time() < end:
            try:
                obj = get(ident)
            except exceptions.NotFoundException:
                return
            if obj.status.startswith("error"):
                raise AssertionError(f"{kind} {ident} went {obj.status} while deleting")
            time.sleep(0.5)
        raise AssertionError(f"{kind} {ident} still there after {timeout}s")


class Cleanup:
    """Deletes what a test registered, newest first, with the admin's powers."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.items: list[tuple[str, str, str | None]] = []
        self.zfs: list[str] = []
        self.node = None

    def volume(self, ident: str) -> str:
        self.items.append(("volume", ident, None))
        return ident

    def snapshot(self, ident: str) -> str:
        self.items.append(("snapshot", ident, None))
        return ident

    def attachment(self, ident: str, cloud: str) -> str:
        self.items.append(("attachment", ident, cloud))
        return ident

    def image(self, ident: str) -> str:
        self.items.append(("image", ident, None))
        return ident

    def dataset(self, node, name: str) -> str:
        """An out-of-band dataset on the node, destroyed (if still there) after the test."""
        self.node = node
        self.zfs.append(name)
        return name

    def run(self) -> None:
        from openstack import exceptions

        bs = self.stack.admin.block_storage
        errors = []
        for kind, ident, cloud in reversed(self.items):
            try:
                if kind == "image":
                    self.stack.admin.image.delete_image(ident, ignore_missing=True)
                elif kind == "attachment":
                    self.stack.sdk(cloud, "3.54").block_storage.delete_attachment(
                        ident, ignore_missing=True)
                elif kind == "snapshot":
                    snap = bs.find_snapshot(ident, ignore_missing=True, all_projects=True)
                    if snap is not None:
                        if snap.status not in ("available", "error"):
                            bs.reset_snapshot_status(snap, "error")
                        bs.delete_snapshot(ident, ignore_missing=True)
                        self.stack.wait_gone("snapshot", ident)
                else:
                    vol = bs.find_volume(ident, ignore_missing=True, all_projects=True)
                    if vol is not None:
                        if vol.status not in ("available", "error") or vol.attachments:
                            bs.reset_volume_status(vol, status="available",
                                                   attach_status="detached",
                                                   migration_status=None)
                        bs.delete_volume(ident, ignore_missing=True, cascade=True)
                        self.stack.wait_gone("volume", ident)
            except (exceptions.SDKException, AssertionError) as e:
                errors.append(f"{kind} {ident}: {e}")
        for name in reversed(self.zfs):
            self.node.destroy_dataset(name)
        if errors:
            raise AssertionError("cleanup failed:\n" + "\n".join(errors))
