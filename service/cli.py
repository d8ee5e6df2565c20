"""The `payrelay` command: serve, worker, check, demo, hash-password."""

from __future__ import annotations

import argparse
import os
import sys

from service.settings import Settings, SettingsError, read_env_file

# Seconds an idle client connection stays open. Longer than the idle timeout of what usually
# stands in front (nginx's upstream keepalive_timeout and cloud load balancers: 60 s), so that the
# proxy, never payrelay, closes an idle connection: otherwise a request the proxy sends on a
# connection payrelay is closing at that moment is lost and the proxy answers 502.
KEEP_ALIVE_SECONDS = 75


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
    logs.configure(settings.log_level)
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
    import signal

    from service import logs
    from service.runtime import Runtime

    settings = _usable(_settings(args.env_file), reach_redis=False)
    logs.configure(settings.log_level)

    async def run() -> None:
        lease = {"lease_ms": args.lease_seconds * 1000} if args.lease_seconds else {}
        runtime = Runtime(settings, worker_options={"expiry": lease, "refunds": lease, "outbox": lease})
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runtime.start_workers()
        try:
            await stop.wait()
        finally:
            await runtime.close()

    asyncio.run(run())
    return 0


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
    from service.preflight import redacted

    try:
        settings = _usable(_settings(args.env_file), reach_redis=True)
    except SettingsError as exc:
        _report(exc)
        return 1
    print("configuration is usable")
    store = f"Redis at {redacted(settings.redis_url)}" if settings.redis_url else "embedded (not durable)"
    print(f"  store: {store}")
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

    return run_demo(args.host, args.port, args.state_dir)


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
    parser = argparse.ArgumentParser(prog="payrelay", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP service (and its background workers)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="worker processes")
    serve.add_argument("--graceful-timeout", type=int, default=20,
                       help="seconds to finish in-flight requests on shutdown")
    serve.add_argument("--keep-alive", type=int, default=KEEP_ALIVE_SECONDS,
                       help="seconds an idle connection stays open; keep it above the load balancer's idle timeout")
    serve.add_argument("--env-file", help="a file of PAYRELAY_*=value lines")
    serve.set_defaults(run=_serve)

    worker = commands.add_parser("worker", help="run only the background workers (expiry, notifications)")
    worker.add_argument("--env-file")
    worker.add_argument("--lease-seconds", type=int, default=0,
                        help="how long a claim is held before a dead worker's work returns to the others")
    worker.set_defaults(run=_worker)

    check = commands.add_parser("check", help="validate the configuration and say what is missing")
    check.add_argument("--env-file")
    check.set_defaults(run=_check)

    demo = commands.add_parser("demo", help="run payrelay with the sandbox gateways and generated keys")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--state-dir", default=".payrelay-demo")
    demo.set_defaults(run=_demo)

    hash_command = commands.add_parser("hash-password", help="read a password on stdin and print the hash "
                                       "PAYRELAY_CONSOLE_USERS takes (name:<hash>)")
    hash_command.set_defaults(run=_hash_password)

    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except SettingsError as exc:
        _report(exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
