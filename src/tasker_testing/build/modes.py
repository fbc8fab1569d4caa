"""Build tiers and how a user names them."""

from __future__ import annotations

import enum
import os

ENV_VAR = "TEST_BUILD_MODE"


class BuildModeError(ValueError):
    """An unknown build mode; the message lists the valid ones."""


class BuildMode(enum.Enum):
    """The three image tiers: ``fast`` (local debug), ``ci`` (sccache), ``prod`` (cargo-chef)."""

    FAST = "fast"
    CI = "ci"
    PROD = "prod"

    @property
    def dockerfile(self) -> str:
        return f"docker/build/Dockerfile.{_DOCKERFILE_SUFFIX[self]}"

    @classmethod
    def parse(cls, value: str) -> BuildMode:
        """Parse a user-given name; unknown names are an error, never a silent fallback."""
        key = value.strip().lower()
        if key in _ALIASES:
            return _ALIASES[key]
        valid = ", ".join(sorted(_ALIASES))
        raise BuildModeError(
            f"unknown build mode {value!r}: valid values are {valid} "
            f"(set {ENV_VAR} or pass --build-mode)"
        )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> BuildMode:
        """The mode named by TEST_BUILD_MODE; ``fast`` when it is unset or empty."""
        value = (os.environ if environ is None else environ).get(ENV_VAR, "")
        return cls.parse(value) if value.strip() else cls.FAST


_ALIASES: dict[str, BuildMode] = {
    "fast": BuildMode.FAST,
    "ci": BuildMode.CI,
    "prod": BuildMode.PROD,
    "production": BuildMode.PROD,
}
_DOCKERFILE_SUFFIX = {BuildMode.FAST: "test", BuildMode.CI: "ci", BuildMode.PROD: "prod"}
