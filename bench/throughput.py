"""Throughput of our ingest against the best any client could do (ceiling) and a peer (dlt).

Run by hand from the repo root with the app's interpreter:

    .venv/bin/python bench/throughput.py                       # all three scenarios, defaults
    .venv/bin/python bench/throughput.py --scenario zero       # one scenario
    .venv/bin/python bench/throughput.py --scenario zero --pages 10000   # scale up
    .venv/bin/python bench/throughput.py --scenario latency --latency-ms 100 --pages 200

Scenarios (each flag overrides the selected scenario's default):
  zero       no added latency, 2,000 pages x 100 records (--pages 10000 for ~1M records)
  latency    --latency-ms 50 on every gateway request, 400 pages x 100 (sequential floor ~20 s)
  ratelimit  gateway set_rate_limit(50, burst=10), 1,000 pages x 100; ours is configured at the
             documented setting (the gateway's limit and burst), the ceiling sends on the gateway
             bucket's exact schedule (burst, then 1/R apart)

Clients, each its own process against the emulator and Azurite started here (local_stack):
  ceiling  bench/ceiling.py: GETs signed and sent by the app's own sigv4/send, the token parsed
           with orjson, nothing written (the cheapest fetch on this stack)
  httpx-get  bench/ceiling.py --via client: the same loop through httpx.Client.get and json.loads
           (the ceiling before the app sent below httpx.Client; not in the default set)
  ours-fetch  bench/fetch_only.py: the app's GatewayClient walking the window (everything it does
           per page) with nothing landed and no durable engine (not in the default set)
  ours     `python -m shared ingest` end to end (gzip JSONL parts, manifest, _SUCCESS in Azurite)
  peer     bench/peer_dlt.py in .venv-bench: dlt rest_api source -> filesystem destination, jsonl
           (created on first use from requirements-bench.txt; --no-install to skip that)

"wall" is the process from spawn to exit (imports, credentials, set-up included); "run" is the
part each client times itself: the ceiling's loop, ours' orchestration from created to
completed (the local engine's journal, to the microsecond), dlt's pipeline.run() (extract,
normalize, load); "fetch" is the span between the first and the last request the gateway saw
from the client.  Ratios are records/s over records/s, all measured in this one run.  On a
shared 2-core machine other load moves these numbers a lot between runs (the load average is
printed): --repeat N interleaves N rounds of all clients and keeps each client's best round.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from federation import assume_role, environ, peer_env

from harness import (
    BENCH,
    BENCH_PATH,
    FOREIGN_CREDENTIAL_VARS,
    LocalCloud,
    Proc,
    RequestRecord,
    Stack,
    Workload,
    bench_python,
    client_env,
    local_stack,
    orders_source,
    publish,
    run_ingest,
    run_process,
    table,
)

CLIENTS = ("ceiling", "httpx-get", "ours-fetch", "ours", "peer")


@dataclass(frozen=True)
class Scenario:
    name: str
    pages: int
    page_size: int = 100
    latency_ms: float = 0
    rate: float | None = None
    burst: int = 10
    segments: int = 1  # ours only: split the window into this many sub-windows walked at once

    @property
    def workload(self) -> Workload:
        return Workload(self.pages, self.page_size)


DEFAULTS = {
    "zero": Scenario("zero", pages=2000),
    "latency": Scenario("latency", pages=400, latency_ms=50, segments=8),
    "ratelimit": Scenario("ratelimit", pages=1000, rate=50, burst=10),
}


@dataclass
class Result:
    """One client's run: counts and times, or why there are none."""

    client: str
    records: int | None = None
    wall: float | None = None
    run: float | None = None
    peak_rss_mb: float | None = None
    error: str | None = None
    cpu_seconds: float | None = None
    notes: list[str] = field(default_factory=list)
    requests: list[RequestRecord] = field(default_factory=list)


def _result_of(client: str, proc: Proc) -> Result:
    """A client process's counts and times, as its last JSON line reported them."""
    result = Result(
        client,
        wall=proc.seconds,
        peak_rss_mb=proc.peak_rss_mb,
        error=proc.error,
        cpu_seconds=proc.cpu_seconds,
    )
    if proc.result and not proc.error:
        result.records, result.run = int(proc.result["records"]), float(proc.result["seconds"])
    return result


