"""BuildMode: parsing, aliases, the default, and errors that list the valid values."""

from __future__ import annotations

import pytest

from tasker_testing.build import BuildMode, BuildModeError


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        ("fast", BuildMode.FAST),
        ("ci", BuildMode.CI),
        ("prod", BuildMode.PROD),
        ("production", BuildMode.PROD),
        ("  CI ", BuildMode.CI),
        ("Production", BuildMode.PROD),
    ],
)
def test_parse_accepts_names_and_aliases(value, mode):
    assert BuildMode.parse(value) is mode


@pytest.mark.parametrize("value", ["nonsense", "release", "fastest", "dev", "p"])
def test_unknown_mode_is_an_error_listing_valid_values(value):
    with pytest.raises(BuildModeError) as excinfo:
        BuildMode.parse(value)
    message = str(excinfo.value)
    assert repr(value) in message
    for valid in ("fast", "ci", "prod", "production"):
        assert valid in message
    assert "TEST_BUILD_MODE" in message


def test_build_mode_error_is_a_value_error():
    assert issubclass(BuildModeError, ValueError)


@pytest.mark.parametrize("environ", [{}, {"TEST_BUILD_MODE": ""}, {"TEST_BUILD_MODE": "  "}])
def test_from_env_defaults_to_fast_when_unset_or_empty(environ):
    assert BuildMode.from_env(environ) is BuildMode.FAST


def test_from_env_reads_the_variable():
    assert BuildMode.from_env({"TEST_BUILD_MODE": "production"}) is BuildMode.PROD


def test_from_env_never_falls_back_silently():
    with pytest.raises(BuildModeError):
        BuildMode.from_env({"TEST_BUILD_MODE": "nonsense"})


def test_each_tier_has_its_own_dockerfile():
    files = {mode.dockerfile for mode in BuildMode}
    assert files == {
        "docker/build/Dockerfile.test",
        "docker/build/Dockerfile.ci",
        "docker/build/Dockerfile.prod",
    }
