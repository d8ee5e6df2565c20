"""``python -m bench [--quick] [--only create,webhooks,get,sweep,transport,scale]``: run the benchmarks,
write bench/results/<date>[-quick].json and regenerate the tables in bench/README.md from it."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench import report, scenarios
from bench.harness import PORT_NAMES, Harness, Timing, machine, ports
from bench.scenarios import Mode, log

RESULTS = Path(__file__).resolve().parent / "results"

FULL = Mode(quick=False, connections=(1, 16, 64), workers=(1, 2), webhook_rate_guess=2000,
            sweep_payments=20_000, sweep_gateway="alipay-page", sweep_limit_s=300,
            scale_sizes=(10_000, 1_000_000), memory_sample=10_000, profile_s=8,
            transport_requests=20_000)
QUICK = Mode(quick=True, connections=(1, 16), workers=(1, 2), webhook_rate_guess=2000,
             sweep_payments=2_000, sweep_gateway="alipay-page", sweep_limit_s=120,
             scale_sizes=(1_000, 20_000), memory_sample=2_000, profile_s=3,
             transport_requests=3_000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run: short runs, small data (~10 min)")
    parser.add_argument("--only", help="comma-separated scenarios: " + ",".join(scenarios.SCENARIOS))
    parser.add_argument("--sweep-gateway", choices=("alipay-page", "wechat-pay-native", "stripe-connect"))
    parser.add_argument("--sweep-payments", type=int)
    # whole seconds: wrk's -d takes no fractions
    parser.add_argument("--warmup", type=int, help="seconds of warm-up per app and configuration")
    parser.add_argument("--run-seconds", type=int, help="seconds per measured run")
    parser.add_argument("--runs", type=int,
                        help="measured runs per app and configuration (payrelay and floor alternate)")
    parser.add_argument("--base-port", type=int, help="listen on consecutive ports from this one: "
                        + ", ".join(PORT_NAMES) + " (default: free ones)")
    parser.add_argument("--port", action="append", default=[], metavar="NAME=PORT",
                        help="a fixed port for one of " + ", ".join(PORT_NAMES) + "; repeatable")
    parser.add_argument("--output", help="results file (default bench/results/<date>[-quick].json)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, profiles)")
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL
    if args.sweep_gateway:
        mode.sweep_gateway = args.sweep_gateway
    if args.sweep_payments:
        mode.sweep_payments = args.sweep_payments
    timing = Timing(warmup_s=1, run_s=1, runs=3) if args.quick else Timing(warmup_s=2, run_s=4, runs=3)
    for name, value in (("warmup_s", args.warmup), ("run_s", args.run_seconds), ("runs", args.runs)):
        if value is not None:
            setattr(timing, name, value)
    fixed = {}
    for item in args.port:
        name, _, port = item.partition("=")
        if name not in PORT_NAMES or not port.isdigit():
            parser.error(f"--port {item}: NAME=PORT with NAME one of {', '.join(PORT_NAMES)}")
        fixed[name] = int(port)
    chosen = args.only.split(",") if args.only else list(scenarios.SCENARIOS)
    unknown = set(chosen) - set(scenarios.SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")

    # a SIGTERM (timeout, Ctrl-C's cousin) unwinds like an exception, so every process started is stopped
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    work = Path(tempfile.mkdtemp(prefix="payrelay-bench-"))
    started = dt.datetime.now(dt.UTC)
    results: dict = {
        "meta": {
            "started": started.isoformat(timespec="seconds"),
            "mode": "quick" if args.quick else "full",
            "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
            "timing": vars(timing),
            "machine": machine(),
            "loadavg_start": scenarios.loadavg(),
            "scenarios": chosen,
        },
    }
    log(f"work directory {work}; load average {results['meta']['loadavg_start']}")
    h = Harness(work, timing, ports(args.base_port, fixed))
    results["meta"]["ports"] = h.ports
    try:
        for name in chosen:
            t0 = time.monotonic()
            log(f"== {name} (load average {scenarios.loadavg()})")
            results["meta"].setdefault("loadavg_before", {})[name] = scenarios.loadavg()
            scenarios.SCENARIOS[name](h, mode, results)
            results["meta"].setdefault("seconds", {})[name] = round(time.monotonic() - t0, 1)
    finally:
        h.close()
        results["meta"]["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        results["meta"]["commands"] = {
            **h.commands,
            "wrk": "wrk -t1 -cC -dDs --timeout=10s -s bench/lua/<common.lua + script> URL -- ARGS",
            "redis": "redis-server --port PORT --save '' --appendonly no",
            "gateways": "python -m bench.gateways PORTS_JSON",
            "profile": "py-spy record -p PID -d S -r 200 -F -f raw --nonblocking",
        }
        RESULTS.mkdir(exist_ok=True)
        output = Path(args.output) if args.output else RESULTS / (
            started.strftime("%Y-%m-%d") + ("-quick" if args.quick else "") + ".json")
        for name, prof in results.get("profiles", {}).items():  # keep the raw stacks next to the results
            raw = work / str(prof.get("raw", ""))
            if prof.get("raw") and raw.exists():
                slug = "".join(c if c.isalnum() else "-" for c in name).strip("-")
                target = output.parent / "profiles" / f"{output.stem}-{slug}.txt"
                target.parent.mkdir(exist_ok=True)
                shutil.copy(raw, target)
                prof["raw"] = str(target.relative_to(RESULTS.parent) if target.is_relative_to(RESULTS.parent)
                                  else target)
        output.write_text(json.dumps(results, indent=1, default=str) + "\n")
        log(f"results written to {output}")
        if not args.quick and not args.output:
            report.write_readme(output)
            log("bench/README.md tables regenerated")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
