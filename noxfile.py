"""Sessions for Tasker Core's build-and-test automation. All logic lives in src/tasker_testing."""

from __future__ import annotations

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "unit"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
TIERS = ("fast", "ci", "prod")


# uv installs without .pyc files and these machines set PYTHONDONTWRITEBYTECODE=1, so every
# interpreter (each xdist worker, each pytester run) would compile its imports again: ~0.3 s each.
COMPILE = {"UV_COMPILE_BYTECODE": "1"}


def install(session: nox.Session, *groups: str) -> None:
    """The package (editable) plus the named dependency groups."""
    session.install("-e", ".", env=COMPILE)
    for group in groups:
        session.install(*nox.project.dependency_groups(PYPROJECT, group), env=COMPILE)


def build_tier(session: nox.Session, tier: str) -> None:
    """Ensure a tier's images (a no-op when the content-hash tags exist)."""
    rebuild = ["--rebuild"] if "--rebuild" in session.posargs else []
    session.run("python", "-m", "tasker_testing", "build", "--build-mode", tier, *rebuild)


def pytest_args(session: nox.Session) -> list[str]:
    return [a for a in session.posargs if a != "--rebuild"]


def tier_tests(session: nox.Session, tier: str, *args: str, groups: tuple[str, ...] = ()) -> None:
    """Ensure a tier's images, then pytest against them (posargs pass through)."""
    install(session, "test", *groups)
    build_tier(session, tier)
    session.run("pytest", f"--build-mode={tier}", *args, *pytest_args(session))


@nox.session(tags=["ci"])
def lint(session: nox.Session) -> None:
    """ruff, mypy, cargo fmt/clippy, hadolint, actionlint and zizmor."""
    install(session, "lint")
    session.run("python", "-m", "tasker_testing.lint", *session.posargs, external=True)


@nox.session(tags=["ci"])
def unit(session: nox.Session) -> None:
    """Unit tests of the harness, bench and ci/ scripts: no Docker."""
    install(session, "test", "bench")
    session.run("pytest", "tests/unit", "-p", "no:xdist", *session.posargs)


@nox.session(name="rust-test", tags=["ci"], default=False)
def rust_test(session: nox.Session) -> None:
    """cargo test, then the DB-backed tests against a db-image container."""
    install(session)
    session.run("cargo", "test", "--workspace", "--locked", external=True)
    session.run(
        "python",
        "-m",
        "tasker_testing",
        "with-db",
        "--",
        "cargo",
        "test",
        "--workspace",
        "--locked",
        "--",
        "--ignored",
        external=True,
    )


@nox.session(name="base-images", default=False)
def base_images(session: nox.Session) -> None:
    """Produce the local base images (mmdebstrap + docker import), once per content key."""
    install(session)
    session.run("python", "-m", "tasker_testing.build.bases", *session.posargs)


@nox.session(name="build-fast", default=False)
def build_fast(session: nox.Session) -> None:
    """Build the fast tier (debug, cache mounts); `-- --rebuild` forces a build."""
    install(session)
    build_tier(session, "fast")


@nox.session(name="build-ci", default=False)
def build_ci(session: nox.Session) -> None:
    """Build the ci tier (sccache; GHA cache on GitHub); `-- --rebuild` forces a build."""
    install(session)
    build_tier(session, "ci")


@nox.session(name="build-prod", default=False)
def build_prod(session: nox.Session) -> None:
    """Build the prod tier (cargo-chef, release); `-- --rebuild` forces a build."""
    install(session)
    build_tier(session, "prod")


@nox.session(name="integration-fast", tags=["ci"], default=False)
def integration_fast(session: nox.Session) -> None:
    """Build the fast tier, then the integration suite on one stack per xdist worker."""
    tier_tests(session, "fast", "-n", "auto", "tests/integration")


@nox.session(tags=["ci"], default=False)
def harness(session: nox.Session) -> None:
    """The harness's self-tests: isolation between workers, cleanup after every kind of death."""
    tier_tests(session, "fast", "-n", "2", "tests/harness")


@nox.session(name="integration-ci", default=False)
def integration_ci(session: nox.Session) -> None:
    """Build the ci tier, then the integration suite (shard with `-- --splits N --group i`)."""
    tier_tests(session, "ci", "-n", "auto", "tests/integration")


@nox.session(name="integration-prod", default=False)
def integration_prod(session: nox.Session) -> None:
    """Build the prod tier, then the integration suite against it."""
    tier_tests(session, "prod", "-n", "auto", "tests/integration")


@nox.session(tags=["ci"], default=False)
def parity(session: nox.Session) -> None:
    """Tier parity: the smoke subset on the ci and prod tiers' images."""
    for tier in ("ci", "prod"):
        junit = f"--junitxml=artifacts/junit/parity-{tier}.xml"
        tier_tests(session, tier, "-n", "2", "-m", "smoke", "tests/integration", junit)


@nox.session(tags=["ci"], default=False)
def chaos(session: nox.Session) -> None:
    """Faults, run death, bad input, API fuzzing, exposure and stale images (fast tier)."""
    junit = "--junitxml=artifacts/junit/chaos.xml"
    tier_tests(session, "fast", "-n", "2", "tests/chaos", junit, groups=("chaos",))


@nox.session(default=False)
def durations(session: nox.Session) -> None:
    """Re-time tests/integration on the fast tier into .test_durations (commit the result)."""
    install(session, "test")
    build_tier(session, "fast")
    session.run(
        "python",
        "ci/durations.py",
        "refresh",
        "--",
        "-n",
        "auto",
        "--build-mode=fast",
        "tests/integration",
        *pytest_args(session),
    )


@nox.session(default=False)
def clean(session: nox.Session) -> None:
    """Remove every container, network and volume labelled tasker-testing."""
    install(session)
    session.run("python", "-m", "tasker_testing", "clean")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Speed against the usual alternatives: artifacts/bench/{bench.json,bench.md,latency.png}."""
    install(session, "test", "bench")
    session.run("python", "-m", "tasker_testing.bench", *session.posargs)
