"""Blob Storage going away mid-run costs time, not data."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from localcloud import Fault
from localcloud.stack import orders_source
from shared.landing.verify import read_records, verify_window

from fixtures import HOUR, App

PREFIX = "dev/orders/20240101T000000Z_20240101T010000Z"


def test_azurite_stopped_and_restarted_mid_run_loses_and_duplicates_nothing(app: App, ledger: Any) -> None:
    gateway = app.stack.cloud.gateway
    app.write_sources(
        orders=orders_source(
            gateway.url,
            output={"pages_per_part": 6},
            retry={"activity_attempts": 8, "activity_first_retry_seconds": 0.5},
        )
    )
    # Hold the walk at page 13 (inside part 2) while storage goes down.
    gateway.inject(Fault("delay", delay_ms=1500, page=13), times=1)
    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(app.ingest()))
    worker.start()
    while gateway.faults.pending():
        assert worker.is_alive()
    app.stack.azurite.stop()  # part 2's commit will now fail until storage is back
    gateway.wait_idle()  # the delayed page has been answered: the worker is about to commit
    app.stack.azurite.start()
    worker.join(timeout=120)
    first, runs, result = outcome[0], 1, "completed after storage came back"
    if first.runtime_status != "Completed":  # a clear failure is allowed; a rerun must finish the job
        assert "LandingError" in first.output
        first, runs, result = app.ingest(), 2, "failed clearly (LandingError), rerun completed"
    assert first.runtime_status == "Completed", first.output
    ids = Counter(r["id"] for r in read_records(app.landing, PREFIX))
    expected = gateway.expected_ids("/dev/orders", *HOUR)
    ledger.record(
        "Azurite stopped and restarted mid-run",
        runs=runs,
        expected=len(expected),
        landed=len(set(ids) & expected),
        duplicated=sum(n - 1 for n in ids.values()),
        outcome=result,
    )
    assert set(ids) == gateway.expected_ids("/dev/orders", *HOUR) and max(ids.values()) == 1
    assert verify_window(app.landing, PREFIX).ok
