"""The scenarios of issues 8 and 15. Each takes the harness and the mode and adds JSON-able results."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import load, procs, profile, seed
from bench.harness import AMOUNTS, API_KEY, App, Harness
from bench.procs import PYTHON
from service import keys

GATEWAYS_CREATE = ("alipay-page", "stripe-connect")
GATEWAYS_WEBHOOK = ("alipay-page", "stripe-connect", "wechat-pay-native")
WEBHOOK_CONNECTIONS = 16
GET_CONNECTIONS = (16, 64)
GET_GATEWAYS = ("alipay-page", "wechat-pay-native")
SCALE_CONNECTIONS = 16


@dataclass
class Mode:
    quick: bool
    connections: tuple[int, ...]
    workers: tuple[int, ...]
    webhook_rate_guess: int  # per worker, sizes the pool of distinct signed webhooks
    sweep_payments: int
    sweep_gateway: str
    sweep_limit_s: float  # a sweep still running then is stopped; its measured rate is reported as such
    scale_sizes: tuple[int, int]
    memory_sample: int
    profile_s: float
    transport_requests: int


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ratio to the floor each scenario's goal asks (issue 15)
GOALS = {"alipay-page": 0.8, "stripe-connect": 0.7, "get": 0.8, "webhooks": 0.7, "sweep": 0.7}
WEBHOOKS_PER_WORKER = 1500
DRAIN_LIMIT_S = 120.0  # a run's notifications not delivered by then are reported as still queued
DRAIN_QUIET_S = 0.5  # once every accepted webhook's notification arrived: no more for this long


def versus(relay: dict[str, Any], floor: dict[str, Any], key: str, goal: float) -> dict[str, Any]:
    """payrelay against the floor over alternated runs: the pairwise ratios of ``key``, and the goal."""
    ratio = load.ratio(relay, floor, key)
    return {"payrelay": relay, "floor": floor, "ratio": ratio, "ratio_of": key, "goal_ratio": goal,
            "goal_met": ratio["median"] >= goal}


def _ratio_text(row: dict[str, Any]) -> str:
    r = row["ratio"]
    return f"÷ floor {r['median']:.2f} ({r['min']:.2f}–{r['max']:.2f})"


# -- 1: create, alternated with the floor --------------------------------------------------------------

def create(h: Harness, mode: Mode, results: dict[str, Any]) -> None:
    rows: list[dict[str, Any]] = []
    profiles: dict[str, Any] = results.setdefault("profiles", {})
    script = load.script("create.lua", h.work)
    h.reset()
    with h.payrelay(1) as app:  # what a create costs in Redis round trips, and the body the SDK sends
        trips = {g: h.round_trips(app, g) for g in GATEWAYS_CREATE}
        trips["get"] = h.round_trips(app, "alipay-page", get=True)
        capture = h.stripe_capture()
        capture["pid"] = parse_client_reference(capture["body"])
    results["round_trips"] = trips
    log(f"round trips per request: {trips}")
    for workers in mode.workers:
        with h.payrelay(workers) as relay, h.floor(workers, capture) as floor:
            for gateway in GATEWAYS_CREATE:
                amount, currency = AMOUNTS[gateway]
                for conns in mode.connections:
                    h.reset()
                    tag = f"{gateway}-w{workers}-c{conns}-{time.time_ns()}"

                    def make(app: App, i: int, tag: str = tag, conns: int = conns, gateway: str = gateway,
                             amount: str = amount, currency: str = currency) -> load.Load:
                        return load.Load(app.url, script, (f"{app.kind}-{tag}-{i}", gateway, API_KEY, amount,
                                                           currency), conns)

                    both = h.alternate([relay, floor], make)
                    row = {"gateway": gateway, "workers": workers, "connections": conns,
                           **versus(both["payrelay"], both["floor"], "rps", GOALS[gateway])}
                    rows.append(row)
                    log(f"create {gateway:14} w{workers} c{conns:<3} payrelay {both['payrelay']['rps']:7.0f}/s "
                        f"floor {both['floor']['rps']:7.0f}/s {_ratio_text(row)} non2xx "
                        f"{both['payrelay']['non_2xx']}/{both['floor']['non_2xx']}")
                    if workers == 1 and conns == 16 and mode.profile_s:
                        profiles[f"create {gateway}"] = profiled_run(h, relay, make(relay, 99), mode.profile_s)
    results["create"] = rows


def parse_client_reference(body: str) -> str:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(body))["client_reference_id"]


def profiled_run(h: Harness, app: App, spec: load.Load, seconds: float) -> dict[str, Any]:
    out = h.work / f"profile-{time.time_ns()}.txt"
    spy = profile.record(app.worker_pid(), seconds, out)
    time.sleep(0.5)  # py-spy attaches
    result = load.run(spec, seconds + 1)
    spy.wait(30)
    if not out.exists():
        return {"error": "py-spy wrote no profile (ptrace not permitted?)"}
    summary = profile.summarize(out, seconds)
    summary["rps_while_profiled"] = round(result["rps"], 1)
    summary["raw"] = out.name
    return summary


# -- 2: webhooks, until the notifications they caused are delivered -------------------------------------

class WebhookPool:
    """Waiting payments of one gateway (in Redis and at the emulator) with one signed success webhook
    each, in a file wrk replays from ``next``. Topped up before each run so every request is a
    distinct, first-time webhook, sized by the rate seen so far (signing is the slow part of
    preparing). payrelay and the floor take turns on the same pool."""

    def __init__(self, h: Harness, app: App, gateway: str) -> None:
        self.h, self.app, self.gateway = h, app, gateway
        self.template = h.template(app, gateway)
        self.seeder = seed.Seeder(h.redis.client, self.template)
        self.path = h.work / f"webhooks-{gateway}-{time.time_ns()}.bin"
        self.size = 0
        self.next = 1
        self.prep_s = 0.0

    def ensure(self, unused: int) -> None:
        missing = unused - (self.size - self.next + 1)
        if missing <= 0:
            return
        started = time.monotonic()
        h, gateway = self.h, self.gateway
        ids = list(seed.new_ids(self.template["client"], f"wh-{gateway}-{time.time_ns()}", missing))
        amount = int(self.template["amount"])
        refs = seed.seed_gateway(h.control, gateway, [(pid, amount) for pid, _, _ in ids], self.template["paymentId"])
        self.seeder.seed(missing, prefix="", expires_ms=int(time.time() * 1000) + 3_600_000, ids=ids,
                         refs=[r or "" for r in refs] if gateway == "stripe-connect" else None)
        sign_ids = refs if gateway == "stripe-connect" else [pid for pid, _, _ in ids]
        answer = httpx.post(f"{h.control}/sign/{gateway}", timeout=1200,
                            json={"ids": sign_ids, "path": str(self.path), "host": f"127.0.0.1:{self.app.port}",
                                  "append": self.size > 0})
        answer.raise_for_status()
        self.size += missing
        self.prep_s += time.monotonic() - started

    def load(self, url: str, script: Path) -> load.Load:
        return load.Load(url, script, (str(self.path), str(self.next), "1"), WEBHOOK_CONNECTIONS)


class Deliveries:
    """One run's webhooks, done once the notification each caused reached the notify receiver:
    ``start`` just before wrk starts, ``finish`` after it stopped waits for the notifications."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.before = 0
        self.started = 0.0

    def start(self) -> None:
        self.before = self.h.notified()["count"]
        self.started = time.time()

    def finish(self, result: dict[str, Any]) -> dict[str, Any]:
        stopped = time.time()
        accepted = result["requests"] - result["non_2xx"]
        expected = accepted - result["wrapped"]  # a webhook sent again is acknowledged and notifies nobody
        at_stop = self.h.notified()["count"] - self.before
        done, last_change = at_stop, time.monotonic()
        deadline = last_change + DRAIN_LIMIT_S
        # in-flight requests wrk dropped at its stop may still be handled: their notifications count too
        while time.monotonic() < deadline and done < result["sent"]:
            time.sleep(0.05)
            count = self.h.notified()["count"] - self.before
            if count != done:
                done, last_change = count, time.monotonic()
            elif done >= expected and time.monotonic() - last_change >= DRAIN_QUIET_S:
                break
        last = self.h.notified()["last"] or stopped
        span = max(last, stopped) - self.started
        return {"accepted_per_s": accepted / result["seconds"], "delivered": done,
                "sustained_per_s": done / span if span > 0 else 0.0,
                "queued_at_stop": max(0, accepted - at_stop), "drain_s": max(0.0, last - stopped),
                "undelivered": max(0, accepted - done)}


