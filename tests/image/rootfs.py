"""Command lines that run a program in an image's mounted filesystem the way a container would.

``podman run`` cannot start containers here (crun: cgroups in hybrid mode), so the image's own
root filesystem is used directly. What a runtime would give the process, and these give it too:

- its own mount namespace (``unshare --mount``), so nothing mounted for it is seen by the host or
  outlives it, even when the test dies: ``/proc``, a tmpfs on ``/tmp`` (the deployments' emptyDir
  / tmpfs; the image's root stays read-only, as ``readOnlyRootFilesystem`` runs it), and the secret
  files bound read-only at ``/run/secrets/payrelay`` (as the Kubernetes manifests mount them);
- the image's user (``chroot --userspec``), working directory and environment (the caller passes
  the image's ``Env`` as the process environment);
- the host's network, as with ``--network host``: the sandboxes and Redis on 127.0.0.1 are
  reachable, and the image's port is the host's.

``exec_argv`` is ``podman exec``/the runtime's health check: a second program in the same mount
namespace, root and working directory as a running one, as the image's user.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tests.image.podman import ImageConfig

SECRETS_MOUNT = "/run/secrets/payrelay"  # where deploy/k8s mounts the Secret

# $1 root, $2 uid:gid, $3 working directory, $4 secrets directory on the host (or ""), then argv
_SETUP = """set -eu
root=$1 user=$2 workdir=$3 secrets=$4
shift 4
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
if [ -n "$secrets" ]; then
  mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$root/run"
  mkdir -p "$root{secrets_mount}"
  mount --bind -o ro "$secrets" "$root{secrets_mount}"
fi
exec chroot --userspec="$user" "$root" env --chdir="$workdir" "$@"
""".replace("{secrets_mount}", SECRETS_MOUNT)


def run_argv(root: Path, config: ImageConfig, argv: Sequence[str], *, secrets: Path | None = None) -> list[str]:
    """``argv`` (resolved on the image's PATH) run in ``root`` as the image's user.

    The process keeps its pid through every exec (unshare, sh, chroot, env): signals sent to the
    Popen go to the program itself, as to a container's main process.
    """
    uid, gid = config.uid_gid
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", _SETUP, "sh",
            str(root), f"{uid}:{gid}", config.workdir, str(secrets or ""), *argv]


def exec_argv(pid: int, config: ImageConfig, argv: Sequence[str]) -> list[str]:
    """``argv`` run beside the process ``pid`` (its mounts, root and working directory)."""
    uid, gid = config.uid_gid
    return ["nsenter", f"--target={pid}", "--mount", "--root", "--wd", f"--setuid={uid}", f"--setgid={gid}",
            "--", *argv]


def healthcheck_argv(config: ImageConfig) -> list[str]:
    """The image's HEALTHCHECK as the runtime runs it: exec form as is, shell form through /bin/sh."""
    kind, *command = config.healthcheck or ("NONE",)
    if kind == "CMD":
        return command
    if kind == "CMD-SHELL":
        return ["/bin/sh", "-c", *command]
    raise AssertionError(f"the image has no HEALTHCHECK: {config.healthcheck}")
