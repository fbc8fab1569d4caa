"""What an image is made of, and the content hash that names it. Pure: no Docker here."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

HASH_LENGTH = 12
# Bumped when the hashing scheme itself changes, so old tags are never mistaken for new ones.
_SCHEME = b"tasker-testing/image-hash/v1"


@dataclass(frozen=True)
class ImageSpec:
    """One image to build: its name, Dockerfile, target and context, all relative to the repo."""

    name: str
    dockerfile: str
    context: str = "."
    target: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)

    def tag(self, tier: str, digest: str) -> str:
        return f"{self.name}:{tier}-{digest[:HASH_LENGTH]}"


# --- .dockerignore -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    exclude: bool  # False for "!pattern" exceptions
    literal: str  # the pattern's leading segments before any wildcard


def _literal_prefix(pattern: str) -> str:
    segments = []
    for segment in pattern.split("/"):
        if any(ch in segment for ch in "*?["):
            break
        segments.append(segment)
    return "/".join(segments)


def _may_revive(directory: str, revivers: list[str]) -> bool:
    return any(
        not literal or literal.startswith(directory + "/") or directory.startswith(literal)
        for literal in revivers
    )


@cache
def _compile(pattern: str) -> re.Pattern[str]:
    """Docker's matching: `*` and `?` stay within a path segment, `**` spans segments."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                out.append("(?:.*/)?")
            else:
                out.append(".*")
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i)
            if end == -1:
                out.append(re.escape(ch))
            else:
                out.append(pattern[i : end + 1].replace("\\", "\\\\"))
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z")


def parse_dockerignore(text: str) -> list[_Rule]:
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        if pattern in ("", "."):
            continue
        rules.append(_Rule(_compile(pattern), exclude, _literal_prefix(pattern)))
    return rules


def _excluded(rel: str, rules: list[_Rule]) -> bool:
    """Last matching rule wins; a pattern that matches a parent directory matches its files."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for rule in rules:
        if any(rule.regex.match(prefix) for prefix in prefixes):
            verdict = rule.exclude
    return verdict


def context_files(context: Path) -> Iterator[str]:
    """Every file the build context sends, relative and sorted, after its .dockerignore."""
    ignore = context / ".dockerignore"
    rules = parse_dockerignore(ignore.read_text()) if ignore.is_file() else []
    revivers = [rule.literal for rule in rules if not rule.exclude]
    for root, dirs, files in os.walk(context):
        rel_root = os.path.relpath(root, context)
        rel_root = "" if rel_root == "." else rel_root + "/"
        # Skip an excluded directory unless a "!" rule could bring back something inside it.
        dirs[:] = [
            d
            for d in dirs
            if not _excluded(rel_root + d, rules) or _may_revive(rel_root + d, revivers)
        ]
        dirs.sort()
        for name in sorted(files):
            rel = rel_root + name
            if not _excluded(rel, rules):
                yield rel


def content_hash(
    context: Path,
    dockerfile: Path,
    build_args: Mapping[str, str],
    extra: Iterable[str] = (),
) -> str:
    """sha256 over the Dockerfile, the build args and every context file (path, mode, bytes)."""
    digest = hashlib.sha256(_SCHEME)
    digest.update(b"\0dockerfile\0" + dockerfile.read_bytes())
    for key in sorted(build_args):
        digest.update(f"\0arg\0{key}={build_args[key]}".encode())
    for item in extra:
        digest.update(b"\0extra\0" + item.encode())
    for rel in context_files(context):
        path = context / rel
        mode = path.lstat().st_mode
        executable = bool(mode & stat.S_IXUSR)
        digest.update(f"\0file\0{rel}\0{int(executable)}\0".encode())
        if stat.S_ISLNK(mode):
            digest.update(b"link:" + os.readlink(path).encode())
        else:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
