"""The Tasker stack as data, and starting/stopping it on testcontainers.

``TASKER_STACK`` lists the services (image key, env, ports, readiness, depends-on, one-shot or
long-running). ``Stack.start()`` creates a private network, then starts the services stage by
stage in dependency order, the services of one stage concurrently:

    postgres  ->  migrate (run to exit 0)  ->  [template DB]  ->  orchestration || worker

Every container is created up front, concurrently, while Postgres boots; a stage only starts
containers that already exist.

Every wait polls at 50 ms and has a timeout whose error carries the service's last 50 log lines
and a hint. A failed start removes everything it started. Ports are published on 127.0.0.1 only,
on random host ports; the harness never talks to a container or bridge IP.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import string
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, cast
from urllib.parse import urlsplit

# testcontainers reads these at import time: set them before it is imported anywhere.
# Ryuk's image cannot be pulled here (our own labels + watchdog do its job), and /.dockerenv
# must not make testcontainers talk to bridge IPs.
os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
os.environ["TESTCONTAINERS_CONNECTION_MODE"] = "docker_host"

import httpx
import psycopg
from psycopg import sql
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

from tasker_testing import labels
from tasker_testing.cleanup import DockerClient, docker_client, sweep
from tasker_testing.labels import Owner

POLL_S = 0.05
LOG_TAIL = 50
LOCALHOST = "127.0.0.1"
PG_UID = 999  # the postgres user of docker/db, as in the official image
PG_READY_LINE = "database system is ready to accept connections"


def publish_ip(environ: Mapping[str, str] = os.environ) -> str:
    """Where ports are bound on the engine's host: 127.0.0.1 unless TASKER_PUBLISH_IP says."""
    return environ.get("TASKER_PUBLISH_IP", "").strip() or LOCALHOST


def connect_host(environ: Mapping[str, str] = os.environ) -> str:
    """Where the client reaches published ports.

    TASKER_DOCKER_HOST_IP if set; else, for a remote engine (DOCKER_HOST tcp:// or ssh://) whose
    ports are published on a non-loopback address, that engine's host; else 127.0.0.1.
    """
    explicit = environ.get("TASKER_DOCKER_HOST_IP", "").strip()
    if explicit:
        return explicit
    docker_host = urlsplit(environ.get("DOCKER_HOST", ""))
    if docker_host.scheme in ("tcp", "ssh") and docker_host.hostname:
        if publish_ip(environ) != LOCALHOST:
            return docker_host.hostname
        if docker_host.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise StackError(
                f"DOCKER_HOST={environ['DOCKER_HOST']} is another host, but ports are published "
                "on its 127.0.0.1, which this machine cannot reach: set TASKER_PUBLISH_IP to "
                "that host's address on a network you share (see docs/docker-host.md)"
            )
    return LOCALHOST


# --------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class LogLine:
    """Ready once this text appears in the container's output."""

    text: str


@dataclass(frozen=True)
class PostgresConnect:
    """Ready once a real psycopg connection through the published port runs ``SELECT 1``."""

    port: int = 5432


@dataclass(frozen=True)
class HttpGet:
    """Ready once ``GET http://127.0.0.1:<published port><path>`` answers ``status``."""

    port: int
    path: str
    status: int = 200


Check = LogLine | PostgresConnect | HttpGet

#: placeholders a service's env may use; filled per stack
PLACEHOLDERS = frozenset({"db_password", "db_user", "db_name", "db_host", "stack_name"})


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    image_key: str
    env: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()
    readiness: tuple[Check, ...] = ()
    depends_on: tuple[str, ...] = ()
    #: runs to completion (exit code 0 required) instead of staying up
    one_shot: bool = False
    tmpfs: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 60.0
    hint: str = ""
    #: overrides the image's CMD
    command: tuple[str, ...] | None = None


class StackSpecError(ValueError):
    """A stack declaration that cannot work (unknown dependency, cycle, bad readiness...)."""


