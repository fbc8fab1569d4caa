"""The GitHub Actions workflow, read as data: what every step may run, permissions, pinning."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "integration-tests.yml"
SHA = re.compile(r"^[0-9a-f]{40}$")


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def _steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job_id, step) for job_id, job in workflow["jobs"].items() for step in job["steps"]]


def _triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    # PyYAML (YAML 1.1) reads the bare key `on` as the boolean True.
    return workflow.get("on") or workflow[True]


def test_run_steps_call_only_nox_or_ci_scripts(workflow: dict[str, Any]) -> None:
    runs = [(job, step["run"]) for job, step in _steps(workflow) if "run" in step]
    assert runs
    for job, script in runs:
        lines = [line.strip() for line in script.strip().splitlines() if line.strip()]
        assert len(lines) == 1, f"{job}: one command per step: {script!r}"
        argv = shlex.split(lines[0])
        assert not any(token in lines[0] for token in (";", "&", "|", "`", "$(")), (
            f"{job}: {script}"
        )
        if argv[0] == "nox":
            assert argv[1] == "-s", f"{job}: {script}"
        else:
            assert argv[0] == "python", f"{job}: {script}"
            assert re.fullmatch(r"ci/\w+\.py", argv[1]), f"{job}: {script}"
            assert (REPO / argv[1]).is_file(), f"{job}: {argv[1]} does not exist"


def test_nox_sessions_named_exist(workflow: dict[str, Any]) -> None:
    noxfile = (REPO / "noxfile.py").read_text()
    for job, step in _steps(workflow):
        argv = shlex.split(step.get("run", "x"))
        if argv[0] == "nox":
            session = argv[2]
            declared = f'name="{session}"' in noxfile or f"def {session}(" in noxfile
            assert declared, f"{job}: nox session {session} is not in noxfile.py"


def test_no_expressions_inside_run(workflow: dict[str, Any]) -> None:
    """Values reach scripts through env:, never ${{ }} pasted into shell (template injection)."""
    for job, step in _steps(workflow):
        assert "${{" not in step.get("run", ""), f"{job}: {step['run']}"


def test_permissions_read_only_by_default(workflow: dict[str, Any]) -> None:
    assert workflow["permissions"] == {"contents": "read"}
    widened = {
        job_id: job["permissions"]
        for job_id, job in workflow["jobs"].items()
        if "permissions" in job
    }
    assert widened["build"] == {"contents": "read", "packages": "write"}
    assert widened["integration"] == {"contents": "read", "packages": "read"}
    assert "permissions" not in workflow["jobs"]["lint"]


def test_every_action_pinned_by_sha_with_version_comment(workflow: dict[str, Any]) -> None:
    uses = [(job, step["uses"]) for job, step in _steps(workflow) if "uses" in step]
    assert uses
    for job, ref in uses:
        _action, _, version = ref.partition("@")
        assert SHA.match(version), f"{job}: {ref} is not pinned to a commit SHA"
    text = WORKFLOW.read_text()
    for line in text.splitlines():
        if "uses:" in line:
            assert re.search(r"@[0-9a-f]{40} # v\d", line), f"no version comment: {line.strip()}"


def test_checkouts_do_not_persist_credentials(workflow: dict[str, Any]) -> None:
    checkouts = [
        s for _, s in _steps(workflow) if s.get("uses", "").startswith("actions/checkout@")
    ]
    assert len(checkouts) == len(workflow["jobs"])
    assert all(s.get("with", {}).get("persist-credentials") is False for s in checkouts)


def test_triggers_concurrency_and_shards(workflow: dict[str, Any]) -> None:
    assert set(_triggers(workflow)) == {"push", "pull_request"}
    assert workflow["concurrency"]["cancel-in-progress"] is True
    integration = workflow["jobs"]["integration"]
    groups = integration["strategy"]["matrix"]["group"]
    assert groups == list(range(1, int(workflow["env"]["SPLITS"]) + 1))
    assert integration["needs"] == "build"
    command = next(s["run"] for s in integration["steps"] if "integration-ci" in s.get("run", ""))
    assert '--splits "$SPLITS" --group "$SHARD"' in command


def test_images_by_hash_and_fork_artifact(workflow: dict[str, Any]) -> None:
    build = list(workflow["jobs"]["build"]["steps"])
    runs = [s.get("run", "") for s in build]
    assert any(r.startswith("python ci/images.py push") for r in runs)
    assert any(r.startswith("python ci/images.py save") for r in runs)
    pushes = [s for s in build if s.get("run", "").startswith("python ci/images.py push")]
    assert pushes[0]["if"] == "env.PUSH_IMAGES == 'true'"
    logins = [s for _, s in _steps(workflow) if s.get("uses", "").startswith("docker/login-action")]
    assert logins
    assert all(s["if"] == "env.PUSH_IMAGES == 'true'" for s in logins)
    shard_runs = [s.get("run", "") for s in workflow["jobs"]["integration"]["steps"]]
    assert any(r.startswith("python ci/images.py pull") and "--allow-missing" not in r
               for r in shard_runs)  # fmt: skip
    assert any(r.startswith("python ci/images.py load") for r in shard_runs)


def test_failure_uploads_and_summary(workflow: dict[str, Any]) -> None:
    steps = workflow["jobs"]["integration"]["steps"]
    by_run = {s.get("run", "").split(" ")[1] if "run" in s else s["uses"]: s for s in steps}
    assert by_run["ci/summary.py"]["if"] == "always()"
    assert "$GITHUB_STEP_SUMMARY" in by_run["ci/summary.py"]["run"]
    assert by_run["ci/collect_logs.py"]["if"] == "failure()"
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["if"] == "failure()"
