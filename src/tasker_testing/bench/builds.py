"""Section `builds`: cold, no-change, code-only change and Cargo.lock touch, per tier.

All builds run in temporary copies of the repo (``repo.copy_repo``), never the working tree.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasker_testing.build import BuildMode, builder, ensure_images
from tasker_testing.build import bases as build_bases
from tasker_testing.build import engine as build_engine

from . import repo
from .context import Bench
from .stats import Figure, Target, parse_sccache_stats, sccache_hit_rate

SECTION = "builds"
#: rough first guesses (2 cores) used only to decide whether a step fits the time budget;
#: once a tier's cold build is measured, change builds are estimated from it
COLD_ESTIMATE_S = {"fast": 240.0, "ci": 300.0, "prod": 480.0}
CHANGE_FRACTION = 0.6


@dataclass
class BuildRun:
    seconds: float
    tags: dict[str, str]
    builds: int  # docker build invocations
    base_checks: int  # calls that make sure base images exist (skipped on a hash hit)
    lines: list[str] = field(default_factory=list)


@contextmanager
def _counting() -> Iterator[dict[str, int]]:
    """Count docker build invocations (and base-image checks) made by ensure_images."""
    counts = {"builds": 0, "base_checks": 0}
    real_build, real_bases = builder._run_build, build_bases.base_build_args

    def counted_build(*args: Any, **kwargs: Any) -> None:
        counts["builds"] += 1
        real_build(*args, **kwargs)

    def counted_bases(*args: Any, **kwargs: Any) -> Any:
        counts["base_checks"] += 1
        return real_bases(*args, **kwargs)

    builder._run_build = counted_build
    build_bases.base_build_args = counted_bases
    try:
        yield counts
    finally:
        builder._run_build = real_build
        build_bases.base_build_args = real_bases


def timed_ensure(bench: Bench, mode: BuildMode, root: Path, *, fresh_probe: bool) -> BuildRun:
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        if "sccache-stats:" in line or not line.split(": ", 1)[-1].startswith("#"):
            bench.progress.detail(line)

    if fresh_probe:  # as in a new process: an engine probe (if the path makes one) is paid again
        build_engine.probe.cache_clear()
    with _counting() as counts:
        t0 = time.monotonic()
        tags = ensure_images(mode, log=log, root=root)
        seconds = time.monotonic() - t0
    bench.created_tags.update(t for t in tags.values() if t not in bench.protected_tags)
    return BuildRun(seconds, tags, counts["builds"], counts["base_checks"], lines)


def protect_existing(bench: Bench, docker: str = "docker") -> None:
    """Tags present now, and every tier's working-tree tags, are never removed by the bench."""
    bench.protected_tags |= build_engine.local_image_tags()
    for mode in BuildMode:
        planned = builder.plan(mode, builder._expected_base_args(mode))
        bench.protected_tags |= {p.tag for p in planned}


def _tier_targets(tier: str, step: str) -> list[Target]:
    if step == "nochange":
        return [Target("value", "<=", 1.0, "s")]
    if step == "code" and tier == "fast":
        return [Target("value", "<=", 30.0, "s")]
    if step == "code" and tier == "prod":
        return [Target("ratio", "<=", 0.4)]
    return []


LABELS = {
    "cold": "cold build",
    "nochange": "no-change (hash hit)",
    "code": "code-only change",
    "lock": "Cargo.lock touch (no dep change)",
}


def run(bench: Bench, tiers: list[str]) -> None:
    for tier in tiers:
        if bench.quick:
            _quick_tier(bench, tier)
        else:
            _full_tier(bench, tier)
        removed = bench.remove_created_images()
        if removed:
            bench.progress.detail(f"removed {len(removed)} bench image tag(s) of tier {tier}")


def _figure(  # noqa: PLR0917
    bench: Bench, tier: str, step: str, run_: BuildRun, cold: float | None, note: str = ""
) -> None:
    if step == "nochange" and run_.builds:
        note = (note + "; " if note else "") + f"{run_.builds} docker build(s) ran: not a hash hit"
    elif step == "nochange":
        note = (note + "; " if note else "") + "no docker build ran (asserted)"
    figure = Figure(
        SECTION,
        f"{tier}.{step}",
        f"{tier}: {LABELS[step]}",
        run_.seconds,
        "s",
        baseline=None if step == "cold" else cold,
        baseline_label="" if step == "cold" else f"{tier} cold build",
        targets=_tier_targets(tier, step),
        note=note,
        samples=1,
    )
    if step == "nochange" and run_.builds:
        figure.invalid = f"{run_.builds} docker build(s) ran"
    bench.add(figure)
    bench.raw.setdefault("builds", {})[f"{tier}.{step}"] = {
        "seconds": run_.seconds,
        "docker_builds": run_.builds,
        "base_image_checks": run_.base_checks,
        "tags": run_.tags,
    }