@dataclass(frozen=True)
class StackSpec:
    services: tuple[ServiceSpec, ...]
    db_service: str = "postgres"
    db_user: str = "tasker"
    db_name: str = "tasker"
    #: after this one-shot service has finished, clone ``db_name`` into ``template_db``
    template_after: str | None = "migrate"
    template_db: str = "tasker_template"

    def service(self, name: str) -> ServiceSpec:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(name)

    def validate(self, images: Mapping[str, str] | None = None) -> None:
        """Raise ``StackSpecError`` listing every problem found."""
        problems: list[str] = []
        names = [s.name for s in self.services]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            problems.append(f"duplicate service names: {dupes}")
        for svc in self.services:
            problems += _service_problems(svc, set(names), images)
        if self.db_service not in names:
            problems.append(f"db_service {self.db_service!r} is not a service")
        if self.template_after is not None:
            if self.template_after not in names:
                problems.append(f"template_after {self.template_after!r} is not a service")
            elif not self.service(self.template_after).one_shot:
                problems.append(f"template_after {self.template_after!r} must be one-shot")
        if not problems:
            try:
                self.stages()
            except StackSpecError as exc:
                problems.append(str(exc))
        if problems:
            raise StackSpecError("invalid stack spec: " + "; ".join(problems))

    def stages(self) -> list[list[ServiceSpec]]:
        """Services grouped by dependency depth: each stage only needs earlier ones."""
        done: set[str] = set()
        left = list(self.services)
        stages: list[list[ServiceSpec]] = []
        while left:
            stage = [s for s in left if set(s.depends_on) <= done]
            if not stage:
                raise StackSpecError(f"dependency cycle among {[s.name for s in left]}")
            stages.append(stage)
            done |= {s.name for s in stage}
            left = [s for s in left if s.name not in done]
        return stages


def _service_problems(
    svc: ServiceSpec, names: set[str], images: Mapping[str, str] | None
) -> list[str]:
    problems = []
    for dep in svc.depends_on:
        if dep not in names:
            problems.append(f"{svc.name} depends on unknown service {dep!r}")
    if images is not None and svc.image_key not in images:
        problems.append(f"{svc.name}: no image for key {svc.image_key!r}")
    for check in svc.readiness:
        port = getattr(check, "port", None)
        if port is not None and port not in svc.ports:
            problems.append(f"{svc.name}: readiness uses port {port}, which is not published")
    if svc.one_shot and any(isinstance(c, HttpGet) for c in svc.readiness):
        problems.append(f"{svc.name}: a one-shot service has no HTTP readiness")
    if not svc.one_shot and not svc.readiness:
        problems.append(f"{svc.name}: a long-running service needs a readiness check")
    for key, value in svc.env.items():
        used = {f for _, f, _, _ in string.Formatter().parse(value) if f}
        unknown = used - PLACEHOLDERS
        if unknown:
            problems.append(f"{svc.name}: env {key} uses unknown placeholders {sorted(unknown)}")
    if svc.timeout_s <= 0:
        problems.append(f"{svc.name}: timeout must be positive")
    return problems


_DB_URL = "postgres://{db_user}:{db_password}@{db_host}:5432/{db_name}"
_SERVICE_ENV = {
    "DATABASE_URL": _DB_URL,
    "TASKER_ENV": "test",
    "RUST_LOG": "info",
    "TASKER_LOG_FORMAT": "json",
    "TASKER_TEMPLATE_DIR": "/app/config/templates",
    # short timings so tests (and chaos tests killing a worker) finish quickly
    "TASKER_VISIBILITY_TIMEOUT_SECONDS": "5",
    "TASKER_POLL_INTERVAL_MS": "50",
    "TASKER_SHUTDOWN_TIMEOUT_SECONDS": "2",
    "TASKER_DB_POOL_SIZE": "8",
}

