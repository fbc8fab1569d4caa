"""ci/ scripts and the lint runner, without Docker: fake runners stand in for every command."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ("bootstrap", "collect_logs", "durations", "images", "summary")


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"ci_{name}", REPO / "ci" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


summary = _load("summary")
collect_logs = _load("collect_logs")
durations = _load("durations")
images = _load("images")
bootstrap = _load("bootstrap")


def _done(code: int = 0, out: str = "", err: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess([], code, out, err)


class FakeDocker:
    """Records commands; answers by the first matching prefix in `answers`, else success."""

    def __init__(self, answers: dict[tuple[str, ...], subprocess.CompletedProcess[str]]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(command)
        args = tuple(command[1:])
        for prefix, answer in self.answers.items():
            if args[: len(prefix)] == prefix:
                return answer
        return _done()


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_has_help(name: str) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "ci" / f"{name}.py"), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: python ci/" in result.stdout


# --------------------------------------------------------------------------- summary

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4" time="12.5">
<testcase classname="tests.integration.test_api" name="test_fast" time="0.5"/>
<testcase classname="tests.integration.test_api" name="test_slow[a|b]" time="9.0"/>
<testcase classname="tests.integration.test_db" name="test_broken" time="2.0">
  <failure message="assert 1 == 2&#10;more">trace</failure></testcase>
<testcase classname="tests.integration.test_db" name="test_skipped" time="0.0">
  <skipped message="no engine"/></testcase>
</testsuite></testsuites>
"""


def test_summary_counts_failures_and_slowest(tmp_path: Path) -> None:
    (tmp_path / "junit").mkdir()
    (tmp_path / "junit" / "shard.xml").write_text(JUNIT)
    parsed = summary.parse(summary.junit_files([tmp_path / "junit"]))
    text = summary.render(parsed, "shard 1/2", slowest=2)
    assert "### ❌ shard 1/2" in text
    assert "| 4 | 2 | 1 | 0 | 1 | 12.5s |" in text
    assert "`tests.integration.test_db::test_broken` (failed): assert 1 == 2" in text
    slowest = text.split("**Slowest 2**")[1]
    assert slowest.index("test_slow[a\\|b]") < slowest.index("test_broken")
    assert "test_fast" not in slowest


