"""Labels and owner identity: pure functions, no Docker."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tasker_testing import cleanup, labels
from tasker_testing.labels import Owner


def test_owner_labels_carry_every_key() -> None:
    owner = Owner(run_id="3f9c1a2b" + "0" * 24, worker="gw0", pid=123, host="h", created=1.5)
    lab = owner.labels(**{labels.SERVICE: "postgres"})
    assert lab == {
        "tasker-testing": "1",
        "tasker-testing.run": "3f9c1a2b" + "0" * 24,
        "tasker-testing.worker": "gw0",
        "tasker-testing.pid": "123",
        "tasker-testing.host": "h",
        "tasker-testing.created": "1.500",
        "tasker-testing.service": "postgres",
    }
    assert Owner.from_labels(lab) == owner


def test_names_follow_the_contract() -> None:
    owner = Owner(run_id="3f9c1a2bdeadbeef", worker="gw0")
    assert owner.name("postgres") == "tasker-3f9c1a2b-gw0-postgres"
    assert owner.name("worker", stack="x1") == "tasker-3f9c1a2b-gw0x1-worker"
    assert Owner(run_id="r", worker="we ird/").name("db") == "tasker-r-we-ird-db"


def test_filters_select_one_owner() -> None:
    owner = Owner(run_id="abc", worker="gw1", pid=7)
    assert owner.filters() == [
        "tasker-testing=1",
        "tasker-testing.run=abc",
        "tasker-testing.worker=gw1",
        "tasker-testing.pid=7",
    ]


@pytest.mark.parametrize(
    "bad",
    [{}, {"tasker-testing.run": "r"}, {**Owner("r", "w").labels(), "tasker-testing.pid": "x"}],
)
def test_garbled_labels_give_no_owner(bad: dict[str, str]) -> None:
    assert Owner.from_labels(bad) is None


def test_run_id_can_be_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(labels.RUN_ID_ENV, "inner run!")
    assert labels.new_run_id() == "inner-run"
    monkeypatch.delenv(labels.RUN_ID_ENV)
    assert len(labels.new_run_id()) == 32


def test_is_ours_and_kept() -> None:
    assert labels.is_ours({"tasker-testing": "1"})
    assert not labels.is_ours({"other": "1"})
    assert not labels.is_ours(None)
    assert labels.is_kept({"tasker-testing.keep": "1"})
    assert not labels.is_kept({})


def test_pid_liveness_sees_zombies_and_reuse() -> None:
    assert cleanup.pid_alive(os.getpid())
    assert cleanup.pid_alive(os.getpid(), started_at=time.time())
    # a pid that started "before" our recorded time is fine; one recorded long before it started is
    # a reused pid
    assert not cleanup.pid_alive(os.getpid(), started_at=1.0)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while cleanup.pid_alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not cleanup.pid_alive(child.pid), "an exited, unreaped child (zombie) counts as dead"
    child.wait()
    assert not cleanup.pid_alive(0)


def test_owner_on_another_host_is_assumed_alive() -> None:
    assert cleanup.owner_alive(Owner("r", "w", pid=999_999_999, host="elsewhere"))
    assert not cleanup.owner_alive(Owner("r", "w", pid=999_999_999))
