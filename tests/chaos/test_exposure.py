"""Exposure while stacks run: ports on 127.0.0.1 only, non-root services, no secrets in images,
a different DB password per stack (and one stack's password does not open another's DB)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack

import psycopg
import pytest

from tasker_testing import cleanup, labels
from tasker_testing.stack import Stack

SECRET = re.compile(r"pass(word|wd)?|secret|token|api[_-]?key|credential|private[_-]?key", re.I)


@pytest.fixture(scope="module")
def two_stacks(
    start_own_stack: Callable[..., AbstractContextManager[Stack]],
) -> Iterator[tuple[Stack, Stack]]:
    with ExitStack() as stacks:
        a = stacks.enter_context(start_own_stack("expose-a"))
        b = stacks.enter_context(start_own_stack("expose-b"))
        yield a, b


def test_every_published_port_binds_127_0_0_1_only(two_stacks: tuple[Stack, Stack]) -> None:
    client = cleanup.docker_client()
    try:
        containers = client.containers.list(
            filters={"label": f"{labels.ROOT}=1", "status": "running"}, ignore_removed=True
        )
        ours = {s.services[n].name for s in two_stacks for n in s.services}
        seen = {c.name for c in containers}
        assert ours <= seen | {n for n in ours if "migrate" in n}, "our stacks are listed"
        bad, checked = [], 0
        for container in containers:
            attrs = container.attrs
            declared = attrs["HostConfig"].get("PortBindings") or {}
            actual = attrs["NetworkSettings"].get("Ports") or {}
            for port, bindings in [*declared.items(), *actual.items()]:
                for binding in bindings or []:
                    checked += 1
                    if binding.get("HostIp") != "127.0.0.1":
                        bad.append((container.name, port, binding))
    finally:
        client.close()
    assert checked >= 6, "two stacks publish at least three ports each"
    assert not bad, f"ports published beyond 127.0.0.1: {bad}"


@pytest.mark.parametrize("service", ["orchestration", "worker", "postgres"])
def test_services_run_as_non_root(two_stacks: tuple[Stack, Stack], service: str) -> None:
    for stack in two_stacks:
        container = stack.services[service].container
        container.reload()
        user = container.attrs["Config"]["User"]
        assert user, f"{service}: no USER in the image, it runs as root"
        assert user.split(":")[0] not in ("0", "root"), user
        code, out = container.exec_run(["id", "-u"])
        assert code == 0, out
        assert int(out.decode().strip()) != 0
        top = container.top(ps_args="-o pid,uid,comm")  # every process, not only exec's
        column = top["Titles"].index("UID")
        rows = top["Processes"]
        assert rows
        assert all(int(row[column]) != 0 for row in rows), f"{service}: uid 0 in {rows}"


def _image_text(tag: str) -> tuple[str, dict[str, str], list[str]]:
    history = subprocess.run(
        ["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", tag],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    inspect = json.loads(
        subprocess.run(
            ["docker", "image", "inspect", tag], capture_output=True, text=True, check=True
        ).stdout
    )[0]
    config = inspect.get("Config") or {}
    return history, dict(config.get("Labels") or {}), list(config.get("Env") or [])


def test_no_secrets_in_image_history_labels_or_env(
    two_stacks: tuple[Stack, Stack], tasker_images: dict[str, str]
) -> None:
    assert set(tasker_images) == {"postgres", "migrate", "orchestration", "worker"}
    passwords = [s.db_password for s in two_stacks]
    findings = []
    for key, tag in tasker_images.items():
        history, image_labels, env = _image_text(tag)
        for line in history.splitlines():
            # a RUN/ENV/ARG that names a password, token... with a value in the layer history
            if SECRET.search(line) and not _documented_reference(line):
                findings.append((key, "history", line[:200]))
        for name, value in image_labels.items():
            if SECRET.search(name) or SECRET.search(value):
                findings.append((key, "label", f"{name}={value}"))
        for item in env:
            name = item.split("=", 1)[0]
            if SECRET.search(name):
                findings.append((key, "env", item))
        for password in passwords:
            assert password not in history + json.dumps(image_labels) + " ".join(env)
    assert not findings, "secret-looking data in images:\n" + "\n".join(map(str, findings))


def _documented_reference(line: str) -> bool:
    """History lines that mention a secret's *name* without a value (e.g. a secret mount)."""
    return "--mount=type=secret" in line or "POSTGRES_PASSWORD is not set" in line


def test_db_passwords_differ_and_do_not_cross(two_stacks: tuple[Stack, Stack]) -> None:
    a, b = two_stacks
    assert a.db_password != b.db_password
    assert len(a.db_password) >= 32  # 128 bits of secrets.token_hex
    for stack in (a, b):
        env = stack.services["postgres"].container.attrs["Config"]["Env"]
        assert f"POSTGRES_PASSWORD={stack.db_password}" in env
    # a's password on b's port is refused: the password protects, it is not decoration
    wrong = b.db_dsn().replace(f"password={b.db_password}", f"password={a.db_password}")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5).close()
    with b.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
