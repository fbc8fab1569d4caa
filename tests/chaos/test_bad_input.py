"""Bad input gives one clear error, a non-zero exit and nothing labelled left running.

The harness self-tests already cover an unknown build mode and an unreachable engine through
pytest; here: the same through the CLI, a missing base image and a Dockerfile that fails to
build (in temporary copies of the repo, so the main checkout's images are untouched), and a
migrator that fails (through the TASKER_TESTING_STACK_SPEC seam).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from chaoslib import copy_env, copy_repo, harness, local_tags, remove_images, run_count

from tasker_testing.build import BuildMode
from tasker_testing.build.builder import _expected_base_args, plan

REPO = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 60
BUILD_TIMEOUT_S = 240


def _cli(*args: str, cwd: Path, env: dict[str, str], timeout: float = CLI_TIMEOUT_S):  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "tasker_testing", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _one_clear_error(stderr: str, *needles: str) -> None:
    assert "Traceback" not in stderr, f"a traceback instead of one clear error:\n{stderr}"
    for needle in needles:
        assert needle in stderr, stderr


@pytest.mark.parametrize("command", ["build", "up"])
def test_cli_unknown_build_mode(tmp_path: Path, command: str) -> None:
    run_id = f"c{uuid.uuid4().hex[:7]}"
    env = copy_env(REPO, run_id, TEST_BUILD_MODE="nonsense")
    env.pop("PYTHONPATH")
    t0 = time.monotonic()
    result = _cli(command, cwd=tmp_path, env=env, timeout=30)
    assert result.returncode == 2, result
    _one_clear_error(result.stderr, "unknown build mode 'nonsense'", "fast", "prod")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert time.monotonic() - t0 < 20
    assert not any(run_count(run_id).values())


@pytest.mark.parametrize("command", ["build", "up"])
def test_cli_unreachable_engine(tmp_path: Path, command: str) -> None:
    run_id = f"c{uuid.uuid4().hex[:7]}"
    env = copy_env(REPO, run_id, DOCKER_HOST="unix:///nonexistent.sock")
    env.pop("PYTHONPATH")
    t0 = time.monotonic()
    result = _cli(command, "--build-mode", "fast", cwd=tmp_path, env=env, timeout=60)
    took = time.monotonic() - t0
    assert result.returncode != 0
    assert "unix:///nonexistent.sock" in result.stderr, result.stderr
    assert took < 30, f"took {took:.1f}s to say the engine is unreachable"
    _one_clear_error(result.stderr, "unreachable")
    assert not any(run_count(run_id).values())


# --------------------------------------------------------------------------- broken builds

DOCKERFILE = "docker/build/Dockerfile.test"
HEALTH_TEST = "tests/integration/test_api.py::test_orchestration_health_endpoints"


def _broken_copy(tmp_path: Path, old: str, new: str) -> tuple[Path, set[str]]:
    copy = copy_repo(tmp_path / "repo")
    dockerfile = copy / DOCKERFILE
    text = dockerfile.read_text()
    assert old in text, f"{DOCKERFILE} changed: update this test ({old!r} not found)"
    dockerfile.write_text(text.replace(old, new, 1))
    tags = {p.tag for p in plan(BuildMode.FAST, _expected_base_args(BuildMode.FAST), copy)}
    return copy, tags


def _pytest_in(copy: Path, run_id: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--build-mode=fast", *args],
        cwd=copy,
        env=copy_env(copy, run_id),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )


@pytest.mark.parametrize(
    ("case", "old", "new", "needles"),
    [
        (
            "missing-base-image",
            "FROM ${RUNTIME_IMAGE} AS runtime",
            "FROM tasker-base/does-not-exist:never AS runtime",
            ("tasker-base/does-not-exist:never",),
        ),
        (
            "dockerfile-fails",
            "WORKDIR /src\n",
            "WORKDIR /src\nRUN echo 'broken on purpose' && exit 3\n",
            ("broken on purpose", "exit"),
        ),
    ],
    ids=["missing-base-image", "dockerfile-fails"],
)
def test_broken_build_is_one_clear_error(
    tmp_path: Path, case: str, old: str, new: str, needles: tuple[str, ...]
) -> None:
    copy, planned = _broken_copy(tmp_path, old, new)
    before = local_tags()
    assert not planned <= before, "the broken Dockerfile must give new tags (content hash)"
    run_id = f"c{uuid.uuid4().hex[:7]}"
    try:
        t0 = time.monotonic()
        result = _pytest_in(copy, run_id, HEALTH_TEST)
        took = time.monotonic() - t0
        out = result.stdout + result.stderr
        assert result.returncode != 0, out
        assert "building the fast images failed" in out, out
        for needle in needles:
            assert needle in out, out
        assert "passed" not in result.stdout.splitlines()[-1], out
        assert not any(run_count(run_id).values()), "no stack may start without its images"
        # the CLI: the same single error, no traceback
        cli = _cli(
            "build",
            "--build-mode",
            "fast",
            cwd=copy,
            env=copy_env(copy, run_id),
            timeout=BUILD_TIMEOUT_S,
        )
        assert cli.returncode != 0
        for needle in needles:
            assert needle in cli.stdout + cli.stderr
        print(f"{case}: pytest exit {result.returncode} after {took:.1f}s")
        new_tags = local_tags() - before
        assert not planned & new_tags, f"a failed build left tags: {planned & new_tags}"
        _one_clear_error(cli.stderr)
    finally:
        remove_images(planned & (local_tags() - before))


# --------------------------------------------------------------------------- migrator

BAD_SPEC = """
import dataclasses
from tasker_testing.stack import TASKER_STACK

_migrate = TASKER_STACK.service("migrate")
_bad = dataclasses.replace(
    _migrate,
    env={**_migrate.env,
         "DATABASE_URL": "postgres://{db_user}:{db_password}@{db_host}:5432/no_such_db"},
    timeout_s=60,
)
BAD = dataclasses.replace(
    TASKER_STACK,
    services=tuple(_bad if s.name == "migrate" else s for s in TASKER_STACK.services),
)
"""


def test_failing_migrator_is_one_clear_error(inner: tuple[pytest.Pytester, str]) -> None:
    pytester, run_id = inner
    pytester.makepyfile(badspec=BAD_SPEC)
    pytester.makepyfile(test_x="def test_x(tasker_stack):\n    pass\n")
    env_key = "TASKER_TESTING_STACK_SPEC"
    os.environ[env_key] = "badspec:BAD"
    try:
        t0 = time.monotonic()
        result = harness._pytest(pytester, run_id, "-q", timeout=180)
        took = time.monotonic() - t0
    finally:
        del os.environ[env_key]
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "1 error" in result.stdout, out
    assert "migrate: exited with code" in out, out
    assert "the migrator must apply migrations" in out, out  # the hint
    assert "no_such_db" in out, "the migrator's own log names the problem"
    assert took < 120
    harness._wait_clean(run_id, within=10)
