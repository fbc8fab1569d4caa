"""scripts/soak.py's report logic: JUnit parsing, flaky detection, summary, verdict, markdown."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _load() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"
    spec = importlib.util.spec_from_file_location("soak", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


soak = _load()

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="5">
  <testcase classname="tests.integration.test_api" name="test_ok" time="0.1"/>
  <testcase classname="tests.integration.test_api" name="test_bad" time="0.1">
    <failure message="assert 1 == 2">trace</failure></testcase>
  <testcase classname="tests.integration.test_api" name="test_err" time="0.1">
    <error message="fixture failed">trace</error></testcase>
  <testcase classname="tests.integration.test_api" name="test_skip" time="0.0">
    <skipped message="no"/></testcase>
  <testcase classname="tests.integration.test_wf" name="test_p[2]" time="0.1"/>
</testsuite></testsuites>
"""


def _run(index: int, outcomes: dict[str, str], code: int = 0, **left: int) -> object:
    leftovers = {"containers": 0, "networks": 0, "volumes": 0, **left}
    return soak.RunResult(index, f"r{index}", code, 10.0 + index, outcomes, leftovers)


def test_parse_junit_outcomes() -> None:
    outcomes = soak.parse_junit(JUNIT)
    assert outcomes == {
        "tests.integration.test_api::test_ok": "passed",
        "tests.integration.test_api::test_bad": "failed",
        "tests.integration.test_api::test_err": "failed",
        "tests.integration.test_api::test_skip": "skipped",
        "tests.integration.test_wf::test_p[2]": "passed",
    }


def test_parse_junit_a_later_pass_does_not_hide_a_failure() -> None:
    text = """<testsuite>
      <testcase classname="m" name="t"><error message="teardown"/></testcase>
      <testcase classname="m" name="t"/>
    </testsuite>"""
    assert soak.parse_junit(text) == {"m::t": "failed"}


def test_flaky_is_passed_in_one_run_and_failed_in_another() -> None:
    runs = [
        _run(1, {"a": "passed", "b": "failed", "c": "passed", "s": "skipped"}, code=1),
        _run(2, {"a": "failed", "b": "failed", "c": "passed", "s": "passed"}, code=1),
        _run(3, {"a": "passed", "b": "failed", "c": "passed"}, code=1),
    ]
    assert soak.find_flaky(runs) == {"a": {"passed": 2, "failed": 1}}
    assert soak.always_failing(runs) == ["b"]  # consistent, not flaky
    # skipped then passed is not flaky
    assert "s" not in soak.find_flaky(runs)


def test_no_flaky_when_every_run_agrees() -> None:
    runs = [_run(i, {"a": "passed", "b": "passed"}) for i in range(1, 4)]
    assert soak.find_flaky(runs) == {}
    summary = soak.summarize(runs)
    assert summary["passed_runs"] == 3
    assert summary["failed_runs"] == 0
    assert summary["duration_s"] == {"total": 36.0, "min": 11.0, "max": 13.0, "mean": 12.0}
    assert soak.verdict(summary)


@pytest.mark.parametrize(
    ("runs", "why"),
    [
        ([_run(1, {"a": "passed"}), _run(2, {"a": "passed"}, code=1)], "a failed run"),
        ([_run(1, {"a": "passed"}), _run(2, {"a": "failed"}, code=1)], "a flaky test"),
        ([_run(1, {"a": "passed"}), _run(2, {"a": "passed"}, networks=1)], "a leftover"),
        ([], "no runs"),
    ],
)
def test_verdict_fails(runs: list[object], why: str) -> None:
    assert not soak.verdict(soak.summarize(runs)), why


def test_a_run_with_exit_0_but_a_failed_test_is_not_passed() -> None:
    assert not _run(1, {"a": "failed"}, code=0).passed
    assert _run(1, {"a": "passed", "b": "skipped"}).passed


def test_leftovers_are_reported_per_run() -> None:
    runs = [_run(1, {"a": "passed"}), _run(2, {"a": "passed"}, containers=2, volumes=1)]
    summary = soak.summarize(runs)
    assert summary["runs_with_leftovers"] == [2]
    assert summary["leftover_total"] == 3


def test_report_json_and_markdown() -> None:
    runs = [
        _run(1, {"m::a": "passed", "m::b": "passed"}),
        _run(2, {"m::a": "failed", "m::b": "passed"}, code=1, containers=1),
    ]
    report = soak.build_report(runs, {"command": "pytest -n 2", "started": "now"})
    json.dumps(report)  # serialisable
    assert report["ok"] is False
    assert report["runs"][1]["failed_tests"] == ["m::a"]
    assert report["runs"][1]["passed"] is False
    md = soak.render_markdown(report)
    assert md.startswith("# Soak report (NOT OK)")
    assert "| 2 | FAIL (exit 1) | 2 | 1 | 1/0/0 | 12.0 |" in md
    assert "## Flaky tests" in md
    assert "| `m::a` | 1 | 1 |" in md
    assert "flaky tests: 1" in md
