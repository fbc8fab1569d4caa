"""JUnit XML → a short markdown summary: counts, time, failures and the slowest tests.

    python ci/summary.py artifacts/junit --title "shard 1/3" --append "$GITHUB_STEP_SUMMARY"

Arguments are JUnit files or directories (every *.xml below them). Without --append the markdown
goes to stdout. No JUnit at all is reported as such (and, with --require, exits 1), since a shard
that produced no report did not run its tests. Exit 0 otherwise: the test step's own exit code is
what fails the job, this only describes it.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SLOWEST = 10
_MESSAGE_CHARS = 200


@dataclass(frozen=True)
class Case:
    nodeid: str
    time: float
    outcome: str  # passed, failed, error, skipped
    message: str = ""


@dataclass
class Summary:
    cases: list[Case] = field(default_factory=list)
    wall_time: float = 0.0
    files: int = 0

    def count(self, outcome: str) -> int:
        return sum(1 for c in self.cases if c.outcome == outcome)


def _nodeid(case: ET.Element) -> str:
    classname = case.get("classname", "")
    name = case.get("name", "?")
    return f"{classname}::{name}" if classname else name


def _outcome(case: ET.Element) -> tuple[str, str]:
    for tag, outcome in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
        child = case.find(tag)
        if child is not None:
            text = (child.get("message") or child.text or "").strip().splitlines()
            return outcome, text[0][:_MESSAGE_CHARS] if text else ""
    return "passed", ""


def junit_files(paths: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(path.rglob("*.xml"))
        elif path.is_file():
            found.append(path)
    return found


def parse(files: Iterable[Path]) -> Summary:
    summary = Summary()
    for path in files:
        root = ET.parse(path).getroot()  # noqa: S314
        suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
        summary.files += 1
        for suite in suites:
            summary.wall_time += float(suite.get("time") or 0)
            for case in suite.iter("testcase"):
                outcome, message = _outcome(case)
                summary.cases.append(
                    Case(_nodeid(case), float(case.get("time") or 0), outcome, message)
                )
    return summary


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(summary: Summary, title: str = "Tests", slowest: int = SLOWEST) -> str:
    if not summary.files:
        return f"### {title}\n\nNo JUnit report was found: the tests did not run.\n"
    failed = summary.count("failed") + summary.count("error")
    icon = "❌" if failed else "✅"
    lines = [
        f"### {icon} {title}",
        "",
        "| tests | passed | failed | errors | skipped | time |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {len(summary.cases)} | {summary.count('passed')} | {summary.count('failed')} "
        f"| {summary.count('error')} | {summary.count('skipped')} | {summary.wall_time:.1f}s |",
    ]
    bad = [c for c in summary.cases if c.outcome in ("failed", "error")]
    if bad:
        lines += ["", "**Failures**", ""]
        lines += [f"- `{c.nodeid}` ({c.outcome}): {_escape(c.message)}" for c in bad]
    ranked = sorted(summary.cases, key=lambda c: c.time, reverse=True)[:slowest]
    if ranked:
        lines += ["", f"**Slowest {len(ranked)}**", "", "| test | time |", "|---|---:|"]
        lines += [f"| `{_escape(c.nodeid)}` | {c.time:.2f}s |" for c in ranked]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python ci/summary.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths",
        nargs="*",
        type=Path,
        default=[Path("artifacts/junit")],
        help="JUnit files or directories (default: artifacts/junit)",
    )
    parser.add_argument("--title", default="Tests")
    parser.add_argument("--slowest", type=int, default=SLOWEST)
    parser.add_argument(
        "--append",
        type=Path,
        metavar="FILE",
        help="append to FILE (e.g. $GITHUB_STEP_SUMMARY) instead of stdout",
    )
    parser.add_argument(
        "--require", action="store_true", help="exit 1 when no JUnit report is found"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    files = junit_files(args.paths)
    try:
        summary = parse(files)
    except ET.ParseError as exc:
        print(f"error: unreadable JUnit XML: {exc}", file=sys.stderr)
        return 1
    text = render(summary, args.title, args.slowest)
    if args.append:
        with args.append.open("a", encoding="utf-8") as out:
            out.write(text + "\n")
    else:
        sys.stdout.write(text)
    return 1 if args.require and not files else 0


if __name__ == "__main__":
    sys.exit(main())
