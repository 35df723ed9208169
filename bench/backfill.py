"""Backfill cost against its length: one-page hourly windows through `python -m shared backfill`.

Run by hand:  .venv/bin/python bench/backfill.py [--windows 250,1000,8760] [--max-parallel 4]
Each case backfills N one-page hourly windows (100 records each) into its own container and
journal with the CLI, whose Durable engine runs in-process, against the localcloud stack (the
gateway in this process, Azurite). Prints windows/s, the CLI's peak RSS (VmHWM), the journal's
bytes when it ends, the largest orchestration payload any journal holds (execution inputs,
activity inputs and results, outputs, custom status) and whether every record landed once
(records counted, each window's page fetched exactly once, no record twice in sampled windows).

The target (issue 14): windows/s at 8,760 at least 0.8 x the 250-window figure, peak RSS flat,
the largest payload under 32 KB.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness import Dataset, Stack, client_env, local_stack, orders_source, spawn, table

RECORDS_PER_WINDOW = 100  # one page of the source's page_size
ISO = "%Y-%m-%dT%H:%M:%SZ"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", default="250,1000,8760", help="comma-separated window counts")
    parser.add_argument("--max-parallel", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per case before it is killed")
    args = parser.parse_args()
    counts = [int(n) for n in args.windows.split(",")]
    rows = [
        (
            "windows",
            "seconds",
            "windows/s",
            "peak RSS MB",
            "journal KB",
            "largest payload KB",
            "records",
            "every record once",
        )
    ]
    rates: dict[int, float] = {}
    with local_stack() as stack:
        stack.cloud.gateway.add_dataset(
            "/dev/hourly", Dataset(name="hourly", records_per_hour=RECORDS_PER_WINDOW)
        )
        for count in counts:
            row, rate = case(stack, count, args.max_parallel, args.timeout)
            rows.append(row)
            rates[count] = rate
            print(table(rows[:1] + rows[-1:]), file=sys.stderr, flush=True)
    print(table(rows))
    if len(rates) > 1:
        first, last = min(rates), max(rates)
        print(f"\nwindows/s at {last} / at {first}: {rates[last] / rates[first]:.2f} (target >= 0.8)")


def case(stack: Stack, count: int, max_parallel: int, timeout: float) -> tuple[tuple[str, ...], float]:
    container = f"backfill{count}"
    catalog = stack.write_catalog(
        {"orders": orders_source(stack.cloud.gateway_url, path="/hourly")},
        stack.workdir / f"catalog-{container}.toml",
    )
    env = client_env(stack, catalog, container)
    state_dir = Path(env["RUN_STATE_DIR"])
    start = datetime(2024, 1, 1, tzinfo=UTC)
    end = start + timedelta(hours=count)
    gateway = stack.cloud.gateway
    gateway.reset_observations()
    command = [
        sys.executable,
        "-m",
        "shared",
        "backfill",
        "--source",
        "orders",
        "--from",
        start.strftime(ISO),
        "--to",
        end.strftime(ISO),
        "--every",
        "PT1H",
        "--max-parallel",
        str(max_parallel),
    ]
    finished = spawn(command, env, timeout=timeout)
    if finished.returncode != 0:
        raise RuntimeError(f"backfill of {count} failed: {finished.err.strip().splitlines()[-1:]}")
    summary = json.loads(finished.out)
    journal_bytes, largest = journal_sizes(state_dir)
    once = every_record_once(stack, env, summary, count)
    rate = count / finished.seconds
    row = (
        str(count),
        f"{finished.seconds:.1f}",
        f"{rate:.1f}",
        f"{finished.peak_rss_mb:.0f}",
        f"{journal_bytes / 1024:.0f}",
        f"{largest / 1024:.1f}",
        str(summary["records"]),
        "yes" if once else "NO",
    )
    return row, rate


def journal_sizes(state_dir: Path) -> tuple[int, int]:
    """Bytes of every journal file, and the largest payload any of them holds.

    Journals are compacted at continue_as_new, so the backfill's own journal shows its last
    execution; its input has the same shape (counters, first failures) in every execution.
    """
    total = largest = 0
    for path in state_dir.glob("*.jsonl"):
        total += path.stat().st_size
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("k") == "event":
                event = record["e"]
                for key in ("Input", "Result"):
                    if isinstance(event.get(key), str):
                        largest = max(largest, len(event[key]))
            else:
                for key in ("input", "output", "customStatus"):
                    if record.get(key) is not None:
                        largest = max(largest, len(json.dumps(record[key])))
    return total, largest


def every_record_once(stack: Stack, env: dict[str, str], summary: dict[str, Any], count: int) -> bool:
    """Counted records, one request per window's single page, and no duplicates in sampled windows."""
    from azure.storage.blob import BlobServiceClient

    from shared.landing.blobs import Landing  # after harness has put the repo on sys.path
    from shared.landing.verify import read_records

    requests = Counter(r.query.get("from") for r in stack.cloud.gateway.requests if r.path == "/dev/hourly")
    fetched_once = len(requests) == count and set(requests.values()) == {1}
    service = BlobServiceClient.from_connection_string(stack.azurite.connection_string)
    landing = Landing(service, env["LANDING_CONTAINER"])
    outcomes: list[dict[str, Any]] = []
    for name in sorted(landing.list_names(summary["manifest"])):
        outcomes += json.loads(landing.read_bytes(name))["windows"]
    indexes = sorted(o["index"] for o in outcomes)
    sample = outcomes[:: max(1, len(outcomes) // 20)]
    clean = all(
        max(Counter(r["id"] for r in read_records(landing, o["prefix"])).values()) == 1 for o in sample
    )
    return (
        summary["landed"] == count
        and summary["failed"] == 0
        and summary["records"] == count * RECORDS_PER_WINDOW
        and indexes == list(range(count))
        and fetched_once
        and clean
    )


if __name__ == "__main__":
    main()