WEBHOOK_FIGURES = ("sustained_per_s", "accepted_per_s", "queued_at_stop", "drain_s", "p50_ms", "p99_ms")


def webhooks(h: Harness, mode: Mode, results: dict[str, Any]) -> None:
    rows: list[dict[str, Any]] = []
    profiles: dict[str, Any] = results.setdefault("profiles", {})
    script = load.script("replay.lua", h.work)
    for workers in mode.workers:
        with h.payrelay(workers) as relay, h.floor(workers) as floor:
            for gateway in GATEWAYS_WEBHOOK:
                h.reset()
                pool = WebhookPool(h, relay, gateway)
                rate = {"seen": float(mode.webhook_rate_guess * workers)}
                run = Deliveries(h)

                def make(app: App, i: int, pool: WebhookPool = pool, rate: dict[str, float] = rate,
                         run: Deliveries = run) -> load.Load:
                    seconds = h.timing.warmup_s if i == 0 else (mode.profile_s + 1 if i == 99 else h.timing.run_s)
                    pool.ensure(int(rate["seen"] * seconds * 1.5) + 200)
                    run.start()
                    return pool.load(app.url, script)

                def delivered(app: App, result: dict[str, Any], pool: WebhookPool = pool,
                              rate: dict[str, float] = rate, run: Deliveries = run) -> dict[str, Any]:
                    pool.next += result["sent"]
                    rate["seen"] = max(rate["seen"], result["rps"])
                    return run.finish(result)

                both = h.alternate([relay, floor], make, after_run=delivered, figures=WEBHOOK_FIGURES)
                row = {"gateway": gateway, "workers": workers, "connections": WEBHOOK_CONNECTIONS,
                       **versus(both["payrelay"], both["floor"], "sustained_per_s", GOALS["webhooks"])}
                per_worker = both["payrelay"]["sustained_per_s"] / workers
                row |= {"sustained_per_s_per_worker": per_worker,
                        "goal_per_worker_met": per_worker >= WEBHOOKS_PER_WORKER,
                        "pool_exhausted": any(r["wrapped"] for a in both.values() for r in a["per_run"]),
                        "prepare_s": round(pool.prep_s, 1)}
                rows.append(row)
                log(f"webhooks {gateway:18} w{workers} payrelay sustained {both['payrelay']['sustained_per_s']:6.0f}/s "
                    f"(accepted {both['payrelay']['accepted_per_s']:6.0f}/s, queued at stop "
                    f"{both['payrelay']['queued_at_stop']:.0f}) floor {both['floor']['sustained_per_s']:6.0f}/s "
                    f"{_ratio_text(row)} exhausted {row['pool_exhausted']}")
                if workers == 1 and mode.profile_s:
                    profiles[f"webhook {gateway}"] = profiled_run(h, relay, make(relay, 99), mode.profile_s)
    results["webhooks"] = rows


