"""The compose files: valid for the compose tool this engine has, and the test stack comes up."""

from __future__ import annotations

import secrets

import httpx
import pytest

from tasker_testing import cleanup, compose, labels

pytestmark = pytest.mark.docker


@pytest.fixture
def owner():
    """An owner with a watchdog, so even a killed test leaves no compose container behind."""
    me = labels.Owner(run_id=labels.new_run_id(), worker="compose")
    watchdog = cleanup.Watchdog.spawn(me)
    yield me
    watchdog.release()
    left = cleanup.count_labelled([f"{labels.ROOT}=1", f"{labels.RUN}={me.run_id}"])
    assert left == {"containers": 0, "networks": 0, "volumes": 0}


@pytest.mark.parametrize("tier", sorted(compose.FILES))
def test_compose_file_is_valid(tier, owner):
    with compose.project(tier, owner, password=secrets.token_hex(8)) as proj:
        rendered = proj.run("config")
    assert "image:" not in rendered.replace("image: tasker", "")  # nothing to resolve remotely
    assert "127.0.0.1" in rendered
    for service in ("postgres", "migrate", "orchestration", "worker"):
        assert f"  {service}:" in rendered


def test_compose_file_refuses_to_run_without_a_password(owner):
    with (
        compose.project("fast", owner, password="") as proj,
        pytest.raises(compose.ComposeError, match="POSTGRES_PASSWORD"),
    ):
        proj.run("config", "-q")


def test_test_stack_comes_up_healthy(owner):
    with compose.project("fast", owner, password=secrets.token_hex(8)) as proj:
        proj.run("up", "-d", "--build")
        proj.wait_healthy(timeout=600)
        port = proj.port("orchestration", 8080)
        ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] in ("ready", "healthy", "ok")
        migrate_states = proj.run("ps", "migrate")
        assert "Exit 0" in migrate_states or "exited (0)" in migrate_states.lower()
