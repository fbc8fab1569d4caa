"""Sections `latency` (POST → complete, throughput) with `memory` sampled during it, and `suite`
(pytest -n 1 vs -n 2)."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tasker_testing.build import builder
from tasker_testing.clients import ApiError, OrchestrationClient, WorkflowTimeout
from tasker_testing.stack import TASKER_STACK, Stack

from .context import Bench
from .stats import Figure, Target, summarize

WORKFLOWS = {
    "linear": ("mathematical_sequence", "linear_workflow"),
    "diamond": ("parallel_computation", "diamond_workflow"),
}
POLL_S = 0.01
TASK_TIMEOUT_S = 30.0


def one_run(client: OrchestrationClient, workflow: str) -> float:
    """Seconds from sending the POST until a GET first shows the task `complete`."""
    name, namespace = WORKFLOWS[workflow]
    t0 = time.perf_counter()
    task = client.create_task(name, namespace, "1.0.0", {"even_number": 6}, tags=["bench"])
    done = client.wait_for_completion(task.task_uuid, TASK_TIMEOUT_S, poll_interval=POLL_S)
    elapsed = time.perf_counter() - t0
    if done.status != "complete":
        raise RuntimeError(f"{workflow} task {task.task_uuid} ended {done.status}: {done}")
    return elapsed


_UNITS = {
    "b": 1 / 2**20,
    "kib": 1 / 1024,
    "kb": 1 / 1024,
    "mib": 1,
    "mb": 1,
    "gib": 1024,
    "gb": 1024,
}


def parse_mem(text: str) -> float:
    """MiB from docker stats' `12.5MiB / 23.4GiB` (the usage part)."""
    usage = text.split("/", maxsplit=1)[0].strip()
    match = re.fullmatch(r"([\d.]+)\s*([A-Za-z]+)", usage)
    if not match:
        raise ValueError(f"unparsable memory {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


class MemorySampler:
    """`docker stats --no-stream` of a stack's containers in a thread; keeps the peaks."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.peak: dict[str, float] = {}
        self.peak_total = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _loop(self) -> None:
        while not self._stop.is_set():
            result = subprocess.run(
                [
                    "docker",
                    "stats",
                    "--no-stream",
                    "--format",
                    "{{.Name}}\t{{.MemUsage}}",
                    *self.names,
                ],
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
            )
            total = 0.0
            for line in result.stdout.splitlines():
                name, _, mem = line.partition("\t")
                try:
                    mib = parse_mem(mem)
                except (ValueError, KeyError):
                    continue
                self.peak[name] = max(self.peak.get(name, 0.0), mib)
                total += mib
            if total:
                self.samples += 1
                self.peak_total = max(self.peak_total, total)
            self._stop.wait(0.5)


def _throughput(client_url: str, in_flight: int, count: int, limit_s: float) -> dict[str, Any]:
    done: list[float] = []
    failed: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + limit_s
    claimed = [0]

    def worker() -> None:
        with OrchestrationClient(client_url) as client:
            while time.monotonic() < deadline:
                with lock:
                    if claimed[0] >= count:
                        return
                    claimed[0] += 1
                try:
                    latency = one_run(client, "linear")
                except (WorkflowTimeout, RuntimeError, ApiError) as exc:
                    with lock:  # a stuck task is a finding, not a reason to lose the section
                        failed.append(str(exc).splitlines()[0][:200])
                    continue
                with lock:
                    done.append(latency)

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        for future in [pool.submit(worker) for _ in range(in_flight)]:
            future.result()
    elapsed = time.monotonic() - t0
    return {
        "in_flight": in_flight,
        "completed": len(done),
        "seconds": elapsed,
        "tasks_per_s": len(done) / elapsed if elapsed else 0.0,
        "failed": failed,
        "latency": summarize(done),
    }


def run_latency(bench: Bench, with_memory: bool) -> None:
    runs = 20 if bench.quick else 100
    stack = Stack(TASKER_STACK, bench.images, bench.owner, stack_id=bench.next_stack_id()).start()
    latencies: dict[str, list[float]] = {}
    try:
        names = [svc.name for svc in stack.services.values() if svc.exit_code is None]
        sampler = MemorySampler(names)
        with (
            sampler if with_memory else _null(),
            OrchestrationClient(stack.orchestration_url) as client,
        ):
            for workflow in WORKFLOWS:
                for _ in range(3):  # warm-up, not counted
                    one_run(client, workflow)
                bench.progress.say(f"latency: {runs} {workflow} workflows, one at a time")
                latencies[workflow] = [one_run(client, workflow) for _ in range(runs)]
            tput = []
            plan = (
                [(1, 10, 20.0), (10, 30, 30.0), (50, 50, 45.0)]
                if bench.quick
                else [(1, 30, 30.0), (10, 100, 45.0), (50, 250, 60.0)]
            )
            for in_flight, count, limit in plan:
                bench.progress.say(
                    f"throughput: {count} linear tasks, {in_flight} in flight (≤ {limit:.0f}s)"
                )
                tput.append(_throughput(stack.orchestration_url, in_flight, count, limit))
    finally:
        stack.stop()
    bench.raw["latency"] = {
        w: {"summary": summarize(v), "samples": v} for w, v in latencies.items()
    }
    bench.raw["throughput"] = tput
    for workflow, samples in latencies.items():
        s = summarize(samples)
        targets = [Target("value", "<=", 0.150, "s")] if workflow == "linear" else []
        bench.add(
            Figure(
                "latency",
                f"{workflow}.p50",
                f"{workflow} workflow POST→complete P50",
                s["p50"],
                "s",
                targets=targets,
                samples=len(samples),
                note=f"P95 {s['p95'] * 1000:.0f} ms, P99 {s['p99'] * 1000:.0f} ms, "
                f"max {s['max'] * 1000:.0f} ms; client polls every {POLL_S * 1000:.0f} ms",
            )
        )
        for pct in ("p95", "p99"):
            bench.add(
                Figure(
                    "latency",
                    f"{workflow}.{pct}",
                    f"{workflow} workflow {pct.upper()}",
                    s[pct],
                    "s",
                    samples=len(samples),
                )
            )
    base = tput[0]["tasks_per_s"] if tput else None
    for row in tput:
        figure = bench.add(
            Figure(
                "throughput",
                f"linear.{row['in_flight']}",
                f"throughput, {row['in_flight']} in flight",
                row["tasks_per_s"],
                "tasks/s",
                baseline=base if row["in_flight"] != 1 else None,
                baseline_label="1 in flight" if row["in_flight"] != 1 else "",
                note=f"{row['completed']} tasks in {row['seconds']:.1f}s; "
                f"P50 {row['latency'].get('p50', 0) * 1000:.0f} ms",
                samples=row["completed"],
            )
        )
        if row["failed"]:
            figure.invalid = f"{len(row['failed'])} task(s) did not complete: {row['failed'][0]}"
            figure.note += f"; {figure.invalid}"
            bench.progress.say(f"throughput {row['in_flight']} in flight: {figure.invalid}")
    if with_memory:
        bench.raw["memory"] = {
            "stack_peak_mib": sampler.peak,
            "stack_peak_total_mib": sampler.peak_total,
            "samples": sampler.samples,
        }
        short = ", ".join(
            f"{k.rsplit('-', 1)[-1]} {v:.0f}" for k, v in sorted(sampler.peak.items())
        )
        bench.add(
            Figure(
                "memory",
                "stack.peak",
                "peak memory of one stack (docker stats)",
                sampler.peak_total,
                "MiB",
                samples=sampler.samples,
                note="peak of the per-sample sum during the latency/throughput load; "
                f"per service MiB: {short}",
            )
        )
        bench_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        bench.add(
            Figure(
                "memory",
                "bench.peak",
                "peak RSS of the bench process",
                bench_rss,
                "MiB",
                note="getrusage(RUSAGE_SELF).ru_maxrss",
            )
        )


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def cpu_jiffies(stat: str | None = None) -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat's first line (idle and iowait are idle)."""
    text = stat if stat is not None else Path("/proc/stat").read_text()
    fields = [int(v) for v in text.splitlines()[0].split()[1:9]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def busy_cores(before: tuple[int, int], after: tuple[int, int], cores: int) -> float:
    """How many cores were busy on average between two ``cpu_jiffies()`` readings."""
    total = after[1] - before[1]
    return cores * (after[0] - before[0]) / total if total > 0 else 0.0


#: one quick test: a run of it alone costs what every run pays whatever its tests (interpreter and
#: xdist start-up, one stack start and teardown)
FIXED_COST_TEST = "tests/integration/test_api.py::test_orchestration_health_endpoints"


def best_parallel_wall(wall_n1: float, fixed: float, workers: int = 2) -> float:
    """The shortest wall time ``workers`` workers could reach: the fixed costs, which every worker
    pays at once, plus the rest of the ``-n 1`` run split evenly with no contention (Amdahl)."""
    return fixed + max(wall_n1 - fixed, 0.0) / workers


def _pytest(
    bench: Bench,
    workers: int,
    extra: list[str],
    tests: str = "tests/integration",
    label: str = "",
) -> tuple[float, float, int, float]:
    """Wall seconds, peak RSS (MiB, the pytest process and its xdist workers), exit code, and
    the machine's busy cores on average while it ran."""
    artifacts = bench.tmp / f"pytest-{label or f'n{workers}'}"
    env = {
        **os.environ,
        "TASKER_TESTING_IMAGES": json.dumps(bench.images),
        "TASKER_TESTING_ARTIFACTS": str(artifacts),
        "TEST_BUILD_MODE": "fast",
    }
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-n",
        str(workers),
        tests,
        f"--junitxml={artifacts / 'junit.xml'}",
        *extra,
    ]
    log = artifacts / "pytest.log"
    artifacts.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    cpu0 = cpu_jiffies()
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, cwd=builder.REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - t0
    cores = busy_cores(cpu0, cpu_jiffies(), os.cpu_count() or 1)
    proc.returncode = os.waitstatus_to_exitcode(status)
    tail = log.read_text().strip().splitlines()[-1:] or [""]
    bench.progress.detail(f"pytest -n {workers}: {tail[0]} ({cores:.1f} cores busy)")
    return elapsed, usage.ru_maxrss / 1024, proc.returncode, cores


def run_suite(bench: Bench) -> None:
    extra = ["-m", "smoke"] if bench.quick else []
    results = {}
    for workers in (1, 2):
        bench.progress.say(
            f"suite: pytest -n {workers} tests/integration {' '.join(extra)}".rstrip()
        )
        results[workers] = _pytest(bench, workers, extra)
    bench.progress.say(f"suite: fixed costs, pytest -n 1 {FIXED_COST_TEST}")
    fixed = _pytest(bench, 1, [], FIXED_COST_TEST, label="fixed")
    bench.raw["suite"] = {
        f"n{w}": {"seconds": r[0], "peak_rss_mib": r[1], "exit": r[2], "busy_cores": r[3]}
        for w, r in results.items()
    }
    bench.raw["suite"]["fixed"] = {"seconds": fixed[0], "exit": fixed[2], "test": FIXED_COST_TEST}
    cores = os.cpu_count() or 1
    failed = [f"-n {w} exit {r[2]}" for w, r in results.items() if r[2] != 0]
    if fixed[2] != 0:
        failed.append(f"fixed-cost run exit {fixed[2]}")
    figure = Figure(
        "suite",
        "n2_vs_n1",
        "suite wall time: -n 2 vs -n 1",
        results[2][0],
        "s",
        results[1][0],
        "pytest -n 1",
        [Target("ratio", "<=", 0.6)],
        note=("smoke subset (--quick); " if extra else "")
        + "stack start included in each; busy cores (of "
        + f"{cores}): -n 1 {results[1][3]:.1f}, -n 2 {results[2][3]:.1f}",
        samples=1,
    )
    if failed:
        figure.invalid = "suite failed: " + ", ".join(failed)
        figure.note += f"; FAILED: {', '.join(failed)} (logs in the bench temp dir)"
    bench.add(figure)
    bench.add(
        Figure(
            "suite",
            "n2_best_possible",
            "suite: best -n 2 possible here (Amdahl)",
            best_parallel_wall(results[1][0], fixed[0]),
            "s",
            results[1][0],
            "pytest -n 1",
            note=f"fixed costs {fixed[0]:.1f} s (a one-test run: start-up, one stack, teardown) "
            "+ the rest of -n 1 split in two with no contention; a floor, not a measurement",
            samples=1,
            invalid=figure.invalid,
        )
    )
    bench.add(
        Figure(
            "memory",
            "pytest.peak",
            "peak RSS of the pytest process (-n 1)",
            results[1][1],
            "MiB",
            note="wait4() ru_maxrss: the largest of pytest and its children",
        )
    )
