"""Move a tier's images between jobs by their content-hash tags, without building anything.

    python ci/images.py tags --build-mode ci [--registry ghcr.io/OWNER/REPO]
    python ci/images.py push --build-mode ci --registry ghcr.io/OWNER/REPO
    python ci/images.py pull --build-mode ci --registry ghcr.io/OWNER/REPO [--allow-missing]
    python ci/images.py save --build-mode ci --output images-ci.tar
    python ci/images.py load --build-mode ci --input images-ci.tar

The tags come from `tasker_testing.build.builder.plan` with the same base-image arguments that
`ensure_images` expects (`_expected_base_args`), so a tag this script pulls is exactly the tag a
later `nox -s build-ci` / `--build-mode=ci` run looks for, and finds: no rebuild. The remote name
is `<registry>/<image>:<tier>-<hash12>` (registry lower-cased: GHCR wants that).

`pull --allow-missing` is for the build job: whatever a previous run pushed is reused, the rest is
built. The integration shards pull without it: a missing image there is an error, never a rebuild.
Exit codes: 0 done, 1 a docker command failed or an image is missing, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # run from a checkout without an install, too
    sys.path.insert(0, str(ROOT / "src"))

Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


@dataclass(frozen=True)
class Image:
    service: str
    local: str  # tasker-worker:ci-0123456789ab

    def remote(self, registry: str) -> str:
        return f"{registry.rstrip('/').lower()}/{self.local}"


def planned_images(mode_name: str, root: Path = ROOT) -> list[Image]:
    """The tier's tags, computed exactly as ensure_images computes them (no Docker involved)."""
    from tasker_testing.build import BuildMode, plan
    from tasker_testing.build.builder import _expected_base_args

    mode = BuildMode.parse(mode_name)
    return [Image(p.service, p.tag) for p in plan(mode, _expected_base_args(mode), root)]


def docker_cli() -> str:
    """$TASKER_DOCKER_CLI, else the docker on PATH (push/pull/save/load need no BuildKit)."""
    return os.environ.get("TASKER_DOCKER_CLI") or shutil.which("docker") or "docker"


def _subprocess_runner(command: list[str]) -> subprocess.CompletedProcess[str]:
    print("+ " + " ".join(command), flush=True)
    return subprocess.run(command, text=True, capture_output=True, check=False)


class Images:
    """The five operations over one tier's images; `run` is injectable for tests."""

    def __init__(self, images: list[Image], *, run: Runner, cli: str = "docker") -> None:
        self.images = images
        self.run = run
        self.cli = cli

    def _docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.run([self.cli, *args])
        if result.returncode != 0:
            detail = (result.stderr or result.stdout or "").strip().splitlines()
            print(f"  failed: {detail[-1] if detail else 'no output'}", file=sys.stderr)
        return result

    def _local_missing(self) -> list[Image]:
        return [i for i in self.images if self._docker("image", "inspect", i.local).returncode != 0]

    def push(self, registry: str) -> int:
        missing = self._local_missing()
        if missing:
            print("not built here: " + ", ".join(i.local for i in missing), file=sys.stderr)
            return 1
        for image in self.images:
            remote = image.remote(registry)
            if self._docker("tag", image.local, remote).returncode != 0:
                return 1
            if self._docker("push", remote).returncode != 0:
                return 1
            print(f"pushed {remote}")
        return 0

    def pull(self, registry: str, *, allow_missing: bool) -> int:
        missing = []
        for image in self.images:
            remote = image.remote(registry)
            if self._docker("pull", remote).returncode != 0:
                missing.append(image)
                continue
            if self._docker("tag", remote, image.local).returncode != 0:
                return 1
            print(f"pulled {image.local}")
        if missing:
            names = ", ".join(i.local for i in missing)
            if allow_missing:
                print(f"not in the registry yet (will be built): {names}")
                return 0
            print(f"missing from {registry}: {names}", file=sys.stderr)
            return 1
        return 0

    def save(self, output: Path) -> int:
        missing = self._local_missing()
        if missing:
            print("not built here: " + ", ".join(i.local for i in missing), file=sys.stderr)
            return 1
        output.parent.mkdir(parents=True, exist_ok=True)
        return self._docker("save", "-o", str(output), *(i.local for i in self.images)).returncode

    def load(self, source: Path) -> int:
        if self._docker("load", "-i", str(source)).returncode != 0:
            return 1
        missing = self._local_missing()
        if missing:
            names = ", ".join(i.local for i in missing)
            print(f"{source} does not hold {names} (built from another commit?)", file=sys.stderr)
            return 1
        print(f"loaded {len(self.images)} image(s) from {source}")
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python ci/images.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("tags", "print service, local tag (and remote name with --registry); touches no engine"),
        ("push", "tag and push the tier's local images to --registry"),
        ("pull", "pull the tier's images from --registry and tag them locally"),
        ("save", "docker save the tier's images to --output"),
        ("load", "docker load --input and check it held the tier's images"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("--build-mode", default=os.environ.get("TEST_BUILD_MODE") or "ci")
        if name in ("tags", "push", "pull"):
            cmd.add_argument(
                "--registry",
                required=name != "tags",
                default=os.environ.get("TASKER_IMAGE_REGISTRY") if name == "tags" else None,
                help="e.g. ghcr.io/OWNER/REPO (lower-cased)",
            )
        if name == "pull":
            cmd.add_argument(
                "--allow-missing",
                action="store_true",
                help="exit 0 when some images are not in the registry (they will be built)",
            )
        if name == "save":
            cmd.add_argument("--output", type=Path, required=True)
        if name == "load":
            cmd.add_argument("--input", type=Path, required=True)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    run: Runner = _subprocess_runner,
    images: list[Image] | None = None,
) -> int:
    args = build_parser().parse_args(argv)
    try:
        planned = images if images is not None else planned_images(args.build_mode)
    except ValueError as exc:  # an unknown build mode
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "tags":
        for image in planned:
            remote = f" {image.remote(args.registry)}" if args.registry else ""
            print(f"{image.service} {image.local}{remote}")
        return 0
    ops = Images(planned, run=run, cli=docker_cli())
    if args.command == "push":
        return ops.push(args.registry)
    if args.command == "pull":
        return ops.pull(args.registry, allow_missing=args.allow_missing)
    if args.command == "save":
        return ops.save(args.output)
    return ops.load(args.input)


if __name__ == "__main__":
    sys.exit(main())
