"""The stack declaration as data: validation and ordering, no Docker."""

from __future__ import annotations

import dataclasses

import pytest

from tasker_testing.stack import (
    TASKER_STACK,
    HttpGet,
    LogLine,
    PostgresConnect,
    ServiceSpec,
    StackSpec,
    StackSpecError,
)

IMAGES = {
    k: f"tasker-{k}:fast-0123456789ab" for k in ("postgres", "migrate", "orchestration", "worker")
}


def test_tasker_stack_is_valid_and_ordered() -> None:
    TASKER_STACK.validate(IMAGES)
    stages = [[s.name for s in stage] for stage in TASKER_STACK.stages()]
    assert stages == [["postgres"], ["migrate"], ["orchestration", "worker"]]


def test_tasker_stack_follows_the_contract() -> None:
    pg = TASKER_STACK.service("postgres")
    assert list(pg.tmpfs) == ["/var/lib/postgresql/data"]
    assert pg.env["TASKER_PG_TEST_SETTINGS"] == "1"
    assert pg.env["POSTGRES_PASSWORD"] == "{db_password}", "a random password per stack"
    assert LogLine("database system is ready to accept connections") in pg.readiness
    assert PostgresConnect(5432) in pg.readiness
    assert TASKER_STACK.service("migrate").one_shot
    assert TASKER_STACK.service("orchestration").readiness == (HttpGet(8080, "/ready"),)
    assert TASKER_STACK.service("worker").readiness == (HttpGet(8081, "/health/ready"),)
    for name in ("migrate", "orchestration", "worker"):
        env = TASKER_STACK.service(name).env
        url = env["DATABASE_URL"].format(
            db_user="u", db_password="p", db_host="postgres", db_name="tasker"
        )
        assert url == "postgres://u:p@postgres:5432/tasker"
        assert env["TASKER_ENV"] == "test"
    assert int(TASKER_STACK.service("worker").env["TASKER_VISIBILITY_TIMEOUT_SECONDS"]) <= 10


def _spec(*services: ServiceSpec, **kw: object) -> StackSpec:
    return StackSpec(services=services, db_service=services[0].name, template_after=None, **kw)  # type: ignore[arg-type]


DB = ServiceSpec("db", "pg", ports=(5432,), readiness=(PostgresConnect(5432),))


@pytest.mark.parametrize(
    ("service", "message"),
    [
        (
            ServiceSpec("x", "pg", readiness=(LogLine("ok"),), depends_on=("nope",)),
            "unknown service 'nope'",
        ),
        (
            ServiceSpec("x", "pg", readiness=(HttpGet(8080, "/ready"),)),
            "port 8080, which is not published",
        ),
        (
            ServiceSpec("x", "pg", one_shot=True, ports=(1,), readiness=(HttpGet(1, "/"),)),
            "one-shot",
        ),
        (ServiceSpec("x", "pg"), "needs a readiness check"),
        (
            ServiceSpec("x", "pg", readiness=(LogLine("ok"),), env={"A": "{secret}"}),
            "unknown placeholders ['secret']",
        ),
        (ServiceSpec("x", "nope", readiness=(LogLine("ok"),)), "no image for key 'nope'"),
        (
            ServiceSpec("x", "pg", readiness=(LogLine("ok"),), timeout_s=0),
            "timeout must be positive",
        ),
    ],
)
def test_invalid_services_are_rejected(service: ServiceSpec, message: str) -> None:
    with pytest.raises(StackSpecError, match="invalid stack spec") as info:
        _spec(DB, service).validate({"pg": "img"})
    assert message in str(info.value)


def test_cycles_and_duplicates_are_rejected() -> None:
    a = ServiceSpec("a", "pg", readiness=(LogLine("ok"),), depends_on=("b",))
    b = ServiceSpec("b", "pg", readiness=(LogLine("ok"),), depends_on=("a",))
    with pytest.raises(StackSpecError, match="cycle"):
        _spec(DB, a, b).validate()
    with pytest.raises(StackSpecError, match="duplicate"):
        _spec(DB, DB).validate()


def test_template_after_must_be_a_one_shot_service() -> None:
    spec = dataclasses.replace(_spec(DB), template_after="db")
    with pytest.raises(StackSpecError, match="must be one-shot"):
        spec.validate()
    with pytest.raises(StackSpecError, match="not a service"):
        dataclasses.replace(_spec(DB), template_after="ghost").validate()


def test_every_problem_is_listed_at_once() -> None:
    bad = ServiceSpec("x", "nope", depends_on=("ghost",))
    with pytest.raises(StackSpecError) as info:
        _spec(DB, bad).validate({"pg": "img"})
    text = str(info.value)
    assert "ghost" in text
    assert "nope" in text
    assert "readiness" in text
