"""The podman commands the image test uses, and the image config they read back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class Unavailable(Exception):
    """podman or debootstrap cannot be installed or used here: the image test is skipped, saying why."""


class PodmanError(Exception):
    """A podman command failed (a build that fails is a test failure, not a skip)."""


@dataclass(frozen=True)
class ImageConfig:
    """What ``podman image inspect`` says about an image (the Docker image config)."""

    id: str
    size: int  # bytes, all layers
    user: str
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: Mapping[str, str]
    workdir: str
    exposed_ports: frozenset[str]
    healthcheck: tuple[str, ...]  # ("CMD", …) or ("CMD-SHELL", "…"); () when the image has none
    healthcheck_timeout: float  # seconds
    stop_signal: str

    @classmethod
    def from_inspect(cls, doc: Mapping[str, Any]) -> ImageConfig:
        config = doc["Config"]
        health = doc.get("Healthcheck") or config.get("Healthcheck") or {}
        return cls(
            id=doc["Id"],
            size=int(doc["Size"]),
            user=config.get("User", ""),
            entrypoint=tuple(config.get("Entrypoint") or ()),
            cmd=tuple(config.get("Cmd") or ()),
            env=dict(item.split("=", 1) for item in config.get("Env") or ()),
            workdir=config.get("WorkingDir") or "/",
            exposed_ports=frozenset(config.get("ExposedPorts") or ()),
            healthcheck=tuple(health.get("Test") or ()),
            healthcheck_timeout=int(health.get("Timeout") or 30_000_000_000) / 1e9,  # Docker: 30 s
            stop_signal=config.get("StopSignal") or "SIGTERM",
        )

    @property
    def uid_gid(self) -> tuple[int, int]:
        """The numeric ``USER uid:gid`` (a name would need the image's /etc/passwd: refused)."""
        uid, _, gid = self.user.partition(":")
        if not (uid.isdigit() and gid.isdigit()):
            raise ValueError(f"the image's USER is not numeric uid:gid: {self.user!r}")
        return int(uid), int(gid)


class Podman:
    """Runs podman as root with its default storage: images built here stay between runs."""

    def __init__(self, binary: str) -> None:
        self.binary = binary

    @classmethod
    def find(cls) -> Podman:
        binary = shutil.which("podman")
        if binary is None:
            raise Unavailable("podman is not installed (.ci/run installs it: apt-get install podman debootstrap)")
        if os.geteuid() != 0:
            raise Unavailable("the image test runs as root (podman's chroot isolation, chroot and mounts)")
        podman = cls(binary)
        try:
            podman.run("info", "--format", "{{.Store.GraphDriverName}}", timeout=60)
        except PodmanError as exc:
            raise Unavailable(f"podman is installed but does not work here: {exc}") from None
        return podman

    def run(self, *args: str, timeout: float = 600) -> str:
        try:
            result = subprocess.run([self.binary, *args], capture_output=True, text=True, timeout=timeout,
                                    check=False)
        except subprocess.TimeoutExpired as exc:
            raise PodmanError(f"podman {args[0]} took over {timeout:.0f} s") from exc
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            raise PodmanError(f"podman {' '.join(args[:2])} failed ({result.returncode}): {output[-4000:]}")
        return result.stdout.strip()

    def exists(self, ref: str) -> bool:
        return subprocess.run([self.binary, "image", "exists", ref], capture_output=True, timeout=60,
                              check=False).returncode == 0

    def build(self, context: Path, *, tag: str = "", file: Path | None = None,
              build_args: Mapping[str, str] | None = None) -> str:
        """``podman build`` as an operator would, offline: returns the image id.

        ``--format docker``: the OCI format has no HEALTHCHECK (podman drops it, with a warning);
        ``--isolation chroot``: RUN steps need no container runtime (``podman run`` cannot start
        containers here); ``--pull=never``: every base is local; ``--layers=false``: nothing is
        reused from an earlier build, and no intermediate images pile up run after run.
        """
        workdir = Path(tempfile.mkdtemp(prefix="payrelay-build-"))
        iidfile = workdir / "iid"
        args = ["build", "--format", "docker", "--isolation", "chroot", "--pull=never", "--layers=false",
                "--iidfile", str(iidfile)]
        for name, value in (build_args or {}).items():
            args += ["--build-arg", f"{name}={value}"]
        if tag:
            args += ["--tag", tag]
        if file is not None:
            args += ["--file", str(file)]
        try:
            self.run(*args, str(context), timeout=900)
            return iidfile.read_text(encoding="utf-8").strip()
        finally:
            shutil.rmtree(workdir)

    def inspect(self, ref: str) -> ImageConfig:
        (doc,) = json.loads(self.run("image", "inspect", ref))
        return ImageConfig.from_inspect(doc)

    @contextmanager
    def mounted(self, ref: str) -> Iterator[Path]:
        """The image's filesystem, read-only (as the deployments run it), for as long as it is needed."""
        root = Path(self.run("image", "mount", ref))
        try:
            yield root
        finally:
            self.run("image", "unmount", ref)

    def remove(self, ref: str) -> None:
        self.run("rmi", ref)
