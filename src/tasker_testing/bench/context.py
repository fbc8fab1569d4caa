"""The state one bench run carries: owner (labels + watchdog), time budget, figures, cleanup."""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasker_testing import labels
from tasker_testing.labels import Owner

from .progress import Progress
from .stats import Figure, fmt_value


@dataclass
class Bench:
    progress: Progress
    quick: bool
    deadline: float  # time.monotonic() by which the run should be done
    owner: Owner
    tmp: Path
    figures: list[Figure] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: fast-tier images of the working tree, for the stack/database/workload sections
    images: dict[str, str] = field(default_factory=dict)
    #: image tags that existed before the bench, or that the working tree uses: never removed
    protected_tags: set[str] = field(default_factory=set)
    created_tags: set[str] = field(default_factory=set)
    #: tokens of cold builds, whose build-cache records are pruned at the end
    cold_tokens: list[str] = field(default_factory=list)
    _stacks: int = 0

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def fits(self, estimate_s: float) -> bool:
        return self.remaining() >= estimate_s

    def next_stack_id(self, prefix: str = "s") -> str:
        self._stacks += 1
        return f"{prefix}{self._stacks}"

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        if figure.skipped:
            self.progress.result(figure.label, f"skipped ({figure.skipped})", None)
            return figure
        text = fmt_value(figure.value, figure.unit)
        if figure.baseline is not None:
            text += f" vs {fmt_value(figure.baseline, figure.unit)} ({figure.baseline_label})"
            if figure.ratio is not None:
                text += f" = {figure.ratio:.2f}x"
        self.progress.result(figure.label, text, figure.met)
        return figure

    def skip(self, section: str, key: str, label: str, unit: str, why: str, **kw: Any) -> Figure:
        return self.add(Figure(section, key, label, None, unit, skipped=why, **kw))

    # ----------------------------------------------------------------- cleanup

    def remove_created_images(self, docker: str = "docker") -> list[str]:
        """Remove the tags this run created (never a protected one); returns those removed."""
        removable = sorted(self.created_tags - self.protected_tags)
        removed = []
        for tag in removable:
            result = subprocess.run(
                [docker, "image", "rm", tag], capture_output=True, text=True, check=False
            )
            if result.returncode == 0 or "No such image" in result.stderr:
                removed.append(tag)
                self.created_tags.discard(tag)
            else:
                self.notes.append(f"could not remove image {tag}: {result.stderr.strip()[:200]}")
        return removed

    def prune_cold_cache(self, docker: str = "/usr/bin/docker") -> int:
        """Prune build-cache records whose description names a cold build's token."""
        if not self.cold_tokens:
            return 0
        pruned = 0
        for _attempt in range(3):  # children first: parents become prunable on the next pass
            ids = _cache_records(docker, self.cold_tokens)
            if not ids:
                break
            for record in ids:
                with contextlib.suppress(subprocess.SubprocessError, OSError):
                    subprocess.run(
                        [docker, "builder", "prune", "-f", "--filter", f"id={record}"],
                        capture_output=True,
                        check=False,
                        timeout=120,
                    )
                    pruned += 1
        return pruned


def _cache_records(docker: str, tokens: list[str]) -> list[str]:
    import json

    result = subprocess.run(
        [docker, "system", "df", "-v", "--format", "{{json .BuildCache}}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    try:
        records = json.loads(result.stdout or "[]") or []
    except ValueError:
        return []
    return [
        str(r["ID"])
        for r in records
        if any(f"bench-{t}" in str(r.get("Description", "")) for t in tokens)
    ]


def new_owner() -> Owner:
    return Owner(run_id=labels.new_run_id() or uuid.uuid4().hex, worker="bench")
