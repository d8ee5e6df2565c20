"""wrk runs: one JSON line of results per run (bench/lua/common.lua), warm-up, medians, spreads."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LUA = Path(__file__).resolve().parent / "lua"


def wrk_binary() -> str:
    binary = shutil.which("wrk")
    if binary is None:
        raise SystemExit("wrk is not on the PATH: apt-get update && apt-get install -y wrk")
    return binary


def script(name: str, work_dir: Path) -> Path:
    """The wrk script ``name`` with the shared helpers prepended (wrk loads one file)."""
    target = work_dir / f"wrk-{name}"
    target.write_text((LUA / "common.lua").read_text() + "\n" + (LUA / name).read_text())
    return target


@dataclass(frozen=True)
class Load:
    url: str
    script: Path
    args: tuple[str, ...]
    connections: int
    threads: int = 1


def run(load: Load, seconds: float, timeout_s: int = 10) -> dict[str, Any]:
    argv = [wrk_binary(), f"-t{load.threads}", f"-c{load.connections}", f"-d{seconds:g}s",
            f"--timeout={timeout_s}s", "-s", str(load.script), load.url, "--", *load.args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + timeout_s + 30)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    raw = json.loads(line.removeprefix("BENCHJSON "))
    seconds_run = raw["duration_us"] / 1e6
    errors = raw["connect_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"]
    return {
        "rps": raw["requests"] / seconds_run if seconds_run else 0.0,
        "requests": raw["requests"],
        "seconds": seconds_run,
        "p50_ms": raw["p50_us"] / 1000, "p90_ms": raw["p90_us"] / 1000, "p99_ms": raw["p99_us"] / 1000,
        "p999_ms": raw["p999_us"] / 1000, "max_ms": raw["max_us"] / 1000,
        "non_2xx": raw["status_errors"], "socket_errors": errors,
        "sent": raw["sent"], "wrapped": raw["wrapped"],
    }


FIGURES = ("rps", "p50_ms", "p90_ms", "p99_ms", "p999_ms")


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs: list[dict[str, Any]], figures: tuple[str, ...] = FIGURES) -> dict[str, Any]:
    """Median of each figure over the measured runs, with the min–max spread."""
    out: dict[str, Any] = {"runs": len(runs)}
    for key in figures:
        values = spread([r[key] for r in runs])
        out[key] = values["median"]
        out[key + "_min"] = values["min"]
        out[key + "_max"] = values["max"]
    for key in ("non_2xx", "socket_errors", "requests"):  # wrk's runs'
        if key in runs[0]:
            out[key] = sum(r[key] for r in runs)
    return out


def ratio(of: dict[str, Any], to: dict[str, Any], key: str = "rps") -> dict[str, float]:
    """Pairwise ratios of two apps' alternated runs (run i of ``of`` ÷ run i of ``to``, which ran
    right after it): their median, min and max."""
    pairs = zip(of["per_run"], to["per_run"], strict=True)
    return {k: round(v, 3) for k, v in spread([a[key] / b[key] if b[key] else 0.0 for a, b in pairs]).items()}