TASKER_STACK = StackSpec(
    services=(
        ServiceSpec(
            name="postgres",
            image_key="postgres",
            env={
                "POSTGRES_USER": "{db_user}",
                "POSTGRES_PASSWORD": "{db_password}",
                "POSTGRES_DB": "{db_name}",
                "TASKER_PG_TEST_SETTINGS": "1",
            },
            ports=(5432,),
            readiness=(LogLine(PG_READY_LINE), PostgresConnect(5432)),
            # owned by the image's postgres user, uid/gid 999 (docker/db pins it; Docker 20.10
            # ignores a tmpfs mode=, so ownership is what makes it writable)
            tmpfs={"/var/lib/postgresql/data": f"rw,uid={PG_UID},gid={PG_UID},mode=0700"},
            timeout_s=60,
            hint="the db image (docker/db) did not become ready: check initdb output above",
        ),
        ServiceSpec(
            name="migrate",
            image_key="migrate",
            env={**_SERVICE_ENV, "TASKER_MIGRATIONS_DIR": "/app/migrations"},
            depends_on=("postgres",),
            one_shot=True,
            timeout_s=120,
            hint="the migrator must apply migrations/ and exit 0: check the SQL error above",
        ),
        ServiceSpec(
            name="orchestration",
            image_key="orchestration",
            env=_SERVICE_ENV,
            ports=(8080,),
            readiness=(HttpGet(8080, "/ready"),),
            depends_on=("migrate",),
            timeout_s=60,
            hint="orchestration /ready needs the DB and the PGMQ queues (created by migrate)",
        ),
        ServiceSpec(
            name="worker",
            image_key="worker",
            env={**_SERVICE_ENV, "TASKER_WORKER_ID": "worker-{stack_name}"},
            ports=(8081,),
            readiness=(HttpGet(8081, "/health/ready"),),
            depends_on=("migrate",),
            timeout_s=60,
            hint="worker /health/ready needs the DB and its namespace queues",
        ),
    )
)


# --------------------------------------------------------------------------- errors


class StackError(RuntimeError):
    pass


class StackStartError(StackError):
    """A service failed to start: carries its last log lines and a hint."""

    def __init__(self, service: str, problem: str, logs: str = "", hint: str = "") -> None:
        self.service = service
        self.problem = problem
        self.logs = logs
        self.hint = hint
        text = f"{service}: {problem}"
        if hint:
            text += f"\n  hint: {hint}"
        if logs:
            text += f"\n  last {LOG_TAIL} log lines of {service}:\n" + _indent(logs)
        super().__init__(text)


class _Aborted(Exception):
    """Another service of the same stage failed: stop waiting."""


def _indent(text: str) -> str:
    return "\n".join("    | " + line for line in text.rstrip().splitlines())


# --------------------------------------------------------------------------- the running stack


@dataclass
class RunningService:
    spec: ServiceSpec
    name: str
    container: Any  # docker-py Container
    ports: dict[int, int] = field(default_factory=dict)
    exit_code: int | None = None
    #: output of a one-shot service, kept after its container is removed
    saved_logs: str | None = None
    ready_s: float = 0.0

    def logs(self, tail: int | None = None, since: float | None = None) -> str:
        if self.saved_logs is not None:
            lines = self.saved_logs.splitlines()
            return "\n".join(lines[-tail:] if tail else lines)
        kwargs: dict[str, Any] = {}
        if tail is not None:
            kwargs["tail"] = tail
        if since is not None:
            kwargs["since"] = int(since)
        try:
            raw: bytes = self.container.logs(**kwargs)
        except Exception as exc:  # gone or engine trouble: say so instead of failing the caller
            return f"<logs unavailable: {exc}>"
        return raw.decode("utf-8", errors="replace")


def check_images_exist(images: Mapping[str, str], client: DockerClient) -> None:
    errors = importlib_docker_errors()
    missing = []
    for tag in images.values():
        try:
            client.images.get(tag)
        except errors.ImageNotFound:
            missing.append(tag)
    if missing:
        raise StackError(
            f"image(s) not found locally: {', '.join(missing)}; nothing can be pulled here. "
            "Build them: `python -m tasker_testing build` (or `nox -s integration-fast`)."
        )


