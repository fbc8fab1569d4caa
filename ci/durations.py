"""Keep pytest-split's committed durations file (.test_durations) current.

    python ci/durations.py refresh [--output FILE] -- -n auto --build-mode=fast tests/integration
    python ci/durations.py from-junit artifacts/junit [--output FILE]
    python ci/durations.py merge a.json b.json [--output FILE]
    python ci/durations.py check [--output FILE] -- tests/integration

`refresh` runs pytest (this interpreter) with the given arguments and a JUnit report of call
times (a worker's stack start-up is no one test's cost), then takes every test's time from it:
JUnit works under xdist, where `--store-durations` sees only part of the run. The run is taken
as the whole suite, so tests it did not run are dropped (`--keep-stale` keeps them). Nothing is
written when pytest fails, unless `--accept-failures` (exit 1 only: some tests failed, their
times are still taken; the exit code stays 1).
`from-junit` does the same from existing reports (e.g. every shard's JUnit of a CI run), keeping
the tests they do not mention. `merge` combines durations files, later ones winning.
`check` lists collected tests the file lacks (pytest-split gives those the average time) and
exits 1 if there are any.

The output is sorted JSON with times rounded to milliseconds, so a refresh diffs cleanly.
pytest-split reads `.test_durations` in the working directory by default: the nox sessions run at
the repository root, so no `--durations-path` is needed anywhere.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = Path(".test_durations")
Runner = Callable[[list[str]], int]


def load(path: Path) -> dict[str, float]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, list):  # pytest-split's old list-of-pairs format
        data = dict(data)
    return {str(k): float(v) for k, v in data.items()}


def dump(durations: Mapping[str, float], path: Path) -> None:
    rounded = {k: round(v, 3) for k, v in sorted(durations.items())}
    path.write_text(json.dumps(rounded, indent=4, sort_keys=True) + "\n", encoding="utf-8")


def merge(*sources: Mapping[str, float]) -> dict[str, float]:
    merged: dict[str, float] = {}
    for source in sources:
        merged.update(source)
    return merged


def _module_path(dotted: str, root: Path) -> tuple[str, str]:
    """Split a JUnit classname into (file path, class part): the longest prefix that is a file."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        candidate = "/".join(parts[:cut]) + ".py"
        if (root / candidate).is_file():
            return candidate, "::".join(parts[cut:])
    return "/".join(parts) + ".py", ""  # not found here: the plain module guess


def nodeid(classname: str, name: str, root: Path = ROOT) -> str:
    path, cls = _module_path(classname, root)
    return f"{path}::{cls}::{name}" if cls else f"{path}::{name}"


def from_junit(files: Iterable[Path], root: Path = ROOT) -> dict[str, float]:
    """Each test case's total time (setup + call + teardown, pytest's default) by node id."""
    durations: dict[str, float] = {}
    for path in files:
        tree = ET.parse(path)  # noqa: S314
        for case in tree.getroot().iter("testcase"):
            if case.find("skipped") is not None:
                continue
            key = nodeid(case.get("classname", ""), case.get("name", ""), root)
            durations[key] = durations.get(key, 0.0) + float(case.get("time") or 0)
    return durations


def junit_files(paths: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        found += sorted(path.rglob("*.xml")) if path.is_dir() else [path]
    return found


def _run(command: list[str]) -> int:
    print("+ " + " ".join(command), flush=True)
    return subprocess.run(command, check=False).returncode


def refresh(
    output: Path,
    pytest_args: Sequence[str],
    *,
    keep_stale: bool,
    accept_failures: bool = False,
    run: Runner = _run,
) -> int:
    with tempfile.TemporaryDirectory(prefix="durations-") as tmp:
        report = Path(tmp) / "junit.xml"
        # Call time only: a stack's start-up, paid once per xdist worker in every shard alike,
        # would otherwise be charged to whichever test happened to run first on that worker.
        code = run(
            [
                sys.executable,
                "-m",
                "pytest",
                *pytest_args,
                f"--junitxml={report}",
                "-o",
                "junit_duration_report=call",
            ]
        )
        if code != 0 and not (accept_failures and code == 1 and report.is_file()):
            print(f"pytest exited {code}: {output} left as it was", file=sys.stderr)
            return code
        fresh = from_junit([report])
    if not fresh:
        print("the run recorded no test times: nothing written", file=sys.stderr)
        return 1
    old = load(output)
    new = merge(old, fresh) if keep_stale else fresh
    dump(new, output)
    dropped = len(set(old) - set(new))
    print(f"{output}: {len(new)} tests ({len(set(new) - set(old))} new, {dropped} dropped)")
    return code


def _collect(pytest_args: Sequence[str]) -> list[str]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            *pytest_args,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return [line for line in result.stdout.splitlines() if "::" in line and " " not in line]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python ci/durations.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("refresh", help="run pytest and rewrite the file from its times")
    cmd.add_argument(
        "--keep-stale", action="store_true", help="keep entries of tests this run did not run"
    )
    cmd.add_argument(
        "--accept-failures",
        action="store_true",
        help="write the times even when some tests failed (pytest exit 1)",
    )
    cmd.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: pytest arguments")
    cmd = sub.add_parser("from-junit", help="update the file from JUnit reports")
    cmd.add_argument("paths", nargs="+", type=Path, help="JUnit files or directories")
    cmd = sub.add_parser("merge", help="combine durations files, later ones winning")
    cmd.add_argument("inputs", nargs="+", type=Path)
    cmd = sub.add_parser("check", help="list collected tests that have no duration")
    cmd.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: what to collect")
    for name, sub_parser in sub.choices.items():
        sub_parser.add_argument(
            "--output",
            type=Path,
            default=DEFAULT,
            help=f"the durations file (default: {DEFAULT})" if name != "merge" else "",
        )
    return parser


def _strip_dashdash(args: Sequence[str]) -> list[str]:
    return list(args[1:]) if args and args[0] == "--" else list(args)


def main(argv: Sequence[str] | None = None, *, run: Runner = _run) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "refresh":
        return refresh(
            args.output,
            _strip_dashdash(args.pytest_args),
            keep_stale=args.keep_stale,
            accept_failures=args.accept_failures,
            run=run,
        )
    if args.command == "from-junit":
        files = junit_files(args.paths)
        if not files:
            print("no JUnit reports found", file=sys.stderr)
            return 1
        dump(merge(load(args.output), from_junit(files)), args.output)
        print(f"{args.output}: updated from {len(files)} report(s)")
        return 0
    if args.command == "merge":
        dump(merge(*(load(p) for p in args.inputs)), args.output)
        return 0
    known = load(args.output)
    missing = [n for n in _collect(_strip_dashdash(args.pytest_args)) if n not in known]
    for name in missing:
        print(f"no duration: {name}")
    print(f"{len(missing)} collected test(s) without a duration in {args.output}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
