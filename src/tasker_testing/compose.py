"""Run docker/compose/*.yml with whichever Compose this engine has (v2 plugin or v1).

Compose v1 builds through the `docker` CLI only with COMPOSE_DOCKER_CLI_BUILD=1; the CLI first
on PATH may lack buildx, so a shim directory puts the BuildKit-capable CLI the probe found first.
Services carry owner labels (through the files' ${TASKER_TESTING_*} variables), so the watchdog
and sweeps remove a stack whose owner died.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tasker_testing.build import bases
from tasker_testing.build.engine import EngineError, probe
from tasker_testing.labels import Owner

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO_ROOT / "docker" / "compose"
FILES = {
    tier: COMPOSE_DIR / f"{name}.yml"
    for tier, name in (("fast", "test"), ("ci", "ci"), ("prod", "prod"))
}
_POLL_S = 0.2


class ComposeError(RuntimeError):
    """A compose command failed; the message carries its output."""


@dataclass
class ComposeProject:
    """One compose project: a file, a project name and the environment it runs with."""

    file: Path
    name: str
    env: dict[str, str]
    command: tuple[str, ...]

    def run(self, *args: str, timeout: float = 900) -> str:
        result = subprocess.run(
            [*self.command, "-p", self.name, "-f", str(self.file), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise ComposeError(
                f"{' '.join(self.command)} {' '.join(args)} failed (exit {result.returncode}):\n"
                + "\n".join((result.stdout + result.stderr).strip().splitlines()[-40:])
            )
        return result.stdout

    def container_ids(self) -> list[str]:
        return self.run("ps", "-q").split()

    def wait_healthy(self, timeout: float = 300) -> float:
        """`up --wait` for Compose v1: poll until every long-running container is healthy."""
        started, deadline = time.monotonic(), time.monotonic() + timeout
        cli = probe().cli
        while True:
            ids = self.container_ids()
            listing = (
                subprocess.run(
                    [cli, "inspect", "--format", "{{json .State}}", *ids],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout
                if ids
                else ""
            )
            states = [json.loads(line) for line in listing.splitlines() if line.strip()]
            pending = [
                s
                for s in states
                if s.get("Status") != "exited" and s.get("Health", {}).get("Status") != "healthy"
            ]
            failed = [s for s in states if s.get("Status") == "exited" and s.get("ExitCode")]
            if failed:
                raise ComposeError(f"a one-shot service failed: {failed}\n{self.run('logs')}")
            if ids and not pending:
                return time.monotonic() - started
            if time.monotonic() > deadline:
                raise ComposeError(
                    f"not healthy after {timeout}s:\n{self.run('logs', '--tail=50')}"
                )
            time.sleep(_POLL_S)

    def port(self, service: str, container_port: int) -> int:
        out = self.run("port", service, str(container_port)).strip()
        host, _, port = out.rpartition(":")
        if host not in ("127.0.0.1", ""):
            raise ComposeError(f"{service}:{container_port} is published on {host}, not 127.0.0.1")
        return int(port)


def compose_command() -> tuple[str, ...]:
    command = probe().compose
    if command is None:
        raise EngineError(
            "no Docker Compose found: install the compose plugin (`docker compose`) or "
            "docker-compose v1"
        )
    return command


@contextmanager
def _shim_path() -> Iterator[str]:
    """A PATH whose first `docker` is the BuildKit-capable CLI the probe chose."""
    with tempfile.TemporaryDirectory(prefix="tasker-compose-") as tmp:
        (Path(tmp) / "docker").symlink_to(probe().cli)
        yield f"{tmp}{os.pathsep}{os.environ.get('PATH', '')}"


@contextmanager
def project(
    tier: str, owner: Owner, password: str, extra_env: Mapping[str, str] | None = None
) -> Iterator[ComposeProject]:
    """A compose project of a tier, labelled for `owner`; `down -v` on exit, whatever happened."""
    base_args = bases.base_build_args()
    with _shim_path() as path:
        env = {
            **os.environ,
            **base_args,
            "PATH": path,
            "COMPOSE_DOCKER_CLI_BUILD": "1",
            "DOCKER_BUILDKIT": "1",
            "POSTGRES_PASSWORD": password,
            "TASKER_TESTING_RUN": owner.run_id,
            "TASKER_TESTING_PID": str(owner.pid),
            "TASKER_TESTING_HOST": owner.host,
            "TASKER_TESTING_CREATED": f"{owner.created:.3f}",
            **(extra_env or {}),
        }
        proj = ComposeProject(FILES[tier], f"tasker-{owner.run8}-compose", env, compose_command())
        try:
            yield proj
        finally:
            # `down` interpolates the file too: a placeholder lets it run without the password.
            proj.env["POSTGRES_PASSWORD"] = password or "unused-by-down"
            proj.run("down", "-v", "--remove-orphans", timeout=120)
