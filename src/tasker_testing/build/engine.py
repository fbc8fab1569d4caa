"""What this Docker engine and CLI can do, probed once, with errors that say what is missing.

Findings for the `rust-docker` machines are in docs/engine.md: a 28.x CLI without the buildx
plugin (so `DOCKER_BUILDKIT=1 docker build` fails there) next to Debian's 20.10 CLI at
/usr/bin/docker, whose built-in BuildKit supports `RUN --mount=type=cache`; Compose v1 only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from python_on_whales import DockerClient

Builder = Literal["buildx", "classic-buildkit"]
# A CLI this old still builds with BuildKit without the buildx plugin (removed in 23.0).
_LAST_CLASSIC_BUILDKIT_MAJOR = 22
_PROBE_TIMEOUT = 10


class EngineError(RuntimeError):
    """The Docker engine is unreachable or lacks a feature this project needs."""


@dataclass(frozen=True)
class Engine:
    """One probe of the engine: which CLI builds, with which builder, and which compose exists."""

    cli: str
    builder: Builder
    server_version: str

    @property
    def client(self) -> DockerClient:
        from python_on_whales import DockerClient

        return DockerClient(client_call=[self.cli])

    @property
    def compose(self) -> tuple[str, ...] | None:
        """The command line that runs Compose (v2 plugin first, then v1), if any."""
        return _compose()

    @property
    def build_env(self) -> dict[str, str]:
        return {"DOCKER_BUILDKIT": "1"} if self.builder == "classic-buildkit" else {}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=_PROBE_TIMEOUT, check=False)


def default_cli() -> str:
    """The CLI for everyday calls (list, inspect): $TASKER_DOCKER_CLI or PATH's docker."""
    return os.environ.get("TASKER_DOCKER_CLI") or shutil.which("docker") or "/usr/bin/docker"


def local_image_tags(cli: str | None = None) -> set[str]:
    """Every repo:tag on the engine, in one call; an EngineError if the engine does not answer."""
    command = [cli or default_cli(), "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]
    try:
        result = _run(*command)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineError(f"cannot run {command[0]!r}: {exc}") from exc
    if result.returncode != 0:
        server_version(command[0])  # raises the unreachable-engine error with its hint
        raise EngineError(f"listing images failed: {result.stderr.strip()}")
    return set(result.stdout.split())


def _candidates() -> list[str]:
    """The docker CLIs to try: $TASKER_DOCKER_CLI, then PATH's, then Debian's."""
    found = [
        os.environ.get("TASKER_DOCKER_CLI", ""),
        shutil.which("docker") or "",
        "/usr/bin/docker",
    ]
    unique: list[str] = []
    for path in found:
        if (
            path
            and os.access(path, os.X_OK)
            and os.path.realpath(path) not in map(os.path.realpath, unique)
        ):
            unique.append(path)
    return unique


def server_version(cli: str = "docker") -> str:
    """The engine's version; an EngineError with a hint when it does not answer."""
    try:
        result = _run(cli, "version", "--format", "{{.Server.Version}}")
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineError(f"cannot run {cli!r}: {exc}. Is the Docker CLI installed?") from exc
    version = result.stdout.strip()
    if result.returncode != 0 or not version:
        host = os.environ.get("DOCKER_HOST", "the default socket /var/run/docker.sock")
        detail = (result.stderr.strip().splitlines() or ["no answer"])[-1]
        raise EngineError(
            f"the Docker engine at {host} is unreachable: {detail}. "
            "Start the daemon or point DOCKER_HOST at a running engine."
        )
    return version


def _client_major(cli: str) -> int:
    result = _run(cli, "version", "--format", "{{.Client.Version}}")
    try:
        return int(result.stdout.strip().split(".")[0])
    except ValueError:
        return 0


@cache
def _compose() -> tuple[str, ...] | None:
    for command in (("docker", "compose"), ("docker-compose",)):
        if shutil.which(command[0]) is None:
            continue
        try:
            if _run(*command, "version").returncode == 0:
                return command
        except (OSError, subprocess.TimeoutExpired):
            continue
    return None


@cache
def probe() -> Engine:
    """Find a CLI that can build with BuildKit: buildx first, else a classic CLI < 23."""
    candidates = _candidates()
    if not candidates:
        raise EngineError("no docker CLI found on PATH (install docker.io or docker-ce-cli)")
    version = server_version(candidates[0])
    for cli in candidates:
        if _run(cli, "buildx", "version").returncode == 0:
            return Engine(cli, "buildx", version)
    for cli in candidates:
        if 0 < _client_major(cli) <= _LAST_CLASSIC_BUILDKIT_MAJOR:
            return Engine(cli, "classic-buildkit", version)
    raise EngineError(
        "no docker CLI here can build with BuildKit (needed for RUN --mount cache mounts): "
        f"tried {', '.join(candidates)}. Install the buildx plugin (package docker-buildx or "
        "docker-buildx-plugin), or set TASKER_DOCKER_CLI to a docker CLI older than 23.0."
    )
