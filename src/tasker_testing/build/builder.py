"""Build a tier's images, skipping every image whose content-hash tag already exists locally."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock

from . import bases
from .engine import Engine, local_image_tags, probe
from .images import ImageSpec, content_hash
from .modes import BuildMode

REPO_ROOT = Path(__file__).resolve().parents[3]
SERVICES = ("migrate", "orchestration", "worker")
HASH_LABEL = "tasker-testing.input-hash"
_LOG_TAIL = 40
# GitHub Actions' cache service tokens, handed to sccache as BuildKit secrets (never ARG/ENV).
_GHA_SECRETS = ("ACTIONS_RESULTS_URL", "ACTIONS_RUNTIME_TOKEN")

Log = Callable[[str], None]


class BuildError(RuntimeError):
    """A docker build failed; the message ends with its last log lines and a hint."""


@dataclass(frozen=True)
class PlannedImage:
    service: str
    spec: ImageSpec
    tag: str
    digest: str


def image_specs(mode: BuildMode, base_args: Mapping[str, str]) -> dict[str, ImageSpec]:
    """The four images of a tier: the database, and the services from the tier's Dockerfile."""
    specs = {
        "postgres": ImageSpec(
            "tasker-postgres",
            "docker/db/Dockerfile",
            context="docker/db",
            build_args={"POSTGRES_IMAGE": base_args["POSTGRES_IMAGE"]},
        )
    }
    service_args = {key: base_args[key] for key in ("RUST_IMAGE", "RUNTIME_IMAGE")}
    for service in SERVICES:
        specs[service] = ImageSpec(
            f"tasker-{service}", mode.dockerfile, target=service, build_args=service_args
        )
    return specs


def plan(
    mode: BuildMode, base_args: Mapping[str, str], root: Path = REPO_ROOT
) -> list[PlannedImage]:
    """Tags for a tier. Targets of one Dockerfile share one compile stage, so one hash."""
    hashes: dict[tuple[str, str, tuple[tuple[str, str], ...]], str] = {}
    planned = []
    for service, spec in image_specs(mode, base_args).items():
        key = (spec.dockerfile, spec.context, tuple(sorted(spec.build_args.items())))
        if key not in hashes:
            hashes[key] = content_hash(
                root / spec.context, root / spec.dockerfile, spec.build_args, extra=[mode.value]
            )
        planned.append(PlannedImage(service, spec, spec.tag(mode.value, hashes[key]), hashes[key]))
    return planned


def _expected_base_args(mode: BuildMode) -> dict[str, str]:
    """Base ARG values without touching Docker, so a hash hit costs no base-image check."""
    if os.environ.get("TASKER_BASE_IMAGES", "local").strip().lower() == "official":
        return {base.arg: base.official for base in bases.BASE_IMAGES}
    args = {base.arg: bases.local_tag(base) for base in bases.BASE_IMAGES}
    if mode is not BuildMode.FAST:
        args["RUST_IMAGE"] = bases.tools_tag(args["RUST_IMAGE"])
    return args


def _git_revision(root: Path) -> str:
    result = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or "unknown"


@contextmanager
def _gha_secret_args(engine: Engine) -> Iterator[list[str]]:
    """`--secret` flags for the GHA cache tokens, from 0600 temp files that vanish afterwards."""
    present = [name for name in _GHA_SECRETS if os.environ.get(name)]
    if len(present) != len(_GHA_SECRETS):
        yield []
        return
    with tempfile.TemporaryDirectory(prefix="tasker-secrets-") as tmp:
        flags = []
        for name in _GHA_SECRETS:
            path = Path(tmp) / name
            path.touch(mode=0o600)
            path.write_text(os.environ[name])
            flags += ["--secret", f"id={name},src={path}"]
        yield flags


def _build_command(engine: Engine, image: PlannedImage, root: Path, extra: list[str]) -> list[str]:
    spec = image.spec
    command = [engine.cli]
    command += ["buildx", "build", "--load"] if engine.builder == "buildx" else ["build"]
    command += ["--progress=plain", "-f", str(root / spec.dockerfile), "-t", image.tag]
    if spec.target:
        command += ["--target", spec.target]
    for key, value in sorted(spec.build_args.items()):
        command += ["--build-arg", f"{key}={value}"]
    labels = {
        HASH_LABEL: image.digest,
        "tasker-testing.tier": image.tag.rsplit(":", 1)[1].split("-", 1)[0],
        "org.opencontainers.image.revision": _git_revision(root),
        "org.opencontainers.image.created": datetime.now(UTC).isoformat(timespec="seconds"),
        "org.opencontainers.image.title": spec.name,
    }
    for key, value in labels.items():
        command += ["--label", f"{key}={value}"]
    return [*command, *_cache_flags(engine, image), *extra, str(root / spec.context)]


def _cache_flags(engine: Engine, image: PlannedImage) -> list[str]:
    """BuildKit layer cache in the GitHub Actions cache (TASKER_BUILDX_CACHE=gha, buildx only)."""
    if engine.builder != "buildx" or os.environ.get("TASKER_BUILDX_CACHE", "").lower() != "gha":
        return []
    # One scope per image and tier: mode=max exports would overwrite a shared scope.
    scope = f"{image.spec.name}-{image.tag.rsplit(':', 1)[1].split('-', 1)[0]}"
    return [
        "--cache-from",
        f"type=gha,scope={scope}",
        "--cache-to",
        f"type=gha,mode=max,scope={scope}",
    ]


