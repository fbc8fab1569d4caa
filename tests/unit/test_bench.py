"""The bench's pure parts: statistics, ratios, targets, sccache parsing, repo edits, reports."""

from __future__ import annotations

import json
import subprocess

import pytest

from tasker_testing.bench import repo, report
from tasker_testing.bench.stats import (
    Figure,
    Target,
    fmt_value,
    parse_sccache_stats,
    percentile,
    ratio,
    sccache_hit_rate,
    summarize,
)
from tasker_testing.bench.workload import (
    best_parallel_wall,
    busy_cores,
    cpu_jiffies,
    parse_mem,
)


def test_percentile_interpolates_like_numpy_linear():
    data = [1.0, 2.0, 3.0, 4.0]
    assert percentile(data, 0) == 1.0
    assert percentile(data, 100) == 4.0
    assert percentile(data, 50) == pytest.approx(2.5)
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)
    assert percentile([7.0], 99) == 7.0


def test_percentile_rejects_empty_and_out_of_range():
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 101)


def test_summarize_orders_and_counts():
    s = summarize([0.3, 0.1, 0.2])
    assert s["n"] == 3
    assert s["min"] == 0.1
    assert s["max"] == 0.3
    assert s["p50"] == pytest.approx(0.2)
    assert s["p50"] <= s["p95"] <= s["p99"] <= s["max"]
    assert summarize([]) == {"n": 0}


def test_ratio_handles_missing_and_zero_baselines():
    assert ratio(1.0, 4.0) == 0.25
    assert ratio(None, 4.0) is None
    assert ratio(1.0, None) is None
    assert ratio(1.0, 0.0) is None


def test_targets_on_value_ratio_and_speedup():
    fig = Figure("s", "k", "label", 2.0, "s", baseline=10.0)
    assert fig.ratio == pytest.approx(0.2)
    assert fig.speedup == pytest.approx(5.0)
    assert Target("value", "<=", 3.0).check(fig) is True
    assert Target("ratio", "<=", 0.1).check(fig) is False
    assert Target("speedup", ">=", 5.0).check(fig) is True
    fig.targets = [Target("value", "<=", 3.0), Target("ratio", "<=", 0.5)]
    assert fig.met is True
    fig.targets.append(Target("speedup", ">=", 20.0))
    assert fig.met is False


def test_met_is_unknown_without_targets_or_baseline_and_false_when_invalid():
    assert Figure("s", "k", "l", 1.0, "s").met is None
    no_base = Figure("s", "k", "l", 1.0, "s", targets=[Target("ratio", "<=", 0.5)])
    assert no_base.met is None
    invalid = Figure("s", "k", "l", 0.1, "s", targets=[Target("value", "<=", 1.0)])
    invalid.invalid = "a docker build ran"
    assert invalid.met is False


def test_figure_json_carries_baseline_ratio_target_and_verdict():
    fig = Figure(
        "stack",
        "start",
        "start",
        1.5,
        "s",
        6.0,
        "testcontainers",
        [Target("value", "<=", 3.0, "s"), Target("ratio", "<=", 0.5)],
    )
    data = fig.to_json()
    assert data["ratio"] == pytest.approx(0.25)
    assert data["met"] is True
    assert [t["text"] for t in data["targets"]] == ["<= 3 s", "<= 0.5x baseline"]
    assert all(t["met"] for t in data["targets"])
    json.dumps(data)


def test_fmt_value_units():
    assert fmt_value(0.0421, "s") == "42 ms"
    assert fmt_value(12.34, "s") == "12.3 s"
    assert fmt_value(300, "s") == "5.0 min"
    assert fmt_value(2048, "MiB") == "2.00 GiB"
    assert fmt_value(None, "s") == "—"


STATS = """\
#14 95.2 sccache-stats: Compile requests                    150
#14 95.2 sccache-stats: Compile requests executed           140
#14 95.2 sccache-stats: Cache hits                          133
#14 95.2 sccache-stats: Cache hits (Rust)                   133
#14 95.2 sccache-stats: Cache misses                          7
#14 95.2 sccache-stats: Cache misses (Rust)                   7
#14 95.2 sccache-stats: Cache hits rate                   95.00 %
#14 95.2 sccache-stats: Cache location                  Local disk: "/sccache"
"""


