"""Where ports are published and where the client reaches them, for local and remote engines."""

from __future__ import annotations

import pytest

from tasker_testing.stack import StackError, connect_host, publish_ip


def test_defaults_are_loopback_only():
    assert publish_ip({}) == "127.0.0.1"
    assert connect_host({}) == "127.0.0.1"


@pytest.mark.parametrize(
    "docker_host",
    ["unix:///var/run/docker.sock", "unix:///run/user/1000/docker.sock", "tcp://127.0.0.1:2375"],
)
def test_an_engine_on_this_machine_keeps_loopback(docker_host):
    assert connect_host({"DOCKER_HOST": docker_host}) == "127.0.0.1"


def test_a_remote_engine_without_a_publish_address_is_a_clear_error():
    with pytest.raises(StackError, match="TASKER_PUBLISH_IP"):
        connect_host({"DOCKER_HOST": "tcp://buildbox:2376"})


def test_a_remote_engine_is_reached_on_its_host():
    env = {"DOCKER_HOST": "ssh://me@buildbox", "TASKER_PUBLISH_IP": "10.1.2.3"}
    assert publish_ip(env) == "10.1.2.3"
    assert connect_host(env) == "buildbox"


def test_explicit_connect_address_wins():
    env = {"DOCKER_HOST": "tcp://buildbox:2376", "TASKER_DOCKER_HOST_IP": "192.0.2.7"}
    assert connect_host(env) == "192.0.2.7"
