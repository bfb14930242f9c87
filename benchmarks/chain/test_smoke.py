"""Smoke test of the chain benchmark runner (issue 10): `run.py --quick` in the storage-node VM.

Tiny sizes (16 MiB volumes, N in 0 and 2, one repetition, 20 existing snapshots): checks that
every phase runs, that every volume's content matches the write plan, that the results JSON has
the samples, ratios and goals, and that the run's datasets and nbd devices are gone. The figures
of a smoke run mean nothing. About a minute when the node is already running.

    .venv/bin/python -m pytest -q -p no:cacheprovider benchmarks/chain/test_smoke.py
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "functional"))

import nodelib  # noqa: E402

pytestmark = pytest.mark.functional


def test_quick_run(tmp_path):
    out, png = tmp_path / "chain.json", tmp_path / "chain.png"
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, str(HERE / "run.py"), "--quick", "--out", str(out), "--plot", str(png)],
        capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, f"run.py --quick exited {r.returncode}:\n{r.stderr[-6000:]}"
    print(f"run.py --quick: {elapsed:.0f} s")
    d = json.loads(out.read_text())
    assert d["quick"] and d["parameters"]["depths"] == [0, 2]
    assert "cleanup_error" not in d

    reads = d["reads"]
    for variant in ("zfs", "qcow2"):
        for n in (0, 2):
            build = reads["builds"][f"{variant}/{n}"]
            assert build["content_ok"], build
    assert reads["builds"]["zfs/2"]["snapshots"] == 2
    assert reads["builds"]["qcow2/2"]["files"] == 3
    samples = reads["samples"]
    assert len(samples) == 2 * 2 * 2
    assert all(s["ios"] > 0 and s["iops"] > 0 and s["mib_s"] > 0 for s in samples)
    for variant in ("zfs", "qcow2"):
        for wl in ("rand4k", "seq1m"):
            entry = reads["summary"][variant][wl]
            assert entry["0"]["throughput_ratio_to_n0"]["median"] == 1.0
            assert entry["2"]["throughput_ratio_to_n0"]["median"] > 0

    ops = d["ops"]
    for key in ("snapshot_vs_size", "clone_vs_size", "snapshot_vs_count"):
        ratios = ops[key]["ratios"]
        assert {x["method"] for x in ratios} == {"lzc", "cli"}
        assert all(x["numerator_median_s"] > 0 and x["denominator_median_s"] > 0
                   for x in ratios)
    assert ops["snapshot_vs_count"]["created"] == 20
    assert ops["snapshot_vs_count"]["existing_on_b"] == 20
    assert len(d["goals"]) == 2 + 3 * 2
    assert all(isinstance(g["met"], bool) for g in d["goals"])
    if importlib.util.find_spec("matplotlib"):
        assert png.stat().st_size > 10_000

    with nodelib.start_node() as node:
        gone = node.run(f"zfs list -H -o name {d['run_dataset']}", check=False)
        assert gone.returncode != 0, f"{d['run_dataset']} was not destroyed"
        procs = node.run("pgrep -a qemu-nbd || true").stdout
        assert d["run_dataset"] not in procs, procs