def test_sccache_stats_parsed_from_prefixed_build_log_lines():
    lines = ["migrate: #13 [build 5/5] RUN ...", *(f"migrate: {ln}" for ln in STATS.splitlines())]
    stats = parse_sccache_stats(lines)
    assert stats is not None
    assert stats["Cache hits"] == 133
    assert stats["Cache misses"] == 7
    assert stats["Cache hits (Rust)"] == 133
    assert sccache_hit_rate(stats) == pytest.approx(95.0)


def test_sccache_last_block_wins_and_absent_stats_are_none():
    first = STATS.replace("133", "0").replace("  7\n", "140\n")
    stats = parse_sccache_stats([*first.splitlines(), *STATS.splitlines()])
    assert stats is not None
    assert stats["Cache hits"] == 133
    assert parse_sccache_stats(["#1 DONE 0.1s"]) is None
    assert sccache_hit_rate(None) is None
    assert sccache_hit_rate({"Cache hits": 0, "Cache misses": 0}) is None


def test_parse_mem_of_docker_stats():
    assert parse_mem("12.5MiB / 23.4GiB") == pytest.approx(12.5)
    assert parse_mem("1.5GiB / 23GiB") == pytest.approx(1536)
    assert parse_mem("512KiB / 1GiB") == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unparsable"):
        parse_mem("-- / --")


def test_busy_cores_from_proc_stat():
    before = cpu_jiffies("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n")
    after = cpu_jiffies("cpu  250 0 100 900 50 0 0 0 0 0\ncpu0 1 2 3\n")
    assert before == (150, 1000)
    assert after == (350, 1300)
    # 200 of 300 jiffies busy on a 2-core machine: 1.33 cores on average
    assert busy_cores(before, after, 2) == pytest.approx(4 / 3)
    assert busy_cores(after, after, 2) == 0.0


def test_best_parallel_wall_keeps_fixed_costs_and_splits_the_rest():
    # 5.3 s with one worker, 3.3 s of it paid by every run: two workers need at least 4.3 s
    assert best_parallel_wall(5.3, 3.3) == pytest.approx(4.3)
    assert best_parallel_wall(10.0, 0.0, workers=4) == pytest.approx(2.5)
    # a fixed-cost run longer than the suite (noise) never gives less than the fixed costs
    assert best_parallel_wall(3.0, 3.2) == pytest.approx(3.2)


DOCKERFILE = """\
FROM ${RUST_IMAGE} AS build
WORKDIR /src
RUN command -v sccache || cargo install sccache
RUN --mount=type=cache,id=tasker-cargo-registry,target=/usr/local/cargo/registry \\
    --mount=type=cache,id=tasker-target-fast,target=/src/target \\
    cargo build --locked --bins \\
 && cp target/debug/x /out/
RUN ["/bin/true"]

FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=build /out/x /app/
"""


def test_make_cold_renews_compile_caches_but_keeps_downloads_and_busts_every_shell_run():
    cold = repo.make_cold(DOCKERFILE, "tok123")
    assert "id=tasker-target-fast-bench-tok123," in cold
    assert "id=tasker-cargo-registry," in cold  # crate downloads stay shared
    assert "cargo install sccache && : bench-tok123" in cold
    assert "cp target/debug/x /out/ && : bench-tok123" in cold
    assert "--mount=type=cache,id=tasker-target-fast,target" not in cold
    assert 'RUN ["/bin/true"]\n' in cold  # exec form untouched
    assert cold.count("bench-tok123") == 3
    with pytest.raises(ValueError, match="no shell-form RUN"):
        repo.make_cold("FROM scratch\n", "t")


@pytest.mark.parametrize("tier", ["test", "ci", "prod"])
def test_make_cold_applies_to_the_real_dockerfiles(tier):
    text = (repo_root() / f"docker/build/Dockerfile.{tier}").read_text()
    cold = repo.make_cold(text, "abc")
    assert "bench-abc" in cold
    for line in cold.splitlines():
        if "type=cache" in line and "id=" in line and "cargo-registry" not in line:
            assert "-bench-abc" in line


def repo_root():
    from tasker_testing.build.builder import REPO_ROOT

    return REPO_ROOT


@pytest.fixture
def git_repo(tmp_path):
    root = tmp_path / "src"
    (root / "crates/tasker-worker/src").mkdir(parents=True)
    (root / "crates/tasker-worker/src/handlers.rs").write_text("pub fn f() {}\n")
    (root / "Cargo.lock").write_text("version = 4\n")
    (root / ".gitignore").write_text("target/\n")
    (root / "target").mkdir()
    (root / "target/junk").write_text("x")
    (root / "untracked.txt").write_text("new")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(
        ["git", "-C", str(root), "add", "crates", "Cargo.lock", ".gitignore"], check=True
    )
    (root / "Cargo.lock").write_text("version = 4\n# edited, not committed\n")
    return root