def test_summary_appends_to_the_step_summary(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_text(JUNIT.replace("<failure", "<x").replace("</failure>", "</x>"))
    out = tmp_path / "step-summary.md"
    out.write_text("earlier\n")
    assert summary.main([str(tmp_path / "a.xml"), "--title", "t", "--append", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("earlier\n### ✅ t")


def test_summary_without_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert summary.main([str(tmp_path / "none")]) == 0
    assert "did not run" in capsys.readouterr().out
    assert summary.main([str(tmp_path / "none"), "--require"]) == 1


def test_summary_bad_xml(tmp_path: Path) -> None:
    (tmp_path / "bad.xml").write_text("<testsuite")
    assert summary.main([str(tmp_path)]) == 1


# --------------------------------------------------------------------------- collect_logs


def test_collect_logs_copies_artifacts_and_container_logs(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    (artifacts / "logs" / "run1" / "gw0").mkdir(parents=True)
    (artifacts / "logs" / "run1" / "gw0" / "worker.log").write_text("boom")
    (artifacts / "junit").mkdir()
    (artifacts / "junit" / "pytest.xml").write_text(JUNIT)
    fake = FakeDocker(
        {
            ("ps",): _done(out="abc\ttasker-gw0/worker\ttasker-worker:ci-1\tExited (1)\n"),
            ("logs",): _done(out="line 1\n", err="line 2\n"),
        }
    )
    out = tmp_path / "upload"
    code = collect_logs.main(
        ["--output", str(out), "--artifacts", str(artifacts), "--tail", "5"], run=fake
    )
    assert code == 0
    assert (out / "logs" / "run1" / "gw0" / "worker.log").read_text() == "boom"
    assert (out / "junit" / "pytest.xml").is_file()
    assert (out / "containers" / "tasker-gw0_worker.log").read_text() == "line 1\nline 2\n"
    assert "tasker-gw0/worker\ttasker-worker:ci-1" in (out / "containers" / "index.tsv").read_text()
    assert fake.calls[0][1:5] == ["ps", "-a", "--filter", "label=tasker-testing=1"]
    assert fake.calls[1][1:] == ["logs", "--timestamps", "--tail", "5", "abc"]
    assert not any("inspect" in call for call in fake.calls)  # env (passwords) never dumped


def test_collect_logs_is_best_effort(tmp_path: Path) -> None:
    fake = FakeDocker({("ps",): _done(1, err="Cannot connect to the Docker daemon")})
    out = tmp_path / "upload"
    assert collect_logs.main(["--output", str(out), "--artifacts", str(tmp_path)], run=fake) == 0
    assert out.is_dir()
    assert not (out / "containers").exists()


# --------------------------------------------------------------------------- durations


def _repo_with_tests(tmp_path: Path) -> Path:
    (tmp_path / "tests" / "integration").mkdir(parents=True)
    (tmp_path / "tests" / "integration" / "test_api.py").write_text("")
    return tmp_path


def test_junit_classnames_become_node_ids(tmp_path: Path) -> None:
    root = _repo_with_tests(tmp_path)
    assert durations.nodeid("tests.integration.test_api", "test_x[1]", root) == (
        "tests/integration/test_api.py::test_x[1]"
    )
    assert durations.nodeid("tests.integration.test_api.TestA", "test_y", root) == (
        "tests/integration/test_api.py::TestA::test_y"
    )


def test_from_junit_sums_and_skips(tmp_path: Path) -> None:
    root = _repo_with_tests(tmp_path)
    (tmp_path / "r.xml").write_text(JUNIT)
    found = durations.from_junit([tmp_path / "r.xml"], root)
    assert found["tests/integration/test_api.py::test_slow[a|b]"] == 9.0
    assert "tests/integration/test_db.py::test_broken" in found
    assert not any("test_skipped" in key for key in found)


def test_dump_is_sorted_and_rounded(tmp_path: Path) -> None:
    out = tmp_path / ".test_durations"
    durations.dump({"b": 1.23456, "a": 2.0}, out)
    assert list(json.loads(out.read_text())) == ["a", "b"]
    assert json.loads(out.read_text())["b"] == 1.235
    assert durations.load(out) == {"a": 2.0, "b": 1.235}
    assert durations.load(tmp_path / "missing") == {}


def test_merge_later_wins(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"x": 1.0, "y": 1.0}))
    (tmp_path / "b.json").write_text(json.dumps([["y", 2.0]]))  # pytest-split's old format
    out = tmp_path / "out.json"
    assert durations.main(["merge", "--output", str(out), str(tmp_path / "a.json"),
                           str(tmp_path / "b.json")]) == 0  # fmt: skip
    assert json.loads(out.read_text()) == {"x": 1.0, "y": 2.0}


def _fake_pytest(xml: str, code: int = 0) -> tuple[list[list[str]], object]:
    calls: list[list[str]] = []

    def run(command: list[str]) -> int:
        calls.append(command)
        report = next(a.split("=", 1)[1] for a in command if a.startswith("--junitxml="))
        Path(report).write_text(xml)
        return code

    return calls, run


def test_refresh_rewrites_from_the_run(tmp_path: Path) -> None:
    out = tmp_path / ".test_durations"
    out.write_text(json.dumps({"tests/gone.py::test_old": 3.0}))
    calls, run = _fake_pytest(JUNIT)
    code = durations.main(
        ["refresh", "--output", str(out), "--", "-n", "2", "tests/integration"], run=run
    )
    assert code == 0
    assert calls[0][:3] == [sys.executable, "-m", "pytest"]
    assert calls[0][3:5] == ["-n", "2"]
    data = json.loads(out.read_text())
    assert "tests/gone.py::test_old" not in data
    assert data["tests/integration/test_api.py::test_fast"] == 0.5


def test_refresh_keep_stale_and_failed_run(tmp_path: Path) -> None:
    out = tmp_path / ".test_durations"
    out.write_text(json.dumps({"tests/gone.py::test_old": 3.0}))
    _, run = _fake_pytest(JUNIT)
    assert durations.main(["refresh", "--keep-stale", "--output", str(out)], run=run) == 0
    assert "tests/gone.py::test_old" in json.loads(out.read_text())
    before = out.read_text()
    _, failing = _fake_pytest(JUNIT, code=1)
    assert durations.main(["refresh", "--output", str(out)], run=failing) == 1
    assert out.read_text() == before
    args = ["refresh", "--accept-failures", "--output", str(out)]
    assert durations.main(args, run=failing) == 1  # still reported as failed
    assert "tests/gone.py::test_old" not in json.loads(out.read_text())
    _, interrupted = _fake_pytest(JUNIT, code=2)
    out.write_text(before)
    assert durations.main(args, run=interrupted) == 2
    assert out.read_text() == before


def test_committed_durations_file_is_valid() -> None:
    path = REPO / ".test_durations"
    data = durations.load(path)
    assert data, "commit a .test_durations (python ci/durations.py refresh)"
    for key, value in data.items():
        assert "::" in key
        assert key.startswith("tests/integration/")
        assert (REPO / key.split("::", 1)[0]).is_file(), f"{key}: file gone; refresh durations"
        assert value >= 0


# --------------------------------------------------------------------------- images

PLANNED = [
    images.Image("postgres", "tasker-postgres:ci-aaaaaaaaaaaa"),
    images.Image("migrate", "tasker-migrate:ci-bbbbbbbbbbbb"),
    images.Image("orchestration", "tasker-orchestration:ci-bbbbbbbbbbbb"),
    images.Image("worker", "tasker-worker:ci-bbbbbbbbbbbb"),
]
REGISTRY = "ghcr.io/Tasker-Systems/Tasker-Core"
REMOTE = "ghcr.io/tasker-systems/tasker-core"


def test_tags_match_the_builder_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    from tasker_testing.build import BuildMode, plan
    from tasker_testing.build.builder import _expected_base_args

    monkeypatch.setenv("TASKER_BASE_IMAGES", "official")
    for mode in BuildMode:
        expected = plan(mode, _expected_base_args(mode))
        got = images.planned_images(mode.value)
        assert [(i.service, i.local) for i in got] == [(p.service, p.tag) for p in expected]
        assert all(i.local.split(":")[1].startswith(f"{mode.value}-") for i in got)


def test_tags_command_prints_remote_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert images.main(["tags", "--registry", REGISTRY], images=PLANNED) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        f"postgres tasker-postgres:ci-aaaaaaaaaaaa {REMOTE}/tasker-postgres:ci-aaaaaaaaaaaa"
    )
    assert len(lines) == 4


def test_unknown_build_mode_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert images.main(["tags", "--build-mode", "turbo"]) == 2
    assert "unknown build mode" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["push", "pull"])
