#!/usr/bin/env python3
# /// script
# requires-python = ">=3.11"
# dependencies = []
# ///
"""Soak: run the integration suite N times and report what varies between runs.

    python scripts/soak.py [--runs 20] [--pytest-args "-n 2 tests/integration"] [--python PY]

Per run: pass/fail, duration, test outcomes (from the run's JUnit XML) and the labelled
resources left behind (containers, networks, volumes carrying the run's id). Across runs: the
flaky tests (a test that both passed and failed). Results go to artifacts/soak/<stamp>/ as
report.json and report.md; the exit code is 1 if any run failed, a test was flaky or a resource
was left over.

Standard library only (the harness and pytest are used through ``--python``, by default the
project's venv or the current interpreter); leftovers are counted with the docker CLI.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LABEL_ROOT = "tasker-testing"
LABEL_RUN = "tasker-testing.run"
RUN_ID_ENV = "TASKER_TESTING_RUN_ID"
DEFAULT_PYTEST_ARGS = "-n 2 tests/integration"
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


@dataclass
class RunResult:
    index: int
    run_id: str
    exit_code: int
    duration_s: float
    outcomes: dict[str, str] = field(default_factory=dict)
    leftovers: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and not any(o == FAILED for o in self.outcomes.values())

    @property
    def leftover_total(self) -> int:
        return sum(self.leftovers.values())


# --------------------------------------------------------------------------- pure logic


def parse_junit(text: str) -> dict[str, str]:
    """test id (``classname::name``) → passed/failed/skipped, from one JUnit XML document.

    A test reported more than once (e.g. a setup error after a call) counts as failed if any
    report failed.
    """
    outcomes: dict[str, str] = {}
    root = ET.fromstring(text)  # noqa: S314 (our own pytest run wrote it)
    for case in root.iter("testcase"):
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        tags = {child.tag for child in case}
        if tags & {"failure", "error"}:
            outcome = FAILED
        elif "skipped" in tags:
            outcome = SKIPPED
        else:
            outcome = PASSED
        if outcomes.get(test_id) != FAILED:
            outcomes[test_id] = outcome
    return outcomes


def find_flaky(runs: list[RunResult]) -> dict[str, dict[str, int]]:
    """Tests that passed in some run and failed in another: id → {passed: n, failed: n}."""
    counts: dict[str, dict[str, int]] = {}
    for run in runs:
        for test_id, outcome in run.outcomes.items():
            if outcome in (PASSED, FAILED):
                tally = counts.setdefault(test_id, {PASSED: 0, FAILED: 0})
                tally[outcome] += 1
    return {t: c for t, c in sorted(counts.items()) if c[PASSED] and c[FAILED]}


def always_failing(runs: list[RunResult]) -> list[str]:
    """Tests that failed in every run that reported them (consistent failures, not flakes)."""
    seen: dict[str, set[str]] = {}
    for run in runs:
        for test_id, outcome in run.outcomes.items():
            seen.setdefault(test_id, set()).add(outcome)
    return sorted(t for t, outs in seen.items() if outs == {FAILED})


def summarize(runs: list[RunResult]) -> dict[str, Any]:
    durations = [r.duration_s for r in runs]
    return {
        "runs": len(runs),
        "passed_runs": sum(r.passed for r in runs),
        "failed_runs": sum(not r.passed for r in runs),
        "flaky_tests": find_flaky(runs),
        "always_failing": always_failing(runs),
        "runs_with_leftovers": [r.index for r in runs if r.leftover_total],
        "leftover_total": sum(r.leftover_total for r in runs),
        "duration_s": {
            "total": round(sum(durations), 1),
            "min": round(min(durations), 1) if durations else 0.0,
            "max": round(max(durations), 1) if durations else 0.0,
            "mean": round(sum(durations) / len(durations), 1) if durations else 0.0,
        },
    }


def verdict(summary: dict[str, Any]) -> bool:
    """The soak passes with every run green, no flaky test and nothing left over."""
    return (
        summary["failed_runs"] == 0
        and not summary["flaky_tests"]
        and summary["leftover_total"] == 0
        and summary["runs"] > 0
    )


def build_report(runs: list[RunResult], meta: dict[str, Any]) -> dict[str, Any]:
    summary = summarize(runs)
    return {
        "meta": meta,
        "ok": verdict(summary),
        "summary": summary,
        "runs": [
            {
                **{k: v for k, v in asdict(r).items() if k != "outcomes"},
                "passed": r.passed,
                "tests": len(r.outcomes),
                "failed_tests": sorted(t for t, o in r.outcomes.items() if o == FAILED),
            }
            for r in runs
        ],
    }


def render_markdown(report: dict[str, Any]) -> str:
    s = report["summary"]
    meta = report["meta"]
    lines = [
        f"# Soak report ({'OK' if report['ok'] else 'NOT OK'})",
        "",
        f"- command: `{meta.get('command', '')}`",
        f"- started: {meta.get('started', '')}",
        f"- runs: {s['runs']}, passed: {s['passed_runs']}, failed: {s['failed_runs']}",
        f"- flaky tests: {len(s['flaky_tests'])}",
        f"- leftover labelled resources: {s['leftover_total']}"
        + (f" (runs {s['runs_with_leftovers']})" if s["runs_with_leftovers"] else ""),
        f"- time per run: min {s['duration_s']['min']}s, mean {s['duration_s']['mean']}s, "
        f"max {s['duration_s']['max']}s (total {s['duration_s']['total']}s)",
        "",
        "| run | result | tests | failed | leftovers (c/n/v) | time (s) |",
        "|---:|---|---:|---:|---|---:|",
    ]
    for r in report["runs"]:
        left = r["leftovers"]
        lines.append(
            f"| {r['index']} | {'pass' if r['passed'] else 'FAIL'} (exit {r['exit_code']}) "
            f"| {r['tests']} | {len(r['failed_tests'])} "
            f"| {left.get('containers', 0)}/{left.get('networks', 0)}/{left.get('volumes', 0)} "
            f"| {r['duration_s']:.1f} |"
        )
    if s["flaky_tests"]:
        lines += ["", "## Flaky tests", "", "| test | passed | failed |", "|---|---:|---:|"]
        for test_id, tally in s["flaky_tests"].items():
            lines.append(f"| `{test_id}` | {tally[PASSED]} | {tally[FAILED]} |")
    if s["always_failing"]:
        lines += ["", "## Failing in every run", ""]
        lines += [f"- `{t}`" for t in s["always_failing"]]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- running


def count_leftovers(run_id: str) -> dict[str, int]:
    """Labelled containers (any state), networks and volumes of one run, via the docker CLI."""
    flt = ["--filter", f"label={LABEL_ROOT}=1", "--filter", f"label={LABEL_RUN}={run_id}"]
    counts = {}
    for kind, cmd in (
        ("containers", ["docker", "ps", "-aq", *flt]),
        ("networks", ["docker", "network", "ls", "-q", *flt]),
        ("volumes", ["docker", "volume", "ls", "-q", *flt]),
    ):
        out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
        counts[kind] = len(out.split())
    return counts


def default_python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def run_once(
    index: int, python: str, pytest_args: list[str], out_dir: Path, settle_s: float
) -> RunResult:
    run_id = f"soak{uuid.uuid4().hex[:8]}"
    junit = out_dir / f"run-{index:02d}.xml"
    env = {**os.environ, RUN_ID_ENV: run_id}
    cmd = [python, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={junit}", *pytest_args]
    t0 = time.monotonic()
    with (out_dir / f"run-{index:02d}.log").open("w") as log:
        code = subprocess.run(
            cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
        ).returncode
    duration = time.monotonic() - t0
    outcomes = parse_junit(junit.read_text()) if junit.exists() else {}
    # cleanup happens in the run itself; a leftover seen after a short settle is a real leak
    deadline = time.monotonic() + settle_s
    leftovers = count_leftovers(run_id)
    while sum(leftovers.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
        leftovers = count_leftovers(run_id)
    return RunResult(index, run_id, code, round(duration, 2), outcomes, leftovers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--pytest-args",
        default=DEFAULT_PYTEST_ARGS,
        help=f"arguments for pytest (default: {DEFAULT_PYTEST_ARGS!r})",
    )
    parser.add_argument(
        "--python", default=default_python(), help="interpreter with the project installed"
    )
    parser.add_argument("--out", type=Path, default=None, help="default artifacts/soak/<stamp>")
    parser.add_argument(
        "--settle",
        type=float,
        default=5.0,
        help="seconds to wait for cleanup before counting leftovers",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = args.out or ROOT / "artifacts" / "soak" / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    pytest_args = shlex.split(args.pytest_args)
    meta = {
        "started": stamp,
        "command": " ".join([args.python, "-m", "pytest", *pytest_args]),
        "runs_requested": args.runs,
    }
    runs: list[RunResult] = []
    for index in range(1, args.runs + 1):
        result = run_once(index, args.python, pytest_args, out_dir, args.settle)
        runs.append(result)
        print(
            f"run {index}/{args.runs}: {'pass' if result.passed else 'FAIL'} "
            f"(exit {result.exit_code}) in {result.duration_s:.1f}s, "
            f"{len(result.outcomes)} tests, leftovers {result.leftovers}",
            flush=True,
        )
        report = build_report(runs, meta)  # rewritten after every run: useful if interrupted
        (out_dir / "report.json").write_text(json.dumps(report, indent=2))
        (out_dir / "report.md").write_text(render_markdown(report))
    print(f"report: {out_dir / 'report.md'}")
    print(render_markdown(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
