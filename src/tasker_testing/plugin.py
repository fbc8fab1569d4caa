"""pytest plugin (entry point ``pytest11``): options, per-worker Tasker stack, fixtures, reports.

Run flow: the controller (the pytest process itself, or the xdist controller) resolves the build
mode (a bad value is a usage error before anything starts), checks the Docker engine, sweeps
leftovers of dead owners and ensures the images once; xdist workers get the run id and image
tags through ``workerinput``. Each worker then starts its own stack lazily, the first time a test
asks for ``tasker_stack``, guarded by a watchdog process. Runs that only collect tests under a
``unit`` directory never touch Docker.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

# testcontainers reads these when imported: set before anything can import it
os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
os.environ["TESTCONTAINERS_CONNECTION_MODE"] = "docker_host"

import pytest

from tasker_testing import labels
from tasker_testing.clients import OrchestrationClient, Task, WorkerClient

if TYPE_CHECKING:
    import psycopg

    from tasker_testing.cleanup import Watchdog
    from tasker_testing.stack import Stack, StackSpec

#: JSON ``{"postgres": tag, ...}``: skip image resolution (set for child processes, CLI, tests)
IMAGES_ENV = "TASKER_TESTING_IMAGES"
ARTIFACTS_ENV = "TASKER_TESTING_ARTIFACTS"
#: ``module:attribute`` of another StackSpec (harness self-tests, fault-injection stacks)
STACK_SPEC_ENV = "TASKER_TESTING_STACK_SPEC"
ENGINE_TIMEOUT_S = 3
REPORT_LOG_LINES = 50


@dataclass
class _State:
    run_id: str
    worker: str
    build_mode: str
    artifacts: Path
    controller_pid: int
    is_controller: bool
    images: dict[str, str] | None = None
    docker_used: bool = False
    failed: bool = False
    stack: Stack | None = None
    watchdog: Watchdog | None = None
    notes: list[str] = field(default_factory=list)


_STATE = pytest.StashKey[_State]()
_TEST_START = pytest.StashKey[float]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tasker", "Tasker stack (tasker_testing)")
    group.addoption(
        "--build-mode",
        default=None,
        help="image tier to test: fast, ci or prod (overrides $TEST_BUILD_MODE; default fast)",
    )
    group.addoption(
        "--reuse-stack",
        action="store_true",
        help="keep each worker's stack after the run and reuse it next time (local runs; "
        "remove with `python -m tasker_testing clean`)",
    )
    group.addoption(
        "--keep-on-failure",
        action="store_true",
        help="leave a worker's stack running when one of its tests failed (removed by the "
        "next run's start-up sweep or `python -m tasker_testing clean`)",
    )
    group.addoption(
        "--rebuild", action="store_true", help="rebuild the images even when their hash exists"
    )


# --------------------------------------------------------------------------- configure


def _artifacts_dir(config: pytest.Config) -> Path:
    env = os.environ.get(ARTIFACTS_ENV)
    return Path(env) if env else Path(config.rootpath) / "artifacts"


def _resolve_build_mode(config: pytest.Config) -> str:
    from tasker_testing.build.modes import BuildMode, BuildModeError

    option = config.getoption("--build-mode")
    try:
        mode = BuildMode.parse(option) if option else BuildMode.from_env()
    except BuildModeError as exc:
        raise pytest.UsageError(str(exc)) from None
    return str(mode.value)


def _needs_stack(config: pytest.Config) -> bool:
    """Whether this run may start stacks: any selected path outside a ``unit`` directory."""
    base = config.invocation_params.dir
    for arg in config.args:
        path = (base / arg.split("::", 1)[0]).resolve()
        try:
            parts = path.relative_to(config.rootpath).parts
        except ValueError:
            parts = path.parts
        if "unit" not in parts:
            return True
    return False


def _check_engine() -> None:
    from tasker_testing.cleanup import docker_client

    try:
        client = docker_client(timeout=ENGINE_TIMEOUT_S)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise pytest.UsageError(
            f"the Docker engine at {host} is not reachable ({type(exc).__name__}: {exc}). "
            "Start Docker or fix DOCKER_HOST; no stack was started."
        ) from None


def _images_from_env() -> dict[str, str] | None:
    raw = os.environ.get(IMAGES_ENV, "").strip()
    if not raw:
        return None
    try:
        images = json.loads(raw)
    except ValueError as exc:
        raise pytest.UsageError(f"${IMAGES_ENV} is not JSON: {exc}") from None
    if not isinstance(images, dict) or not all(isinstance(v, str) for v in images.values()):
        raise pytest.UsageError(f"${IMAGES_ENV} must map image keys to tags")
    return {str(k): str(v) for k, v in images.items()}


def _ensure_images(build_mode: str, rebuild: bool) -> dict[str, str]:
    from tasker_testing.build import BuildMode, ensure_images

    t0 = time.monotonic()
    images = ensure_images(BuildMode.parse(build_mode), rebuild=rebuild)
    print(f"tasker: images ready in {time.monotonic() - t0:.1f}s: {images}", flush=True)
    return dict(images)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None and "tasker_run_id" in workerinput:
        images = workerinput.get("tasker_images") or ""
        state = _State(
            run_id=workerinput["tasker_run_id"],
            worker=str(workerinput.get("workerid", "gw")),
            build_mode=workerinput["tasker_build_mode"],
            artifacts=Path(workerinput["tasker_artifacts"]),
            controller_pid=int(workerinput["tasker_controller_pid"]),
            is_controller=False,
            images=json.loads(images) if images else None,
        )
        config.stash[_STATE] = state
        return
    state = _State(
        run_id=labels.new_run_id(),
        worker="main",
        build_mode=_resolve_build_mode(config),
        artifacts=_artifacts_dir(config),
        controller_pid=os.getpid(),
        is_controller=True,
    )
    config.stash[_STATE] = state
    if not getattr(config.option, "xmlpath", None) and hasattr(config.option, "xmlpath"):
        config.option.xmlpath = str(state.artifacts / "junit" / "pytest.xml")
    if config.getoption("collectonly") or not _needs_stack(config):
        return
    _check_engine()
    state.docker_used = True
    from tasker_testing.cleanup import sweep_dead_owners

    swept = sweep_dead_owners()
    if swept:
        state.notes.append(f"start-up sweep of dead owners: {swept.summary()}")
    images = _images_from_env()
    if images is None:
        try:
            images = _ensure_images(state.build_mode, bool(config.getoption("--rebuild")))
        except Exception as exc:
            pytest.exit(f"tasker: building the {state.build_mode} images failed: {exc}", 1)
    state.images = images
    # children (nested pytest runs, subprocesses) reuse the tags instead of resolving again
    os.environ[IMAGES_ENV] = json.dumps(images)


#: cores one xdist worker keeps busy with its stack: Postgres, orchestration, worker and the pytest
#: worker itself work in parallel (the bench's suite section measured 1.1 busy cores at -n 1 on 2)
CORES_PER_WORKER = 2
AUTO_WORKERS_ENV = "PYTEST_XDIST_AUTO_NUM_WORKERS"


def auto_workers(cores: int) -> int:
    """How many workers ``-n auto`` starts on ``cores`` cores: one per stack the cores can run.

    xdist's own answer is one per core, but then two stacks share a core and every run pays its
    fixed costs twice: on 2 cores ``-n 2`` took 1.16x as long as ``-n 1``.
    """
    return max(1, cores // CORES_PER_WORKER)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto``: one worker per ``CORES_PER_WORKER`` usable cores; ``-n N`` and
    ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still choose for themselves."""
    if os.environ.get(AUTO_WORKERS_ENV) or not _needs_stack(config):
        return None  # xdist's own hook reads the variable; suites without stacks keep its answer
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return auto_workers(cores or 1)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: hand the run id and image tags to each worker."""
    state = node.config.stash[_STATE]
    node.workerinput["tasker_run_id"] = state.run_id
    node.workerinput["tasker_build_mode"] = state.build_mode
    node.workerinput["tasker_images"] = json.dumps(state.images) if state.images else ""
    node.workerinput["tasker_artifacts"] = str(state.artifacts)
    node.workerinput["tasker_controller_pid"] = state.controller_pid


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = config.stash.get(_STATE, None)
    if state is None:
        return []
    lines = [f"tasker: run {state.run_id[:8]} build mode {state.build_mode}"]
    if state.images:
        lines.append("tasker images: " + ", ".join(f"{k}={v}" for k, v in state.images.items()))
    return lines + state.notes


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(_STATE, None)
    if state is None or not state.is_controller or not state.docker_used:
        return
    if session.config.getoption("--keep-on-failure") and exitstatus != 0:
        return
    from tasker_testing.cleanup import sweep_run

    with contextlib.suppress(Exception):  # the run's own leftovers, last (crashed workers)
        sweep_run(state.run_id)


# --------------------------------------------------------------------------- the stack


def _state(request: pytest.FixtureRequest) -> _State:
    return request.config.stash[_STATE]


def _images_for_worker(config: pytest.Config, state: _State) -> dict[str, str]:
    """Tags from the controller; else (a worker whose controller saw no need) once per run."""
    if state.images is not None:
        return state.images
    images = _images_from_env()
    if images is None:
        from filelock import FileLock

        run_dir = state.artifacts / ".runs" / state.run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        cache = run_dir / "images.json"
        with FileLock(str(run_dir / "images.lock")):
            if cache.exists():
                images = json.loads(cache.read_text())
            else:
                images = _ensure_images(state.build_mode, bool(config.getoption("--rebuild")))
                cache.write_text(json.dumps(images))
    state.images = images
    return images


def _stack_spec() -> StackSpec:
    import importlib

    from tasker_testing.stack import TASKER_STACK, StackSpec

    ref = os.environ.get(STACK_SPEC_ENV, "").strip()
    if not ref:
        return TASKER_STACK
    module, _, attr = ref.partition(":")
    spec = getattr(importlib.import_module(module), attr)
    if not isinstance(spec, StackSpec):
        raise TypeError(f"${STACK_SPEC_ENV}={ref} is not a StackSpec")
    return spec


def _reuse_key(worker: str, images: dict[str, str], rootdir: Path) -> str:
    """Same worker, same images and same checkout: another checkout never takes this stack."""
    parts = [worker, sorted(images.items()), str(rootdir)]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


@pytest.fixture(scope="session")
def tasker_stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """This xdist worker's own Tasker stack (postgres, migrated DB, orchestration, worker)."""
    from tasker_testing import cleanup
    from tasker_testing.stack import Stack

    spec = _stack_spec()
    config = request.config
    state = _state(request)
    images = _images_for_worker(config, state)
    owner = labels.Owner(run_id=state.run_id, worker=state.worker)
    log_dir = state.artifacts / "logs" / state.run_id[:8] / state.worker
    if config.getoption("--reuse-stack"):
        key = _reuse_key(state.worker, images, config.rootpath)
        stack = Stack.find_reusable(spec, images, key)
        if stack is None:
            stack = Stack(spec, images, owner, keep=True, reuse_key=key).start()
        state.stack = stack
        yield stack
        stack.save_logs(log_dir)
        return
    cleanup.sweep_dead_owners()  # e.g. a crashed worker of this run whose names we would reuse
    also = [state.controller_pid] if state.controller_pid != owner.pid else []
    watchdog = cleanup.Watchdog.spawn(owner, also_watch=also, log_path=log_dir / "watchdog.log")
    state.watchdog = watchdog
    try:
        stack = Stack(spec, images, owner).start()
    except BaseException:
        watchdog.release()
        raise
    state.stack = stack
    try:
        yield stack
    finally:
        state.stack = None
        with contextlib.suppress(Exception):
            stack.save_logs(log_dir)
        if config.getoption("--keep-on-failure") and state.failed:
            print("\ntasker: kept (a test failed):\n" + "\n".join(stack.describe()))
        else:
            stack.stop()
        watchdog.release()


