"""Mutation testing of the code that must not be wrong: money, signatures, the state machine.

    pip install -e ".[test,mutation]"
    flock /tmp/payrelay-heavy.lock python -m tests.mutation [TARGET ...]     # default: all

Not part of the default test run (like the bench). Each target is mutated in a copy of the working
tree (the files git tracks or does not ignore) under /tmp/payrelay-mutation/TARGET, never in place:

- Python functions by mutmut (one worker), each mutant run against the target's own tests only
  (mutmut runs just the tests that reach the mutated function); where a target names functions,
  only theirs (mutmut's mutant-name globs).
- What mutmut does not mutate, by a small text mutator of our own: the Lua transition script
  (comparison and logic operators, numbers, deleted writes) and module-level data (each currency
  code dropped from the gateways' lists, the amount limit), each mutant one pytest run.

A surviving mutant is either killed by a new test or explained in ``EQUIVALENT`` below (matched
by file and the changed line, so the explanation stays with the code it is about). The run prints
every survivor with its diff and exits non-zero if one is unexplained. tests/README.md lists the
last run's figures.
"""

from __future__ import annotations

import argparse
import codecs
import dataclasses
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = Path("/tmp/payrelay-mutation")
SEPARATOR = "\u01c1"  # between class and method in mutmut's mutant names


@dataclass(frozen=True)
class TextMutant:
    path: str
    line: int  # 1-based
    before: str
    after: str

    def describe(self) -> str:
        return f"{self.path}:{self.line}: {self.before.strip()}  →  {self.after.strip() or '(deleted)'}"


@dataclass(frozen=True)
class Target:
    tests: tuple[str, ...]
    # file → the functions (or Class.method) to mutate there; None: the whole file
    python: dict[str, tuple[str, ...] | None] = field(default_factory=dict)
    lua: tuple[str, ...] = ()
    data: tuple[tuple[str, str], ...] = ()  # (file, regex of the lines whose codes to drop one by one)
    constants: tuple[tuple[str, str, str], ...] = ()  # (file, before, after)


TARGETS: dict[str, Target] = {
    "money": Target(
        tests=("tests/test_money.py", "tests/test_currencies.py"),
        python={
            "adapters/money.py": None,
            "adapters/stripe/transformers.py": ("stripe_exponent", "_shift", "_amount_step", "stripe_amount",
                                                "_money"),
        },
        data=(
            ("adapters/stripe/transformers.py", r'^(ZERO_DECIMAL|THREE_DECIMAL|HUNDREDTHS) = |^ +"XAF"'),
            ("adapters/stripe/transformers.py", r'"ISK": 100'),
            ("sandbox/stripe/currencies.py", r'^(ZERO_DECIMAL|THREE_DECIMAL) = |^ +"vuv"|"isk": 100'),
        ),
        constants=(
            ("adapters/money.py", "MAX_MINOR = 10**15", "MAX_MINOR = 10**16"),
            ("adapters/money.py", "MAX_MINOR = 10**15", "MAX_MINOR = 10**14"),
            ("adapters/money.py", "currency.exponent is not None", "True"),
            ("adapters/stripe/transformers.py", "DEFAULT_EXPONENT = 2", "DEFAULT_EXPONENT = 3"),
            ("adapters/stripe/transformers.py", "{currency: 10 for currency in THREE_DECIMAL}",
             "{currency: 1 for currency in THREE_DECIMAL}"),
            ("adapters/stripe/transformers.py", "if (step := _amount_step(currency)) > 1",
             "if (step := _amount_step(currency)) > 0"),
            ("sandbox/stripe/currencies.py", "{currency: 10 for currency in THREE_DECIMAL}",
             "{currency: 1 for currency in THREE_DECIMAL}"),
        ),
    ),
    "notify_signature": Target(
        tests=("tests/test_notify_signature.py", "tests/test_vectors.py"),
        python={"service/notify_signature.py": None},
    ),
    "cloudreve_auth": Target(
        tests=("tests/test_cloudreve_auth.py", "tests/test_vectors.py"),
        python={"service/cloudreve_auth.py": None},
    ),
    "webhooks": Target(
        tests=("tests/test_vectors.py", "tests/test_contract.py", "tests/test_alipay_adapter.py",
               "tests/test_wechat_adapter.py", "tests/test_stripe_adapter.py", "tests/test_webhooks_stripe.py"),
        python={
            "adapters/alipay/adapter.py": ("rsa2_verifies", "AlipayAdapter.parse_webhook", "AlipayAdapter.verifies",
                                           "_form"),
            "adapters/alipay/transformers.py": ("signed_content",),
            "adapters/wechat/adapter.py": ("WechatAdapter.parse_webhook", "WechatAdapter._check_signature",
                                           "WechatAdapter._decrypt"),
            "adapters/stripe/adapter.py": ("StripeAdapter.parse_webhook", "StripeAdapter._check_signature"),
        },
    ),
    "transition": Target(
        tests=("tests/test_transition.py", "tests/test_store.py", "tests/test_outbox.py"),
        lua=("service/lua/transition.lua", "service/lua/lib.lua"),
    ),
    "refunds": Target(
        tests=("tests/test_refund_store.py", "tests/test_model.py"),
        lua=("service/lua/refund.lua", "service/lua/refund_apply.lua"),
    ),
}

