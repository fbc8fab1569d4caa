"""Sections `stack` (start/teardown: ours vs testcontainers defaults vs compose) and `database`
(template clone vs a fresh Postgres container per test)."""

from __future__ import annotations

import contextlib
import os
import secrets
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from tasker_testing import cleanup, labels
from tasker_testing.build import builder
from tasker_testing.build import engine as build_engine
from tasker_testing.labels import Owner
from tasker_testing.stack import (
    LOCALHOST,
    PG_READY_LINE,
    TASKER_STACK,
    HttpGet,
    Stack,
    StackSpec,
)

from .context import Bench
from .stats import Figure, Target, summarize

COMPOSE_FILE = Path("docker/compose/test.yml")
COMPOSE_POLL_S = 0.1
COMPOSE_TIMEOUT_S = 120


def _median(values: list[float]) -> float:
    return statistics.median(values)


# --------------------------------------------------------------------------- ours


def start_ours(bench: Bench) -> tuple[float, float, dict[str, float]]:
    stack = Stack(TASKER_STACK, bench.images, bench.owner, stack_id=bench.next_stack_id())
    t0 = time.monotonic()
    try:
        stack.start()
    except BaseException:
        stack.stop()
        raise
    t1 = time.monotonic()
    stack.stop()
    return t1 - t0, time.monotonic() - t1, dict(stack.timings)


# --------------------------------------------------------------------------- testcontainers


