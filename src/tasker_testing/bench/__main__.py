"""python -m tasker_testing.bench [--quick] [--only SECTION ...] [--budget MINUTES]"""

from __future__ import annotations

# testcontainers reads these at import time (Ryuk cannot be pulled here; see stack.py)
import os

os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
os.environ["TESTCONTAINERS_CONNECTION_MODE"] = "docker_host"

import argparse
import contextlib
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from tasker_testing import cleanup
from tasker_testing.build import BuildMode, builder, ensure_images
from tasker_testing.build import engine as build_engine

from . import builds, report, stacks, workload
from .context import Bench, new_owner
from .progress import Progress

SECTIONS = ("stack", "database", "latency", "memory", "suite", "builds")
TIERS = ("fast", "prod", "ci")  # budget order: fast first, ci (slowest cold with sccache) last


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tasker_testing.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short version (a few minutes)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        metavar="SECTION",
        help=f"run only these sections: {', '.join(SECTIONS)}",
    )
    parser.add_argument(
        "--tiers",
        nargs="+",
        choices=TIERS,
        default=list(TIERS),
        help="build tiers measured by the builds section",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="minutes the run may take (default 25, --quick 8); build steps that "
        "would not fit are skipped and reported as such",
    )
    parser.add_argument("--out", type=Path, default=builder.REPO_ROOT / "artifacts" / "bench")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sections = list(args.only or SECTIONS)
    if "memory" in sections and "latency" not in sections:
        sections.append("latency")  # memory is sampled during the latency workload
    budget_min = args.budget or (8.0 if args.quick else 25.0)
    progress = Progress()
    engine = build_engine.probe()
    owner = new_owner()
    watchdog = cleanup.Watchdog.spawn(owner)
    started = time.monotonic()
    meta = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "sections": sections,
        "machine": report.machine(),
        "engine": {
            "server_version": engine.server_version,
            "cli": engine.cli,
            "builder": engine.builder,
            "compose": " ".join(engine.compose or ()) or None,
        },
        "commit": report.commit(builder.REPO_ROOT),
        "run_id": owner.run_id,
        "budget_minutes": budget_min,
    }
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tasker-bench-") as tmp:
        bench = Bench(progress, args.quick, started + budget_min * 60, owner, Path(tmp))
        try:
            builds.protect_existing(bench)
            if set(sections) - {"builds"}:
                progress.section("images (fast tier, for the stack sections)")
                bench.images = dict(ensure_images(BuildMode.FAST, log=progress.detail))
            steps: list[tuple[str, Callable[[], None]]] = [
                ("stack", lambda: stacks.run_stack(bench)),
                ("database", lambda: stacks.run_database(bench)),
                ("latency", lambda: workload.run_latency(bench, "memory" in sections)),
                ("suite", lambda: workload.run_suite(bench)),
                ("builds", lambda: builds.run(bench, args.tiers)),
            ]
            for name, step in steps:
                if name not in sections:
                    continue
                progress.section(name)
                try:
                    step()
                except Exception as exc:  # one section's failure must not lose the others
                    failures.append(f"{name}: {type(exc).__name__}: {exc}")
                    progress.say(f"[{name} failed] {traceback.format_exc(limit=3)}")
        except KeyboardInterrupt:
            failures.append("interrupted")
        finally:
            progress.section("cleanup")
            with contextlib.suppress(Exception):
                result = cleanup.sweep_owner(owner)
                if result:
                    progress.say(f"swept leftovers: {result.summary()}")
            removed = bench.remove_created_images()
            pruned = bench.prune_cold_cache()
            progress.say(
                f"removed {len(removed)} image tag(s), pruned {pruned} build-cache record(s)"
            )
            watchdog.release()
        meta["elapsed_s"] = round(time.monotonic() - started, 1)
        meta["notes"] = bench.notes + [f"section failed: {f}" for f in failures]
        paths = report.write(args.out, bench.figures, meta, bench.raw)
    progress.section("done")
    progress.say(f"{meta['elapsed_s']:.0f}s; wrote " + ", ".join(str(p) for p in paths.values()))
    sys.stdout.write(paths["md"].read_text() if not progress.plain else "")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
