"""A stand-in for the Dockerfile's ``python:3.11-slim-bookworm`` base, made from Debian packages.

No registry with base images is reachable here, but the Debian mirror is: debootstrap makes a
minimal bookworm with Python 3.11 (~45 s), imported into podman. A small test-only layer on top adds
what the official image has and the machine needs: a ``python`` command (the Dockerfile runs
``python -m venv``), and this machine's CA bundle (PyPI is reached through a proxy with its own CA),
so that pip inside the build works. Neither goes into the Dockerfile.

Cached at two levels, keyed by what makes them: the podman images themselves (they stay in podman's
storage between runs), and the debootstrap tarball under /var/cache/payrelay-test (a fresh clone on
the same machine, or podman's storage reset, starts from it in seconds).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.image.podman import Podman, PodmanError, Unavailable

PACKAGES = ("python3", "python3-venv", "ca-certificates")
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
APT_SOURCES = Path("/etc/apt")
DEFAULT_CACHE = Path("/var/cache/payrelay-test")
DEBOOTSTRAP_TIMEOUT = 900


def cache_dir() -> Path:
    return Path(os.environ.get("PAYRELAY_IMAGE_CACHE") or DEFAULT_CACHE)


def dockerfile_base(dockerfile: Path) -> tuple[str, str]:
    """(Python minor, Debian suite) of the Dockerfile's default ``PYTHON_IMAGE``."""
    text = dockerfile.read_text(encoding="utf-8")
    found = re.search(r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)\.\d+-slim-(\w+)", text, re.M)
    if found is None:
        raise AssertionError("the Dockerfile's ARG PYTHON_IMAGE is not python:X.Y.Z-slim-<suite>")
    return found.group(1), found.group(2)


def _sources(apt: Path) -> list[tuple[list[str], list[str], list[str]]]:
    """(types, URIs, suites) of every enabled entry of the machine's apt sources, in apt's order."""
    entries = []
    files = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in files:
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
                if len(words) >= 3:
                    entries.append(([words[0]], [words[1]], [words[2]]))
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for paragraph in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
            fields: dict[str, list[str]] = {}
            for line in paragraph.splitlines():
                name, sep, value = line.partition(":")
                if sep and not line.startswith(("#", " ", "\t")):
                    fields[name.strip().lower()] = value.split()
            if fields.get("enabled", ["yes"])[0].lower() != "no":
                entries.append((fields.get("types", []), fields.get("uris", []), fields.get("suites", [])))
    return entries


def debian_mirror(suite: str, apt: Path = APT_SOURCES) -> str:
    """The machine's own Debian mirror for ``suite`` (it is reachable; deb.debian.org may not be)."""
    for types, uris, suites in _sources(apt):
        if "deb" in types and suite in suites and uris:
            return uris[0]
    raise Unavailable(f"no Debian mirror for {suite} in {apt}/sources.list(.d): debootstrap has nowhere to go")


def _key(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def _remove_tree(root: Path) -> None:
    """rm -rf, after unmounting what a killed debootstrap may have left mounted inside (proc, sys)."""
    mounts = Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines()
    inside = [line.split()[1] for line in mounts if line.split()[1].startswith(f"{root}/")]
    for target in sorted(inside, key=len, reverse=True):
        subprocess.run(["umount", "--lazy", target], capture_output=True, timeout=60, check=False)
    shutil.rmtree(root, ignore_errors=True)


def _debootstrap(suite: str, python: str, tarball: Path) -> None:
    binary = shutil.which("debootstrap")
    if binary is None:
        raise Unavailable("debootstrap is not installed (.ci/run installs it: apt-get install podman debootstrap)")
    mirror = debian_mirror(suite)
    tarball.parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="debootstrap-", dir=tarball.parent))
    try:
        try:
            result = subprocess.run(
                [binary, "--variant=minbase", f"--include={','.join(PACKAGES)}", suite, str(root), mirror],
                capture_output=True, text=True, timeout=DEBOOTSTRAP_TIMEOUT, check=False,
            )
        except subprocess.TimeoutExpired:
            raise Unavailable(f"debootstrap {suite} from {mirror} took over {DEBOOTSTRAP_TIMEOUT} s") from None
        if result.returncode != 0:
            raise Unavailable(f"debootstrap {suite} from {mirror} failed: {(result.stdout + result.stderr)[-2000:]}")
        if not (root / "usr" / "bin" / f"python{python}").exists():
            raise AssertionError(f"Debian {suite} has no Python {python}: the test base cannot stand in for "
                                 "the Dockerfile's PYTHON_IMAGE")
        # what the slim images leave out too: downloaded packages and the package lists
        for leftover in [*(root / "var/cache/apt/archives").glob("*.deb"), *(root / "var/lib/apt/lists").glob("*_*")]:
            leftover.unlink()
        partial = tarball.with_suffix(f".{os.getpid()}.partial")
        subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True, timeout=300)
        partial.rename(tarball)
    finally:
        _remove_tree(root)


LAYER = """\
FROM {base}
# test-only: what python:3.11-slim has (a `python` command) and what this machine needs (its
# proxy's CA, for pip in the build). Never in the shipped Dockerfile.
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN ln -s python3 /usr/bin/python && python --version
"""


def python_base(podman: Podman, dockerfile: Path) -> str:
    """The tag of a local image standing in for the Dockerfile's PYTHON_IMAGE, made or reused."""
    python, suite = dockerfile_base(dockerfile)
    plain_key = _key(suite, python, *PACKAGES)
    plain = f"localhost/payrelay-test-debootstrap:{suite}-{plain_key}"
    ca = HOST_CA.read_bytes() if HOST_CA.is_file() else b""
    tag = f"localhost/payrelay-test-python:{python}-{suite}-{_key(plain_key, LAYER, ca)}"
    if podman.exists(tag):
        return tag
    if not podman.exists(plain):
        tarball = cache_dir() / f"debootstrap-{suite}-{plain_key}.tar"
        if not tarball.is_file():
            _debootstrap(suite, python, tarball)
        podman.run("import", "--quiet", str(tarball), plain)
    with tempfile.TemporaryDirectory(prefix="payrelay-base-") as workdir:
        layer = Path(workdir)
        (layer / "Containerfile").write_text(LAYER.format(base=plain), encoding="utf-8")
        (layer / "ca-certificates.crt").write_bytes(ca)
        if not ca:
            raise PodmanError(f"{HOST_CA} is missing: pip in the build could not verify PyPI")
        podman.build(layer, tag=tag)
    return tag
