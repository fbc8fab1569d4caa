"""Pure figure-keeping for the bench: percentiles, ratios, targets, sccache parsing. No Docker."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Op = Literal["<=", ">="]
Subject = Literal["value", "ratio", "speedup"]


def percentile(samples: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (numpy's default 'linear' method); pct in [0, 100]."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct} outside [0, 100]")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """n, min, p50, p95, p99, max, mean of the samples."""
    if not samples:
        return {"n": 0}
    return {
        "n": len(samples),
        "min": min(samples),
        "p50": percentile(samples, 50),
        "p95": percentile(samples, 95),
        "p99": percentile(samples, 99),
        "max": max(samples),
        "mean": statistics.fmean(samples),
    }


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline, or None when either is missing or the baseline is not positive."""
    if value is None or baseline is None or baseline <= 0:
        return None
    return value / baseline


@dataclass(frozen=True)
class Target:
    """A limit on one subject of a figure: its value, value/baseline, or baseline/value."""

    subject: Subject
    op: Op
    limit: float
    unit: str = ""

    def check(self, figure: Figure) -> bool | None:
        actual = figure.subject(self.subject)
        if actual is None:
            return None
        return actual <= self.limit if self.op == "<=" else actual >= self.limit

    def describe(self) -> str:
        if self.subject == "value":
            return f"{self.op} {_num(self.limit)}{(' ' + self.unit) if self.unit else ''}"
        if self.subject == "ratio":
            return f"{self.op} {_num(self.limit)}x baseline"
        return f"{self.op} {_num(self.limit)}x faster"


@dataclass
class Figure:
    """One measured figure and the baseline it is compared with, measured in the same run."""

    section: str
    key: str
    label: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    targets: list[Target] = field(default_factory=list)
    note: str = ""
    samples: int = 0
    skipped: str = ""  # why it was not measured (then value is None)
    invalid: str = ""  # a condition of the measurement failed (e.g. a build ran): missed

    @property
    def ratio(self) -> float | None:
        return ratio(self.value, self.baseline)

    @property
    def speedup(self) -> float | None:
        return ratio(self.baseline, self.value)

    def subject(self, subject: Subject) -> float | None:
        if subject == "value":
            return self.value
        return self.ratio if subject == "ratio" else self.speedup

    @property
    def met(self) -> bool | None:
        """True if every target is met, False if one is missed, None if none can be judged."""
        if self.invalid:
            return False
        results = [t.check(self) for t in self.targets]
        if any(r is False for r in results):
            return False
        if results and all(r is True for r in results):
            return True
        return None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["targets"] = [
            {**asdict(t), "text": t.describe(), "met": t.check(self)} for t in self.targets
        ]
        data["ratio"] = self.ratio
        data["speedup"] = self.speedup
        data["met"] = self.met
        return data


def _num(value: float) -> str:
    return f"{value:g}"


def fmt_value(value: float | None, unit: str) -> str:  # noqa: PLR0911
    """Human form of a figure: ms below a second, s above, MiB/GiB for memory."""
    if value is None:
        return "—"
    if unit == "s":
        if value < 1:
            return f"{value * 1000:.0f} ms"
        if value < 120:
            return f"{value:.1f} s"
        return f"{value / 60:.1f} min"
    if unit == "MiB":
        return f"{value / 1024:.2f} GiB" if value >= 1024 else f"{value:.0f} MiB"
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "tasks/s":
        return f"{value:.1f} tasks/s"
    return f"{value:g} {unit}".strip()


# --------------------------------------------------------------------------- sccache

_STAT_LINE = re.compile(
    # a number, not a version such as "0.16.0" (sccache prints its version in the same table)
    r"sccache-stats:\s*(?P<name>[A-Za-z][A-Za-z ()/.-]*?)\s{2,}(?P<value>\d+(?:\.\d+)?)(?![\d.])"
)


def parse_sccache_stats(lines: Iterable[str]) -> dict[str, float] | None:
    """The last `sccache --show-stats` block printed with a `sccache-stats:` prefix.

    Returns ``{"Cache hits": …, "Cache misses": …, "Compile requests": …, …}`` (totals only,
    per-language rows kept under their own names) or None when no such line was seen.
    """
    blocks: list[dict[str, float]] = []
    current: dict[str, float] | None = None
    for line in lines:
        if "sccache-stats:" not in line:
            continue
        match = _STAT_LINE.search(line)
        if match is None:
            continue
        name, value = match.group("name").strip(), float(match.group("value"))
        if name == "Compile requests" or current is None:
            current = {}
            blocks.append(current)
        current.setdefault(name, value)
    return blocks[-1] if blocks else None


def sccache_hit_rate(stats: dict[str, float] | None) -> float | None:
    """Hits / (hits + misses) in percent; None without stats or without cacheable calls."""
    if not stats:
        return None
    hits, misses = stats.get("Cache hits", 0.0), stats.get("Cache misses", 0.0)
    if hits + misses <= 0:
        return None
    return 100.0 * hits / (hits + misses)
