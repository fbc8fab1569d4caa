"""The content hash that names images: stable for the same tree, sensitive to what is built."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tasker_testing.build import BuildMode, content_hash, plan
from tasker_testing.build.images import context_files, parse_dockerignore

REPO = Path(__file__).resolve().parents[2]
ARGS = {
    "RUST_IMAGE": "rust:1.95-bookworm",
    "RUNTIME_IMAGE": "debian:bookworm-slim",
    "POSTGRES_IMAGE": "postgres:15-bookworm",
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the repo's tracked files (what a clean clone holds)."""
    listed = (
        subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        source = REPO / rel
        if source.is_file():
            target = tmp_path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return tmp_path


def tags(root: Path, mode: BuildMode = BuildMode.FAST) -> dict[str, str]:
    return {image.service: image.tag for image in plan(mode, ARGS, root)}


def first_rust_file(root: Path) -> Path:
    return sorted((root / "crates").rglob("*.rs"))[0]


def test_same_tree_gives_same_tags(tree):
    assert tags(tree) == tags(tree)


def test_tags_are_tier_and_twelve_hex_digits(tree):
    for service, tag in tags(tree, BuildMode.PROD).items():
        name, _, version = tag.partition(":")
        assert name == f"tasker-{service}"
        tier, _, digest = version.partition("-")
        assert tier == "prod"
        assert len(digest) == 12
        int(digest, 16)
        assert "latest" not in tag


def test_one_byte_in_crates_changes_the_service_hash(tree):
    before = tags(tree)
    source = first_rust_file(tree)
    source.write_bytes(source.read_bytes() + b" ")
    after = tags(tree)
    for service in ("migrate", "orchestration", "worker"):
        assert after[service] != before[service]
    assert after["postgres"] == before["postgres"]  # the db image does not contain the crates


def test_a_migration_change_changes_the_hash(tree):
    before = tags(tree)
    migration = sorted((tree / "migrations").glob("*.sql"))[0]
    migration.write_text(migration.read_text() + "\n-- comment\n")
    assert tags(tree)["migrate"] != before["migrate"]


def test_tests_docs_and_readme_do_not_change_the_hash(tree):
    before = tags(tree)
    (tree / "tests" / "unit" / "test_new.py").write_text("def test_x():\n    pass\n")
    (tree / "README.md").write_text("changed\n")
    (tree / "docs" / "new.md").parent.mkdir(exist_ok=True)
    (tree / "docs" / "new.md").write_text("new\n")
    (tree / "target" / "debug").mkdir(parents=True)
    (tree / "target" / "debug" / "junk").write_bytes(b"\0" * 10)
    assert tags(tree) == before


def test_the_dockerfile_and_build_args_are_covered(tree):
    before = tags(tree)
    other_args = {**ARGS, "RUST_IMAGE": "tasker-base/rust:bookworm-000000000000"}
    assert {i.tag for i in plan(BuildMode.FAST, other_args, tree)} != set(before.values())
    dockerfile = tree / "docker" / "build" / "Dockerfile.test"
    dockerfile.write_text(dockerfile.read_text() + "\n# comment\n")
    assert tags(tree)["worker"] != before["worker"]


def test_tiers_never_share_a_tag(tree):
    all_tags = [tag for mode in BuildMode for tag in tags(tree, mode).values()]
    assert len(all_tags) == len(set(all_tags))


def test_executable_bit_is_part_of_the_hash(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    script = tmp_path / "run.sh"
    script.write_text("echo hi\n")
    before = content_hash(tmp_path, tmp_path / "Dockerfile", {})
    script.chmod(0o755)
    assert content_hash(tmp_path, tmp_path / "Dockerfile", {}) != before


def test_dockerignore_matching_follows_docker_rules(tmp_path):
    for rel in (
        "keep/a.rs",
        "keep/target/x",
        "drop/b.txt",
        "top.md",
        "keep/sub/c.md",
        "Cargo.toml",
        "deep/x/target/y",
    ):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
    (tmp_path / ".dockerignore").write_text("# comment\n*\n!keep/\n!Cargo.toml\n**/target/\n")
    assert list(context_files(tmp_path)) == ["Cargo.toml", "keep/a.rs", "keep/sub/c.md"]


def test_dockerignore_parser_skips_blanks_and_comments():
    rules = parse_dockerignore("\n# c\n  \n/abs/path\n!keep\n")
    assert [r.exclude for r in rules] == [True, False]
    assert rules[0].regex.match("abs/path")
