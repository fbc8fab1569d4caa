"""Label keys and the owner identity: the one place that says who a Docker resource belongs to.

Every container and network the harness creates carries these labels, so that cleanup can
find them again without any in-memory state: the watchdog (owner died), the start-up sweep
(owners that died on this host earlier), and ``clean_all`` (``nox -s clean``).
"""

from __future__ import annotations

import os
import re
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

#: present (value "1") on everything we create; the only label ``clean_all`` needs
ROOT = "tasker-testing"
RUN = "tasker-testing.run"
WORKER = "tasker-testing.worker"
PID = "tasker-testing.pid"
HOST = "tasker-testing.host"
CREATED = "tasker-testing.created"
#: which stack of an owner (an owner may start more than one, e.g. for destructive tests)
STACK = "tasker-testing.stack"
#: the service inside a stack (``postgres``, ``migrate``, ...); containers only
SERVICE = "tasker-testing.service"
#: "1" on resources kept across runs on purpose (``--reuse-stack``): sweeps of dead owners skip
#: them, only ``clean_all`` removes them
KEEP = "tasker-testing.keep"
#: identifies a reusable stack (worker + image tags + checkout) so a later run can find it again
REUSE_KEY = "tasker-testing.reuse-key"
#: set on images by ``tasker_testing.build``; defined here so all keys live in one place
INPUT_HASH = "tasker-testing.input-hash"

#: env var that forces the run id (harness self-tests use it to find an inner run's resources)
RUN_ID_ENV = "TASKER_TESTING_RUN_ID"

_NAME_PART = re.compile(r"[^a-zA-Z0-9_.-]+")


def new_run_id() -> str:
    """A run id: ``$TASKER_TESTING_RUN_ID`` if set, else 32 random hex digits."""
    forced = os.environ.get(RUN_ID_ENV, "").strip()
    return sanitize(forced) if forced else uuid.uuid4().hex


def sanitize(part: str) -> str:
    """Make ``part`` usable inside a Docker container/network name."""
    cleaned = _NAME_PART.sub("-", part).strip("-.")
    return cleaned or "x"


def this_host() -> str:
    return socket.gethostname()


@dataclass(frozen=True)
class Owner:
    """The process that owns Docker resources: run id, xdist worker, pid, host, creation time."""

    run_id: str
    worker: str
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=this_host)
    created: float = field(default_factory=time.time)

    @property
    def run8(self) -> str:
        return self.run_id[:8]

    def labels(self, **extra: str) -> dict[str, str]:
        """All owner labels plus ``extra`` (e.g. ``{SERVICE: "postgres"}``)."""
        base = {
            ROOT: "1",
            RUN: self.run_id,
            WORKER: self.worker,
            PID: str(self.pid),
            HOST: self.host,
            CREATED: f"{self.created:.3f}",
        }
        base.update(extra)
        return base

    def name(self, service: str, stack: str = "") -> str:
        """Container/network name ``tasker-<run8>-<worker>[<stack>]-<service>``."""
        worker = sanitize(self.worker) + (sanitize(stack) if stack else "")
        return f"tasker-{sanitize(self.run8)}-{worker}-{sanitize(service)}"

    def filters(self) -> list[str]:
        """Docker ``label=`` filters matching exactly this owner's resources."""
        return [f"{ROOT}=1", f"{RUN}={self.run_id}", f"{WORKER}={self.worker}", f"{PID}={self.pid}"]

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> Owner | None:
        """The owner recorded in a resource's labels, or None if they are incomplete/garbled."""
        try:
            return cls(
                run_id=labels[RUN],
                worker=labels[WORKER],
                pid=int(labels[PID]),
                host=labels[HOST],
                created=float(labels[CREATED]),
            )
        except (KeyError, ValueError):
            return None


def is_ours(labels: Mapping[str, str] | None) -> bool:
    return bool(labels) and (labels or {}).get(ROOT) == "1"


def is_kept(labels: Mapping[str, str] | None) -> bool:
    return (labels or {}).get(KEEP) == "1"