def run_ceiling(stack: Stack, scenario: Scenario, route: str, timeout: float, via: str = "send") -> Result:
    start, end = scenario.workload.window
    command = [
        sys.executable,
        str(BENCH / "ceiling.py"),
        f"--url={stack.cloud.gateway_url}{route}",
        f"--from={start}",
        f"--to={end}",
        f"--page-size={scenario.page_size}",
        f"--role-arn={LocalCloud.role_arn}",
        f"--audience={LocalCloud.audience}",
        f"--region={LocalCloud.region}",
        f"--via={via}",
    ]
    if scenario.rate:
        command += [f"--pace={scenario.rate}", f"--burst={scenario.burst}"]
    name = "ceiling" if via == "send" else "httpx-get"
    return _result_of(name, run_process(command, client_env(stack), timeout=timeout))


def _ours_source(scenario: Scenario) -> dict[str, Any]:
    """The catalog source ours and ours-fetch read (orders_source's fields)."""
    rate = (
        {"requests_per_second": scenario.rate, "burst": scenario.burst}
        if scenario.rate
        else {"requests_per_second": 1_000_000, "burst": 1000}  # never the bottleneck
    )
    return {
        "path": BENCH_PATH,
        "pagination": {"page_size": scenario.page_size},
        "rate_limit": rate,
        "output": {"pages_per_part": 500},  # the catalog default (orders_source says 10)
        **_segmenting(scenario),
    }


def run_ours_fetch(stack: Stack, scenario: Scenario, timeout: float) -> Result:
    catalog = stack.write_catalog(
        {"orders": orders_source(stack.cloud.gateway_url, **_ours_source(scenario))},
        stack.workdir / f"catalog-fetch-{scenario.name}.toml",
    )
    start, end = scenario.workload.window
    command = [sys.executable, str(BENCH / "fetch_only.py"), f"--from={start}", f"--to={end}"]
    return _result_of("ours-fetch", run_process(command, client_env(stack, catalog), timeout=timeout))


def run_ours(stack: Stack, scenario: Scenario, round_: int, timeout: float) -> Result:
    try:
        run = run_ingest(
            stack,
            scenario.workload.window,
            f"tp-{scenario.name}-{round_}",  # a fresh container: the window is not yet landed
            timeout=timeout,
            **_ours_source(scenario),
        )
    except RuntimeError as exc:
        return Result("ours", error=str(exc))
    result = Result("ours", int(run.summary["records"]), run.seconds, run.in_process_seconds, run.peak_rss_mb)
    result.cpu_seconds = run.cpu_seconds
    result.notes.append(f"{len(run.summary['parts'])} parts")
    if run.in_process_seconds is None:
        result.notes.append("journal unreadable: run = wall")
        result.run = run.seconds
    else:
        result.run = run.in_process_seconds
    return result


def _segmenting(scenario: Scenario) -> dict[str, Any]:
    """Catalog window settings that split the window into `scenario.segments` equal sub-windows."""
    if scenario.segments <= 1:
        return {}
    start, end = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in scenario.workload.window)
    seconds = max(1, int((end - start).total_seconds()) // scenario.segments)
    return {"window": {"segment": f"PT{seconds}S", "max_parallel_segments": scenario.segments}}


def run_peer(stack: Stack, scenario: Scenario, round_: int, install: bool, timeout: float) -> Result:
    python = bench_python(install)
    if isinstance(python, str):
        return Result("peer", error=python)
    try:
        with environ(stack.cloud.env()):
            credentials = assume_role(
                LocalCloud.role_arn, LocalCloud.audience, LocalCloud.region, "bench-peer-dlt"
            )
    except Exception as exc:
        return Result("peer", error=f"could not assume the role for the peer: {type(exc).__name__}")
    work = stack.workdir / f"dlt-{scenario.name}-{round_}"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_CREDENTIAL_VARS}
    env.update(peer_env(credentials))
    env.update({"RUNTIME__DLTHUB_TELEMETRY": "false", "DLT_DATA_DIR": str(work / "data-dir")})
    start, end = scenario.workload.window
    command = [
        str(python),
        str(BENCH / "peer_dlt.py"),
        f"--base-url={stack.cloud.gateway_url}/dev",
        f"--path={BENCH_PATH.lstrip('/')}",
        f"--from={start}",
        f"--to={end}",
        f"--page-size={scenario.page_size}",
        f"--region={LocalCloud.region}",
        f"--out={work / 'destination'}",
        f"--work={work / 'pipelines'}",
    ]
    proc = run_process(command, env, cwd=work, timeout=timeout)
    result = _result_of("peer", proc)
    if proc.result and not proc.error:
        steps = proc.result.get("steps", {})
        result.notes.append(" ".join(f"{k} {v:.1f}s" for k, v in steps.items() if k != "run"))
    return result