# Survivors that cannot be told apart from the original by any test, and why. Keyed by file and
# the changed line as the mutant shows it (stripped): "-" the original, "+" the mutant.
_SHIFT_ZERO = ("when shift is 0 both branches give the same (times 10**0, or a division by 1 with no rest), "
               "so the boundary between them cannot be seen")
EQUIVALENT: dict[tuple[str, str, str], str] = {
    ("adapters/stripe/transformers.py", "if shift >= 0:", "if shift > 0:"): _SHIFT_ZERO,
    ("adapters/stripe/transformers.py", "if shift >= 0:", "if shift >= 1:"): _SHIFT_ZERO,
    ("service/cloudreve_auth.py",
     'text = json.dumps(data.decode("utf-8", "surrogateescape"), ensure_ascii=False)',
     'text = json.dumps(data.decode("utf-8", "surrogateescape"), ensure_ascii=None)'):
        "json.dumps only tests ensure_ascii for truth: None is False",
    ("service/cloudreve_auth.py", 'signature, _, expires_text = token.rpartition(":")',
     'signature, _, expires_text = token.partition(":")'):
        "the two differ only for a token with two colons, and then the signature (rpartition) or the "
        "expiry (partition) holds a colon, which neither pattern allows: malformed, with the same message",
    ("adapters/stripe/adapter.py",
     'header = next((value for name, value in headers.items() if name.lower() == "stripe-signature"), "")',
     'header = next((value for name, value in headers.items() if name.lower() == "stripe-signature"), None)'):
        "the default is only tested for truth: None and \"\" are both no header",
    ("adapters/stripe/adapter.py", "if int(stamps[0]) > time.time() + FUTURE_TOLERANCE:",
     "if int(stamps[0]) >= time.time() + FUTURE_TOLERANCE:"):
        "time.time() is a float: the two differ at one instant only, which no test can hit without "
        "replacing the clock",
    **{("adapters/wechat/adapter.py", 'not str(notice.get("event_type", "")).startswith("TRANSACTION.")',
        f'not str(notice.get("event_type", {default})).startswith("TRANSACTION.")'):
       "a callback without event_type is ignored either way: the default only has to not start with "
       "TRANSACTION., and str(None) = 'None' does not"
       for default in ("None", "", '"XXXX"')},
    ("service/lua/lib.lua", "if ttl ~= '' then redis.call('SET', mark, '1', 'EX', ttl) end",
     "if ttl ~= '' then redis.call('SET', mark, '2', 'EX', ttl) end"):
        "the event mark's value is never read, only whether it EXISTS",
    ("service/lua/transition.lua", "if ARGV[5] ~= '' and (ARGV[5] ~= rec.amount or ARGV[6] ~= rec.currency) then",
     "if ARGV[6] ~= '' and (ARGV[5] ~= rec.amount or ARGV[6] ~= rec.currency) then"):
        "Store.apply passes the amount seen and its currency from one (amount, currency) pair: both are "
        "empty or neither is",
    ("service/lua/transition.lua", "if ARGV[4] ~= '' and stored_reference == '' then",
     "if ARGV[4] ~= '' or stored_reference == '' then"):
        "the only case the mutant adds is no reference seen and none stored: it writes '' where there was "
        "'' or nothing, which every reader takes as no reference",
    ("service/lua/refund.lua", "if not payment[1] or payment[2] ~= ARGV[11] then return {'missing', ''} end",
     "if not payment[2] or payment[2] ~= ARGV[11] then return {'missing', ''} end"):
        "status and client are both in every payment hash (written together by create.lua), or the hash "
        "is not there at all",
    ("service/lua/refund.lua", "if ARGV[5] ~= '' then redis.call('HSET', KEYS[3], 'reason', ARGV[5]) end",
     "if ARGV[6] ~= '' then redis.call('HSET', KEYS[3], 'reason', ARGV[5]) end"):
        "the fingerprint (ARGV[6]) is never empty, so the mutant also writes an empty reason, which reads as "
        "no reason (service.model's OPTIONAL spelling)",
    ("service/lua/refund_apply.lua", "if ARGV[4] ~= '' and (rec.gatewayReference or '') == '' then",
     "if ARGV[4] ~= '' or (rec.gatewayReference or '') == '' then"):
        "the only case the mutant adds is no reference seen and none stored: it writes '' where there was "
        "nothing, which every reader takes as no reference",
    ("adapters/wechat/adapter.py", "if skew > WEBHOOK_TOLERANCE:", "if skew >= WEBHOOK_TOLERANCE:"):
        "skew is a float from time.time(): the two differ at one instant only, which no test can hit "
        "without replacing the clock",
}


