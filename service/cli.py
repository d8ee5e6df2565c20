"""The `payrelay` command: serve, worker, check, demo, sandbox, hash-password."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from service.settings import DEFAULT_PUBLIC_URL, Settings, SettingsError, read_env_file

# Seconds an idle client connection stays open. Longer than the idle timeout of what usually
# stands in front (nginx's upstream keepalive_timeout and cloud load balancers: 60 s), so that the
# proxy, never payrelay, closes an idle connection: otherwise a request the proxy sends on a
# connection payrelay is closing at that moment is lost and the proxy answers 502.
KEEP_ALIVE_SECONDS = 75
PORT = 8000  # payrelay's, in serve and demo
SANDBOX_PORT = 8500  # the Stripe sandbox's; the Alipay and WeChat Pay sandboxes listen on the next ones
NOTIFY_PORT = 8600  # the demo's notification receiver's
STATE_DIR = ".payrelay-demo"  # the demo's and the sandbox's keys and payrelay.env


def _load_env_file(path: str | None) -> None:
    """Put an env file's values into the environment (set variables win), so that uvicorn's
    worker processes, which build the app themselves, read the same configuration."""
    if path:
        for name, value in read_env_file(path).items():
            os.environ.setdefault(name, value)


def app_from_env() -> object:
    """uvicorn factory: settings are read once, here, in each worker process."""
    from service import logs
    from service.app import create_app

    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    return create_app(settings)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    _usable(_settings(args.env_file), reach_redis=False)  # fail here, clearly, before starting workers
    uvicorn.run(
        "service.cli:app_from_env", factory=True, host=args.host, port=args.port,
        workers=args.workers, log_config=None, timeout_graceful_shutdown=args.graceful_timeout,
        timeout_keep_alive=args.keep_alive,
        proxy_headers=True, forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    """Only the background workers, for deployments that run them apart from the web replicas."""
    import asyncio
    import logging
    import signal

    from service import logs
    from service.runtime import Runtime

    settings = _usable(_settings(args.env_file), reach_redis=False)
    logs.configure(settings.log_level, settings.log_format)

    async def run() -> None:
        lease = {"lease_ms": args.lease_seconds * 1000} if args.lease_seconds else {}
        runtime = Runtime(settings, worker_options={"expiry": lease, "refunds": lease, "outbox": lease})
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runtime.start_workers()
        assert runtime.pool is not None
        started = ", ".join(f"{w.name} (lease {w.schedule.lease_ms / 1000:g} s)" for w in runtime.pool.workers)
        logging.getLogger("payrelay.worker").info("workers started: %s; store: %s", started, _store(settings))
        try:
            await stop.wait()
        finally:
            await runtime.close()

    try:  # the event loop `serve` runs on (uvicorn's "auto": uvloop where it is installed)
        import uvloop
    except ImportError:
        asyncio.run(run())
    else:
        uvloop.run(run())
    return 0


def _store(settings: Settings) -> str:
    """The store, for people: Redis without its password, or the embedded one."""
    from service.preflight import redacted

    return f"Redis at {redacted(settings.redis_url)}" if settings.redis_url else "embedded (not durable)"


def _usable(settings: Settings | SettingsError, *, reach_redis: bool) -> Settings:
    """The settings, once everything they describe has been built; else SettingsError with every
    problem, those of the variables and those of what could be built from the rest."""
    import asyncio

    from service import preflight

    partial = settings.partial if isinstance(settings, SettingsError) else settings
    found = list(settings.problems) if isinstance(settings, SettingsError) else []
    if partial is not None:
        found += asyncio.run(preflight.problems(partial, reach_redis=reach_redis))
    if found or partial is None:
        raise SettingsError(found)
    return partial


def _settings(env_file: str | None) -> Settings | SettingsError:
    _load_env_file(env_file)
    try:
        return Settings.from_env()
    except SettingsError as exc:
        return exc


def _check(args: argparse.Namespace) -> int:
    from adapters import registry

    try:
        settings = _usable(_settings(args.env_file), reach_redis=True)
    except SettingsError as exc:
        _report(exc)
        return 1
    print("configuration is usable")
    print(f"  store: {_store(settings)}")
    print(f"  public URL: {settings.public_url}")
    print(f"  API clients: {', '.join(c.name for c in settings.clients) or 'none'}")
    print(f"  gateways: {', '.join(g.name for g in registry.GATEWAYS if g.name in settings.gateways)}")
    print(f"  Cloudreve bridge: {'on' if settings.cloudreve_key else 'off (PAYRELAY_CLOUDREVE_KEY unset)'}")
    users = ", ".join(settings.console_users)
    print(f"  console: {f'/console for {users}' if users else 'off (PAYRELAY_CONSOLE_USERS unset)'}")
    for note in settings.notes:
        print(f"  note: {note}")
    return 0


def _report(exc: SettingsError) -> None:
    count = len(exc.problems)
    print(f"payrelay: {count} configuration problem{'s' if count > 1 else ''}:", file=sys.stderr)
    for problem in exc.problems:  # each names its variable, first
        text = str(problem)
        print(f"  {text if text.startswith(problem.variable) else f'{problem.variable}: {text}'}", file=sys.stderr)


def _demo(args: argparse.Namespace) -> int:
    from service.demo import run_demo
    from service.sandboxes import SandboxError

    try:
        return run_demo(args.host, args.port, args.state_dir, sandbox_port=args.sandbox_port,
                        notify_port=args.notify_port, ttl=args.ttl)
    except SandboxError as exc:
        print(f"payrelay demo: {exc}", file=sys.stderr)
        return 2


def _sandbox(args: argparse.Namespace) -> int:
    from service.sandboxes import SandboxError, run_sandbox

    try:
        return run_sandbox(args.host, args.port, args.state_dir, args.relay_url)
    except SandboxError as exc:
        print(f"payrelay sandbox: {exc}", file=sys.stderr)
        return 2


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's help with its default, where it has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def _port(text: str) -> int:
    return _whole(text, 1, 65535)


def _first_port(text: str) -> int:
    """The first of the sandboxes' ports: one for each gateway from it on."""
    from adapters import registry

    return _whole(text, 1, 65536 - len(registry.GATEWAYS))