# -- 3: GET ----------------------------------------------------------------------------------------------

def get(h: Harness, mode: Mode, results: dict[str, Any]) -> None:
    """Per gateway: Alipay records keep no paymentUrl (every GET of one not among the last 4,096
    a process showed signs it again, the floor too), WeChat's keep theirs (the read path alone)."""
    rows = []
    script = load.script("get.lua", h.work)
    stored = 2_000 if mode.quick else 10_000
    for workers in mode.workers:
        with h.payrelay(workers) as relay, h.floor(workers) as floor:
            for gateway in GET_GATEWAYS:
                h.reset()
                ids_file = seed_waiting(h, relay, stored, gateway)
                for conns in GET_CONNECTIONS:
                    both = h.alternate([relay, floor], lambda app, i, c=conns, f=ids_file: load.Load(
                        app.url, script, (str(f), API_KEY, BY_ID), c))
                    row = {"gateway": gateway, "workers": workers, "connections": conns, "stored": stored,
                           **versus(both["payrelay"], both["floor"], "rps", GOALS["get"])}
                    rows.append(row)
                    log(f"get {gateway} w{workers} c{conns} payrelay {both['payrelay']['rps']:7.0f}/s floor "
                        f"{both['floor']['rps']:7.0f}/s {_ratio_text(row)}")
    results["get"] = rows


