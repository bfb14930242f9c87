"""Summarise a Tempest subunit stream: counts, skips grouped by reason, failures, times.

Runs under the Tempest venv's python (it has python-subunit and testtools):

    summary.py RUN.subunit --wall SECONDS --info JSON --out BASE [--list TESTS]

writes BASE.summary.txt and BASE.summary.json. Test ids lose their [tags] suffix; class-level
skips and failures (setUpClass) count as one each, as stestr reports them; with --list (the
output of `tempest run --list-tests`), the test methods behind them are counted too.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict

import subunit
import testtools

TAGS = re.compile(r"\[.*\]$")


def read(path: str) -> dict:
    tests: dict[str, dict] = {}

    def on_test(test: dict) -> None:
        tid = TAGS.sub("", test["id"])
        reason = ""
        details = test.get("details") or {}
        if "reason" in details:
            reason = details["reason"].as_text().strip()
        tb = ""
        if "traceback" in details:
            tb = details["traceback"].as_text()
        start, stop = test["timestamps"]
        seconds = (stop - start).total_seconds() if start and stop else 0.0
        tests[tid] = {"status": test["status"], "reason": reason, "traceback": tb,
                      "seconds": round(seconds, 1)}

    with open(path, "rb") as f:
        stream = subunit.ByteStreamToStreamResult(f, non_subunit_name="stdout")
        result = testtools.StreamToDict(on_test)
        result.startTestRun()
        try:
            stream.run(result)
        finally:
            result.stopTestRun()
    return tests


def methods(entries: list[str], listed: list[str]) -> int:
    """How many listed test methods the result entries stand for (a setUpClass: its class)."""
    per_class = defaultdict(int)
    for tid in listed:
        per_class[tid.rpartition(".")[0]] += 1
    return sum(per_class[e[len("setUpClass ("):-1]] if e.startswith("setUpClass (") else 1
               for e in entries)


def summarise(tests: dict, wall: float, info: dict, listed: list[str]) -> dict:
    by = defaultdict(list)
    for tid, t in tests.items():
        by[t["status"]].append(tid)
    skipped = defaultdict(list)
    for tid in by.get("skip", []):
        skipped[tests[tid]["reason"] or "(no reason given)"].append(tid)
    failed = sorted(by.get("fail", []) + by.get("uxsuccess", []))
    passed = by.get("success", []) + by.get("xfail", [])
    return {
        "ok": bool(passed) and not failed,
        "passed": len(passed),
        "failed": len(failed),
        "skipped": len(by.get("skip", [])),
        "total": len(tests),
        "methods": {"listed": len(listed), "passed": methods(passed, listed),
                    "failed": methods(failed, listed),
                    "skipped": methods(by.get("skip", []), listed)} if listed else None,
        "wall_seconds": wall,
        "info": info,
        "skipped_by_reason": {r: sorted(ids) for r, ids in
                              sorted(skipped.items(), key=lambda kv: (-len(kv[1]), kv[0]))},
        "failures": {tid: tests[tid]["traceback"] for tid in failed},
        "slowest": sorted(((tests[t]["seconds"], t) for t in passed), reverse=True)[:10],
    }


def text(s: dict) -> str:
    m, sec = divmod(int(round(s["wall_seconds"])), 60)
    info = s["info"]
    lines = [
        f"Tempest volume tests against the local stack ({info.get('versions', '?')})",
        f"started {info.get('started', '?')}, concurrency {info.get('concurrency')}, "
        f"regex {info.get('regex')}",
        f"passed {s['passed']}, failed {s['failed']}, skipped {s['skipped']} "
        f"(total {s['total']}), run time {m} min {sec:02d} s",
    ]
    if s["methods"]:
        c = s["methods"]
        lines.append(f"test methods (a class-level skip or failure counts all of its class): "
                     f"{c['listed']} listed, passed {c['passed']}, failed {c['failed']}, "
                     f"skipped {c['skipped']}")
    lines.append("")
    if s["failures"]:
        lines.append("FAILED:")
        for tid, tb in s["failures"].items():
            lines.append(f"  {tid}")
            tail = [ln for ln in tb.strip().splitlines() if ln.strip()][-6:]
            lines += [f"      {ln}" for ln in tail]
        lines.append("")
    if s["skipped_by_reason"]:
        lines.append("Skipped, by reason:")
        for reason, ids in s["skipped_by_reason"].items():
            lines.append(f"  {reason} ({len(ids)}):")
            lines += [f"    {tid}" for tid in ids]
        lines.append("")
    if s["slowest"]:
        lines.append("Slowest passed tests:")
        lines += [f"  {secs:6.1f}s {tid}" for secs, tid in s["slowest"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("subunit")
    ap.add_argument("--wall", type=float, default=0.0)
    ap.add_argument("--info", default="{}")
    ap.add_argument("--out", required=True)
    ap.add_argument("--list", help="the run's test list (tempest run --list-tests)")
    args = ap.parse_args()
    listed = []
    if args.list:
        with open(args.list) as f:
            listed = [TAGS.sub("", ln.strip()) for ln in f if ln.strip()]
    s = summarise(read(args.subunit), args.wall, json.loads(args.info), listed)
    with open(f"{args.out}.summary.json", "w") as f:
        json.dump(s, f, indent=2)
        f.write("\n")
    with open(f"{args.out}.summary.txt", "w") as f:
        f.write(text(s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
