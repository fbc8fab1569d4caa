"""Install the runner's only prerequisites, nox and uv, into this interpreter.

    python ci/bootstrap.py [--dry-run]

Everything else (the package, pytest, the linters) is installed by the nox sessions themselves,
from the dependency groups in pyproject.toml, so a workflow step and a developer's shell run the
same thing. The versions here are lower bounds matching noxfile.py's `nox.needs_version`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence

REQUIREMENTS = ("nox>=2025.2.9", "uv>=0.5")


def command() -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--quiet",
        *REQUIREMENTS,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python ci/bootstrap.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dry-run", action="store_true", help="print the pip command only")
    args = parser.parse_args(argv)
    cmd = command()
    print("+ " + " ".join(cmd), flush=True)
    if args.dry_run:
        return 0
    return subprocess.run(cmd, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
