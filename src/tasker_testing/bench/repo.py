"""Temporary copies of the repo for build measurements, and the edits made to them.

Nothing here touches the working tree: a copy holds ``git ls-files`` (tracked and untracked but
not ignored) with the working tree's current bytes, and every edit is made in the copy.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

#: the leaf crate edited for a "code-only change" (only it and its binary are rebuilt)
CODE_CHANGE_FILE = "crates/tasker-worker/src/handlers.rs"
#: cache mounts kept shared in a cold build: downloaded crate sources (network, not compiling)
SHARED_CACHE_IDS = frozenset({"tasker-cargo-registry"})
_CACHE_ID = re.compile(r"(--mount=type=cache,(?:[^ \\]*,)?id=)([A-Za-z0-9_.-]+)")


def tracked_files(root: Path) -> list[str]:
    """Files git knows or would add (tracked + untracked, minus ignored), that exist now."""
    out = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout
    names = sorted({n for n in out.decode().split("\0") if n})
    return [n for n in names if (root / n).is_file() or (root / n).is_symlink()]


def copy_repo(root: Path, dest: Path) -> Path:
    """Copy the working tree's files (``tracked_files``) into ``dest``; returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in tracked_files(root):
        src, dst = root / name, dest / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(src.readlink())
        else:
            shutil.copy2(src, dst)
    return dest


def make_cold(dockerfile_text: str, token: str) -> str:
    """A Dockerfile whose Rust compile cannot reuse anything from earlier builds.

    * every cache mount except the crate-download registry gets a fresh id (empty target dir,
      empty sccache dir), and
    * every shell-form RUN ends with ``&& : bench-<token>``: a new command, so a layer-cache
      miss (no cargo-chef cooked layer, no compiled stage is reused), and build-cache records
      that name the token, so they can be pruned afterwards (see ``cache_records_to_prune``).

    Base images, the database image and downloaded crate sources stay warm.
    """

    def fresh_id(match: re.Match[str]) -> str:
        cache_id = match.group(2)
        if cache_id in SHARED_CACHE_IDS:
            return match.group(0)
        return f"{match.group(1)}{cache_id}-bench-{token}"

    out: list[str] = []
    in_run = False
    runs = 0
    for line in _CACHE_ID.sub(fresh_id, dockerfile_text).splitlines():
        stripped = line.strip()
        if not in_run and re.match(r"RUN\s+(?!\[)", stripped, re.IGNORECASE):
            in_run = True
        if in_run and not stripped.endswith("\\"):
            in_run = False
            runs += 1
            line = f"{line} && : bench-{token}"  # noqa: PLW2901
        out.append(line)
    if runs == 0:
        raise ValueError("no shell-form RUN instruction to make cold")
    return "\n".join(out) + "\n"


def code_change(root: Path, token: str) -> Path:
    """A real source edit in a leaf crate: a new (dead) function. Returns the edited file."""
    path = root / CODE_CHANGE_FILE
    marker = int(token[:8], 16)
    path.write_text(
        path.read_text()
        + f"\n#[allow(dead_code)]\nfn bench_code_change_{token[:8]}() -> u64 {{\n    {marker}\n}}\n"
    )
    return path


def lock_touch(root: Path, token: str) -> Path:
    """A dependency-neutral Cargo.lock change (a TOML comment): new hash, same dependencies.

    ``cargo --locked`` parses and compares the resolve, so the build still passes.
    """
    path = root / "Cargo.lock"
    text = path.read_text()
    path.write_text(text + ("" if text.endswith("\n") else "\n") + f"# bench touch {token}\n")
    return path
