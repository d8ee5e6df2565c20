"""A pytest plugin that proves secrets never reach the logs, over the whole test run.

Every log record of the run (in-process payrelays, emulators, workers) is written as payrelay's
JSON log line to ``test-artifacts/logs/pytest-run-<pid>.jsonl`` (kept when it leaks); the logs of payrelay subprocesses
(``tests.relay_process``) are added. Every secret payrelay was configured with during the run is
collected where it is born — each ``service.settings.Secret`` made by any ``Settings`` — and at
the end of the session the logs are searched for each (for PEM private keys: each line of the
base64 body). A secret found fails the run loudly, whatever the tests said.

Registered from ``tests/conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest

from adapters.config import Secret
from service.logs import JsonFormatter

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "logs"
RUN_LOG = ARTIFACTS / f"pytest-run-{os.getpid()}.jsonl"  # one per run: runs may overlap in one checkout
MIN_SECRET = 12  # shorter test values ("a:b") would match by chance; real keys are far longer
_PEM_LINE = re.compile(r"^[A-Za-z0-9+/=]{16,}$")

secrets: set[str] = set()  # every secret value configured during the run
extra_logs: list[Path] = []  # subprocess logs to search too
_handler: logging.Handler | None = None
_leaks: list[str] = []
_summary: list[str] = []


def needles(secret: str) -> list[str]:
    """What to search for: the secret, or for a PEM key each line of its base64 body."""
    if "-----BEGIN" in secret:
        return [line.strip() for line in secret.replace("\\n", "\n").splitlines()
                if _PEM_LINE.fullmatch(line.strip())]
    return [secret] if len(secret) >= MIN_SECRET else []


def find_leaks(text: str, values: set[str]) -> list[str]:
    found = []
    for secret in values:
        for needle in needles(secret):
            if needle in text:
                found.append(f"{needle[:6]}… ({len(needle)} chars)")
                break
    return found


def _record_secrets() -> None:
    original = Secret.__init__

    def recording_init(self: Secret, value: str) -> None:
        secrets.add(value)
        original(self, value)

    Secret.__init__ = recording_init  # type: ignore[method-assign]


def pytest_configure(config: pytest.Config) -> None:
    global _handler
    _record_secrets()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    RUN_LOG.unlink(missing_ok=True)
    # append: uvicorn's dictConfig closes every handler, and a closed FileHandler reopens on emit
    _handler = logging.FileHandler(RUN_LOG, mode="a", encoding="utf-8")
    _handler.setFormatter(JsonFormatter())
    _handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(_handler)
    # what production logs (service.logs.configure at INFO; payrelay's own DEBUG too), and no less
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    logging.getLogger("payrelay").setLevel(logging.DEBUG)
    for noisy in ("stripe", "httpx", "httpcore"):  # as service.logs.configure sets them
        logging.getLogger(noisy).setLevel(logging.WARNING)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _handler is None:
        return
    _handler.flush()
    texts = [RUN_LOG.read_text(encoding="utf-8", errors="replace") if RUN_LOG.exists() else ""]
    texts += [path.read_text(encoding="utf-8", errors="replace") for path in extra_logs if path.exists()]
    _leaks.extend(find_leaks("\n".join(texts), secrets))
    if _leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif secrets:
        lines = texts[0].count("\n")
        RUN_LOG.unlink(missing_ok=True)
        _summary.append(f"log scrub: {len(secrets)} configured secrets, none in {lines} log lines of the run "
                        f"nor in {len(extra_logs)} payrelay process logs")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _leaks:
        terminalreporter.section("SECRETS IN THE LOGS", sep="!", red=True, bold=True)
        for leak in _leaks:
            terminalreporter.line(f"a configured secret appears in the logs: {leak}", red=True)
        terminalreporter.line(f"search {RUN_LOG} and the payrelay subprocess logs", red=True)
    for line in _summary:
        terminalreporter.line(line)
