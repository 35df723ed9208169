"""The worker SIGKILLed at arbitrary points, then restarted: every record lands exactly once."""

from __future__ import annotations

import random
import signal
from typing import Any

import pytest

from localcloud import Fault
from localcloud.stack import orders_source
from shared.landing.verify import read_records, verify_window

from fixtures import HOUR, App

PREFIX = "dev/orders/20240101T000000Z_20240101T010000Z"


def test_sigkill_at_random_points_then_resume(app: App, ledger: Any) -> None:
    gateway = app.stack.cloud.gateway
    gateway.latency_ms = 3  # ~0.2 s of fetching per part: kills land in pages, uploads and commits
    app.write_sources(orders=orders_source(gateway.url, output={"pages_per_part": 6}))
    args = ("ingest", "--source", "orders", "--from", HOUR[0], "--to", HOUR[1])
    rng = random.Random(20261125)
    kills = 0
    for _ in range(4):
        # Kill once the gateway has answered a random number of further pages: mid-page,
        # mid-part or mid-commit, wherever that falls (36 pages, parts of 6).
        target = len(gateway.requests) + rng.randint(3, 8)
        process = app.spawn(*args)
        while not gateway.wait_for_requests(target, timeout=0.2) and process.poll() is None:
            continue
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    gateway.latency_ms = 0
    summary = app.cli_json("ingest", "--source", "orders", "--from", HOUR[0], "--to", HOUR[1])
    expected = gateway.expected_ids("/dev/orders", *HOUR)
    ledger.landed_exactly_once(
        "worker SIGKILLed at random points",
        runs=kills + 1,
        records=read_records(app.landing, PREFIX),
        expected=expected,
        outcome=f"{kills} kills, resumed to completion",
    )
    assert kills >= 3
    assert summary["records"] == len(expected)
    assert verify_window(app.landing, PREFIX).ok


@pytest.mark.parametrize("empty_pages", [(), (4, 5, 6)], ids=["every page", "empty pages between parts"])
def test_killed_between_manifest_and_success_is_finished_without_refetching(
    app: App, ledger: Any, empty_pages: tuple[int, ...]
) -> None:
    gateway = app.stack.cloud.gateway
    # Pages 4-6 empty (their part lands nothing), so part 1 begins at page 7, not where part 0
    # ended: the manifest's parts do not chain, and they are still every part of the window.
    app.write_sources(
        orders=orders_source(
            gateway.url, pagination={"stop_on_empty_page": False}, output={"pages_per_part": 3}
        )
    )
    for page in empty_pages:
        gateway.inject(Fault("empty", page=page))
    first = app.ingest()
    assert first.runtime_status == "Completed", first.output
    # The state a kill right after the manifest write leaves behind: manifest, no marker.
    app.landing.delete(f"{PREFIX}/_SUCCESS")
    expected = gateway.served_ids("orders")
    assert len(expected) == 3600 - 100 * len(empty_pages)
    gateway.reset_observations()
    again = app.ingest()
    assert again.runtime_status == "Completed", again.output
    assert gateway.requests == [], "every part was resumed from its checkpoint"
    assert app.landing.exists(f"{PREFIX}/_SUCCESS")
    ledger.landed_exactly_once(
        "killed between manifest and _SUCCESS" + (", empty pages between parts" if empty_pages else ""),
        runs=2,
        records=read_records(app.landing, PREFIX),
        expected=expected,
        outcome="finished from checkpoints, 0 requests",
    )
    assert again.output["records"] == first.output["records"] == len(expected)
