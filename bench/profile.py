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
    ("aiohttp / yarl / multidict (outbound calls)", ("aiohttp/", "yarl/", "multidict/")),
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
LOOP = CATEGORIES[-1][0]

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


def _category(frame: str) -> str:
    where = _file_of(frame)
    return next((name for name, marks in CATEGORIES if where.startswith(marks)), "other")


def _function(frame: str) -> str:
    """A frame without its line number, so that samples anywhere in one function add up."""
    name, _, where = _short(frame).partition(" (")
    return f"{name} ({where.rstrip(')').rsplit(':', 1)[0]})"


def trimmed(frames: list[str]) -> tuple[str, ...]:
    """A whole stack, trimmed to the frames that say where the time goes: from below the event loop
    that runs every task (the process's start-up frames down to it are the same in every sample;
    py-spy shows a task resumed by the loop from its own coroutine down, without that root),
    every payrelay frame, the frame where each library is entered (the library's own frames below it
    left out), and the leaf."""
    categories = [_category(frame) for frame in frames]
    if frames and frames[0].startswith("<module>") and LOOP in categories:
        below = categories.index(LOOP)
        while below < len(frames) - 1 and categories[below + 1] == LOOP:
            below += 1
        frames = frames[below + 1:] or frames[below:]
    kept: list[str] = []
    last = ""
    for i, frame in enumerate(frames):
        category = _category(frame)
        if category.startswith("payrelay") or category != last or i == len(frames) - 1:
            name = _function(frame)
            if not kept or kept[-1] != name:
                kept.append(name)
        last = category
    return tuple(kept)


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
    whole: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        whole[" → ".join(trimmed(frames))] += count
        if frames and any(mark in frames[-1] for mark in SYSCALL_LEAVES):
            by_category["socket syscalls (send/recv on loopback)"] += count
            leaf[_short(frames[-1])] += count
            continue
        by_category[next((c for c in map(_category, reversed(frames)) if c != "other"), "other")] += count
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
        "top_stacks_pct": share(whole, top + 3),
    }
