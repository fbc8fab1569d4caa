"""The harness itself, driven through pytest subprocesses (``-n 2``): isolation and cleanup.

Every inner run gets its own run id (``TASKER_TESTING_RUN_ID``), so its resources can be
counted by label while other stacks (ours included) keep running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasker_testing import cleanup, labels

CLEAN_WITHIN_S = 30


def _run_env(run_id: str, tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env[labels.RUN_ID_ENV] = run_id
    env["TASKER_TESTING_ARTIFACTS"] = str(tmp / "artifacts")
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_ADDOPTS", None)
    return env


def _count(run_id: str) -> dict[str, int]:
    return cleanup.count_labelled([f"{labels.ROOT}=1", f"{labels.RUN}={run_id}"])


def _wait_clean(run_id: str, within: float = CLEAN_WITHIN_S) -> float:
    t0 = time.monotonic()
    while True:
        left = _count(run_id)
        if not any(left.values()):
            return time.monotonic() - t0
        if time.monotonic() - t0 > within:
            pytest.fail(f"labelled resources of run {run_id} left after {within}s: {left}")
        time.sleep(0.25)


def _wait_running(run_id: str, services: int, within: float = 120) -> list[dict[str, str]]:
    """Wait until ``services`` long-running containers of the run are up; return their labels."""
    client = cleanup.docker_client()
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < within:
            found = client.containers.list(
                filters={"label": [f"{labels.RUN}={run_id}"], "status": "running"},
                ignore_removed=True,
            )
            if len(found) >= services:
                return [c.labels for c in found]
            time.sleep(0.2)
    finally:
        client.close()
    pytest.fail(f"run {run_id}: {services} containers never ran")


@pytest.fixture
def inner(pytester: pytest.Pytester) -> Iterator[tuple[pytest.Pytester, str]]:
    run_id = f"h{uuid.uuid4().hex[:7]}"
    yield pytester, run_id
    cleanup.sweep([f"{labels.ROOT}=1", f"{labels.RUN}={run_id}"])  # never leak, even on failure


def _pytest(
    pytester: pytest.Pytester, run_id: str, *args: str, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=pytester.path,
        env=_run_env(run_id, pytester.path),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _popen(pytester: pytest.Pytester, run_id: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=pytester.path,
        env=_run_env(run_id, pytester.path),
        # to a file, not a pipe nobody reads (a full pipe would block the child)
        stdout=(pytester.path / "inner-run.log").open("a"),
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )


ISOLATION_TEST = """
import json, os, time
from pathlib import Path