def run_scenario(
    stack: Stack, scenario: Scenario, clients: list[str], install: bool, timeout: float, repeat: int = 1
) -> list[Result]:
    """Each client once per round, rounds interleaved; per client the round with the best run time."""
    gateway = stack.cloud.gateway
    route = publish(stack, scenario.workload)
    gateway.latency_ms = scenario.latency_ms
    gateway.set_rate_limit(scenario.rate, burst=scenario.burst)
    rounds: dict[str, list[Result]] = {client: [] for client in clients}
    try:
        for round_ in range(1, repeat + 1):
            for client in clients:
                rounds[client].append(run_client(stack, scenario, route, client, round_, install, timeout))
    finally:
        gateway.latency_ms = 0
        gateway.set_rate_limit(None)
    best = [_best(results) for results in rounds.values()]
    if repeat > 1 and "ours" in rounds:
        # Each client's best round may fall in a different phase of a noisy machine; the
        # back-to-back pairs say how much of a best-of ratio is the machine.
        ours = next(r for r in best if r.client == "ours")
        for reference in ("ceiling", "ours-fetch"):
            if reference in rounds:
                pairs = [_same_round(c, o) for c, o in zip(rounds[reference], rounds["ours"], strict=True)]
                ours.notes.append(f"x {reference} round by round: {', '.join(pairs)}")
    return best


def _same_round(reference: Result, ours: Result) -> str:
    if reference.error or ours.error or not reference.run or not ours.run:
        return "-"
    return f"{reference.run / ours.run:.2f}"  # the same records: records/s over records/s


def run_client(
    stack: Stack, scenario: Scenario, route: str, client: str, round_: int, install: bool, timeout: float
) -> Result:
    gateway = stack.cloud.gateway
    gateway.wait_idle()
    gateway.reset_observations()
    if client == "ceiling":
        result = run_ceiling(stack, scenario, route, timeout)
    elif client == "httpx-get":
        result = run_ceiling(stack, scenario, route, timeout, via="client")
    elif client == "ours-fetch":
        result = run_ours_fetch(stack, scenario, timeout)
    elif client == "ours":
        result = run_ours(stack, scenario, round_, timeout)
    else:
        result = run_peer(stack, scenario, round_, install, timeout)
    gateway.wait_idle()
    result.requests = [r for r in gateway.requests if r.path == route]
    if result.records is not None and result.records != scenario.workload.records:
        result.notes.append(f"expected {scenario.workload.records} records")
    return result


def _best(results: list[Result]) -> Result:
    ok = [r for r in results if r.error is None and r.run]
    if not ok:
        return results[-1]
    best = min(ok, key=lambda r: r.run or 0.0)
    if len(results) > 1:
        runs = ", ".join("failed" if r.error else f"{r.run:.1f}" for r in results)
        best.notes.append(f"best of {len(results)}, run s: {runs}")
    return best


def throughput_table(results: list[Result]) -> str:
    by_name = {r.client: r for r in results if r.error is None}
    rows: list[tuple[str, ...]] = [
        (
            "client",
            "records",
            "wall s",
            "run s",
            "fetch s",
            "rec/s run",
            "x ceiling",
            "x peer",
            "rec/s wall",
            "x ceiling",
            "x peer",
            "peak RSS MB",
            "CPU s / M rec",
            "notes",
        )
    ]
    for r in results:
        if r.error is not None or r.records is None or not r.wall or not r.run:
            rows.append((r.client, *["-"] * 12, f"FAILED: {r.error}"))
            continue
        rows.append(
            (
                r.client,
                f"{r.records:,}",
                f"{r.wall:.1f}",
                f"{r.run:.1f}",
                _fetch_span(r),
                f"{r.records / r.run:,.0f}",
                _ratio(r, by_name.get("ceiling"), "run"),
                _ratio(r, by_name.get("peer"), "run") if r.client == "ours" else "-",
                f"{r.records / r.wall:,.0f}",
                _ratio(r, by_name.get("ceiling"), "wall"),
                _ratio(r, by_name.get("peer"), "wall") if r.client == "ours" else "-",
                f"{r.peak_rss_mb:.0f}" if r.peak_rss_mb else "-",
                f"{r.cpu_seconds * 1_000_000 / r.records:.1f}" if r.cpu_seconds else "-",
                "; ".join(n for n in r.notes if n),
            )
        )
    return table(rows)