def test_registry_is_required(command: str) -> None:
    with pytest.raises(SystemExit) as exc:
        images.main([command, "--build-mode", "ci"], images=PLANNED)
    assert exc.value.code == 2


def test_push_tags_then_pushes_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKER_DOCKER_CLI", "/usr/bin/docker")
    fake = FakeDocker({})
    assert images.main(["push", "--registry", REGISTRY], images=PLANNED, run=fake) == 0
    pushes = [c for c in fake.calls if c[1] == "push"]
    assert [c[2] for c in pushes] == [f"{REMOTE}/{i.local}" for i in PLANNED]
    assert ["/usr/bin/docker", "tag", PLANNED[0].local, f"{REMOTE}/{PLANNED[0].local}"] in (
        fake.calls
    )


def test_push_refuses_when_an_image_is_not_built() -> None:
    fake = FakeDocker({("image", "inspect", PLANNED[1].local): _done(1, err="No such image")})
    assert images.main(["push", "--registry", REGISTRY], images=PLANNED, run=fake) == 1
    assert not any(c[1] == "push" for c in fake.calls)


def test_pull_tags_locally_and_reports_missing() -> None:
    missing = f"{REMOTE}/{PLANNED[3].local}"
    fake = FakeDocker({("pull", missing): _done(1, err="manifest unknown")})
    assert images.main(["pull", "--registry", REGISTRY], images=PLANNED, run=fake) == 1
    assert next(c[1:] for c in fake.calls if c[1] == "tag") == [
        "tag",
        f"{REMOTE}/{PLANNED[0].local}",
        PLANNED[0].local,
    ]
    fake = FakeDocker({("pull", missing): _done(1, err="manifest unknown")})
    args = ["pull", "--registry", REGISTRY, "--allow-missing"]
    assert images.main(args, images=PLANNED, run=fake) == 0