def test_copy_repo_takes_working_tree_bytes_skips_ignored_and_never_touches_the_source(
    git_repo, tmp_path
):
    dest = repo.copy_repo(git_repo, tmp_path / "copy")
    assert (dest / "Cargo.lock").read_text().endswith("# edited, not committed\n")
    assert (dest / "untracked.txt").exists()
    assert not (dest / "target").exists()
    repo.code_change(dest, "deadbeef" * 4)
    repo.lock_touch(dest, "cafe")
    assert (git_repo / "crates/tasker-worker/src/handlers.rs").read_text() == "pub fn f() {}\n"
    assert "bench" not in (git_repo / "Cargo.lock").read_text()


def test_code_change_adds_code_and_lock_touch_is_a_comment(git_repo):
    edited = repo.code_change(git_repo, "0000abcd" + "0" * 24)
    text = edited.read_text()
    assert "#[allow(dead_code)]" in text
    assert "fn bench_code_change_0000abcd() -> u64" in text
    lock = repo.lock_touch(git_repo, "t1")
    lines = lock.read_text().splitlines()
    assert lines[-1] == "# bench touch t1"
    assert lines[0] == "version = 4"


def _figures():
    ok = Figure(
        "stack",
        "start",
        "stack ready",
        1.2,
        "s",
        6.0,
        "testcontainers",
        [Target("value", "<=", 3.0, "s"), Target("ratio", "<=", 0.5)],
        note="median of 5",
    )
    clone = Figure(
        "database",
        "clone",
        "clone vs container",
        0.02,
        "s",
        3.0,
        "container",
        [Target("speedup", ">=", 20.0)],
    )
    miss = Figure(
        "latency", "p50", "linear P50", 0.4, "s", targets=[Target("value", "<=", 0.15, "s")]
    )
    skipped = Figure("builds", "prod.cold", "prod: cold build", None, "s", skipped="time budget")
    return [ok, clone, miss, skipped]


META = {
    "created": "2026-11-25T12:00:00+00:00",
    "quick": True,
    "machine": {"cores": 2, "memory_gib": 24.0, "kernel": "6.1"},
    "engine": {"server_version": "20.10.24"},
    "commit": {"sha": "0123456789abcdef", "dirty": False},
}


def test_markdown_is_one_table_with_verdicts_and_skips():
    text = report.markdown(_figures(), META)
    table = [ln for ln in text.splitlines() if ln.startswith("|")]
    assert len(table) == 2 + 4
    assert "✅" in table[2]
    assert "**0.20x**" in table[2]
    assert "**150x faster**" in table[3]
    assert "❌" in table[4]
    assert "skipped: time budget" in table[5]
    assert "0123456789" in text
    assert "2 cores" in text


def test_json_summary_counts_met_missed_and_skipped(tmp_path):
    data = report.to_json(_figures(), META, {"x": 1})
    assert data["summary"]["targets_met"] == 2
    assert data["summary"]["targets_missed"] == 1
    assert data["summary"]["skipped"] == ["builds/prod.cold: time budget"]
    paths = report.write(tmp_path, _figures(), dict(META), {})
    assert json.loads(paths["json"].read_text())["figures"][0]["key"] == "start"
    assert "png" not in paths  # no latency samples, no chart


def test_chart_is_written_with_agg(tmp_path):
    pytest.importorskip("matplotlib")
    raw = {
        "latency": {
            "linear": {
                "samples": [0.05, 0.06, 0.07, 0.2],
                "summary": summarize([0.05, 0.06, 0.07, 0.2]),
            }
        }
    }
    assert report.chart(raw, tmp_path / "latency.png")
    assert (tmp_path / "latency.png").read_bytes()[:4] == b"\x89PNG"


def test_sccache_stats_skip_version_rows() -> None:
    from tasker_testing.bench.stats import parse_sccache_stats

    lines = [
        "#15 1.0 sccache-stats: Compile requests                    150",
        "#15 1.0 sccache-stats: Cache hits                          120",
        "#15 1.0 sccache-stats: Cache misses                         30",
        "#15 1.0 sccache-stats: Version (client)                 0.16.0",
    ]
    stats = parse_sccache_stats(lines)
    assert stats is not None
    assert stats["Cache hits"] == 120
    assert "Version (client)" not in stats