# -- the copy ----------------------------------------------------------------------------------

def fresh_copy(name: str) -> Path:
    work = WORK / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True).stdout
    for rel in files.decode().split("\0"):
        if rel and (ROOT / rel).is_file():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, work / rel)
    return work


def mutant_globs(target: Target) -> list[str]:
    """mutmut's names of the mutants in scope: module.x_function… or module.xǁClassǁmethod…"""
    globs = []
    for rel, scope in target.python.items():
        module = rel.removesuffix(".py").replace("/", ".")
        for name in scope or ("*",):
            cls, _, method = name.rpartition(".")
            mangled = f"x{SEPARATOR}{cls}{SEPARATOR}{method}" if cls else ("x*" if name == "*" else f"x_{name}")
            globs.append(f"{module}.{mangled}__mutmut_*")
    return globs


# -- mutmut ------------------------------------------------------------------------------------

@dataclass
class Outcome:
    killed: int = 0
    total: int = 0
    survivors: list[tuple[str, str]] = field(default_factory=list)  # (id, diff)
    equivalent: list[tuple[str, str, str]] = field(default_factory=list)  # (id, diff, why)
    # the unexplained survivors again, for --rerun: mutmut's names, our text mutants
    rerun_names: list[str] = field(default_factory=list)
    rerun_text: list[TextMutant] = field(default_factory=list)


