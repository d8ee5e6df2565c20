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
        f"Load average at start {meta['loadavg_start']}; before each scenario: "
        + "; ".join(f"{k} {v}" for k, v in meta.get("loadavg_before", {}).items()) + ". "
        f"Timing: warm-up {meta['timing']['warmup_s']} s, then {meta['timing']['runs']} runs of "
        f"{meta['timing']['run_s']} s; figures are medians with the (min–max) over the runs. "
        "`cpu` = CPU cores used on average during the measured runs, per process group.",
        "",
    ]
    commands = meta.get("commands")
    if commands:
        lines += ["Processes: " + "; ".join(f"{k}: `{v}`" for k, v in commands.items()) + ".", ""]
    trips = results.get("round_trips")
    if trips:
        lines += ["### Redis round trips per request (MONITOR, script-internal commands excluded)", ""]
        lines += _table(["request", "commands", "total"],
                        [[k, ", ".join(f"{n} ×{c:g}" for n, c in v["per_request"].items()), _f(v["total"], 1)]
                         for k, v in trips.items()])
    if results.get("create_vs_floor"):
        lines += ["### 1–2. Create: payrelay against the floor", ""]
        rows = []
        for c in results["create_vs_floor"]:
            rows.append([c["gateway"], str(c["workers"]), str(c["connections"]),
                         _f(c["payrelay_rps"]), _f(c["floor_rps"]), f"{c['rps_ratio']:.2f}",
                         f"{c['payrelay_p50_ms']:.2f} / {c['floor_p50_ms']:.2f}", f"{c['added_p50_ms']:+.2f}",
                         f"{c['payrelay_p99_ms']:.2f} / {c['floor_p99_ms']:.2f}", _f(c["p99_ratio"], 2),
                         _f(c["goal_rps_met"]), _f(c["goal_p50_met"])])
        lines += _table(["gateway", "workers", "conns", "payrelay req/s", "floor req/s", "÷ floor",
                         "p50 ms (payrelay / floor)", "added p50 ms", "p99 ms (payrelay / floor)", "p99 ÷",
                         "≥0.7×", "≤+2 ms"], rows)
        lines += ["Every run (median (min–max)):", ""]
        lines += _table(
            ["app", "gateway", "workers", "conns", "req/s", "p50 ms", "p99 ms", "non-2xx", "cpu"],
            [[r["app"], r["gateway"], str(r["workers"]), str(r["connections"]), _spread(r, "rps", 0),
              _spread(r, "p50_ms", 2), _spread(r, "p99_ms", 2), _f(r["non_2xx"]), _cpu(r.get("cpu_cores"))]
             for r in results["create"]])
    if results.get("webhooks"):
        lines += ["### 3. Webhook ingest (distinct, genuinely signed success webhooks for waiting payments)", ""]
        lines += _table(
            ["gateway", "workers", "conns", "verified + applied/s", "per worker", "req/s answered (wrk)",
             "left the due set /s (Redis)", "p50 ms", "p99 ms", "non-2xx", "pool ran out", "≥1,500/s/worker", "cpu"],
            [[r["gateway"], str(r["workers"]), str(r["connections"]), _f(r.get("verified_applied_per_s"), 0),
              _f(r["applied_per_s_per_worker"], 0), _spread(r, "rps", 0), _spread(r, "applied_per_s", 0),
              _spread(r, "p50_ms", 2),
              _spread(r, "p99_ms", 2), _f(r["non_2xx"]), _f(r["pool_exhausted"]), _f(r["goal_met"]),
              _cpu(r.get("cpu_cores"))] for r in results["webhooks"]])
    if results.get("get"):
        lines += ["### 4. GET /api/transactions/{id}", ""]
        lines += _table(["workers", "conns", "stored", "req/s", "p50 ms", "p99 ms", "non-2xx", "cpu"],
                        [[str(r["workers"]), str(r["connections"]), _f(r["stored"]), _spread(r, "rps", 0),
                          _spread(r, "p50_ms", 2), _spread(r, "p99_ms", 2), _f(r["non_2xx"]), _cpu(r.get("cpu_cores"))]
                         for r in results["get"]])
    if results.get("sweep"):
        lines += ["### 5. Expiry sweep (all payments due at once, `payrelay worker` processes)", ""]
        lines += _table(
            ["gateway", "processes", "payments", "seconds (from start / from first close)",
             "closes/s (overall / steady)", "all closed after (s)",
             "closed in Redis", "closed at gateway", "gateway calls", "≥1,000/s with 2", "cpu"],
            [[r["gateway"], str(r["processes"]), _f(r["payments"]),
              f"{r['seconds_total']:.1f} / {r['seconds_from_first_close']:.1f}",
              f"{_f(r['closes_per_s'])} / {_f(r['closes_per_s_steady'])}",
              _f(r["seconds_total"], 1) if r.get("finished") else
              f"~{_f(r.get('extrapolated_total_s'), 0)} (stopped at {_f(r.get('capped_at_s'))} s, extrapolated)",
              _f(r["closed_in_redis"]),
              _f(r["closed_at_gateway"]), ", ".join(f"{k} {v:,}" for k, v in r["gateway_calls"].items()),
              _f(r["goal_met"]) if r["processes"] == 2 else "", _cpu(r.get("cpu_cores"))] for r in results["sweep"]])
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
