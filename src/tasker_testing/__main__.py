"""``python -m tasker_testing up|down|clean|build``: the harness by hand.

* ``build``  ensure the images of a tier (``--build-mode``/``$TEST_BUILD_MODE``) and print the tags
* ``up``     start one stack that outlives this command (labelled kept) and print its URLs
* ``down``   remove the stacks started by ``up``
* ``clean``  remove every labelled container, network and volume (kept ones included)
* ``with-db -- CMD…``  run CMD with DATABASE_URL pointing at a fresh db-image container, removed
  afterwards (a watchdog removes it even if this process is killed)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from tasker_testing import cleanup, labels


def _images(
    mode_name: str | None, rebuild: bool, services: Sequence[str] | None = None
) -> dict[str, str]:
    from tasker_testing.build import BuildMode, ensure_images

    mode = BuildMode.parse(mode_name) if mode_name else BuildMode.from_env()
    return dict(ensure_images(mode, rebuild=rebuild, services=services))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasker_testing", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("build", "up"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--build-mode", default=None)
        cmd.add_argument("--rebuild", action="store_true")
    with_db = sub.add_parser("with-db")
    with_db.add_argument("--build-mode", default=None)
    with_db.add_argument("cmd", nargs=argparse.REMAINDER)
    sub.add_parser("down")
    sub.add_parser("clean")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(json.dumps(_images(args.build_mode, args.rebuild), indent=2))
        elif args.command == "up":
            from tasker_testing.stack import TASKER_STACK, Stack

            owner = labels.Owner(run_id=labels.new_run_id(), worker="cli")
            stack = Stack(TASKER_STACK, _images(args.build_mode, args.rebuild), owner, keep=True)
            stack.start()
            print("\n".join(stack.describe()))
            print(f"orchestration: {stack.orchestration_url}")
            print(f"worker:        {stack.worker_url}")
            print(f"database:      {stack.db_dsn()}")
        elif args.command == "with-db":
            command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            return _with_db(args.build_mode, command)
        elif args.command == "down":
            result = cleanup.sweep([f"{labels.ROOT}=1", f"{labels.WORKER}=cli"])
            print(result.summary())
        else:
            print(cleanup.clean_all().summary())
    except ValueError as exc:  # BuildModeError and spec errors: one clear line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # EngineError, BuildError, BaseImageError, StackStartError
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _with_db(mode_name: str | None, command: list[str]) -> int:
    """Run ``command`` against a database of the tier's db image, then remove it."""
    import os
    import subprocess

    from tasker_testing.stack import TASKER_STACK, Stack, StackSpec, connect_host

    if not command:
        print("error: with-db needs a command after --", file=sys.stderr)
        return 2
    images = _images(mode_name, rebuild=False, services=[TASKER_STACK.db_service])
    spec = StackSpec(services=(TASKER_STACK.service(TASKER_STACK.db_service),), template_after=None)
    owner = labels.Owner(run_id=labels.new_run_id(), worker="withdb")
    watchdog = cleanup.Watchdog.spawn(owner)
    try:
        with Stack(spec, images, owner) as stack:
            port = stack.port(spec.db_service, 5432)
            url = f"postgres://{spec.db_user}:{stack.db_password}@{connect_host()}:{port}/{spec.db_name}"
            return subprocess.run(
                command, env={**os.environ, "DATABASE_URL": url}, check=False
            ).returncode
    finally:
        watchdog.release()


if __name__ == "__main__":
    sys.exit(main())