def run_mutmut(work: Path, target: Target, outcome: Outcome, globs: list[str]) -> None:
    selection = "".join(f"\n    {t}" for t in target.tests)
    (work / "setup.cfg").write_text(
        "[mutmut]\n"
        + "source_paths =" + "".join(f"\n    {rel}" for rel in target.python) + "\n"
        + f"pytest_add_cli_args_test_selection ={selection}\n    -p\n    no:cacheprovider\n"
        + "also_copy =\n    adapters/\n    sandbox/\n    service/\n    bench/\n"
    )
    # processes the tests start import the mutants too (the directory must exist before Python
    # starts, or its import system caches it as absent)
    (work / "mutants").mkdir()
    env = os.environ | {"PYTHONPATH": str(work / "mutants")}
    with (work / "mutmut.log").open("wb") as log:
        run = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", "1", *globs], cwd=work, env=env,
                             stdout=log, stderr=subprocess.STDOUT, check=False)
    if run.returncode != 0:
        raise SystemExit(f"mutmut failed ({run.returncode}): see {work / 'mutmut.log'}")
    codes: dict[str, int | None] = {}
    for meta in (work / "mutants").rglob("*.meta"):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    for key, code in sorted(codes.items()):
        if not any(fnmatch.fnmatchcase(key, glob) for glob in globs):
            continue
        outcome.total += 1
        if code in (1, 3, 37) or (code is not None and code < 0) or code in (24, 36, 152, 255):
            outcome.killed += 1  # failed, pytest error, type error, timeout or crash: the tests noticed
            continue
        diff = subprocess.run([sys.executable, "-m", "mutmut", "show", key], cwd=work, env=env,
                              capture_output=True, text=True).stdout
        if not classify(outcome, key, diff, status=f"exit {code}"):
            outcome.rerun_names.append(key)


def same_codec(before: str, after: str) -> bool:
    """Whether the lines differ only in how one codec is named ("utf-8" / "UTF-8")."""
    old, new = re.findall(r'"([^"]*)"', before), re.findall(r'"([^"]*)"', after)
    changed = [(a, b) for a, b in zip(old, new, strict=False) if a != b]
    if len(old) != len(new) or len(changed) != 1:
        return False
    a, b = changed[0]
    try:
        return codecs.lookup(a).name == codecs.lookup(b).name and before.lower() == after.lower()
    except LookupError:
        return False


def classify(outcome: Outcome, key: str, diff: str, status: str) -> bool:
    """Record a survivor; answer whether it is explained as equivalent."""
    removed = [line[1:].strip() for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    files = [line[4:].strip() for line in diff.splitlines() if line.startswith("--- ")]
    before, after = (removed[0] if removed else ""), (added[0] if added else "")
    why = EQUIVALENT.get((files[0] if files else "", before, after))
    if why is None and len(removed) == len(added) == 1 and same_codec(before, after):
        why = "Python's codec names are case-insensitive: the same codec"
    if why:
        outcome.equivalent.append((key, diff, why))
        return True
    outcome.survivors.append((f"{key} ({status})", diff))
    return False


# -- our own text mutants ----------------------------------------------------------------------

_LUA_OPERATORS = [(" == ", " ~= "), (" ~= ", " == "), (" <= ", " < "), (" < ", " <= "), (" >= ", " > "),
                  (" > ", " >= "), (" and ", " or "), (" or ", " and "), ("not ", "")]
_LUA_WRITES = re.compile(r"^\s*(redis\.call\('(HSET|HDEL|ZADD|ZREM|PEXPIRE|SET|RPUSH|HINCRBY)'|mark_event\(\)|"
                         r"rec\.\w+ = |if redis\.call\('GET')")


def lua_mutants(path: str, text: str) -> Iterator[TextMutant]:
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        code = line.split("--", 1)[0]
        if not code.strip():
            continue
        for before, after in _LUA_OPERATORS:
            start = 0
            while (at := code.find(before, start)) >= 0:
                yield TextMutant(path, number, line, line[:at] + after + line[at + len(before):])
                start = at + 1
        for match in re.finditer(r"(?<![\w.%])(\d+)(?![\w.])", code):
            value = int(match.group(1))
            yield TextMutant(path, number, line, line[:match.start()] + str(value + 1) + line[match.end():])
        if _LUA_WRITES.match(code) and not code.rstrip().endswith(("then", "do")):
            yield TextMutant(path, number, line, "\n")


def data_mutants(path: str, text: str, pattern: str) -> Iterator[TextMutant]:
    """Each currency code on the matching lines dropped (or, for a 'CODE': n pair, the pair)."""
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        if not re.search(pattern, line):
            continue
        for match in re.finditer(r'"[A-Za-z]{3}"(: \d+)?,? ?', line):
            yield TextMutant(path, number, line, line[:match.start()] + line[match.end():])


def constant_mutants(path: str, text: str, before: str, after: str) -> Iterator[TextMutant]:
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        if before in line:
            yield TextMutant(path, number, line, line.replace(before, after))


def text_mutants(work: Path, target: Target) -> list[TextMutant]:
    mutants: list[TextMutant] = []
    for rel in target.lua:
        mutants += lua_mutants(rel, (work / rel).read_text())
    for rel, pattern in target.data:
        mutants += data_mutants(rel, (work / rel).read_text(), pattern)
    for rel, before, after in target.constants:
        mutants += constant_mutants(rel, (work / rel).read_text(), before, after)
    return mutants


def run_text_mutants(work: Path, target: Target, outcome: Outcome, mutants: list[TextMutant]) -> None:
    if not mutants:
        return
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *target.tests]
    env = os.environ | {"PYTHONPATH": str(work)}
    started = time.monotonic()
    baseline = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    if baseline.returncode != 0:
        raise SystemExit(f"the unmutated tests fail in {work}:\n{(baseline.stdout + baseline.stderr)[-3000:]}")
    limit = 10 * (time.monotonic() - started) + 30
    for mutant in mutants:
        file = work / mutant.path
        original = file.read_text()
        lines = original.splitlines(keepends=True)
        assert lines[mutant.line - 1] == mutant.before
        lines[mutant.line - 1] = mutant.after
        file.write_text("".join(lines))
        try:
            result = subprocess.run(command, cwd=work, env=env, capture_output=True, timeout=limit)
            code: int | str = result.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
        finally:
            file.write_text(original)
        outcome.total += 1
        if code != 0:
            outcome.killed += 1
        else:
            diff = f"--- {mutant.path}\n-{mutant.before.rstrip()}\n+{mutant.after.rstrip()}\n"
            if not classify(outcome, mutant.describe(), diff, status="tests pass"):
                outcome.rerun_text.append(mutant)


