"""The fault matrix: every fault either costs time only, or fails clearly and a rerun completes.

Records are counted at the emulator (what a window holds) and in the blobs (what landed).
"""

from __future__ import annotations

from typing import Any

import pytest

from localcloud import Fault
from localcloud.stack import orders_source
from shared.landing.verify import read_records, verify_window

from fixtures import HOUR, App

PREFIX = "dev/orders/20240101T000000Z_20240101T010000Z"

# (case, fault, times) — each case runs the same 3,600-record window.
CASES: list[tuple[str, Fault, int]] = [
    ("429 storm with Retry-After", Fault("status", status=429, retry_after=0), 8),
    ("429 storm without Retry-After", Fault("status", status=429), 8),
    ("5xx burst (502/503/504)", Fault("status", status=503), 6),
    ("connection reset mid-body", Fault("reset"), 4),
    ("truncated JSON", Fault("truncate"), 4),
    ("short body (Content-Length lie)", Fault("short_body"), 3),
    ("HTML error page with 200", Fault("html"), 3),
    ("slow response past read timeout", Fault("delay", delay_ms=1200), 2),
    ("credentials rejected as expired", Fault("expired_credentials"), 1),
    ("persistent 404 (fails, then rerun)", Fault("status", status=404, page=20), 1),
    ("repeated cursor (fails, then rerun)", Fault("loop_cursor", page=15), 1),
]


@pytest.mark.parametrize(("case", "fault", "times"), CASES, ids=[c[0] for c in CASES])
def test_fault_costs_time_not_data(app: App, ledger: Any, case: str, fault: Fault, times: int) -> None:
    gateway = app.stack.cloud.gateway
    app.write_sources(
        orders=orders_source(
            gateway.url,
            output={"pages_per_part": 8},
            retry={"read_timeout_seconds": 0.5, "backoff_initial_seconds": 0.02, "backoff_max_seconds": 0.2},
        )
    )
    gateway.inject(fault, times=times)
    runs, outcome = 1, "completed"
    instance = app.ingest()
    if instance.runtime_status != "Completed":
        assert "Error" in instance.output, "a failure must name its cause"
        outcome = f"failed clearly ({instance.output.split(':')[0].split(' [')[0]}), rerun completed"
        gateway.clear_faults()
        instance = app.ingest()
        runs += 1
    assert instance.runtime_status == "Completed", instance.output
    ledger.landed_exactly_once(
        case,
        runs=runs,
        records=read_records(app.landing, PREFIX),
        expected=gateway.expected_ids("/dev/orders", *HOUR),
        outcome=outcome,
    )
    assert verify_window(app.landing, PREFIX).ok


def test_a_number_no_double_holds_fails_the_run_naming_it_and_never_lands_as_null(app: App) -> None:
    gateway = app.stack.cloud.gateway
    app.write_sources(orders=orders_source(gateway.url, output={"pages_per_part": 8}))
    gateway.inject(Fault("overflow_number", page=10))
    failed = app.ingest()
    assert failed.runtime_status == "Failed"
    assert all(part in failed.output for part in ("1e400", "too large for a double", "page=10"))
    gateway.clear_faults()
    rerun = app.ingest()
    assert rerun.runtime_status == "Completed", rerun.output
    records = list(read_records(app.landing, PREFIX))
    assert not [r for r in records if "overflow" in r]
    assert {r["id"] for r in records} == gateway.expected_ids("/dev/orders", *HOUR)
