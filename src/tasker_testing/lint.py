"""``python -m tasker_testing.lint``: every linter of the project, in order, each one reported.

ruff check, ruff format --check, mypy (strict, config in pyproject.toml), cargo fmt, cargo clippy
(warnings are errors), hadolint on every Dockerfile, actionlint and zizmor on the workflows. All
of them run even when an earlier one fails; the exit code is 1 if any failed (a missing tool is
a failure too, with a hint), else 0. ``nox -s lint`` installs the Python-packaged tools (the
``lint`` dependency group) and calls this; ``--only``/``--skip`` pick checks by name.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON_PATHS = ("src", "tests", "ci", "scripts", "noxfile.py")
WORKFLOWS = ".github/workflows"


@dataclass(frozen=True)
class Check:
    name: str
    command: tuple[str, ...]
    hint: str = ""


@dataclass(frozen=True)
class Result:
    check: Check
    code: int
    seconds: float
    output: str

    @property
    def ok(self) -> bool:
        return self.code == 0


Runner = Callable[[Sequence[str], Path], "subprocess.CompletedProcess[str]"]


def _tool(name: str) -> str:
    """A tool from this interpreter's environment first (the nox venv), then PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name) or name


def dockerfiles(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root)) for p in (root / "docker").rglob("Dockerfile*") if p.is_file()
    )


def workflows(root: Path) -> list[str]:
    folder = root / WORKFLOWS
    return sorted(
        str(p.relative_to(root)) for p in folder.glob("*.y*ml") if p.suffix in (".yml", ".yaml")
    )


def checks(root: Path = REPO_ROOT) -> list[Check]:
    python_paths = [p for p in PYTHON_PATHS if (root / p).exists()]
    flows = workflows(root)
    return [
        Check("ruff-check", (_tool("ruff"), "check", "--output-format=concise", *python_paths)),
        Check(
            "ruff-format",
            (_tool("ruff"), "format", "--check", *python_paths),
            "`ruff format` rewrites the files",
        ),
        Check("mypy", (sys.executable, "-m", "mypy"), "strict on src/ ([tool.mypy] in pyproject)"),
        Check(
            "cargo-fmt",
            ("cargo", "fmt", "--all", "--", "--check", "--color=never"),
            "`cargo fmt --all` fixes",
        ),
        Check(
            "cargo-clippy",
            ("cargo", "clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"),
        ),
        Check(
            "hadolint",
            (_tool("hadolint"), "--no-color", *dockerfiles(root)),
            "rules ignored on purpose are in .hadolint.yaml, each with its reason",
        ),
        Check("actionlint", (_tool("actionlint"), *flows)),
        Check(
            "zizmor",
            (_tool("zizmor"), "--offline", *flows),
            "offline audits; pin actions by SHA, avoid ${{ }} in run:",
        ),
    ]


def _run(command: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command),
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NO_COLOR": "1", "CARGO_TERM_COLOR": "never"},
    )


def run_check(check: Check, root: Path, run: Runner = _run) -> Result:
    started = time.monotonic()
    try:
        done = run(check.command, root)
        code, output = done.returncode, (done.stdout or "") + (done.stderr or "")
    except FileNotFoundError:
        code = 127
        output = (
            f"{check.command[0]}: not installed. `nox -s lint` installs the Python-packaged "
            "tools (dependency group `lint`); cargo fmt/clippy need rustup's rustfmt and clippy."
        )
    return Result(check, code, time.monotonic() - started, output)


def report(result: Result, out: Callable[[str], None] = print) -> None:
    status = "ok" if result.ok else f"FAILED (exit {result.code})"
    out(f"==> {result.check.name}: {status} in {result.seconds:.1f}s")
    if not result.ok:
        out("    $ " + " ".join(result.check.command))
        for line in result.output.rstrip().splitlines():
            out("    " + line)
        if result.check.hint:
            out(f"    hint: {result.check.hint}")


def main(argv: Sequence[str] | None = None, *, run: Runner = _run, root: Path = REPO_ROOT) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasker_testing.lint", description=__doc__)
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only these checks (repeatable)",
    )
    parser.add_argument(
        "--skip", action="append", default=[], metavar="NAME", help="skip these checks (repeatable)"
    )
    parser.add_argument("--list", action="store_true", help="list the checks and exit")
    args = parser.parse_args(argv)
    selected = checks(root)
    names = {c.name for c in selected}
    unknown = sorted(set(args.only + args.skip) - names)
    if unknown:
        print(
            f"error: unknown check(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}",
            file=sys.stderr,
        )
        return 2
    if args.only:
        selected = [c for c in selected if c.name in args.only]
    selected = [c for c in selected if c.name not in args.skip]
    if args.list:
        for check in selected:
            print(f"{check.name}: {' '.join(check.command)}")
        return 0
    results = []
    for check in selected:
        result = run_check(check, root, run)
        report(result)
        results.append(result)
    failed = [r.check.name for r in results if not r.ok]
    if failed:
        print(f"lint: {len(failed)} of {len(results)} checks failed: {', '.join(failed)}")
    else:
        print(f"lint: all {len(results)} checks clean")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