def test_save_and_load(tmp_path: Path) -> None:
    fake = FakeDocker({})
    tar = tmp_path / "out" / "images.tar"
    assert images.main(["save", "--output", str(tar)], images=PLANNED, run=fake) == 0
    assert fake.calls[-1][1:] == ["save", "-o", str(tar), *(i.local for i in PLANNED)]
    assert tar.parent.is_dir()
    fake = FakeDocker({})
    assert images.main(["load", "--input", str(tar)], images=PLANNED, run=fake) == 0
    assert fake.calls[0][1:] == ["load", "-i", str(tar)]
    fake = FakeDocker({("image", "inspect", PLANNED[2].local): _done(1)})
    assert images.main(["load", "--input", str(tar)], images=PLANNED, run=fake) == 1


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_dry_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert bootstrap.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "-m pip install" in out
    assert "nox>=" in out


# --------------------------------------------------------------------------- lint runner


def test_lint_runs_every_check_and_fails_if_any_failed(capsys: pytest.CaptureFixture[str]) -> None:
    from tasker_testing import lint

    ran: list[str] = []

    def fake(command: object, cwd: Path) -> subprocess.CompletedProcess[str]:
        argv = list(command)  # type: ignore[call-overload]
        ran.append(" ".join(argv))
        if "mypy" in argv:
            return _done(1, out="src/x.py:1: error: boom")
        if any(a.endswith("zizmor") for a in argv):
            raise FileNotFoundError(argv[0])
        return _done()

    assert lint.main([], run=fake, root=REPO) == 1
    out = capsys.readouterr().out
    assert len(ran) == 8  # mypy failing and zizmor missing stop nothing
    assert "==> mypy: FAILED (exit 1)" in out
    assert "src/x.py:1: error: boom" in out
    assert "==> zizmor: FAILED (exit 127)" in out
    assert "not installed" in out
    assert "lint: 2 of 8 checks failed: mypy, zizmor" in out
    names = [line.split(":")[0][4:] for line in out.splitlines() if line.startswith("==> ")]
    assert names == [
        "ruff-check",
        "ruff-format",
        "mypy",
        "cargo-fmt",
        "cargo-clippy",
        "hadolint",
        "actionlint",
        "zizmor",
    ]


def test_lint_covers_every_dockerfile_and_workflow() -> None:
    from tasker_testing import lint

    by_name = {c.name: c.command for c in lint.checks(REPO)}
    dockerfiles = {str(p.relative_to(REPO)) for p in (REPO / "docker").rglob("Dockerfile*")}
    assert dockerfiles
    assert dockerfiles <= set(by_name["hadolint"])
    assert ".github/workflows/integration-tests.yml" in by_name["actionlint"]
    assert ".github/workflows/integration-tests.yml" in by_name["zizmor"]
    assert by_name["cargo-clippy"][-2:] == ("-D", "warnings")


def test_lint_only_skip_and_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    from tasker_testing import lint

    def fake(command: object, cwd: Path) -> subprocess.CompletedProcess[str]:
        return _done()

    assert lint.main(["--only", "mypy", "--only", "hadolint", "--skip", "hadolint"], run=fake) == 0
    assert "lint: all 1 checks clean" in capsys.readouterr().out
    assert lint.main(["--only", "pylint"], run=fake) == 2
