"""N workers, one gateway limit: what N separate processes, each configured at the full limit, get.

Run by hand:
    .venv/bin/python bench/ratelimit.py --workers 1,2,4,8 [--rate 50] [--burst 10] [--seconds 25]
        [--retry-after none,1] [--client-factor 1]

The gateway stand-in throttles every route with one token bucket (rate R, burst B), as an API
Gateway stage or usage-plan throttle does. Each worker is its own `python -m shared ingest`
process (its own limiter, as on separate Function App instances) walking its own window of the
same source, with `rate_limit.requests_per_second = client-factor x R` and `burst = B`: what a
user does when Flex Consumption decides the worker count. Per N the clock starts when the
gateway has seen every worker's first request, runs `--seconds`, then the workers are stopped;
counts come from the gateway's own request log, over that interval only.

`--retry-after none` is what API Gateway sends on a 429 (no Retry-After); `1` makes the
stand-in add `Retry-After: 1`. The reference row is bench/ceiling.py alone on the bucket's
exact schedule (burst, then 1/R apart) for the same length: R as this machine delivers it now.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from harness import (
    BENCH,
    LocalCloud,
    RequestRecord,
    Stack,
    client_env,
    local_stack,
    orders_source,
    run_process,
    table,
)

ISO = "%Y-%m-%dT%H:%M:%SZ"
PAGE_SIZE = 20
ROUTE = LocalCloud.orders_path  # 3,600 records an hour: one record per second of window
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
# Workers that start early keep sending until the last one has joined; their windows must last.
START_MARGIN_SECONDS = 90
# The catalog's retry defaults (orders_source carries the test suite's much shorter ones).
RETRY = {"backoff_initial_seconds": 0.5, "backoff_max_seconds": 20.0, "activity_first_retry_seconds": 5.0}


@dataclass
class Outcome:
    label: str
    workers: int
    ok: int
    throttled: int
    seconds: float
    per_worker: list[float]
    histogram: list[int]
    notes: list[str]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", default="1,2,4,8", help="comma-separated worker counts")
    parser.add_argument("--rate", type=float, default=50, help="gateway limit R, req/s")
    parser.add_argument("--burst", type=int, default=10, help="gateway burst B")
    parser.add_argument("--seconds", type=float, default=25, help="measured interval per N")
    parser.add_argument(
        "--retry-after", default="none", help="comma-separated: none (API Gateway) and/or seconds"
    )
    parser.add_argument(
        "--client-factor", type=float, default=1.0, help="each worker's limit as a multiple of R"
    )
    parser.add_argument("--no-reference", action="store_true", help="skip the ceiling reference row")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    modes = [None if m.strip() == "none" else int(m) for m in args.retry_after.split(",")]
    print(f"load average (1 min) before: {os.getloadavg()[0]:.2f}; nproc {os.cpu_count()}")
    with local_stack() as stack:
        for retry_after in modes:
            outcomes = run_mode(stack, args, counts, retry_after)
            mode = "no Retry-After (API Gateway)" if retry_after is None else f"Retry-After: {retry_after}"
            print(
                f"\n== gateway R = {args.rate:g} req/s, burst {args.burst}, {mode}; each worker at "
                f"{args.client_factor:g} x R; {args.seconds:g} s measured per row =="
            )
            print(report(outcomes, args.rate))
    print(f"\nload average (1 min) after: {os.getloadavg()[0]:.2f}")


def run_mode(
    stack: Stack, args: argparse.Namespace, counts: list[int], retry_after: int | None
) -> list[Outcome]:
    gateway = stack.cloud.gateway
    outcomes = []
    tag = "none" if retry_after is None else f"ra{retry_after}"
    try:
        if not args.no_reference:
            gateway.set_rate_limit(args.rate, burst=args.burst, retry_after=retry_after)
            outcomes.append(reference(stack, args))
        for n in counts:
            gateway.wait_idle()
            # Reconfiguring refills the bucket: every row starts from the same full bucket.
            gateway.set_rate_limit(args.rate, burst=args.burst, retry_after=retry_after)
            gateway.reset_observations()
            outcomes.append(run_workers(stack, args, n, tag))
    finally:
        gateway.set_rate_limit(None)
    return outcomes


def reference(stack: Stack, args: argparse.Namespace) -> Outcome:
    """bench/ceiling.py alone on the bucket's exact schedule, for `--seconds`."""
    gateway = stack.cloud.gateway
    gateway.wait_idle()
    gateway.reset_observations()
    start, end = window(0, int(args.rate * args.seconds) + args.burst)
    command = [
        sys.executable,
        str(BENCH / "ceiling.py"),
        f"--url={stack.cloud.gateway_url}{ROUTE}",
        f"--from={start}",
        f"--to={end}",
        f"--page-size={PAGE_SIZE}",
        f"--role-arn={LocalCloud.role_arn}",
        f"--audience={LocalCloud.audience}",
        f"--region={LocalCloud.region}",
        f"--pace={args.rate}",
        f"--burst={args.burst}",
    ]
    proc = run_process(command, client_env(stack), timeout=args.seconds * 4 + 60)
    gateway.wait_idle()
    records = [r for r in gateway.requests if r.path == ROUTE]
    notes = [proc.error] if proc.error else []
    if len(records) < 2:
        return Outcome("ceiling (reference)", 1, 0, 0, 1.0, [], [], [*notes, "no requests"])
    first, last = records[0].monotonic, records[-1].monotonic
    ok = sum(1 for r in records if r.status == 200)
    throttled = sum(1 for r in records if r.status == 429)
    # (ok - 1) over first..last: the rate between the first and the last request.
    return Outcome(
        "ceiling (reference)", 1, ok - 1, throttled, last - first, [], histogram(records, first, last), notes
    )


