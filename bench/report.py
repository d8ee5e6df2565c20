"""The README tables, generated from a results file: ``python -m bench.report bench/results/<date>.json``
rewrites the part of bench/README.md between the ``results`` markers (and prints it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def _f(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _spread(row: dict[str, Any], key: str, digits: int) -> str:
    low, high = row.get(key + "_min"), row.get(key + "_max")
    if low is None or high is None:
        return _f(row.get(key), digits)
    return f"{_f(row[key], digits)} ({_f(low, digits)}–{_f(high, digits)})"


def _ratio(row: dict[str, Any]) -> str:
    r = row["ratio"]
    return f"{r['median']:.2f} ({r['min']:.2f}–{r['max']:.2f})"


def _goal(row: dict[str, Any]) -> str:
    return f"≥ {row['goal_ratio']:g}: {_f(row['goal_met'])}"


def _pair(row: dict[str, Any], key: str) -> str:
    return f"{row['payrelay'][key]:.2f} / {row['floor'][key]:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return [*out, ""]


def _cpu(cores: dict[str, float] | None) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in (cores or {}).items())


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    m = meta["machine"]
    lines = [
        f"Results of `{meta['command']}` ({meta['mode']} mode), {meta['started']} → {meta.get('finished', '?')}.",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, Linux {m['kernel']}; "
        f"Python {m['python']}; {m['redis']}; {m['wrk']}; {m.get('py-spy', '')}; payrelay at {m['git_commit']}.",
        "",
        "Packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()) + ".",
        "",
        "Importable in the venv that ran it: "
        + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in m.get("installed", {}).items()) + ".",
        "",
        f"Load average (1, 5, 15 min) at start {meta['loadavg_start']}; before each scenario: "
        + "; ".join(f"{k} {v}" for k, v in meta.get("loadavg_before", {}).items()) + ". "
        f"Timing: warm-up {meta['timing']['warmup_s']} s, then {meta['timing']['runs']} runs of "
        f"{meta['timing']['run_s']} s per app and configuration, payrelay and floor alternating; figures are "
        "medians with the (min–max) over the runs. "
        "`cpu` = CPU cores used on average during the measured runs, per process group.",
        "",
    ]
    commands = meta.get("commands")
    if commands:
        lines += ["Processes: " + "; ".join(f"{k}: `{v}`" for k, v in commands.items()) + ".", ""]
    trips = results.get("round_trips")
    if trips:
        lines += ["### Redis round trips per payrelay request (MONITOR, script-internal commands excluded)", ""]
        lines += _table(["request", "commands", "total"],
                        [[k, ", ".join(f"{n} ×{c:g}" for n, c in v["per_request"].items()), _f(v["total"], 1)]
                         for k, v in trips.items()])
    lines += ["Ratios are payrelay ÷ floor over alternated runs (payrelay, floor, payrelay, floor, … in one "
              "session): the median of the pairwise ratios (run i ÷ the floor's run i, right after it) with "
              "their (min–max); goals are met on the median.", ""]
    if results.get("create"):
        lines += ["### 1. Create: payrelay against the floor", ""]
        lines += _table(["gateway", "workers", "conns", "payrelay req/s", "floor req/s", "÷ floor", "goal",
                         "p50 ms (payrelay / floor)", "p99 ms (payrelay / floor)", "non-2xx", "cpu payrelay",
                         "cpu floor"],
                        [[r["gateway"], str(r["workers"]), str(r["connections"]), _spread(r["payrelay"], "rps", 0),
                          _spread(r["floor"], "rps", 0), _ratio(r), _goal(r), _pair(r, "p50_ms"), _pair(r, "p99_ms"),
                          f"{r['payrelay']['non_2xx']} / {r['floor']['non_2xx']}", _cpu(r["payrelay"]["cpu_cores"]),
                          _cpu(r["floor"]["cpu_cores"])] for r in results["create"]])
    if results.get("webhooks"):
        lines += ["### 2. Webhooks, done when the notification each caused was delivered", "",
                  "Sustained = webhooks whose notification reached the notify receiver ÷ the time from the "
                  "run's first request to its last notification delivered (every run waits until all are). "
                  "Accepted = 2xx answers ÷ the load's duration, with the notifications still queued when the "
                  "load stopped and how long they took to drain.", ""]
        lines += _table(
            ["gateway", "workers", "payrelay sustained/s", "floor sustained/s", "÷ floor", "goal", "per worker",
             f"≥{1500:,}/s/worker", "payrelay accepted/s", "queued at stop", "drain s", "floor accepted/s",
             "p50 ms (payrelay / floor)", "pool ran out", "cpu payrelay", "cpu floor"],
            [[r["gateway"], str(r["workers"]), _spread(r["payrelay"], "sustained_per_s", 0),
              _spread(r["floor"], "sustained_per_s", 0), _ratio(r), _goal(r), _f(r["sustained_per_s_per_worker"], 0),
              _f(r["goal_per_worker_met"]), _spread(r["payrelay"], "accepted_per_s", 0),
              _spread(r["payrelay"], "queued_at_stop", 0), _spread(r["payrelay"], "drain_s", 2),
              _spread(r["floor"], "accepted_per_s", 0), _pair(r, "p50_ms"), _f(r["pool_exhausted"]),
              _cpu(r["payrelay"]["cpu_cores"]), _cpu(r["floor"]["cpu_cores"])] for r in results["webhooks"]])
    if results.get("get"):
        lines += ["### 3. GET /api/transactions/{id}", ""]
        lines += _table(["gateway", "workers", "conns", "stored", "payrelay req/s", "floor req/s", "÷ floor", "goal",
                         "p50 ms (payrelay / floor)", "p99 ms (payrelay / floor)", "cpu payrelay", "cpu floor"],
                        [[r.get("gateway", "alipay-page"), str(r["workers"]), str(r["connections"]), _f(r["stored"]),
                          _spread(r["payrelay"], "rps", 0),
                          _spread(r["floor"], "rps", 0), _ratio(r), _goal(r), _pair(r, "p50_ms"), _pair(r, "p99_ms"),
                          _cpu(r["payrelay"]["cpu_cores"]), _cpu(r["floor"]["cpu_cores"])] for r in results["get"]])
    if results.get("sweep"):
        lines += ["### 4. Expiry sweep (all payments due at once), payrelay's `payrelay worker`s against the floor's "
                  "sweepers", "",
                  "Rate = closes ÷ the time from the first close to the last (process start-up left out); a run "
                  "stopped at its cap reports the rate it measured, marked *stopped*.", ""]
        rows = []
        for r in results["sweep"]:
            for kind in ("payrelay", "floor"):
                if kind not in r:
                    continue
                done = r[kind]["per_run"]
                rows.append([r["gateway"], str(r["processes"]), kind, _f(r["payments"]),
                             _spread(r[kind], "closes_per_s", 0), _spread(r[kind], "seconds_to_all_closed", 1),
                             ", ".join("done" if d["finished"] else f"*stopped*, {d['left_due']:,} left" for d in done),
                             ", ".join(f"{d['closed_in_redis']:,} / {d['closed_at_gateway']:,}" for d in done),
                             ", ".join(f"{k} {v:,}" for k, v in done[-1]["gateway_calls"].items()),
                             _ratio(r) if kind == "payrelay" and "ratio" in r else "",
                             _goal(r) if kind == "payrelay" and "ratio" in r else "", _cpu(done[-1]["cpu_cores"])])
        lines += _table(["gateway", "processes", "who", "payments", "closes/s", "s to all closed", "runs",
                         "closed in Redis / at gateway", "gateway calls (last run)", "÷ floor", "goal",
                         "cpu (last run)"], rows)
        two = results["sweep"][-1]
        lines += ["Scaling from 1 process to 2 (closes/s with 2 ÷ with 1, medians): "
                  + ", ".join(f"{kind} {_f(two.get(f'{kind}_scaling'), 2)}" for kind in ("payrelay", "floor")
                              if f"{kind}_scaling" in two) + ".", ""]
    if results.get("transport"):
        lines += ["### 5. Outbound HTTP clients (one process each, uvloop)", ""]
        lines += _table(["target", "client", "in flight", "requests/s", "client CPU µs per request", "answers"],
                        [[r["target"], r["client"], str(r["in_flight"]),
                          _f(r.get("per_s"), 0) if "error" not in r else "failed",
                          _f(r.get("cpu_us_per_request"), 0) if "error" not in r else r["error"][-80:],
                          ", ".join(f"{k} ×{v:,}" for k, v in r.get("statuses", {}).items())]
                         for r in results["transport"]])
    if results.get("scale"):
        lines += ["### 6. Scale: latency with many payments stored (alipay-page, 1 worker)", ""]
        lines += _table(["stored", "request", "conns", "Redis used MB", "req/s", "p50 ms", "p99 ms", "non-2xx"],
                        [[_f(r["stored"]), r["request"], str(r["connections"]), _f(r["used_memory_mb"], 1),
                          _spread(r, "rps", 0), _spread(r, "p50_ms", 2), _spread(r, "p99_ms", 2), _f(r["non_2xx"])]
                         for r in results["scale"]])
    memory = results.get("memory")
    if memory:
        lines += ["### 6. Redis memory per payment (bytes)", ""]
        rows = []
        for gateway, mem in memory.items():
            sample = mem["memory_usage_samples"]
            rows.append([gateway, _f(mem["bytes_per_waiting_payment"]), _f(mem["goal_waiting_met"]),
                         _f(mem["bytes_per_final_payment"]), _f(mem["bytes_per_outbox_entry"]),
                         f"{sample.get('payment_hash_encoding')}, {_f(sample.get('payment_hash'))} B",
                         _f(sample.get("payment_url_bytes")), _f(sample.get("delivery_hash"))])
        lines += _table(["gateway", "per waiting payment", "≤ 1 KiB", "per final payment", "per outbox entry",
                         "record hash (encoding, MEMORY USAGE)", "paymentUrl length", "delivery hash"], rows)
        lines += ["Waiting = record hash + transaction index + due entry; final = after the transition to "
                  "`succeeded` (adds the webhook event mark, TTLs); outbox entry = delivery hash (with the "
                  "payment snapshot) + outbox entry + deliveries list. INFO `used_memory` deltas over "
                  f"{next(iter(memory.values()))['sample_payments']:,} payments each.", ""]
    profiles = results.get("profiles")
    if profiles:
        lines += ["### 7. CPU profiles (py-spy, one worker, 16 connections)", ""]
        for name, p in profiles.items():
            if "error" in p:
                lines += [f"**{name}**: {p['error']}", ""]
                continue
            rate = f", {p['rps_while_profiled']:,.0f} req/s while profiled" if p.get("rps_while_profiled") else ""
            lines += [f"**{name}** — {p['samples']} samples, process busy {p['busy_share']:.0%} of the time{rate}. "
                      "Where the time goes (leaf-most library): "
                      + ", ".join(f"{n} {v}%" for n, v in p["by_category_pct"][:9]) + ".", ""]
            own = [(n, v) for n, v in p["top_inclusive_payrelay_pct"] if "service/cli.py" not in n]
            lines += ["Inclusive, payrelay frames: " + ", ".join(f"`{n}` {v}%" for n, v in own[:8]) + ".", ""]
            lines += ["Top self time: " + ", ".join(f"`{n}` {v}%" for n, v in p["top_self_pct"][:6]) + ".", ""]
            if p.get("top_stacks_pct"):
                lines += ["Whole stacks (below the event loop; payrelay frames, each library's entry frame, the leaf):",
                          ""]
                lines += [f"- {v}% `{n}`" for n, v in p["top_stacks_pct"][:10]] + [""]
    seconds = meta.get("seconds")
    if seconds:
        lines += ["Scenario durations (s): " + ", ".join(f"{k} {v}" for k, v in seconds.items()) + ".", ""]
    return "\n".join(lines)


def write_readme(results_path: Path, readme: Path = README) -> str:
    results = json.loads(Path(results_path).read_text())
    table = render(results)
    text = readme.read_text() if readme.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in text:
        text += f"\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1] if END in rest else ""
    readme.write_text(f"{head}{START}\n{table}\n{END}{tail}")
    return table


if __name__ == "__main__":
    print(write_readme(Path(sys.argv[1])))