def start_testcontainers(bench: Bench) -> tuple[float, float]:  # noqa: PLR0915
    """The same four services one after another, each waited for with testcontainers' own
    wait strategies at their default poll interval (``TC_POOLING_INTERVAL``, 1 s)."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network
    from testcontainers.core.wait_strategies import (
        HttpWaitStrategy,
        LogMessageWaitStrategy,
        WaitStrategy,
    )

    class Until(WaitStrategy):
        """testcontainers' own polling loop (default interval) around a condition."""

        def __init__(self, check: Callable[[Any], bool]) -> None:
            super().__init__()
            self._check = check

        def wait_until_ready(self, container: Any) -> None:
            if not self._poll(lambda: self._check(container)):
                raise TimeoutError("condition not met")

    sid = bench.next_stack_id("tc")
    owner = bench.owner
    password = secrets.token_hex(12)
    ctx = {
        "db_password": password,
        "db_user": "tasker",
        "db_name": "tasker",
        "db_host": "postgres",
        "stack_name": owner.name("stack", sid),
    }
    network = Network(docker_network_kw={"labels": owner.labels(**{labels.STACK: sid})})
    network.name = owner.name("net", sid)
    started: list[Any] = []

    def make(service: str) -> Any:
        svc = TASKER_STACK.service(service)
        container = DockerContainer(bench.images[svc.image_key])
        container.with_name(owner.name(service, sid)).with_network(network)
        container.with_network_aliases(service)
        container.env = {k: v.format(**ctx) for k, v in svc.env.items()}
        for port in svc.ports:
            cast(dict[str, Any], container.ports)[f"{port}/tcp"] = (LOCALHOST, None)
        container.tmpfs = dict(svc.tmpfs)
        container.with_kwargs(labels=owner.labels(**{labels.STACK: sid, labels.SERVICE: service}))
        return container

    def pg_connects(container: Any) -> bool:
        import psycopg

        port = container.get_exposed_port(5432)
        dsn = f"host={LOCALHOST} port={port} user=tasker password={password} dbname=tasker"
        try:
            with psycopg.connect(dsn, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def exited(container: Any) -> bool:
        wrapped = container.get_wrapped_container()
        wrapped.reload()
        return bool(wrapped.status in ("exited", "dead"))

    t0 = time.monotonic()
    try:
        network.create()
        pg = make("postgres").waiting_for(LogMessageWaitStrategy(PG_READY_LINE))
        started.append(pg)
        pg.start()
        Until(pg_connects).wait_until_ready(pg)
        migrate = make("migrate").waiting_for(Until(exited))
        started.append(migrate)
        migrate.start()
        code = migrate.get_wrapped_container().attrs["State"]["ExitCode"]
        if code != 0:
            raise RuntimeError(f"migrate exited {code}")
        for service in ("orchestration", "worker"):
            check = TASKER_STACK.service(service).readiness[0]
            assert isinstance(check, HttpGet)
            container = make(service).waiting_for(HttpWaitStrategy(check.port, check.path))
            started.append(container)
            container.start()
        t1 = time.monotonic()
    finally:
        t_stop = time.monotonic()
        for container in reversed(started):
            with contextlib.suppress(Exception):
                container.stop()
        with contextlib.suppress(Exception):
            network.remove()
        cleanup.sweep([f"{labels.ROOT}=1", f"{labels.RUN}={owner.run_id}", f"{labels.STACK}={sid}"])
    return t1 - t0, time.monotonic() - t_stop


# --------------------------------------------------------------------------- compose


def _compose_images(command: tuple[str, ...], project: str) -> dict[str, str]:
    """service → image name compose uses for a service with `build:` and no `image:`."""
    sep = "_" if command == ("docker-compose",) else "-"
    return {
        s: f"{project}{sep}{s}:latest" for s in ("postgres", "migrate", "orchestration", "worker")
    }


def start_compose(bench: Bench, compose_owner: Owner) -> tuple[float, float, str]:
    """`compose up -d --no-build`, then poll `docker inspect` health until every service is
    healthy and the migrator exited 0 (what `up --wait` does; Compose v1 has no --wait)."""
    engine = build_engine.probe()
    assert engine.compose is not None
    root = builder.REPO_ROOT
    project = f"tbench{compose_owner.run8}{bench.next_stack_id('c')}"
    images = _compose_images(engine.compose, project)
    for service, name in images.items():
        subprocess.run(["docker", "tag", bench.images[service], name], check=True)
        bench.created_tags.add(name)
    env = {
        **os.environ,
        "POSTGRES_PASSWORD": secrets.token_hex(12),
        "TASKER_TESTING_RUN": compose_owner.run_id,
        "TASKER_TESTING_PID": str(compose_owner.pid),
        "TASKER_TESTING_HOST": compose_owner.host,
        "TASKER_TESTING_CREATED": f"{compose_owner.created:.3f}",
    }
    base = [*engine.compose, "-p", project, "-f", str(root / COMPOSE_FILE)]
    client = cleanup.docker_client()
    t0 = time.monotonic()
    try:
        subprocess.run(
            [*base, "up", "-d", "--no-build"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=COMPOSE_TIMEOUT_S,
        )
        deadline = time.monotonic() + COMPOSE_TIMEOUT_S
        while not _compose_ready(client, project):
            if time.monotonic() > deadline:
                raise TimeoutError(f"compose project {project} not healthy in {COMPOSE_TIMEOUT_S}s")
            time.sleep(COMPOSE_POLL_S)
        t1 = time.monotonic()
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"compose up failed: {exc.stderr[-800:]}") from None
    finally:
        t_down = time.monotonic()
        subprocess.run(
            [*base, "down", "-v", "--remove-orphans", "-t", "2"],
            env=env,
            capture_output=True,
            check=False,
            timeout=COMPOSE_TIMEOUT_S,
        )
        client.close()
    return t1 - t0, time.monotonic() - t_down, " ".join(engine.compose)


def _compose_ready(client: Any, project: str) -> bool:
    containers = client.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={project}"}, ignore_removed=True
    )
    seen = set()
    for container in containers:
        state = container.attrs["State"]
        service = container.labels.get("com.docker.compose.service", "")
        seen.add(service)
        if service == "migrate":
            if state["Status"] == "exited" and state.get("ExitCode") != 0:
                raise RuntimeError(f"compose migrate exited {state.get('ExitCode')}")
            if state["Status"] != "exited":
                return False
        elif (state.get("Health") or {}).get("Status") != "healthy":
            if state["Status"] in ("exited", "dead"):
                raise RuntimeError(f"compose {service} exited {state.get('ExitCode')}")
            return False
    return {"postgres", "migrate", "orchestration", "worker"} <= seen


# --------------------------------------------------------------------------- sections


def run_stack(bench: Bench) -> None:
    rounds = 2 if bench.quick else 5
    ours, ours_down, tc, tc_down = [], [], [], []
    per_service: list[dict[str, float]] = []
    for i in range(rounds):  # interleaved, so machine load hits both alike
        bench.progress.say(
            f"stack start round {i + 1}/{rounds}: ours, then testcontainers defaults"
        )
        up, down, timings = start_ours(bench)
        ours.append(up)
        ours_down.append(down)
        per_service.append(timings)
        up, down = start_testcontainers(bench)
        tc.append(up)
        tc_down.append(down)
    bench.raw["stack"] = {
        "ours": summarize(ours),
        "ours_teardown": summarize(ours_down),
        "testcontainers": summarize(tc),
        "testcontainers_teardown": summarize(tc_down),
        "ours_per_service": per_service,
    }
    targets = [Target("value", "<=", 3.0, "s"), Target("ratio", "<=", 0.5)]
    bench.add(
        Figure(
            "stack",
            "start.ours_vs_testcontainers",
            "stack ready: ours vs testcontainers defaults",
            _median(ours),
            "s",
            _median(tc),
            "sequential, testcontainers waits (1 s polls)",
            targets,
            note=f"median of {rounds}",
            samples=rounds,
        )
    )
    bench.add(
        Figure(
            "stack",
            "teardown.ours_vs_testcontainers",
            "teardown: ours vs testcontainers",
            _median(ours_down),
            "s",
            _median(tc_down),
            "testcontainers stop() one by one",
            note=f"median of {rounds}",
            samples=rounds,
        )
    )
    _compose_section(bench, ours, ours_down, rounds)