# -- report ------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", metavar="TARGET", help=f"of {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--rerun", action="store_true",
                        help="only the unexplained survivors of the target's last full run (after new tests)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown target {', '.join(unknown)}: choose from {', '.join(TARGETS)}")
    unexplained = 0
    for name in args.targets or list(TARGETS):
        target, outcome = TARGETS[name], Outcome()
        started = time.monotonic()
        record = WORK / f"{name}.survivors.json"
        work = fresh_copy(name)
        if args.rerun:
            last = json.loads(record.read_text())
            globs, texts = last["mutmut"], [TextMutant(*fields) for fields in last["text"]]
        else:
            globs, texts = (mutant_globs(target) if target.python else []), text_mutants(work, target)
        if globs:
            run_mutmut(work, target, outcome, globs)
        run_text_mutants(work, target, outcome, texts)
        if not args.rerun:
            record.write_text(json.dumps({"mutmut": outcome.rerun_names,
                                          "text": [dataclasses.astuple(m) for m in outcome.rerun_text]}))
        seconds = time.monotonic() - started
        survived = len(outcome.survivors) + len(outcome.equivalent)
        score = 100 * outcome.killed / (outcome.total - len(outcome.equivalent) or 1)
        label = f"{name} (re-run of the last run's survivors)" if args.rerun else name
        print(f"\n== {label}: {outcome.total} mutants, {outcome.killed} killed, {survived} survived "
              f"({len(outcome.equivalent)} equivalent, explained); score {score:.1f} % of the non-equivalent; "
              f"{seconds:.0f} s", flush=True)
        for key, diff, why in outcome.equivalent:
            print(f"-- equivalent: {key}\n{diff.rstrip()}\n   why: {why}")
        for key, diff in outcome.survivors:
            print(f"-- SURVIVED: {key}\n{diff.rstrip()}")
        unexplained += len(outcome.survivors)
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
