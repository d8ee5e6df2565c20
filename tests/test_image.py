"""The container image: built from the Dockerfile as shipped, then run from its own filesystem.

There is no Docker daemon and no registry of base images here, so (tests/image/): a Python base
from Debian packages (cached), ``podman build`` of the unchanged Dockerfile with that base as
PYTHON_IMAGE, and the image's ENTRYPOINT + CMD and HEALTHCHECK, read from the built image's config,
run in its mounted filesystem as its user. Skipped, saying why, only where podman or debootstrap
cannot be installed or used; a build that fails is a failure.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sandbox.alipay import AlipayEmulator
from sandbox.base import Emulator
from sandbox.stripe import StripeEmulator
from sandbox.wechat import WechatEmulator
from service.settings import Settings
from tests.conftest import API_KEY, RedisProcess, Relay
from tests.helpers import (
    SECRET_VARIABLES,
    ImageFacts,
    create,
    health_url,
    image_facts,
    order,
    parse_dockerfile,
    status_of,
)
from tests.image import rootfs
from tests.image.base import python_base
from tests.image.podman import ImageConfig, Podman, Unavailable
from tests.relay_process import RelayProcess

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
LOCK = Path("/tmp/payrelay-image-test.lock")  # one image test at a time: podman's storage, the image's port
LOCK_WAIT = 900
ADDED_BUDGET = 140 * 2**20  # bytes the Dockerfile adds to its base (measured: 100 MiB, deploy/README.md)
GRACEFUL_TIMEOUT = 20  # `payrelay serve --graceful-timeout` default (service/cli.py): the CMD sets none
COMPILERS = re.compile(r"^(?:[\w-]+-linux-gnu-)?(?:gcc|cc|c\+\+|g\+\+|cpp|clang|tcc|ld|as|make)(?:-[\d.]+)?$")
KEY_BODY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----\s*[A-Za-z0-9+/=]{40}")  # a key, not PEM-wrapping code
PIP_LEFTOVERS = ("pip", "setuptools", "pkg_resources", "_distutils_hack")

# Files that must stay out of the build context, wherever they lie in the tree (.dockerignore).
DECOYS = (
    ".payrelay-demo/payrelay.env",  # `payrelay demo`: generated keys
    "service/.payrelay-demo/state",  # … run from another directory
    "adapters/.env.local",
    "deploy/secrets/stripe_secret_key",  # an operator's real secret files
    "deploy/payrelay.env",
    ".env",
    "adapters/stripe/merchant.pem",  # a key left next to the code
    "sandbox/__pycache__/runner.cpython-311.pyc",  # stale bytecode of another Python
    ".venv/bin/python",
    ".git/config",
    "test-artifacts/logs/pytest-run-1.jsonl",
    "tests/conftest.py",
)
DECOY_TEXT = f"decoy {API_KEY}\n"


@dataclass(frozen=True)
class Image:
    config: ImageConfig
    base: ImageConfig
    root: Path  # its filesystem, mounted read-only


@pytest.fixture(scope="module")
def podman() -> Iterator[Podman]:
    try:
        found = Podman.find()
    except Unavailable as exc:
        pytest.skip(f"container image not built: {exc}")
    with LOCK.open("a") as lock:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another image test held {LOCK} for {LOCK_WAIT} s")
                time.sleep(1)
        yield found


@pytest.fixture(scope="module")
def base(podman: Podman) -> str:
    try:
        return python_base(podman, ROOT / "Dockerfile")
    except Unavailable as exc:
        pytest.skip(f"container image not built: {exc}")


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This tree as a build context (the large local directories left out), with decoys added."""
    directory = tmp_path_factory.mktemp("context") / "payrelay"
    shutil.copytree(ROOT, directory, symlinks=True,
                    ignore=shutil.ignore_patterns(".git", ".venv", ".mypy_cache", "test-artifacts", ".hypothesis"))
    for decoy in DECOYS:
        path = directory / decoy
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(DECOY_TEXT, encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def image(podman: Podman, base: str, context: Path) -> Iterator[Image]:
    built = podman.build(context, build_args={"PYTHON_IMAGE": base})
    try:
        with podman.mounted(built) as root:
            yield Image(podman.inspect(built), podman.inspect(base), root)
    finally:
        podman.remove(built)


def files(root: Path) -> Iterator[Path]:
    """Every path in an image's filesystem (it has no /proc or /sys contents of its own)."""
    for directory, dirs, names in os.walk(root):
        for name in [*dirs, *names]:
            yield Path(directory) / name


# --- what is in it -------------------------------------------------------------------------------


def test_build_context_leaves_out_local_state(podman: Podman, base: str, context: Path, tmp_path: Path) -> None:
    """What the Dockerfile's COPY can see: the .dockerignore keeps demo state, secrets, keys, the
    venv, git and bytecode out, wherever they lie."""
    probe = tmp_path / "Containerfile"  # outside the context: the context's .dockerignore applies
    probe.write_text(f"FROM {base}\nCOPY . /context\n", encoding="utf-8")
    built = podman.build(context, file=probe)
    try:
        with podman.mounted(built) as root:
            seen = {str(path.relative_to(root / "context")) for path in files(root / "context")}
    finally:
        podman.remove(built)
    assert {"pyproject.toml", "README.md", "service/cli.py", "service/lua", "sandbox/templates"} <= seen
    leaked = sorted(set(DECOYS) & seen) + [p for p in seen if "__pycache__" in p or p.endswith((".pyc", ".pem"))]
    assert not leaked, f"in the build context: {leaked}"
    assert {path.split("/")[0] for path in seen} == {"pyproject.toml", "README.md", "service", "adapters", "sandbox"}


def test_config_is_what_the_deployments_are_checked_against(image: Image) -> None:
    """The built image's config: the user, port, health check and command that tests/test_deploy.py
    checks the compose file and the Kubernetes manifests against (it reads them from the Dockerfile)."""
    config = image.config
    uid, gid = config.uid_gid
    (exposed,) = config.exposed_ports
    health_port, health_path = health_url(" ".join(config.healthcheck))
    built = ImageFacts(uid, gid, int(exposed.removesuffix("/tcp")), health_path, config.entrypoint, config.cmd,
                       config.workdir)
    assert built == image_facts(parse_dockerfile(ROOT / "Dockerfile"))
    assert health_port == built.port and uid != 0 and gid != 0
    passwd = {line.split(":")[2]: line.split(":") for line in (image.root / "etc/passwd").read_text().splitlines()}
    assert passwd[str(uid)][3] == str(gid) and passwd[str(uid)][6] == "/usr/sbin/nologin"
    assert config.stop_signal == "SIGTERM"


def test_image_holds_no_compiler_pip_cache_or_local_state(image: Image) -> None:
    root = image.root
    paths = list(files(root))
    on_path = [root / part.lstrip("/") for part in image.config.env["PATH"].split(":")]
    compilers = [p.name for d in on_path if d.is_dir() for p in d.iterdir() if COMPILERS.match(p.name)]
    assert not compilers, f"a compiler is left in the image: {compilers}"
    caches = [p for p in paths if p.name == ".cache" or (p.name.startswith("pip-") and p.is_dir())]
    assert not caches, f"caches left in the image: {caches}"
    assert not list((root / "tmp").iterdir()) and not (root / "src").exists()  # the build stage stays behind
    venv = root / "opt/payrelay"
    site = next((venv / "lib").glob("python3.*/site-packages"))
    assert not [name for name in PIP_LEFTOVERS if (site / name).exists()], "the installer is not needed to run"
    assert not list(venv.rglob("*.whl"))
    assert not (site / "tests").exists()
    assert not [p for p in paths if p.name == ".payrelay-demo" or p.name.endswith((".env", ".key"))]
    for path in venv.rglob("*"):
        if path.is_file() and not path.is_symlink():
            stat = path.stat()
            assert stat.st_uid == 0 and not stat.st_mode & 0o022, f"{path}: the app's user could change the app"
            assert API_KEY.encode() not in path.read_bytes(), f"{path}: the tests' API key is in the image"
    for package in ("service", "adapters", "sandbox"):
        for path in (site / package).rglob("*"):
            if path.is_file() and path.suffix != ".pyc":
                assert not KEY_BODY.search(path.read_text(encoding="utf-8")), f"{path}: a key in the image"


def test_image_size(image: Image) -> None:
    added = image.config.size - image.base.size
    assert 0 < added < ADDED_BUDGET, f"the Dockerfile adds {added / 2**20:.0f} MiB to its base"


# --- run it --------------------------------------------------------------------------------------


def _port_free(port: int) -> None:
    """The image listens on the host's network (no network namespace here): the port must be free."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAITs do not count
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            holder = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True,
                                    check=False).stdout.strip()
            pytest.fail(f"port {port}, which the image's CMD listens on, is taken on this machine: {holder}")


def _secret_files(env: dict[str, str], directory: Path, gid: int) -> dict[str, str]:
    """``env`` with its secrets moved into files, as deploy/ mounts them: readable by the image's
    group only (deploy/README.md: chgrp 10001, 0640), passed as NAME_FILE."""
    directory.mkdir(mode=0o750)
    os.chown(directory, 0, gid)
    moved = dict(env)
    for name in SECRET_VARIABLES & env.keys():
        path = directory / name.lower()
        path.write_text(moved.pop(name), encoding="utf-8")
        os.chown(path, 0, gid)
        path.chmod(0o640)
        moved[f"{name}_FILE"] = f"{rootfs.SECRETS_MOUNT}/{path.name}"
    return moved


def _healthcheck(image: Image, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=dict(image.config.env), capture_output=True, text=True,
                          timeout=image.config.healthcheck_timeout + 5, check=False)


async def test_serve_in_the_image(image: Image, disposable_redis: RedisProcess, stripe_emulator: StripeEmulator,
                                  alipay_emulator: AlipayEmulator, wechat_emulator: WechatEmulator,
                                  tmp_path: Path) -> None:
    """`payrelay serve`, as the image's ENTRYPOINT + CMD, against a real Redis and the three
    sandboxes: payments are paid and succeed, /readyz and the HEALTHCHECK pass, SIGTERM ends it."""
    config = image.config
    command = [*config.entrypoint, *config.cmd]
    port = int(config.cmd[config.cmd.index("--port") + 1])
    _port_free(port)
    url = f"http://127.0.0.1:{port}"
    emulators: list[Emulator] = [stripe_emulator, alipay_emulator, wechat_emulator]
    stripe_emulator.bind(stripe_emulator.base_url, f"{url}/webhooks/stripe")
    env = {"PAYRELAY_REDIS_URL": disposable_redis.url, "PAYRELAY_API_KEYS": f"shop:{API_KEY}",
           "PAYRELAY_PUBLIC_URL": url}
    for emulator in emulators:
        env.update(emulator.env())
    settings = Settings.from_env(env)  # as payrelay will read it (and its secrets join the log scrub)
    secrets = tmp_path / "secrets"
    relay = RelayProcess(_secret_files(env, secrets, config.uid_gid[1]), "serve", log_dir=tmp_path, port=port,
                         argv=rootfs.run_argv(image.root, config, command, secrets=secrets), environ=config.env)
    try:
        relay.wait_ready(timeout=60)
        status = Path(f"/proc/{relay.process.pid}/status").read_text(encoding="utf-8")
        assert re.search(rf"^Uid:\t{config.uid_gid[0]}\t", status, re.M), "not running as the image's user"
        assert Path(f"/proc/{relay.process.pid}/root").resolve() == image.root, "not in the image's filesystem"
        for _ in range(100):  # ready once Redis answered and the background loops run
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                break
            time.sleep(0.1)
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200, relay.log()[-3000:]
        client = Relay(url, settings, None, {e.gateway_type: e for e in emulators}, env)
        for emulator in emulators:
            created = await create(client, order(emulator))
            await emulator.pay(created["paymentUrl"], "paid")
            assert (await status_of(client, created["paymentId"]))["status"] == "succeeded", emulator.gateway_type
        health = _healthcheck(image, rootfs.exec_argv(relay.process.pid, config, rootfs.healthcheck_argv(config)))
        assert health.returncode == 0, health.stdout + health.stderr
        sigterm = time.monotonic()
        relay.process.send_signal(getattr(signal, config.stop_signal))
        code = relay.wait(GRACEFUL_TIMEOUT + 10)
        took = time.monotonic() - sigterm
    finally:
        relay.stop()
    log = relay.log()
    # uvicorn ends a graceful shutdown by re-raising the signal it caught
    assert code in (0, -signal.SIGTERM) and "Application shutdown complete" in log, (code, log[-3000:])
    assert took < GRACEFUL_TIMEOUT, f"took {took:.1f} s to exit"
    assert "Traceback" not in log, log[-3000:]
    # the same check with nothing listening fails: it can tell
    idle = _healthcheck(image, rootfs.run_argv(image.root, config, rootfs.healthcheck_argv(config)))
    assert idle.returncode != 0