def _sccache_figure(bench: Bench, run_: BuildRun, cold: BuildRun | None) -> None:
    stats = parse_sccache_stats(run_.lines)
    rate = sccache_hit_rate(stats)
    cold_rate = sccache_hit_rate(parse_sccache_stats(cold.lines)) if cold else None
    bench.raw.setdefault("builds", {})["ci.sccache"] = {
        "after_lock_touch": stats,
        "cold": cold_rate,
    }
    if rate is None:
        bench.skip(
            SECTION,
            "ci.sccache",
            "ci: sccache hit rate after Cargo.lock touch",
            "%",
            "no sccache-stats lines in the build log (was the compile stage cached?)",
        )
        return
    note = (
        f"hits {stats.get('Cache hits', 0):.0f}, misses {stats.get('Cache misses', 0):.0f}"
        if stats
        else ""
    )
    if cold_rate is not None:
        note += f"; cold build {cold_rate:.0f} %"
    bench.add(
        Figure(
            SECTION,
            "ci.sccache",
            "ci: sccache hit rate after Cargo.lock touch",
            rate,
            "%",
            targets=[Target("value", ">=", 90.0, "%")],
            note=note,
            samples=1,
        )
    )


def _full_tier(bench: Bench, tier: str) -> None:
    mode = BuildMode.parse(tier)
    estimate = COLD_ESTIMATE_S[tier]
    if not bench.fits(estimate):
        for step in LABELS:  # noqa: PLC0206
            bench.skip(
                SECTION,
                f"{tier}.{step}",
                f"{tier}: {LABELS[step]}",
                "s",
                f"time budget: ~{estimate:.0f}s needed, {bench.remaining():.0f}s left",
            )
        return
    token = uuid.uuid4().hex[:12]
    root = repo.copy_repo(repo_root(), bench.tmp / f"build-{tier}-{token}")
    dockerfile = root / mode.dockerfile
    dockerfile.write_text(repo.make_cold(dockerfile.read_text(), token))
    bench.cold_tokens.append(token)
    bench.progress.say(f"{tier}: cold build in {root} (fresh cache mounts, no layer reuse)")
    cold = timed_ensure(bench, mode, root, fresh_probe=True)
    _figure(
        bench,
        tier,
        "cold",
        cold,
        None,
        "Rust compile from nothing; bases, db image and crate downloads warm",
    )
    bench.progress.say(f"{tier}: no-change (same copy, tags present)")
    _figure(
        bench,
        tier,
        "nochange",
        timed_ensure(bench, mode, root, fresh_probe=True),
        cold.seconds,
        "includes the engine probe",
    )
    budget_change = max(cold.seconds * CHANGE_FRACTION, 30.0)
    steps = [("code", repo.code_change), ("lock", repo.lock_touch)]
    if tier == "ci":  # the sccache target is about the lock touch: do it first
        steps.reverse()
    for step, edit in steps:
        if not bench.fits(budget_change):
            bench.skip(
                SECTION,
                f"{tier}.{step}",
                f"{tier}: {LABELS[step]}",
                "s",
                f"time budget: ~{budget_change:.0f}s needed, {bench.remaining():.0f}s left",
            )
            continue
        edited = edit(root, uuid.uuid4().hex)
        bench.progress.say(f"{tier}: {LABELS[step]} ({edited.relative_to(root)})")
        result = timed_ensure(bench, mode, root, fresh_probe=False)
        _figure(bench, tier, step, result, cold.seconds)
        if tier == "ci" and step == "lock":
            _sccache_figure(bench, result, cold)


def _quick_tier(bench: Bench, tier: str) -> None:
    """--quick: no cold builds. No-change on the working tree's tags (if this tier is built
    here); for the fast tier also a code-only change in a copy that shares the warm caches."""
    mode = BuildMode.parse(tier)
    planned = builder.plan(mode, builder._expected_base_args(mode))
    local = build_engine.local_image_tags()
    why_cold = "--quick measures no cold builds"
    bench.skip(SECTION, f"{tier}.cold", f"{tier}: {LABELS['cold']}", "s", why_cold)
    if all(p.tag in local for p in planned):
        _figure(
            bench,
            tier,
            "nochange",
            timed_ensure(bench, mode, repo_root(), fresh_probe=True),
            None,
            "working tree's tags; includes the engine probe",
        )
    else:
        bench.skip(
            SECTION,
            f"{tier}.nochange",
            f"{tier}: {LABELS['nochange']}",
            "s",
            f"tier not built here (run `nox -s build-{tier}`)",
        )
    if tier == "fast" and bench.fits(90):
        token = uuid.uuid4().hex
        root = repo.copy_repo(repo_root(), bench.tmp / f"build-{tier}-{token[:12]}")
        repo.code_change(root, token)
        bench.progress.say("fast: code-only change in a copy (shared warm cache mounts)")
        _figure(
            bench,
            tier,
            "code",
            timed_ensure(bench, mode, root, fresh_probe=False),
            None,
            "warm shared cache mounts (--quick)",
        )
    else:
        bench.skip(SECTION, f"{tier}.code", f"{tier}: {LABELS['code']}", "s", why_cold)
    bench.skip(SECTION, f"{tier}.lock", f"{tier}: {LABELS['lock']}", "s", why_cold)


def repo_root() -> Path:
    return builder.REPO_ROOT
