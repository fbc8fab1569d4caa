"""bench.json, bench.md and latency.png from a run's figures."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from .stats import Figure, fmt_value


def machine() -> dict[str, Any]:
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def commit(root: Path) -> dict[str, Any]:
    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
        )
        return result.stdout.strip()

    return {
        "sha": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def to_json(figures: list[Figure], meta: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    judged = [f.met for f in figures if f.targets and not f.skipped]
    return {
        "schema": 1,
        **meta,
        "summary": {
            "targets_met": sum(1 for m in judged if m is True),
            "targets_missed": sum(1 for m in judged if m is False),
            "skipped": [f"{f.section}/{f.key}: {f.skipped}" for f in figures if f.skipped],
        },
        "figures": [f.to_json() for f in figures],
        "raw": raw,
    }


def markdown(figures: list[Figure], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    dirty = " (dirty)" if meta["commit"]["dirty"] else ""
    docker = meta["engine"].get("server_version", "?")
    lines = [
        "# Tasker testing benchmarks",
        "",
        f"{meta['created']} · commit `{meta['commit']['sha'][:10]}`{dirty}"
        f" · {m['cores']} cores, {m['memory_gib']} GiB, kernel {m['kernel']} · Docker {docker}"
        f" · {'--quick' if meta['quick'] else 'full run'}",
        "",
        "Ratios are the headline (value ÷ baseline, same run, same machine); absolute times are"
        " noisy.",
        "",
        "| | measured | baseline | ratio | target | |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        if f.skipped:
            lines.append(f"| {f.label} | — | | | {_targets(f)} | skipped: {f.skipped} |")
            continue
        ratio = (
            ""
            if f.ratio is None
            else (
                f"**{f.speedup:.0f}x faster**"
                if f.speedup and f.speedup >= 10
                else f"**{f.ratio:.2f}x**"
            )
        )
        base = "" if f.baseline is None else f"{fmt_value(f.baseline, f.unit)} ({f.baseline_label})"
        mark = {True: "✅", False: "❌", None: ""}[f.met]
        value = fmt_value(f.value, f.unit)
        lines.append(f"| {f.label} | {value} | {base} | {ratio} | {_targets(f)} | {mark} |")
    notes = [
        f"- **{f.label}**: {f.invalid + '; ' if f.invalid else ''}{f.note}"
        for f in figures
        if f.note and not f.skipped
    ]
    if notes:
        lines += ["", "Notes:", "", *notes]
    if meta.get("notes"):
        lines += ["", *[f"- {n}" for n in meta["notes"]]]
    return "\n".join(lines) + "\n"


def _targets(f: Figure) -> str:
    return ", ".join(t.describe() for t in f.targets)


def chart(raw: dict[str, Any], path: Path) -> bool:
    """Latency distribution (histogram + empirical CDF) per workflow; False if no data."""
    latency = raw.get("latency") or {}
    if not latency:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(11, 4))
    for workflow, data in latency.items():
        ms = sorted(s * 1000 for s in data["samples"])
        hist.hist(ms, bins=30, alpha=0.6, label=workflow)
        cdf.plot(ms, [(i + 1) / len(ms) for i in range(len(ms))], label=workflow)
        summary = data["summary"]
        for pct, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):
            cdf.axvline(
                summary[pct] * 1000, linestyle=style, linewidth=0.8, color=cdf.lines[-1].get_color()
            )
    hist.set(title="POST → complete latency", xlabel="ms", ylabel="runs")
    cdf.set(title="CDF (lines: P50 solid, P95 dashed, P99 dotted)", xlabel="ms", ylabel="fraction")
    cdf.axvline(150, color="red", linewidth=0.8, alpha=0.5)
    hist.legend()
    cdf.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(
    out: Path, figures: list[Figure], meta: dict[str, Any], raw: dict[str, Any]
) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "md": out / "bench.md", "png": out / "latency.png"}
    paths["json"].write_text(json.dumps(to_json(figures, meta, raw), indent=2, default=str) + "\n")
    paths["md"].write_text(markdown(figures, meta))
    try:
        if not chart(raw, paths["png"]):
            paths.pop("png")
    except ImportError:
        meta.setdefault("notes", []).append(
            "matplotlib missing: no chart (install the bench group)"
        )
        paths.pop("png")
    return paths