def seed_waiting(h: Harness, app: App, count: int, gateway: str = "alipay-page", sample: int = 50_000) -> Path:
    template = h.template(app, gateway)
    ids = seed.Seeder(h.redis.client, template).seed(
        count, prefix=f"get-{time.time_ns()}", expires_ms=int(time.time() * 1000) + 7 * 86_400_000)
    path = h.work / f"ids-{time.time_ns()}.txt"
    step = max(1, len(ids) // sample)
    path.write_text("\n".join(ids[::step]) + "\n")
    return path


# -- 4: expiry sweep, alternated with the floor ---------------------------------------------------------

SWEEP_FIGURES = ("closes_per_s", "seconds_to_all_closed")


def sweep(h: Harness, mode: Mode, results: dict[str, Any]) -> None:
    """Per process count: payrelay's `payrelay worker`s and the floor's sweepers take turns, each on
    freshly seeded due payments, swept to the last one (or stopped at ``sweep_limit_s``: then the
    measured rate is reported, labelled so)."""
    rows = []
    gateway = mode.sweep_gateway
    h.reset()
    with h.payrelay(1) as app:  # only to make the template payment
        template = h.template(app, gateway)
    # the floor sweeps Alipay only (bench/floor_sweep.py)
    kinds = ("payrelay", "floor") if gateway == "alipay-page" else ("payrelay",)
    for processes in (1, 2):
        runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
        for i in range(h.timing.runs):
            for kind in kinds:
                profiled = mode.profile_s if kind == "payrelay" and processes == 1 and i == 0 else 0
                run = sweep_once(h, mode, template, kind, processes, profiled, results)
                runs[kind].append(run)
                log(f"sweep {kind:8} {processes} process(es): {run['closed']} closed in "
                    f"{run['seconds_to_all_closed']:.1f} s, {run['closes_per_s']:.0f}/s"
                    + ("" if run["finished"] else f" (stopped at {mode.sweep_limit_s:g} s: measured rate)"))
        summaries = {kind: {**load.summarize(done, SWEEP_FIGURES), "per_run": done} for kind, done in runs.items()}
        row: dict[str, Any] = {"gateway": gateway, "processes": processes, "payments": mode.sweep_payments}
        if "floor" in summaries:
            row |= versus(summaries["payrelay"], summaries["floor"], "closes_per_s", GOALS["sweep"])
        else:
            row |= {"payrelay": summaries["payrelay"]}
        rows.append(row)
    for kind in kinds:  # the goal asks the sweep to scale from 1 process to 2
        one, two = (row[kind]["closes_per_s"] for row in rows)
        rows[1][f"{kind}_scaling"] = round(two / one, 2) if one else None
    results["sweep"] = rows


def sweep_once(h: Harness, mode: Mode, template: dict[str, str], kind: str, processes: int, profile_s: float,
               results: dict[str, Any]) -> dict[str, Any]:
    gateway, count = mode.sweep_gateway, mode.sweep_payments
    h.reset()
    ids = list(seed.new_ids(template["client"], f"sweep-{time.time_ns()}", count))
    amount = int(template["amount"])
    refs = seed.seed_gateway(h.control, gateway, [(pid, amount) for pid, _, _ in ids], template["paymentId"])
    seed.Seeder(h.redis.client, template).seed(
        count, prefix="", expires_ms=int(time.time() * 1000) - 1000, ids=ids,
        refs=[r or "" for r in refs] if gateway == "stripe-connect" else None)
    sweepers = h.worker_procs(processes) if kind == "payrelay" else h.floor_sweepers(processes)
    t0 = time.monotonic()
    cpu0 = {"gateways": h.gateways.cpu(), "redis": h.redis.proc.cpu()}
    first = None
    remaining = count
    spy = None
    spy_out = h.work / f"profile-sweep-{time.time_ns()}.txt"
    while time.monotonic() - t0 < mode.sweep_limit_s:
        time.sleep(0.1)
        if profile_s and spy is None and first is not None:
            spy = profile.record(sweepers[0].pid, profile_s, spy_out, gil=True)
        remaining = seed.due_count(h.redis.client)
        if first is None and remaining < count:
            first = time.monotonic()
        if remaining == 0 or not any(w.alive() for w in sweepers):
            break
    done_at = time.monotonic()
    cpu = {"sweepers": sum(w.cpu() for w in sweepers), "gateways": h.gateways.cpu() - cpu0["gateways"],
           "redis": h.redis.proc.cpu() - cpu0["redis"]}
    for w in sweepers:
        w.stop()  # in-flight closes finish first (SIGTERM: payrelay's workers hand back what they hold)
    if spy is not None:
        spy.wait(60)
        if spy_out.exists():
            summary = profile.summarize(spy_out, profile_s)
            summary["rps_while_profiled"] = None
            summary["raw"] = spy_out.name
            results.setdefault("profiles", {})[f"expiry sweep {gateway} (payrelay worker)"] = summary
    stats = h.gateway_stats()[gateway]
    closed = count - remaining
    steady = done_at - (first or done_at)
    return {
        "closed": closed, "finished": remaining == 0, "left_due": remaining,
        "seconds_to_all_closed": round(done_at - t0, 2), "seconds_from_first_close": round(steady, 2),
        # from the first close to the last: process start-up (imports, connections) left out
        "closes_per_s": round(closed / steady, 1) if steady > 0 else 0.0,
        "closed_in_redis": count_status(h, ids, "closed"), "closed_at_gateway": stats["closed"],
        "gateway_calls": dict(stats["calls"]),
        "cpu_cores": {k: round(v / (done_at - t0), 2) for k, v in cpu.items()},
    }


def count_status(h: Harness, ids: list[tuple[str, str, int]], status: str) -> int:
    pipe = h.redis.client.pipeline(transaction=False)
    total = 0
    for n, (pid, _, bucket) in enumerate(ids, 1):
        pipe.hget(keys.payment(bucket, pid), "status")
        if n % 5000 == 0:
            total += sum(1 for s in pipe.execute() if s == status)
    total += sum(1 for s in pipe.execute() if s == status)
    return total


# -- 5: outbound HTTP clients ---------------------------------------------------------------------------

TRANSPORT_IN_FLIGHT = (8, 32)


def transport(h: Harness, mode: Mode, results: dict[str, Any]) -> None:
    """Every candidate client (bench/transport.py), each in a process of its own, against the notify
    receiver (a POST of a notification-sized JSON body) and the Alipay emulator (a signed GET of
    alipay.trade.query, as payrelay's adapter and the sweep send it): client CPU per request and
    throughput, with 8 and 32 requests in flight."""
    from adapters.alipay.adapter import signed_query
    from bench.floor import alipay_request, der_key

    env = h.gateway_env
    query = signed_query(der_key(env["PAYRELAY_ALIPAY_PRIVATE_KEY"], private=True),
                         alipay_request(env["PAYRELAY_ALIPAY_APP_ID"], "alipay.trade.query",
                                        {"out_trade_no": "pr_00transportprobe"}))
    body = json.dumps({"id": "evt_" + "0" * 24, "type": "payment.succeeded",
                       "data": {"paymentId": "pr_" + "0" * 26, "note": "x" * 900}}).encode()
    targets = {"notify receiver (POST)": ("POST", h.control + "/notify", body),
               "Alipay emulator (GET query)": ("GET", f"{env['PAYRELAY_ALIPAY_GATEWAY_URL']}?{query}", b"")}
    names = subprocess.run([PYTHON, "-c", "import json; from bench import transport; "
                            "print(json.dumps(list(transport.clients())))"],
                           capture_output=True, text=True, check=True, cwd=procs.ROOT).stdout
    rows = []
    for target, (method, url, content) in targets.items():
        for in_flight in TRANSPORT_IN_FLIGHT:
            for client in json.loads(names):
                h.reset()
                done = subprocess.run([PYTHON, "-m", "bench.transport", client, method, url,
                                       str(mode.transport_requests), str(in_flight)],
                                      input=content, capture_output=True, cwd=procs.ROOT, timeout=600)
                if done.returncode:
                    rows.append({"target": target, "client": client, "in_flight": in_flight,
                                 "error": done.stderr.decode()[-300:]})
                    log(f"transport {client} failed: {done.stderr.decode()[-300:]}")
                    continue
                row = {"target": target, **json.loads(done.stdout)}
                rows.append(row)
                log(f"transport {target:28} {client:32} x{in_flight:<2} {row['per_s']:7.0f}/s "
                    f"{row['cpu_us_per_request']:6.0f} µs CPU/request {row['statuses']}")
    results["transport"] = rows


# -- 6: scale and memory ----------------------------------------------------------------------------------

def scale(h: Harness, mode: Mode, results: dict[str, Any]) -> None:
    results["memory"] = memory(h, mode)
    rows = []
    create_script = load.script("create.lua", h.work)
    get_script = load.script("get.lua", h.work)
    h.reset()
    with h.payrelay(1) as app:
        template = h.template(app, "alipay-page")
        seeder = seed.Seeder(h.redis.client, template)
        stored = 0
        all_ids: list[str] = []
        for size in mode.scale_sizes:
            started = time.monotonic()
            all_ids += seeder.seed(size - stored, prefix=f"scale-{size}", expires_ms=int(time.time() * 1000)
                                   + 7 * 86_400_000)
            stored = size
            info = h.redis.client.info("memory")
            log(f"scale: {size} payments stored (seeded in {time.monotonic() - started:.1f} s), "
                f"used_memory {info['used_memory_human']}")
            ids_file = h.work / f"scale-ids-{size}.txt"
            step = max(1, len(all_ids) // 50_000)
            ids_file.write_text("\n".join(all_ids[::step]) + "\n")
            queries_file = h.work / f"scale-queries-{size}.txt"
            queries_file.write_text("\n".join(list_queries(app.url)) + "\n")
            amount, currency = AMOUNTS["alipay-page"]
            for what, make in (
                ("create", lambda a, i, s=size, m=amount, c=currency: load.Load(
                    a.url, create_script, (f"scale{s}-{time.time_ns()}-{i}", "alipay-page", API_KEY, m, c),
                    SCALE_CONNECTIONS)),
                ("get", lambda a, i, f=ids_file: load.Load(a.url, get_script, (str(f), API_KEY, BY_ID),
                                                           SCALE_CONNECTIONS)),
                ("list", lambda a, i, f=queries_file: load.Load(a.url, get_script, (str(f), API_KEY, LISTING),
                                                                SCALE_CONNECTIONS)),
            ):
                summary = h.alternate([app], make)["payrelay"]
                rows.append({"stored": size, "request": what, "workers": 1, "connections": SCALE_CONNECTIONS,
                             "used_memory_mb": round(info["used_memory"] / 2**20, 1), **summary})
                log(f"scale {size} {what}: {summary['rps']:.0f}/s p50 {summary['p50_ms']:.2f} "
                    f"p99 {summary['p99_ms']:.2f} ms")
    results["scale"] = rows


BY_ID, LISTING = "/api/transactions/", "/api/transactions?"  # get.lua's prefixes


def list_queries(url: str) -> list[str]:
    """Listing requests: first pages (newest and oldest first, by status, a big page) and pages
    further on, by the tokens a walk from the first page gave."""
    firsts = ["page_size=50", "order_direction=asc", "status=waiting", "page_size=100&status=waiting"]
    queries = list(firsts)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        for first in firsts:
            query = first
            for _ in range(5):
                token = client.get(f"/api/transactions?{query}").json()["pagination"]["next_token"]
                if not token:
                    break
                query = f"{first}&next_page_token={token}"
                queries.append(query)
    return queries


def memory(h: Harness, mode: Mode) -> dict[str, Any]:
    """Per gateway: bytes per waiting payment, per final payment, per outbox entry (INFO used_memory
    deltas over ``memory_sample`` payments each, seeded through a connection closed before measuring so
    its query buffers are not counted; and MEMORY USAGE of sample keys)."""
    import redis as redis_sync

    out: dict[str, Any] = {}
    for gateway in GATEWAYS_WEBHOOK:
        h.reset()
        with h.payrelay(1) as app:
            template = h.template(app, gateway)
        out[gateway] = memory_of(h, mode, template, redis_sync)
        log(f"memory {gateway}: {out[gateway]}")
    return out


def memory_of(h: Harness, mode: Mode, template: dict[str, str], redis_sync: Any) -> dict[str, Any]:
    n = mode.memory_sample
    h.reset()
    client = h.redis.client
    expires = int(time.time() * 1000) + 7 * 86_400_000

    def used() -> int:
        time.sleep(0.2)
        return int(client.info("memory")["used_memory"])

    def seed_batch(ids: list[tuple[str, str, int]], overrides: dict[str, str] | None = None) -> None:
        writer = redis_sync.Redis(port=h.redis.port, decode_responses=True)
        try:
            seed.Seeder(writer, template).seed(len(ids), prefix="", expires_ms=expires, ids=ids, overrides=overrides)
        finally:
            writer.close()

    # a first batch creates the 64 due sets and grows the keyspace: not what one more payment costs
    seed_batch(list(seed.new_ids(template["client"], "mem-warm", n)))
    base = used()
    plain = list(seed.new_ids(template["client"], "mem-plain", n))
    seed_batch(plain, {"notifyUrl": ""})
    after_plain = used()
    notified = list(seed.new_ids(template["client"], "mem-notify", n))
    seed_batch(notified)
    after_notified = used()
    pid, txid, bucket = plain[0]
    record_key = keys.payment(bucket, pid)
    sample: dict[str, Any] = {
        "payment_hash": client.memory_usage(samples=0, key=record_key),
        "payment_hash_encoding": client.object("encoding", record_key),
        "payment_url_bytes": len(template.get("paymentUrl", "")),
        "txn_index": client.memory_usage(samples=0, key=keys.transaction(bucket, template["client"], txid)),
        "fields_in_record": client.hlen(record_key),
    }
    asyncio.run(succeed_all(h, plain, template["gateway"]))
    after_plain_final = used()
    asyncio.run(succeed_all(h, notified, template["gateway"]))
    after_notified_final = used()
    npid, _, nbucket = notified[0]
    delivery_ids = client.lrange(keys.deliveries(nbucket, npid), 0, -1)
    if delivery_ids:
        sample["delivery_hash"] = client.memory_usage(samples=0, key=keys.delivery(nbucket, delivery_ids[0]))
        sample["deliveries_list"] = client.memory_usage(samples=0, key=keys.deliveries(nbucket, npid))
    sample["final_payment_hash"] = client.memory_usage(samples=0, key=record_key)
    waiting = (after_plain - base) / n
    final_plain = (after_plain_final - after_notified) / n
    final_notified = (after_notified_final - after_plain_final) / n
    return {
        "sample_payments": n,
        "bytes_per_waiting_payment": round(waiting),
        "bytes_per_final_payment": round(waiting + final_plain),
        "bytes_per_outbox_entry": round(final_notified - final_plain),
        "goal_waiting_met": waiting <= 1024,
        "memory_usage_samples": sample,
    }


async def succeed_all(h: Harness, ids: list[tuple[str, str, int]], gateway: str) -> None:
    """Move payments to succeeded through the real transition script, one at a time on one connection
    (a pool of connections would leave client buffers in Redis's used_memory)."""
    import redis.asyncio as aioredis

    from service.store import Store

    client = aioredis.Redis(port=h.redis.port, decode_responses=True, max_connections=1)
    store = Store(client, 90 * 86400)
    now = int(time.time() * 1000)
    try:
        for pid, _, _ in ids:
            await store.apply(pid, gateway=gateway, now_ms=now, status="succeeded", gateway_state="TRADE_SUCCESS",
                              event=("alipay", f"evt-{pid}"), delivery_id=f"dlv_{pid[3:]}", source="webhook")
    finally:
        await client.aclose()


SCENARIOS = {"create": create, "webhooks": webhooks, "get": get, "sweep": sweep, "transport": transport,
             "scale": scale}


def loadavg() -> list[float]:
    return [float(x) for x in open("/proc/loadavg").read().split()[:3]]