def test_record(tasker_stack, task_factory, orchestration_client):
    out = Path(os.environ["HARNESS_OUT"])
    me = os.environ.get("PYTEST_XDIST_WORKER", "main")
    task = task_factory()
    (out / f"{me}.created").write_text(task.task_uuid)
    deadline = time.monotonic() + 120
    while len(list(out.glob("*.created"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    visible = [t.task_uuid for t in orchestration_client.list_tasks(per_page=100).tasks]
    (out / f"{me}.json").write_text(json.dumps({
        "worker": me,
        "task": task.task_uuid,
        "visible": visible,
        "network": tasker_stack.network_name,
        "ports": sorted(p for s in tasker_stack.services.values() for p in s.ports.values()),
        "password": tasker_stack.db_password,
    }))
"""


def test_two_workers_never_share_tasks_networks_or_ports(
    inner: tuple[pytest.Pytester, str],
) -> None:
    pytester, run_id = inner
    pytester.makepyfile(test_iso=ISOLATION_TEST)
    out = pytester.mkdir("out")
    os.environ["HARNESS_OUT"] = str(out)
    try:
        result = _pytest(pytester, run_id, "-n", "2", "--dist", "each", "-q")
    finally:
        del os.environ["HARNESS_OUT"]
    assert result.returncode == 0, result.stdout + result.stderr
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    assert [r["worker"] for r in records] == ["gw0", "gw1"]
    a, b = records
    assert a["task"] in a["visible"]
    assert b["task"] in b["visible"]
    assert b["task"] not in a["visible"]
    assert a["task"] not in b["visible"]
    assert a["network"] != b["network"]
    assert not set(a["ports"]) & set(b["ports"])
    assert a["password"] != b["password"]
    _wait_clean(run_id)


def test_passing_run_leaves_nothing(inner: tuple[pytest.Pytester, str]) -> None:
    pytester, run_id = inner
    pytester.makepyfile(
        test_ok="def test_ok(orchestration_client):\n    assert orchestration_client.health().ok\n"
    )
    result = _pytest(pytester, run_id, "-n", "2", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (pytester.path / "artifacts" / "junit" / "pytest.xml").exists()
    _wait_clean(run_id, within=5)


def test_failing_run_reports_logs_and_leaves_nothing(inner: tuple[pytest.Pytester, str]) -> None:
    pytester, run_id = inner
    pytester.makepyfile(test_bad="def test_bad(tasker_stack):\n    assert False, 'on purpose'\n")
    result = _pytest(pytester, run_id, "-n", "2", "-q", "-rA")
    assert result.returncode == 1, result.stdout + result.stderr
    for service in ("postgres", "migrate", "orchestration", "worker"):
        assert f"tasker {service} log" in result.stdout
    logs = list((pytester.path / "artifacts" / "logs" / run_id[:8]).glob("gw*/orchestration.log"))
    assert logs, "full service logs are saved per worker"
    _wait_clean(run_id, within=5)


REUSE_TEST = """
import json, os
from pathlib import Path

def test_record(tasker_stack, orchestration_client):
    assert orchestration_client.health().ok
    running = sorted(s.container.id for s in tasker_stack.services.values() if s.saved_logs is None)
    with Path(os.environ["REUSE_RECORD"]).open("a") as out:
        out.write(json.dumps(running) + "\\n")
"""


def test_reuse_stack_serves_the_next_run_from_the_same_containers(
    inner: tuple[pytest.Pytester, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester, run_id = inner
    pytester.makepyfile(test_reuse=REUSE_TEST)
    record = pytester.path / "running.jsonl"
    monkeypatch.setenv("REUSE_RECORD", str(record))
    for attempt in (1, 2):
        result = _pytest(pytester, run_id, "-n", "1", "-q", "--reuse-stack")
        assert result.returncode == 0, f"run {attempt}:\n{result.stdout}{result.stderr}"
        # kept after the run: postgres, orchestration and worker (the migrator has finished)
        assert _count(run_id)["containers"] == 3
    first, second = (json.loads(line) for line in record.read_text().splitlines())
    assert len(first) == 3
    assert first == second, "the second run must reuse the first run's containers"
    # the `inner` fixture sweeps the kept stack by its run id


SLOW_TEST = """
import time
def test_hold(tasker_stack):
    time.sleep(600)
"""


@pytest.mark.parametrize("how", ["sigint-group", "sigkill-controller"])
def test_death_of_the_run_leaves_nothing(inner: tuple[pytest.Pytester, str], how: str) -> None:
    pytester, run_id = inner
    pytester.makepyfile(test_slow=SLOW_TEST)
    proc = _popen(pytester, run_id, "-n", "2", "--dist", "each", "-q")
    try:
        _wait_running(run_id, services=6)  # 3 long-running containers per worker
        if how == "sigint-group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGKILL)
        try:
            proc.wait(timeout=CLEAN_WITHIN_S)
        except subprocess.TimeoutExpired:
            tree = subprocess.run(
                ["ps", "-o", "pid,stat,etime,args", "--ppid", str(proc.pid)],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            log = (pytester.path / "inner-run.log").read_text(errors="replace")[-4000:]
            pytest.fail(f"pytest still running {CLEAN_WITHIN_S}s after {how}:\n{tree}\n{log}")
        took = _wait_clean(run_id)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    print(f"{how}: clean {took:.1f}s after the signal")


def test_sigkill_of_one_worker_removes_its_stack(inner: tuple[pytest.Pytester, str]) -> None:
    pytester, run_id = inner
    pytester.makepyfile(test_slow=SLOW_TEST)
    proc = _popen(pytester, run_id, "-n", "2", "--dist", "each", "-q")
    try:
        found = _wait_running(run_id, services=6)
        victim = next(lab for lab in found if lab[labels.WORKER] == "gw0")
        os.kill(int(victim[labels.PID]), signal.SIGKILL)
        owner = [
            f"{labels.ROOT}=1",
            f"{labels.RUN}={run_id}",
            f"{labels.WORKER}=gw0",
            f"{labels.PID}={victim[labels.PID]}",
        ]
        t0 = time.monotonic()
        while any(cleanup.count_labelled(owner).values()):
            assert time.monotonic() - t0 < CLEAN_WITHIN_S, cleanup.count_labelled(owner)
            time.sleep(0.25)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    _wait_clean(run_id)


def test_bad_build_mode_is_a_usage_error_quickly(inner: tuple[pytest.Pytester, str]) -> None:
    pytester, run_id = inner
    pytester.makepyfile(test_x="def test_x(tasker_stack):\n    pass\n")
    os.environ["TEST_BUILD_MODE"] = "nonsense"
    try:
        t0 = time.monotonic()
        result = _pytest(pytester, run_id, "-n", "2", timeout=30)
        took = time.monotonic() - t0
    finally:
        del os.environ["TEST_BUILD_MODE"]
    assert result.returncode != 0
    assert "unknown build mode 'nonsense'" in result.stderr
    assert "fast" in result.stderr
    assert "prod" in result.stderr
    assert took < 5
    assert not any(_count(run_id).values())


def test_unreachable_engine_is_one_clear_error(inner: tuple[pytest.Pytester, str]) -> None:
    pytester, run_id = inner
    pytester.makepyfile(test_x="def test_x(tasker_stack):\n    pass\n")
    env = _run_env(run_id, pytester.path)
    env["DOCKER_HOST"] = f"unix://{pytester.path}/no-docker.sock"
    t0 = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2"],
        cwd=pytester.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "Docker engine" in result.stderr
    assert "not reachable" in result.stderr
    assert time.monotonic() - t0 < 5