def _seconds(text: str) -> int:
    return _whole(text, 1, None)


def _whole(text: str, low: int, high: int | None) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if number < low or (high is not None and number > high):
        raise argparse.ArgumentTypeError(f"{number} is not between {low} and {high}" if high is not None
                                         else f"{number} is less than {low}")
    return number


def _version() -> str:
    from importlib.metadata import version

    return version("payrelay")


def _hash_password(args: argparse.Namespace) -> int:
    """A console user's password hash (PAYRELAY_CONSOLE_USERS=name:<hash>) from a password on stdin:
    asked twice without echo at a terminal, else the first line read."""
    import getpass

    from service.passwords import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("payrelay: the two passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password:
        print("payrelay: no password given", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="payrelay", formatter_class=_Help,
        description="payrelay: one HTTP service between a storage app and Stripe, Alipay and WeChat Pay.")
    parser.add_argument("--version", action="version", version=f"payrelay {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, run: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=summary, formatter_class=_Help)
        sub.set_defaults(run=run)
        return sub

    def env_file(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--env-file", metavar="FILE",
                         help="a file of PAYRELAY_*=value lines (variables already set win)")

    serve = command("serve", "Run the HTTP service with its background workers.", _serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=_port, default=PORT, help="port to listen on")
    serve.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes")
    serve.add_argument("--graceful-timeout", type=int, default=20, metavar="SECONDS",
                       help="seconds to finish in-flight requests on shutdown")
    serve.add_argument("--keep-alive", type=int, default=KEEP_ALIVE_SECONDS, metavar="SECONDS",
                       help="seconds an idle connection stays open; keep it above the load balancer's idle timeout")
    env_file(serve)

    worker = command("worker", "Run only the background workers (expiry, refunds, notifications).", _worker)
    env_file(worker)
    worker.add_argument("--lease-seconds", type=int, default=0, metavar="SECONDS",
                        help="how long a claim is held before a dead worker's work returns to the others "
                             "(0: each worker's own)")

    check = command("check", "Validate the configuration and say what is missing.", _check)
    env_file(check)

    demo = command("demo", "Run payrelay with the sandbox gateways, a notification receiver and generated keys.",
                   _demo)
    demo.add_argument("--host", default="127.0.0.1", help="address payrelay, the sandboxes and the receiver listen on")
    demo.add_argument("--port", type=_port, default=PORT, help="payrelay's port")
    demo.add_argument("--sandbox-port", type=_first_port, default=SANDBOX_PORT, metavar="P",
                      help="the sandboxes' first port: Stripe on P, Alipay on P+1, WeChat Pay on P+2")
    demo.add_argument("--notify-port", type=_port, default=NOTIFY_PORT, metavar="PORT",
                      help="the notification receiver's port")
    demo.add_argument("--ttl", type=_seconds, default=1800, metavar="SECONDS",
                      help="seconds until a payment expires (60 lets you watch expiry; Stripe's own session "
                           "expiry stays at least 30 min away, as Stripe requires, and payrelay expires the "
                           "session at the TTL)")
    demo.add_argument("--state-dir", default=STATE_DIR, metavar="DIR",
                      help="where the keys and payrelay.env are kept")

    sandbox = command("sandbox", "Run the sandbox gateways alone, for a payrelay serve --env-file.", _sandbox)
    sandbox.add_argument("--host", default="127.0.0.1", help="address the sandboxes listen on")
    sandbox.add_argument("--port", type=_first_port, default=SANDBOX_PORT, metavar="P",
                         help="the first port: Stripe on P, Alipay on P+1, WeChat Pay on P+2")
    sandbox.add_argument("--state-dir", default=STATE_DIR, metavar="DIR",
                         help="where the keys and payrelay.env are kept")
    sandbox.add_argument("--relay-url", default=DEFAULT_PUBLIC_URL, metavar="URL",
                         help="the payrelay the sandboxes send webhooks to (its PAYRELAY_PUBLIC_URL)")

    command("hash-password", "Read a password on stdin and print the hash PAYRELAY_CONSOLE_USERS takes "
            "(name:<hash>).", _hash_password)

    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except SettingsError as exc:
        _report(exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
