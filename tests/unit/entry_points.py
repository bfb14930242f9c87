"""This checkout's entry points (from setup.cfg) for subprocesses and in-process plugin loads.

The venv may hold the package installed from another checkout (worktrees share one venv), so
its metadata can lag setup.cfg. `checkout_path(tmp)` writes a dist-info generated from this
checkout's setup.cfg into ``tmp``; put it (and the checkout) first on the path and stevedore
and importlib.metadata find exactly the entry points this checkout declares.
"""

from __future__ import annotations

import configparser
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def write_dist_info(target: pathlib.Path) -> pathlib.Path:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    dist = target / "cinder_zfs_ocfs2-0.0.0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cinder-zfs-ocfs2\n"
                                   "Version: 0.0.0\n")
    lines = []
    for group, body in setup["options.entry_points"].items():
        lines.append(f"[{group}]")
        lines.extend(line.strip() for line in body.strip().splitlines() if line.strip())
        lines.append("")
    (dist / "entry_points.txt").write_text("\n".join(lines))
    return target


def subprocess_env(target: pathlib.Path) -> dict:
    """Environment for a subprocess that must load this checkout's code and entry points."""
    write_dist_info(target)
    path = [str(target), str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(
        os.pathsep) if p]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(path))
