"""Gather what a failed run left, into one directory to upload.

    python ci/collect_logs.py --output artifacts/upload

Copies artifacts/logs/** (the service logs the pytest plugin writes for failed tests) and
artifacts/junit/**, then adds the logs of every container still carrying the harness label
(`tasker-testing=1`, e.g. a stack kept with --keep-on-failure or one whose owner was killed) as
containers/<name>.log, with a containers/index.tsv of name, image and status. Container
environments are never dumped (they hold the stacks' database passwords).

Best effort: a missing directory or an unreachable engine is reported, not fatal (exit 0), so the
upload step after it always has something to upload.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

LABEL = "tasker-testing=1"
TAIL = 2000
Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def _subprocess_runner(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, text=True, capture_output=True, check=False, timeout=60)


def copy_trees(sources: Sequence[Path], output: Path) -> int:
    """Copy each existing source directory to output/<its name>; the number of files copied."""
    copied = 0
    for source in sources:
        if not source.is_dir():
            print(f"no {source}: skipped")
            continue
        target = output / source.name
        shutil.copytree(source, target, dirs_exist_ok=True)
        copied += sum(1 for p in target.rglob("*") if p.is_file())
    return copied


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name) or "container"


def container_logs(output: Path, *, run: Runner, cli: str, tail: int = TAIL) -> int:
    """Write the logs of every labelled container; the number written (0 if none/unreachable)."""
    listing = run(
        [
            cli,
            "ps",
            "-a",
            "--filter",
            f"label={LABEL}",
            "--format",
            "{{.ID}}\t{{.Names}}\t{{.Image}}\t{{.Status}}",
        ]
    )
    if listing.returncode != 0:
        print(f"docker ps failed, no container logs: {listing.stderr.strip()}")
        return 0
    rows = [line.split("\t") for line in listing.stdout.splitlines() if line.strip()]
    if not rows:
        print("no labelled containers left")
        return 0
    folder = output / "containers"
    folder.mkdir(parents=True, exist_ok=True)
    index = []
    for row in rows:
        cid, name, image, status = [*row, "", "", "", ""][:4]
        logs = run([cli, "logs", "--timestamps", "--tail", str(tail), cid])
        (folder / f"{_safe(name)}.log").write_text(logs.stdout + logs.stderr, encoding="utf-8")
        index.append(f"{name}\t{image}\t{status}")
    (folder / "index.tsv").write_text("name\timage\tstatus\n" + "\n".join(index) + "\n")
    return len(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python ci/collect_logs.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output", type=Path, default=Path("artifacts/upload"))
    parser.add_argument(
        "--artifacts",
        type=Path,
        default=Path("artifacts"),
        help="the harness's artifacts directory (default: artifacts)",
    )
    parser.add_argument("--tail", type=int, default=TAIL, help="log lines per container")
    parser.add_argument("--no-containers", action="store_true", help="skip `docker logs`")
    return parser


def main(argv: Sequence[str] | None = None, *, run: Runner = _subprocess_runner) -> int:
    args = build_parser().parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    files = copy_trees([args.artifacts / "logs", args.artifacts / "junit"], args.output)
    containers = 0
    if not args.no_containers:
        cli = os.environ.get("TASKER_DOCKER_CLI") or shutil.which("docker") or "docker"
        try:
            containers = container_logs(args.output, run=run, cli=cli, tail=args.tail)
        except (OSError, subprocess.TimeoutExpired) as exc:
            print(f"docker unavailable, no container logs: {exc}")
    print(f"collected {files} file(s) and {containers} container log(s) into {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