@pytest.fixture
def orchestration_client(tasker_stack: Stack) -> Iterator[OrchestrationClient]:
    with OrchestrationClient(lambda: tasker_stack.orchestration_url) as client:
        yield client


@pytest.fixture
def worker_client(tasker_stack: Stack) -> Iterator[WorkerClient]:
    with WorkerClient(lambda: tasker_stack.worker_url) as client:
        yield client


@pytest.fixture
def db(tasker_stack: Stack) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit psycopg connection to the stack's main database."""
    with tasker_stack.connect() as conn:
        yield conn


@dataclass
class FreshDatabase:
    """A database of its own for one test, cloned from the migrated template."""

    name: str
    dsn: str
    conn: psycopg.Connection[Any]


@pytest.fixture
def fresh_database(tasker_stack: Stack) -> Iterator[FreshDatabase]:
    name = tasker_stack.create_database()
    try:
        with tasker_stack.connect(name) as conn:
            yield FreshDatabase(name=name, dsn=tasker_stack.db_dsn(name), conn=conn)
    finally:
        tasker_stack.drop_database(name)


class TaskFactory:
    """Creates tasks with sensible defaults; tags them with the test's name."""

    def __init__(self, client: OrchestrationClient, tag: str) -> None:
        self.client = client
        self.tag = tag
        self.created: list[Task] = []

    def __call__(
        self,
        name: str = "mathematical_sequence",
        namespace: str = "linear_workflow",
        version: str = "1.0.0",
        context: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Task:
        tags = [self.tag, *kwargs.pop("tags", [])]
        if context is None:
            context = {"even_number": 6}
        task = self.client.create_task(name, namespace, version, context, tags=tags, **kwargs)
        self.created.append(task)
        return task

    def run(self, *args: Any, timeout: float = 30.0, **kwargs: Any) -> Task:
        """Create a task and wait until it reaches a terminal state."""
        task = self(*args, **kwargs)
        return self.client.wait_for_completion(task.task_uuid, timeout=timeout)


@pytest.fixture
def task_factory(
    orchestration_client: OrchestrationClient, request: pytest.FixtureRequest
) -> TaskFactory:
    return TaskFactory(orchestration_client, tag=f"test:{request.node.name}"[:200])


# --------------------------------------------------------------------------- reports


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_TEST_START] = time.time()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if not report.failed:
        return report
    state = item.config.stash.get(_STATE, None)
    if state is None:
        return report
    state.failed = True
    stack = state.stack
    if stack is None or "tasker_stack" not in getattr(item, "fixturenames", ()):
        return report
    since = item.stash.get(_TEST_START, None)
    for name in list(stack.services):
        text = stack.logs(name, tail=REPORT_LOG_LINES, since=(since - 1) if since else None)
        if not text.strip():
            text = stack.logs(name, tail=REPORT_LOG_LINES)
        report.sections.append((f"tasker {name} log (last {REPORT_LOG_LINES} lines)", text))
    return report