def run_workers(stack: Stack, args: argparse.Namespace, n: int, tag: str) -> Outcome:
    gateway = stack.cloud.gateway
    pages = int(args.rate * args.client_factor * (args.seconds + START_MARGIN_SECONDS))
    source = orders_source(
        stack.cloud.gateway_url,
        rate_limit={"requests_per_second": args.rate * args.client_factor, "burst": args.burst},
        pagination={"page_size": PAGE_SIZE},
        output={"pages_per_part": 500},  # the catalog default (orders_source says 10)
        retry=RETRY,
    )
    catalog = stack.write_catalog({"orders": source}, stack.workdir / f"catalog-rl-{tag}-{n}.toml")
    runs = [f"rl-{tag}-n{n}-w{i}" for i in range(n)]
    logs = stack.workdir / "ratelimit-logs"
    logs.mkdir(exist_ok=True)
    processes = []
    for i, run_id in enumerate(runs):
        start, end = window(i, pages)
        env = client_env(stack, catalog, container=run_id)
        command = [sys.executable, "-m", "shared", "ingest", "--source", "orders"]
        command += ["--from", start, "--to", end, "--run-id", run_id]
        with open(logs / f"{run_id}.out", "wb") as out, open(logs / f"{run_id}.err", "wb") as err:
            processes.append(subprocess.Popen(command, env=env, cwd=BENCH.parent, stdout=out, stderr=err))
    notes: list[str] = []
    try:
        began = wait_for_all(stack, runs, timeout=120)
        if began is None:
            notes.append("not every worker reached the gateway within 120 s")
            began = time.monotonic()
        time.sleep(max(0.0, began + args.seconds - time.monotonic()))
        early = [f"w{i} exited {p.returncode}" for i, p in enumerate(processes) if p.poll() is not None]
        notes.extend(early)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    gateway.wait_idle()
    stop = began + args.seconds
    records = [r for r in gateway.requests if r.path == ROUTE and began <= r.monotonic < stop]
    ok = sum(1 for r in records if r.status == 200)
    throttled = sum(1 for r in records if r.status == 429)
    per_worker = [
        sum(1 for r in records if r.status == 200 and r.correlation_id == run_id) / args.seconds
        for run_id in runs
    ]
    for early_exit in [p for p in processes if p.returncode not in (0, -15)]:
        err = Path(logs / f"{runs[processes.index(early_exit)]}.err").read_text(errors="replace").strip()
        if err:
            notes.append(err.splitlines()[-1][:160])
    return Outcome(
        f"{n} worker{'s' if n > 1 else ''}",
        n,
        ok,
        throttled,
        args.seconds,
        per_worker,
        histogram(records, began, stop),
        notes,
    )


def wait_for_all(stack: Stack, runs: list[str], timeout: float) -> float | None:
    """The gateway time of the last worker's first request, once every worker has sent one."""
    deadline = time.monotonic() + timeout
    first: dict[str, float] = {}
    while time.monotonic() < deadline:
        for record in stack.cloud.gateway.requests:
            if record.correlation_id in runs and record.correlation_id not in first:
                first[record.correlation_id] = record.monotonic
        if len(first) == len(runs):
            return max(first.values())
        time.sleep(0.1)  # a bench polling its own emulator's log, not a test's synchronisation
    return None


def window(index: int, pages: int) -> tuple[str, str]:
    """Worker `index`'s own window of `pages` pages: disjoint from every other worker's."""
    span = timedelta(seconds=pages * PAGE_SIZE)  # one record per second of window
    start = EPOCH + index * (span + timedelta(days=1))
    return start.strftime(ISO), (start + span).strftime(ISO)


def histogram(records: list[RequestRecord], began: float, stop: float, step: float = 5.0) -> list[int]:
    """429s per `step` seconds of the measured interval."""
    bins = [0] * max(1, int((stop - began + step - 1e-9) // step))
    for record in records:
        if record.status == 429:
            bins[min(len(bins) - 1, int((record.monotonic - began) // step))] += 1
    return bins


def report(outcomes: list[Outcome], rate: float) -> str:
    reference_rate = next(
        (o.ok / o.seconds for o in outcomes if o.label.startswith("ceiling") and o.ok), None
    )
    rows = [
        (
            "clients",
            "200s",
            "429s",
            "429 share",
            "ok req/s",
            "ok / R",
            "ok / ceiling",
            "per worker ok/s (min-max)",
            "max/min",
            "429s per 5 s",
            "notes",
        )
    ]
    for o in outcomes:
        achieved = o.ok / o.seconds
        total = o.ok + o.throttled
        spread = f"{min(o.per_worker):.1f}-{max(o.per_worker):.1f}" if o.per_worker else "-"
        ratio = f"{max(o.per_worker) / min(o.per_worker):.2f}" if o.per_worker and min(o.per_worker) else "-"
        rows.append(
            (
                o.label,
                str(o.ok),
                str(o.throttled),
                f"{o.throttled / total:.2%}" if total else "-",
                f"{achieved:.1f}",
                f"{achieved / rate:.3f}",
                f"{achieved / reference_rate:.3f}" if reference_rate else "-",
                spread,
                ratio,
                " ".join(map(str, o.histogram)),
                "; ".join(o.notes),
            )
        )
    return table(rows)


if __name__ == "__main__":
    main()
