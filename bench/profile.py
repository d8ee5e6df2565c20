"""CPU profiles of a uvicorn worker under load: py-spy record (collapsed stacks), summarized."""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

# leaf-most matching frame decides where a sample's time goes; py-spy names files relative to their
# sys.path entry, so "stripe/" is the SDK and "adapters/stripe/" payrelay's adapter
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("python-alipay-sdk / pycryptodome", ("Cryptodome/", "Crypto/", "alipay/")),
    ("wechatpayv3 SDK", ("wechatpayv3/",)),
    ("stripe SDK", ("stripe/",)),
    ("cryptography (OpenSSL)", ("cryptography/",)),
    ("logging (JSON lines)", ("logging/", "service/logs.py")),
    ("prometheus metrics", ("prometheus_client/",)),
    ("redis client", ("redis/",)),
    ("httpx / httpcore / anyio (outbound calls)", ("httpx/", "httpcore/", "anyio/", "urllib/", "http/client.py")),
    ("json", ("json/",)),
    ("uvicorn / httptools / h11", ("uvicorn/", "httptools", "h11/")),
    ("starlette", ("starlette/",)),
    ("payrelay validation", ("service/validation.py", "service/money.py")),
    ("payrelay adapters", ("adapters/",)),
    ("payrelay service", ("service/",)),
    ("threads (SDK calls off the loop)", ("threading.py", "concurrent/")),
    ("sockets", ("socket.py", "ssl.py")),
    ("event loop (asyncio / uvloop)", ("asyncio/", "uvloop", "selectors.py")),
)

# leaf frames that are one socket system call (on this VM, a loopback send costs as much as the
# receiver's TCP processing, which runs in the sender's call)
SYSCALL_LEAVES = ("_SelectorSocketTransport.write ", "SocketIO.readinto ", "socket.send", "SocketStream.send ",
                  "_SelectorSocketTransport._read_ready", "sock_sendall ", "create_connection ")


def record(pid: int, seconds: float, out: Path, rate: int = 200, gil: bool = False) -> subprocess.Popen[bytes]:
    """Start py-spy on ``pid`` (returns at once; wait() for it). ``gil``: only the thread holding the
    GIL (for processes whose threads mostly wait in blocking calls, e.g. the Alipay SDK's)."""
    binary = str(Path(sys.executable).parent / "py-spy")
    if not Path(binary).exists():
        binary = shutil.which("py-spy") or "py-spy"
    return subprocess.Popen([binary, "record", "-p", str(pid), "-d", f"{max(1, int(seconds))}", "-r", str(rate),
                             "-F", "-f", "raw", "-o", str(out), "--nonblocking", *(["--gil"] if gil else [])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _file_of(frame: str) -> str:
    return frame[frame.rfind("(") + 1:-1] if frame.endswith(")") else frame


def _short(frame: str) -> str:
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "/work/main/", "python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})"


def summarize(path: Path, seconds: float, rate: int = 200, top: int = 12) -> dict[str, Any]:
    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            frames = [f for f in stack.split(";") if not f.startswith("process ") and not f.startswith("thread ")]
            stacks.append((frames, int(count)))
    total = sum(c for _, c in stacks)
    by_category: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        if frames and any(mark in frames[-1] for mark in SYSCALL_LEAVES):
            by_category["socket syscalls (send/recv on loopback)"] += count
            leaf[_short(frames[-1])] += count
            continue
        for frame in reversed(frames):
            where = _file_of(frame)
            category = next((name for name, marks in CATEGORIES if where.startswith(marks)), None)
            if category:
                by_category[category] += count
                break
        else:
            by_category["other"] += count
        if frames:
            leaf[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames if "/service/" in f or "/adapters/" in f or "service/" in _file_of(f)
                      or "adapters/" in _file_of(f)}:
            inclusive[frame] += count

    def share(counter: collections.Counter[str], n: int | None = None) -> list[list[Any]]:
        return [[name, round(100 * c / total, 1)] for name, c in counter.most_common(n)] if total else []

    return {
        "samples": total,
        "busy_share": round(total / (seconds * rate), 3) if seconds else None,
        "by_category_pct": share(by_category),
        "top_self_pct": share(leaf, top),
        "top_inclusive_payrelay_pct": share(inclusive, top + 4),
    }