def importlib_docker_errors() -> Any:
    import importlib

    return importlib.import_module("docker.errors")


class StagedContainer(DockerContainer):
    """testcontainers' ``DockerContainer`` whose create and start are separate steps.

    ``start()`` does both, and the create (a second or so on fuse-overlayfs) is the slow half:
    a stack creates every container up front and starts each when its dependencies are ready.
    """

    def create(self) -> Any:
        """Create the container as ``start()`` would, without starting it; returns docker-py's
        Container (also kept as ``get_wrapped_container()``)."""
        network_kwargs: dict[str, Any] = {}
        if self._network is not None:
            api = self.get_docker_client().client.api
            network_kwargs = {
                "network": self._network.name,
                "networking_config": {
                    self._network.name: api.create_endpoint_config(aliases=self._network_aliases)
                },
            }
        self._container = self.get_docker_client().create(
            self.image,
            command=self._command,
            environment=self.env,
            ports=self.ports,
            name=self._name,
            tmpfs=self.tmpfs,
            **network_kwargs,
            **self._kwargs,
        )
        return self._container


class Stack:
    """One Tasker stack on its own network, owned by ``owner``."""

    def __init__(
        self,
        spec: StackSpec,
        images: Mapping[str, str],
        owner: Owner,
        *,
        stack_id: str = "",
        keep: bool = False,
        reuse_key: str | None = None,
    ) -> None:
        spec.validate(images)
        self.spec = spec
        self.images = dict(images)
        self.owner = owner
        self.stack_id = stack_id
        self.keep = keep
        self.reuse_key = reuse_key
        self.db_password = secrets.token_hex(16)
        self.services: dict[str, RunningService] = {}
        self.network_name = owner.name("net", stack_id)
        self.timings: dict[str, float] = {}
        self._network: Any = None
        self._client: DockerClient | None = None
        self._abort = threading.Event()
        self._lock = threading.Lock()
        #: creates containers ahead of their stage; removes finished one-shot containers
        self._pool: ThreadPoolExecutor | None = None
        self._created: dict[str, Future[RunningService]] = {}

    @classmethod
    def find_reusable(
        cls, spec: StackSpec, images: Mapping[str, str], reuse_key: str
    ) -> Stack | None:
        """A kept stack from an earlier run with the same key, if complete and ready; else
        remove whatever is left of it and return None."""
        client = docker_client()
        flt = [f"{labels.ROOT}=1", f"{labels.REUSE_KEY}={reuse_key}"]
        try:
            found = {
                c.labels.get(labels.SERVICE): c
                for c in client.containers.list(
                    all=True, filters={"label": flt}, ignore_removed=True
                )
            }
            needed = [s for s in spec.services if not s.one_shot]
            owner = Owner.from_labels(next(iter(found.values())).labels) if found else None
            if owner is None or any(
                s.name not in found or found[s.name].status != "running" for s in needed
            ):
                sweep(flt, client=client)
                return None
            stack = cls(spec, images, owner, keep=True, reuse_key=reuse_key)
            stack.network_name = owner.name("net")
            env = found[spec.db_service].attrs["Config"]["Env"] or []
            password = [e.split("=", 1)[1] for e in env if e.startswith("POSTGRES_PASSWORD=")]
            stack.db_password = password[0] if password else ""
            deadline = time.monotonic() + 10
            for svc in needed:
                running = RunningService(svc, found[svc.name].name, found[svc.name])
                stack.services[svc.name] = running
                stack._read_ports(running)
                for check in svc.readiness:
                    if not isinstance(check, LogLine):
                        stack._wait_check(running, check, deadline)
            return stack
        except (StackError, KeyError, IndexError):
            sweep(flt, client=client)
            return None
        finally:
            client.close()

    # ----------------------------------------------------------------- naming and access

    @property
    def name(self) -> str:
        return self.owner.name("stack", self.stack_id).removesuffix("-stack")

    def labels(self, **extra: str) -> dict[str, str]:
        lab = self.owner.labels(**{labels.STACK: self.stack_id or "main"}, **extra)
        if self.keep:
            lab[labels.KEEP] = "1"
        if self.reuse_key:
            lab[labels.REUSE_KEY] = self.reuse_key
        return lab

    @property
    def client(self) -> DockerClient:
        if self._client is None:
            self._client = docker_client()
        return self._client

    def port(self, service: str, container_port: int) -> int:
        return self.services[service].ports[container_port]

    def url(self, service: str, container_port: int | None = None) -> str:
        svc = self.services[service]
        port = container_port if container_port is not None else svc.spec.ports[0]
        return f"http://{connect_host()}:{svc.ports[port]}"

    @property
    def orchestration_url(self) -> str:
        return self.url("orchestration")

    @property
    def worker_url(self) -> str:
        return self.url("worker")

    def db_dsn(self, dbname: str | None = None) -> str:
        port = self.port(self.spec.db_service, 5432)
        return (
            f"host={connect_host()} port={port} user={self.spec.db_user} "
            f"password={self.db_password} dbname={dbname or self.spec.db_name} connect_timeout=5"
        )

    def connect(self, dbname: str | None = None, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.db_dsn(dbname), autocommit=True, **kwargs)

    def logs(self, service: str, tail: int | None = None, since: float | None = None) -> str:
        return self.services[service].logs(tail=tail, since=since)

    def save_logs(self, directory: Path) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name, svc in self.services.items():
            path = directory / f"{name}.log"
            path.write_text(svc.logs(), encoding="utf-8")
            written.append(path)
        return written

    def _context(self) -> dict[str, str]:
        return {
            "db_password": self.db_password,
            "db_user": self.spec.db_user,
            "db_name": self.spec.db_name,
            "db_host": self.spec.db_service,
            "stack_name": self.name,
        }

    # ----------------------------------------------------------------- start

    def start(self) -> Self:
        """Start every service; on any failure remove what was started and raise.

        Creating a container costs more than starting it on slow storage drivers (fuse-overlayfs:
        most of a second), so every container is created up front, concurrently, while Postgres
        boots; each stage then only has to start its already-created containers.
        """
        t0 = time.monotonic()
        try:
            check_images_exist(self.images, self.client)
            network = Network(docker_network_kw={"labels": self.labels(), "driver": "bridge"})
            network.name = self.network_name
            self._network = network.create()
            # one thread per service: every create runs at once
            self._pool = ThreadPoolExecutor(len(self.spec.services), thread_name_prefix="stack")
            self._created = {
                svc.name: self._pool.submit(self._create_service, svc) for svc in self.spec.services
            }
            for stage in self.spec.stages():
                self._start_stage(stage)
                names = {s.name for s in stage}
                if self.spec.template_after in names:
                    t_template = time.monotonic()
                    self._create_template_db()
                    self.timings["template_db"] = time.monotonic() - t_template
        except BaseException:
            self._abort.set()
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - t0
        return self

    def _start_stage(self, stage: list[ServiceSpec]) -> None:
        if len(stage) == 1:
            self._start_service(stage[0])
            return
        with ThreadPoolExecutor(max_workers=len(stage), thread_name_prefix="stage") as pool:
            futures = [pool.submit(self._start_service_guarded, svc) for svc in stage]
            try:
                errors = [f.exception() for f in futures]
            except BaseException:
                # Ctrl-C while waiting: the pool's exit joins its threads, so tell them to stop
                # polling now instead of at their readiness deadline.
                self._abort.set()
                raise
        real = [e for e in errors if e is not None and not isinstance(e, _Aborted)]
        if real:
            raise real[0]

    def _start_service_guarded(self, svc: ServiceSpec) -> None:
        try:
            self._start_service(svc)
        except BaseException:
            self._abort.set()  # the other services of this stage stop waiting
            raise

    def _create_service(self, svc: ServiceSpec) -> RunningService:
        """Create (not start) the service's container."""
        if self._abort.is_set():
            raise _Aborted
        t0 = time.monotonic()
        name = self.owner.name(svc.name, self.stack_id)
        ctx = self._context()
        container = StagedContainer(self.images[svc.image_key])
        container.with_name(name).with_network(self._network).with_network_aliases(svc.name)
        container.env = {k: v.format(**ctx) for k, v in svc.env.items()}
        for port in svc.ports:
            # docker-py's (host_ip, host_port) form: 127.0.0.1 only, random port
            cast(dict[str, Any], container.ports)[f"{port}/tcp"] = (publish_ip(), None)
        container.tmpfs = dict(svc.tmpfs)
        if svc.command is not None:
            container.with_command(list(svc.command))
        container.with_kwargs(labels=self.labels(**{labels.SERVICE: svc.name}))
        running = RunningService(svc, name, container.create())
        with self._lock:
            self.services[svc.name] = running
        self.timings[f"create.{svc.name}"] = time.monotonic() - t0
        return running

    def _start_service(self, svc: ServiceSpec) -> None:
        running = self._created[svc.name].result()
        t0 = time.monotonic()
        running.container.start()
        deadline = t0 + svc.timeout_s
        if svc.one_shot:
            self._wait_exit(running, deadline)
        else:
            self._read_ports(running)
            for check in svc.readiness:
                self._wait_check(running, check, deadline)
        running.ready_s = time.monotonic() - t0
        self.timings[svc.name] = running.ready_s

    def _read_ports(self, running: RunningService) -> None:
        running.container.reload()
        published = running.container.attrs["NetworkSettings"]["Ports"] or {}
        for port in running.spec.ports:
            bindings = published.get(f"{port}/tcp") or []
            bind = publish_ip()
            local = [b for b in bindings if b.get("HostIp") == bind]
            if not local or len(local) != len(bindings):
                raise StackStartError(
                    running.spec.name,
                    f"port {port} is not published on {bind} only: {bindings}",
                )
            running.ports[port] = int(local[0]["HostPort"])

    def _fail(self, running: RunningService, problem: str) -> StackStartError:
        return StackStartError(
            running.spec.name, problem, running.logs(tail=LOG_TAIL), running.spec.hint
        )

    def _state(self, running: RunningService) -> tuple[str, int]:
        running.container.reload()
        state = running.container.attrs["State"]
        return str(state["Status"]), int(state.get("ExitCode", 0))

    def _wait_exit(self, running: RunningService, deadline: float) -> None:
        while True:
            if self._abort.is_set():
                raise _Aborted
            status, code = self._state(running)
            if status in ("exited", "dead"):
                running.exit_code = code
                running.saved_logs = running.logs()
                if code != 0:
                    raise self._fail(running, f"exited with code {code}")
                # Removal takes seconds on some storage drivers: off the critical path.
                if self._pool is not None:
                    self._pool.submit(self._remove_quietly, running)
                return
            if time.monotonic() > deadline:
                raise self._fail(
                    running, f"still running after {running.spec.timeout_s:.0f}s (one-shot)"
                )
            time.sleep(POLL_S)

    def _wait_check(self, running: RunningService, check: Check, deadline: float) -> None:
        last_error = ""
        while True:
            if self._abort.is_set():
                raise _Aborted
            status, code = self._state(running)
            if status in ("exited", "dead"):
                raise self._fail(running, f"exited with code {code} before it was ready")
            ok, last_error = self._probe(running, check)
            if ok:
                return
            if time.monotonic() > deadline:
                raise self._fail(
                    running,
                    f"not ready after {running.spec.timeout_s:.0f}s waiting for {check}"
                    + (f" (last probe: {last_error})" if last_error else ""),
                )
            time.sleep(POLL_S)

    def _probe(self, running: RunningService, check: Check) -> tuple[bool, str]:
        try:
            if isinstance(check, LogLine):
                return check.text in running.logs(), ""
            if isinstance(check, PostgresConnect):
                port = running.ports[check.port]
                dsn = self.db_dsn().replace(
                    f"port={self.port(self.spec.db_service, 5432)}", f"port={port}"
                )
                with psycopg.connect(dsn, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return True, ""
            url = f"http://{connect_host()}:{running.ports[check.port]}{check.path}"
            response = httpx.get(url, timeout=1.0)
            return response.status_code == check.status, f"{response.status_code}"
        except (psycopg.Error, httpx.HTTPError, OSError) as exc:
            return False, f"{type(exc).__name__}: {exc}".strip()[:300]

    def _create_template_db(self) -> None:
        """Clone the migrated DB into the template used by ``fresh_database``.

        Must run while nothing else is connected to the migrated DB (before the services).
        """
        query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(self.spec.template_db), sql.Identifier(self.spec.db_name)
        )
        deadline = time.monotonic() + 10
        with self.connect("postgres") as conn:
            while True:
                try:
                    conn.execute(query)
                    break
                except psycopg.errors.ObjectInUse:  # a just-closed session still lingering
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(POLL_S)
            conn.execute(
                sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false").format(
                    sql.Identifier(self.spec.template_db)
                )
            )

    # ----------------------------------------------------------------- fresh databases

    def create_database(self, name: str | None = None) -> str:
        """A new database cloned from the migrated template; returns its name."""
        if self.spec.template_after is None:
            raise StackError("this stack spec creates no template database")
        dbname = name or f"t_{secrets.token_hex(8)}"
        with self.connect("postgres") as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                    sql.Identifier(dbname), sql.Identifier(self.spec.template_db)
                )
            )
        return dbname

    def drop_database(self, name: str) -> None:
        with self.connect("postgres") as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    # ----------------------------------------------------------------- service control (chaos)

    def kill(self, service: str) -> None:
        self.services[service].container.kill()

    def wait_ready(self, service: str, timeout: float | None = None) -> None:
        """Wait for a (re)started service's readiness; re-reads its ports (they may change)."""
        running = self.services[service]
        deadline = time.monotonic() + (timeout or running.spec.timeout_s)
        self._abort.clear()
        self._read_ports(running)
        for check in running.spec.readiness:
            self._wait_check(running, check, deadline)

    def start_service(self, service: str, timeout: float | None = None) -> None:
        """Start a stopped/killed service again and wait until it is ready."""
        self.services[service].container.start()
        self.wait_ready(service, timeout)

    def restart(self, service: str, timeout: float | None = None) -> None:
        self.services[service].container.restart(timeout=2)
        self.wait_ready(service, timeout)

    # ----------------------------------------------------------------- stop

    def stop(self) -> None:
        """Remove every container and the network of this stack (idempotent)."""

        # Creates still in flight finish first, so that no container escapes the removal below.
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        # Removal is slow on some storage drivers (seconds each): do all services at once.
        if self.services:
            with ThreadPoolExecutor(len(self.services), thread_name_prefix="stop") as pool:
                list(pool.map(self._remove_quietly, list(self.services.values())))
        if self._network is not None:
            with contextlib.suppress(Exception):
                self._network.remove()
        # anything a half-failed start left behind, found by label
        flt = [
            f"{labels.ROOT}=1",
            f"{labels.RUN}={self.owner.run_id}",
            f"{labels.WORKER}={self.owner.worker}",
            f"{labels.STACK}={self.stack_id or 'main'}",
        ]
        with contextlib.suppress(Exception):
            sweep(flt, client=self.client)
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    @staticmethod
    def _remove_quietly(running: RunningService) -> None:
        if running.saved_logs is None:
            with contextlib.suppress(Exception):
                running.saved_logs = running.logs()
        with contextlib.suppress(Exception):
            running.container.remove(force=True, v=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def describe(self) -> Iterator[str]:
        yield f"stack {self.name} on network {self.network_name}"
        for name, svc in self.services.items():
            ports = ", ".join(f"{c}->{connect_host()}:{h}" for c, h in svc.ports.items())
            yield f"  {name:<14} {svc.name} {ports} ready in {svc.ready_s:.2f}s"
