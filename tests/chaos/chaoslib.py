"""Helpers of the chaos suite (imported by its conftest and test modules as ``chaoslib``)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType

import pytest

from tasker_testing import cleanup, labels
from tasker_testing import plugin as tasker_plugin

REPO = Path(__file__).resolve().parents[2]
CHAOS_DIR = Path(__file__).resolve().parent


def _load_harness() -> ModuleType:
    path = REPO / "tests" / "harness" / "test_harness.py"
    spec = importlib.util.spec_from_file_location("_chaos_harness_helpers", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: the harness self-tests' helpers: _run_env, _count, _wait_clean, _wait_running, _popen, _pytest
harness = _load_harness()


# --------------------------------------------------------------------------- repo copies


def copy_repo(dest: Path) -> Path:
    """The tracked and untracked-but-not-ignored files of the working tree (edits included)."""
    listing = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in sorted({p for p in listing.split("\0") if p}):
        src = REPO / rel
        if not src.is_file() or (src.is_symlink() and not src.exists()):
            continue  # deleted in the working tree
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return dest


def copy_env(copy: Path, run_id: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for a process that must use the copy's package, images and artifacts."""
    env = dict(os.environ)
    for key in (
        tasker_plugin.IMAGES_ENV,  # else the copy would run the outer run's images
        tasker_plugin.STACK_SPEC_ENV,
        "PYTEST_XDIST_WORKER",
        "PYTEST_XDIST_WORKER_COUNT",
        "PYTEST_ADDOPTS",
        "PYTEST_CURRENT_TEST",
        "TEST_BUILD_MODE",
    ):
        env.pop(key, None)
    env["PYTHONPATH"] = str(copy / "src")  # before the editable install of the main checkout
    env["TASKER_TESTING_ARTIFACTS"] = str(copy / "artifacts")
    env[labels.RUN_ID_ENV] = run_id or f"c{uuid.uuid4().hex[:7]}"
    env.update(extra)
    return env


def local_tags() -> set[str]:
    out = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def remove_images(tags: set[str]) -> None:
    """Remove exactly these tags (images this test created), never anything else."""
    if tags:
        subprocess.run(["docker", "image", "rm", *sorted(tags)], capture_output=True, check=False)


def run_count(run_id: str) -> dict[str, int]:
    return cleanup.count_labelled([f"{labels.ROOT}=1", f"{labels.RUN}={run_id}"])


def wait_gone(run_id: str, within: float = 30) -> None:
    """Wait until no labelled container, network or volume of ``run_id`` is left."""
    deadline = time.monotonic() + within
    while any((left := run_count(run_id)).values()):
        if time.monotonic() > deadline:
            pytest.fail(f"labelled resources of run {run_id} left after {within}s: {left}")
        time.sleep(0.25)


PYTHON = sys.executable