def _run_build(engine: Engine, image: PlannedImage, root: Path, extra: list[str], log: Log) -> None:
    # python-on-whales costs ~0.6 s to import: only a build that really runs pays for it.
    from python_on_whales.exceptions import DockerException
    from python_on_whales.utils import stream_stdout_and_stderr

    tail: deque[str] = deque(maxlen=_LOG_TAIL)
    command = _build_command(engine, image, root, extra)
    try:
        for _source, raw in stream_stdout_and_stderr(command, env=engine.build_env):
            line = raw.decode(errors="replace").rstrip()
            tail.append(line)
            if (
                (line.startswith("#") and (" [" in line or "DONE" in line or "ERROR" in line))
                or "sccache-stats:" in line
                or "error" in line.lower()
            ):
                log(f"{image.service}: {line}")
    except DockerException as exc:
        raise BuildError(
            f"building {image.tag} ({image.spec.dockerfile}, target {image.spec.target or '-'}) "
            f"failed with exit {exc.return_code}. Last lines:\n"
            + "\n".join(tail)
            + "\nhint: fix the error above; `docker build` of that target reproduces it, and "
            "`--rebuild` forces a fresh build once it is fixed."
        ) from None


def _build_all(
    engine: Engine, images: list[PlannedImage], root: Path, extra: list[str], log: Log
) -> None:
    for image in images:
        _run_build(engine, image, root, extra, log)


def _lock(mode: BuildMode, root: Path) -> FileLock:
    bases.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]  # per checkout and tier
    return FileLock(str(bases.CACHE_DIR / f"build-{mode.value}-{key}.lock"))


def ensure_images(
    mode: BuildMode,
    *,
    rebuild: bool = False,
    log: Log | None = None,
    root: Path = REPO_ROOT,
    services: Collection[str] | None = None,
) -> dict[str, str]:
    """service → image tag for the tier, building only what is missing (or all, with rebuild).

    ``services`` limits the work to some images (e.g. only ``postgres`` for the DB-backed Rust
    tests). Safe to call from several processes at once: a file lock makes the others wait for
    the first build and then find its images.
    """
    say: Log = log or _default_log()

    def plan_of(base_args: Mapping[str, str]) -> list[PlannedImage]:
        return [i for i in plan(mode, base_args, root) if services is None or i.service in services]

    planned = plan_of(_expected_base_args(mode))
    if not rebuild and {image.tag for image in planned} <= local_image_tags():
        return {image.service: image.tag for image in planned}  # the hit path: no probe, no build
    engine = probe()
    with _lock(mode, root):
        local = local_image_tags(engine.cli)
        missing = [image for image in planned if rebuild or image.tag not in local]
        if missing:
            base_args = bases.base_build_args(say, with_tools=mode is not BuildMode.FAST)
            planned = plan_of(base_args)  # the same tags unless official bases were asked
            missing = [image for image in planned if rebuild or image.tag not in local]
            _build_missing(engine, mode, missing, root, say)
            _discard_if_changed(engine, missing, plan_of(base_args))
    return {image.service: image.tag for image in planned}


def _discard_if_changed(engine: Engine, built: list[PlannedImage], now: list[PlannedImage]) -> None:
    """A tag must name what was built: if the tree changed during the build, drop the images."""
    if {image.tag for image in built} <= {image.tag for image in now}:
        return
    subprocess.run(
        [engine.cli, "rmi", *(image.tag for image in built)], capture_output=True, check=False
    )
    raise BuildError(
        "the build context changed while the images were being built, so their content-hash "
        "tags could be wrong; the images were removed. Run the build again once the files "
        "stop changing."
    )


def _build_missing(
    engine: Engine, mode: BuildMode, missing: list[PlannedImage], root: Path, say: Log
) -> None:
    started = time.monotonic()
    if mode is BuildMode.CI:
        gha = all(os.environ.get(name) for name in _GHA_SECRETS)
        say(
            "ci tier: sccache uses the GitHub Actions cache"
            if gha
            else "ci tier: no GitHub Actions cache variables, sccache uses a local disk cache mount"
        )
    if os.environ.get("TASKER_BUILDX_CACHE") and engine.builder != "buildx":
        say("TASKER_BUILDX_CACHE is ignored: the classic BuildKit CLI cannot export a layer cache")
    db = [image for image in missing if image.service == "postgres"]
    services = [image for image in missing if image.service != "postgres"]
    with ExitStack() as stack, ThreadPoolExecutor(max_workers=2) as pool:
        extra = stack.enter_context(_gha_secret_args(engine)) if mode is BuildMode.CI else []
        # The database image builds beside the Rust compile; the service targets go one after
        # another because each later one is a cache hit on the shared compile stage.
        db_job = pool.submit(_build_all, engine, db, root, [], say)
        for image in services:
            say(f"building {image.tag}")
            _run_build(engine, image, root, extra, say)
        db_job.result()
    say(f"built {len(missing)} image(s) for tier {mode.value} in {time.monotonic() - started:.1f}s")


_print_lock = threading.Lock()


def _default_log() -> Log:
    """Plain lines in CI; rich-styled lines on a terminal."""
    if os.environ.get("CI") or not os.isatty(1):

        def plain(message: str) -> None:
            with _print_lock:
                print(message, flush=True)

        return plain
    from rich.console import Console

    console = Console(highlight=False)

    def styled(message: str) -> None:
        with _print_lock:
            console.print(
                f"[dim]{message}[/dim]"
                if message.startswith(("migrate:", "orchestration:", "worker:", "postgres:"))
                else f"[bold cyan]{message}[/bold cyan]"
            )

    return styled
