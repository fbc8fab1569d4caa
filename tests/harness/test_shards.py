"""CI's sharding: `--splits 2 --group 1` and `--group 2` run every integration test once."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]


def _pytest(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _ran(junit: Path) -> list[str]:
    """`module::test[params]` of every test case in a JUnit file."""
    cases = ET.parse(junit).getroot().iter("testcase")
    return [
        f"{str(case.get('classname')).rsplit('.', 1)[-1]}::{case.get('name')}" for case in cases
    ]


def _collected(node_id: str) -> str:
    path, _, name = node_id.partition("::")
    return f"{Path(path).stem}::{name}"


def test_two_shards_run_every_integration_test_exactly_once(tmp_path: Path) -> None:
    listed = _pytest("--collect-only", "-q", "tests/integration")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    everything = {_collected(line) for line in listed.stdout.splitlines() if "::" in line}
    assert len(everything) > 10

    ran: list[str] = []
    for group in ("1", "2"):
        junit = tmp_path / f"shard-{group}.xml"
        shard = _pytest(
            "-n", "2", "tests/integration", "--splits", "2", "--group", group, f"--junitxml={junit}"
        )
        assert shard.returncode == 0, shard.stdout[-3000:] + shard.stderr[-2000:]
        ran += _ran(junit)

    assert len(ran) == len(set(ran)), "a test ran in both shards"
    assert set(ran) == everything
