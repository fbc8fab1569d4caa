"""Removing what the harness created: by label, never by in-memory state.

Three ways resources get removed besides a normal ``Stack.stop()``:

* the **watchdog** (one detached process per owner) removes an owner's resources once the owner
  (or the xdist controller it belongs to) has died, also after SIGKILL; it exits quietly when the
  owner says it finished normally;
* the **start-up sweep** (``sweep_dead_owners``) removes resources of owners on this host whose
  process is gone (e.g. a watchdog that was itself killed);
* ``clean_all`` removes every labelled resource (``nox -s clean``).

Run as ``python -m tasker_testing.cleanup watchdog ...`` (the watchdog) or
``python -m tasker_testing.cleanup clean``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tasker_testing import labels
from tasker_testing.labels import Owner

#: docker-py ships no type information; the harness treats its objects as Any
DockerClient = Any

WATCHDOG_POLL_S = 0.2
_DOCKER_TIMEOUT_S = 30


def docker_client(timeout: int = _DOCKER_TIMEOUT_S) -> DockerClient:
    """A docker-py client (imported lazily: unit tests and the idle watchdog never need it)."""
    return importlib.import_module("docker").from_env(timeout=timeout)


def _docker_errors() -> Any:
    # via importlib: docker-py has no types, and mypy would take the repo's docker/ dir for it
    return importlib.import_module("docker.errors")


# --------------------------------------------------------------------------- process liveness


def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def _boot_time() -> float:
    with open("/proc/stat", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of ``pid``, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    rest = raw[raw.rfind(")") + 2 :].split()
    return rest[0], int(rest[19])


def process_start_time(pid: int) -> float | None:
    """Start time of ``pid`` as a Unix timestamp (None if the process does not exist)."""
    stat = _proc_stat(pid)
    if stat is None:
        return None
    return _boot_time() + stat[1] / _clock_ticks()


def pid_alive(pid: int, started_at: float | None = None) -> bool:
    """True while ``pid`` runs (zombies count as dead).

    With ``started_at`` (the process' start time as seen earlier, or an upper bound of it), a
    process with the same pid that started later is a different one: dead.
    """
    stat = _proc_stat(pid) if pid > 0 else None
    if stat is None or stat[0] in ("Z", "X"):
        return False
    if started_at is None:
        return True
    start = _boot_time() + stat[1] / _clock_ticks()
    return start <= started_at + 2.0  # later start: a reused pid; slack for tick/btime rounding


def owner_alive(owner: Owner) -> bool:
    """Whether the process that created a resource still runs. Other hosts: assumed alive."""
    if owner.host != labels.this_host():
        return True
    return pid_alive(owner.pid, started_at=owner.created)


# --------------------------------------------------------------------------- sweeping


@dataclass
class SweepResult:
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.containers or self.networks or self.volumes)

    def extend(self, other: SweepResult) -> None:
        self.containers += other.containers
        self.networks += other.networks
        self.volumes += other.volumes
        self.errors += other.errors

    def summary(self) -> str:
        return (
            f"{len(self.containers)} container(s), {len(self.networks)} network(s), "
            f"{len(self.volumes)} volume(s) removed"
        ) + (f"; {len(self.errors)} error(s): {'; '.join(self.errors[:3])}" if self.errors else "")


Predicate = Callable[[dict[str, str]], bool]


def _label_filter(filters: Sequence[str]) -> dict[str, Any]:
    return {"label": list(filters)}


def _remove_containers(
    cli: DockerClient, flt: dict[str, Any], keep: Predicate, out: SweepResult
) -> None:
    errors = _docker_errors()
    for container in cli.containers.list(all=True, filters=flt, ignore_removed=True):
        if not keep(container.labels or {}):
            continue
        try:
            container.remove(force=True, v=True)
            out.containers.append(container.name or container.id or "?")
        except errors.NotFound:
            pass
        except errors.APIError as exc:
            if "already in progress" not in str(exc):
                out.errors.append(f"container {container.name}: {exc}")


def _remove_networks(
    cli: DockerClient, flt: dict[str, Any], keep: Predicate, out: SweepResult
) -> None:
    errors = _docker_errors()
    for network in cli.networks.list(filters=flt):
        if not keep(network.attrs.get("Labels") or {}):
            continue
        for attempt in range(5):
            try:
                network.remove()
                out.networks.append(network.name or network.id or "?")
                break
            except errors.NotFound:
                break
            except errors.APIError as exc:
                # a container still attached (being removed concurrently): retry briefly
                if attempt == 4:
                    out.errors.append(f"network {network.name}: {exc}")
                time.sleep(0.2)


def _remove_volumes(
    cli: DockerClient, flt: dict[str, Any], keep: Predicate, out: SweepResult
) -> None:
    errors = _docker_errors()
    for volume in cli.volumes.list(filters=flt):
        if not keep(volume.attrs.get("Labels") or {}):
            continue
        try:
            volume.remove(force=True)
            out.volumes.append(volume.name or "?")
        except errors.NotFound:
            pass
        except errors.APIError as exc:
            out.errors.append(f"volume {volume.name}: {exc}")


def sweep(
    filters: Sequence[str] = (f"{labels.ROOT}=1",),
    *,
    predicate: Predicate | None = None,
    client: DockerClient | None = None,
) -> SweepResult:
    """Remove containers (running or not), then networks, then volumes matching label ``filters``
    (and ``predicate`` on their labels, if given)."""
    own_client = client is None
    cli = client or docker_client()
    result = SweepResult()
    keep: Predicate = predicate or (lambda _labels: True)
    flt = _label_filter(filters)
    try:
        _remove_containers(cli, flt, keep, result)
        _remove_networks(cli, flt, keep, result)
        _remove_volumes(cli, flt, keep, result)
    finally:
        if own_client:
            cli.close()
    return result


def sweep_owner(owner: Owner, client: DockerClient | None = None) -> SweepResult:
    return sweep(owner.filters(), client=client)


def sweep_run(run_id: str, client: DockerClient | None = None) -> SweepResult:
    """Everything of one run (kept resources excepted)."""
    return sweep(
        [f"{labels.ROOT}=1", f"{labels.RUN}={run_id}"],
        predicate=lambda lab: not labels.is_kept(lab),
        client=client,
    )


def _dead_owner(lab: dict[str, str]) -> bool:
    if labels.is_kept(lab):
        return False
    owner = Owner.from_labels(lab)
    if owner is None:  # garbled labels: only ours by ROOT; leave to clean_all
        return False
    return not owner_alive(owner)


def sweep_dead_owners(client: DockerClient | None = None) -> SweepResult:
    """Remove resources on this host whose owner process is gone (kept ones excepted)."""
    return sweep(
        [f"{labels.ROOT}=1", f"{labels.HOST}={labels.this_host()}"],
        predicate=_dead_owner,
        client=client,
    )


def clean_all(client: DockerClient | None = None) -> SweepResult:
    """Remove every labelled resource, kept ones included (``nox -s clean``)."""
    return sweep(client=client)


def count_labelled(
    filters: Sequence[str] = (f"{labels.ROOT}=1",), client: DockerClient | None = None
) -> dict[str, int]:
    """How many labelled containers (incl. stopped), networks and volumes exist."""
    own_client = client is None
    cli = client or docker_client()
    try:
        flt = _label_filter(filters)
        return {
            "containers": len(cli.containers.list(all=True, filters=flt, ignore_removed=True)),
            "networks": len(cli.networks.list(filters=flt)),
            "volumes": len(cli.volumes.list(filters=flt)),
        }
    finally:
        if own_client:
            cli.close()


# --------------------------------------------------------------------------- the watchdog


@dataclass
class Watchdog:
    """Handle on a detached watchdog process, held by its owner."""

    process: subprocess.Popen[bytes]
    owner: Owner

    @classmethod
    def spawn(
        cls,
        owner: Owner,
        *,
        also_watch: Iterable[int] = (),
        log_path: Path | None = None,
    ) -> Watchdog:
        """Start the watchdog for ``owner`` (the current process).

        ``also_watch``: further pids (e.g. the xdist controller) whose death also ends the
        owner's life: the watchdog then kills the owner and removes its resources.
        """
        watched = [owner.pid, *also_watch]
        args = [
            sys.executable,
            "-m",
            "tasker_testing.cleanup",
            "watchdog",
            "--run",
            owner.run_id,
            "--worker",
            owner.worker,
            "--owner-pid",
            str(owner.pid),
            "--host",
            owner.host,
            "--created",
            f"{owner.created:.3f}",
        ]
        for pid in watched:
            start = process_start_time(pid)
            args += ["--watch", f"{pid}:{start if start is not None else 0:.3f}"]
        out: IO[bytes] | int = subprocess.DEVNULL
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            out = log_path.open("ab")
        try:
            process = subprocess.Popen(
                args,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=out,
                start_new_session=True,  # Ctrl-C to our process group does not reach it
                close_fds=True,
            )
        finally:
            if not isinstance(out, int):
                out.close()
        return cls(process=process, owner=owner)

    def _say(self, word: bytes) -> None:
        stdin = self.process.stdin
        if stdin is None:
            return
        with contextlib.suppress(OSError, ValueError):
            stdin.write(word + b"\n")
            stdin.flush()
            stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=3)

    def release(self) -> None:
        """The owner finished normally (its resources are gone or kept on purpose)."""
        self._say(b"done")


def _watched_dead(watch: list[tuple[int, float]]) -> int | None:
    for pid, started in watch:
        if not pid_alive(pid, started_at=started or None):
            return pid
    return None


def _kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def run_watchdog(owner: Owner, watch: list[tuple[int, float]], stdin_fd: int = 0) -> int:
    """The watchdog's loop: returns when the owner released it or after cleaning up."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    buf = b""
    reading = True
    while True:
        if reading:
            ready, _, _ = select.select([stdin_fd], [], [], WATCHDOG_POLL_S)
            if ready:
                chunk = os.read(stdin_fd, 256)
                buf += chunk
                if b"done" in buf:
                    return 0
                if not chunk:  # EOF without "done": rely on pid polling from now on
                    reading = False
        else:
            time.sleep(WATCHDOG_POLL_S)
        dead = _watched_dead(watch)
        if dead is not None:
            break
    print(f"watchdog: pid {dead} died; removing resources of {owner}", flush=True)
    # the owner may outlive the controller it belongs to: end it so it creates nothing more
    owner_start = next((s for p, s in watch if p == owner.pid), 0.0)
    if owner.pid != dead and pid_alive(owner.pid, started_at=owner_start or None):
        _kill_quietly(owner.pid)
    deadline = time.monotonic() + 25
    result = SweepResult()
    while True:
        try:
            result.extend(sweep_owner(owner))
        except Exception as exc:  # engine hiccup: keep trying until the deadline
            result.errors.append(repr(exc))
        owner_gone = not pid_alive(owner.pid, started_at=owner_start or None)
        if (owner_gone and not result.errors) or time.monotonic() > deadline:
            break
        result.errors.clear()
        time.sleep(0.5)
    print(f"watchdog: {result.summary()}", flush=True)
    return 0


def _parse_watch(value: str) -> tuple[int, float]:
    pid, _, start = value.partition(":")
    return int(pid), float(start or 0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasker_testing.cleanup")
    sub = parser.add_subparsers(dest="command", required=True)
    wd = sub.add_parser("watchdog", help="(internal) guard one owner's resources")
    wd.add_argument("--run", required=True)
    wd.add_argument("--worker", required=True)
    wd.add_argument("--owner-pid", type=int, required=True)
    wd.add_argument("--host", required=True)
    wd.add_argument("--created", type=float, required=True)
    wd.add_argument("--watch", action="append", type=_parse_watch, default=[])
    sub.add_parser("clean", help="remove every labelled container, network and volume")
    sub.add_parser("sweep", help="remove resources of dead owners on this host")
    args = parser.parse_args(argv)
    if args.command == "watchdog":
        owner = Owner(args.run, args.worker, args.owner_pid, args.host, args.created)
        return run_watchdog(owner, args.watch or [(owner.pid, 0.0)])
    result = clean_all() if args.command == "clean" else sweep_dead_owners()
    print(result.summary())
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