def _compose_section(bench: Bench, ours: list[float], ours_down: list[float], rounds: int) -> None:
    engine = build_engine.probe()
    label = "stack ready: ours vs compose up --wait"
    if not (builder.REPO_ROOT / COMPOSE_FILE).is_file():
        bench.skip(
            "stack", "start.ours_vs_compose", label, "s", f"{COMPOSE_FILE} does not exist yet"
        )
        return
    if engine.compose is None:
        bench.skip("stack", "start.ours_vs_compose", label, "s", "no compose tool on this engine")
        return
    compose_owner = Owner(
        bench.owner.run_id, "compose", bench.owner.pid, bench.owner.host, bench.owner.created
    )
    watchdog = cleanup.Watchdog.spawn(compose_owner)
    ups, downs, tool = [], [], ""
    try:
        for i in range(max(1, rounds - 1)):
            bench.progress.say(
                f"compose round {i + 1}: up -d + health polling (emulates up --wait)"
            )
            up, down, tool = start_compose(bench, compose_owner)
            ups.append(up)
            downs.append(down)
    except Exception as exc:  # a compose problem must not lose the other figures
        bench.skip("stack", "start.ours_vs_compose", label, "s", f"compose failed: {exc}"[:300])
        return
    finally:
        cleanup.sweep_owner(compose_owner)
        watchdog.release()
        bench.remove_created_images()
    note = (
        f"{tool}: up -d, then docker inspect health polled every 0.1 s"
        f"{' (v1 has no --wait)' if tool == 'docker-compose' else ''}"
        f"; healthchecks every 1 s; median of {len(ups)}"
    )
    bench.raw["stack"]["compose"] = summarize(ups)
    bench.raw["stack"]["compose_teardown"] = summarize(downs)
    bench.add(
        Figure(
            "stack",
            "start.ours_vs_compose",
            label,
            _median(ours),
            "s",
            _median(ups),
            "compose up --wait (emulated)",
            [Target("ratio", "<=", 0.5)],
            note=note,
            samples=len(ups),
        )
    )
    bench.add(
        Figure(
            "stack",
            "teardown.ours_vs_compose",
            "teardown: ours vs compose down",
            _median(ours_down),
            "s",
            _median(downs),
            "compose down -v",
            note=note,
            samples=len(downs),
        )
    )


PG_ONLY = StackSpec(
    services=(TASKER_STACK.service("postgres"), TASKER_STACK.service("migrate")),
    template_after=None,
)


def run_database(bench: Bench) -> None:
    clones = 10 if bench.quick else 30
    containers = 2 if bench.quick else 4
    stack = Stack(TASKER_STACK, bench.images, bench.owner, stack_id=bench.next_stack_id()).start()
    create, drop = [], []
    try:
        bench.progress.say(f"template clone x{clones}")
        for _ in range(clones):
            t0 = time.monotonic()
            name = stack.create_database()
            t1 = time.monotonic()
            stack.drop_database(name)
            create.append(t1 - t0)
            drop.append(time.monotonic() - t1)
    finally:
        stack.stop()
    fresh, fresh_down = [], []
    for i in range(containers):
        bench.progress.say(f"fresh Postgres container + migrate {i + 1}/{containers}")
        db = Stack(PG_ONLY, bench.images, bench.owner, stack_id=bench.next_stack_id("db"))
        t0 = time.monotonic()
        try:
            db.start()
        finally:
            t1 = time.monotonic()
            db.stop()
        fresh.append(t1 - t0)
        fresh_down.append(time.monotonic() - t1)
    bench.raw["database"] = {
        "clone": summarize(create),
        "drop": summarize(drop),
        "container": summarize(fresh),
        "container_teardown": summarize(fresh_down),
    }
    bench.add(
        Figure(
            "database",
            "clone_vs_container",
            "per-test DB: template clone vs container",
            _median(create),
            "s",
            _median(fresh),
            "fresh Postgres container + migrate",
            [Target("value", "<=", 0.1, "s"), Target("speedup", ">=", 20.0)],
            note=f"median of {clones} clones / {containers} containers; both with 50 ms polls; "
            f"drop {_median(drop) * 1000:.0f} ms vs container removal {_median(fresh_down):.1f} s",
            samples=clones,
        )
    )