def rate_table(results: list[Result], rate: float) -> str:
    rows: list[tuple[str, ...]] = [
        ("client", "requests", "200s", "429s", "429 share", "sent req/s", "ok req/s", "ok / R")
    ]
    for r in results:
        requests = sorted(r.requests, key=lambda record: record.monotonic)
        if len(requests) < 2:
            rows.append((r.client, str(len(requests)), *["-"] * 6))
            continue
        elapsed = requests[-1].monotonic - requests[0].monotonic
        ok = sum(1 for q in requests if q.status == 200)
        throttled = sum(1 for q in requests if q.status == 429)
        sent_rate, ok_rate = (len(requests) - 1) / elapsed, (ok - 1) / elapsed
        rows.append(
            (
                r.client,
                str(len(requests)),
                str(ok),
                str(throttled),
                f"{throttled / len(requests):.1%}",
                f"{sent_rate:.1f}",
                f"{ok_rate:.1f}",
                f"{ok_rate / rate:.3f}",
            )
        )
    return table(rows)


def _fetch_span(result: Result) -> str:
    """Seconds from the first to the last request the gateway saw from this client."""
    starts = [record.monotonic for record in result.requests]
    return f"{max(starts) - min(starts):.1f}" if len(starts) > 1 else "-"


def _ratio(result: Result, other: Result | None, which: str) -> str:
    if other is None or result is other:
        return "-" if other is None else "1.00"
    mine, theirs = getattr(result, which), getattr(other, which)
    if not (mine and theirs and result.records and other.records):
        return "-"
    return f"{(result.records / mine) / (other.records / theirs):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", choices=[*DEFAULTS, "all"], default="all")
    parser.add_argument("--pages", type=int, help="pages per client (scenario default otherwise)")
    parser.add_argument("--page-size", type=int, help="records per page (default 100)")
    parser.add_argument("--latency-ms", type=float, help="gateway latency added to every request")
    parser.add_argument("--rate", type=float, help="ratelimit scenario: gateway limit, req/s (default 50)")
    parser.add_argument("--burst", type=int, help="ratelimit scenario: gateway burst (default 10)")
    parser.add_argument(
        "--clients", default="ceiling,ours,peer", help="comma-separated subset of " + ",".join(CLIENTS)
    )
    parser.add_argument("--no-install", action="store_true", help="do not create/update .venv-bench")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds per scenario, interleaved; the best run time is shown"
    )
    parser.add_argument("--timeout", type=float, default=600, help="kill a client running longer (s)")
    args = parser.parse_args()
    clients = [c for c in args.clients.split(",") if c]
    if unknown := set(clients) - set(CLIENTS):
        parser.error(f"unknown clients: {', '.join(sorted(unknown))}")
    names = list(DEFAULTS) if args.scenario == "all" else [args.scenario]
    scenarios = [_override(DEFAULTS[name], args) for name in names]
    with local_stack() as stack:
        for scenario in scenarios:
            load_before = os.getloadavg()[0]
            results = run_scenario(stack, scenario, clients, not args.no_install, args.timeout, args.repeat)
            print(_heading(scenario))
            # Other work on this machine competes for its cores: say how busy it was.
            print(f"load average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}")
            print(throughput_table(results))
            if scenario.rate:
                print()
                print(f"gateway limit R = {scenario.rate:g} req/s, burst {scenario.burst} (gateway.requests)")
                print(rate_table(results, scenario.rate))
            print(flush=True)


def _override(scenario: Scenario, args: argparse.Namespace) -> Scenario:
    changes = {
        "pages": args.pages,
        "page_size": args.page_size,
        "latency_ms": args.latency_ms,
        "burst": args.burst,
        "rate": args.rate if scenario.rate else None,
    }
    return replace(scenario, **{k: v for k, v in changes.items() if v is not None})


def _heading(s: Scenario) -> str:
    limit = f", gateway limit {s.rate:g} req/s burst {s.burst}" if s.rate else ""
    return (
        f"== {s.name}: {s.pages:,} pages x {s.page_size} = {s.workload.records:,} records, "
        f"latency {s.latency_ms:g} ms{limit} =="
    )


if __name__ == "__main__":
    main()
