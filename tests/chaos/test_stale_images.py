"""No stale image can make a false pass: a handler change without a test change makes the
linear workflow test fail in a copy of the repo (its content hash names new images, which get
built); restoring the handler makes it pass again. Only the tags this test created are removed.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from chaoslib import copy_env, copy_repo, local_tags, remove_images, run_count

from tasker_testing.build import BuildMode
from tasker_testing.build.builder import _expected_base_args, plan

HANDLERS = "crates/tasker-worker/src/handlers.rs"
SQUARE = "x.checked_mul(x)\n"
WRONG = "x.checked_mul(x).and_then(|y| y.checked_add(1))\n"  # n^2 + 1: still compiles
LINEAR = "tests/integration/test_workflows.py::test_linear_workflow_completes_with_n_pow_16"
TIMEOUT_S = 600


def _tags(copy: Path) -> set[str]:
    return {p.tag for p in plan(BuildMode.FAST, _expected_base_args(BuildMode.FAST), copy)}


def _run_linear(copy: Path) -> subprocess.CompletedProcess[str]:
    run_id = f"c{uuid.uuid4().hex[:7]}"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--build-mode=fast", LINEAR],
        cwd=copy,
        env=copy_env(copy, run_id),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert not any(run_count(run_id).values()), "the inner run left resources"
    return result


@pytest.mark.slow
def test_changed_handler_fails_the_workflow_test_and_restoring_passes(tmp_path: Path) -> None:
    copy = copy_repo(tmp_path / "repo")
    handlers = copy / HANDLERS
    original = handlers.read_text()
    assert original.count(SQUARE) == 1, f"{HANDLERS} changed: update this test"
    before = local_tags()
    created: set[str] = set()
    try:
        handlers.write_text(original.replace(SQUARE, WRONG))
        changed_tags = _tags(copy)
        assert not changed_tags <= before, "a changed handler must give new image tags"
        broken = _run_linear(copy)
        created |= changed_tags & (local_tags() - before)
        out = broken.stdout + broken.stderr
        assert broken.returncode == 1, out
        assert "1 failed" in broken.stdout, out
        assert "test_linear_workflow_completes_with_n_pow_16" in broken.stdout
        assert "2821109907456" in out, "the assertion on 6**16 is what failed"

        handlers.write_text(original)
        restored = _run_linear(copy)
        created |= _tags(copy) & (local_tags() - before)
        out = restored.stdout + restored.stderr
        assert restored.returncode == 0, out
        assert "1 passed" in restored.stdout, out
    finally:
        remove_images(created)
    print(f"built and removed {len(created)} image tag(s): {sorted(created)}")
