"""Blob Storage going away mid-run costs time, not data."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from localcloud import Fault
from localcloud.azurite import ACCOUNT, ACCOUNT_KEY, free_port
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
    ledger.landed_exactly_once(
        "Azurite stopped and restarted mid-run",
        runs=runs,
        records=read_records(app.landing, PREFIX),
        expected=gateway.expected_ids("/dev/orders", *HOUR),
        outcome=result,
    )
    assert verify_window(app.landing, PREFIX).ok


# Finding 7 of issue 17: an unreachable dependency fails fast, in one line naming it and its setting.
# The bound is a fail-fast guarantee with room for a loaded machine, not a benchmark; the measured
# times are in tests/reliability/README.md.


# The catalog's default activity retries (3 attempts, first retry after 5 s): the whole run counts,
# Durable's waiting included.
DEFAULT_RETRY = {"activity_attempts": 3, "activity_first_retry_seconds": 5.0}


def _closed_port() -> int:
    return free_port()  # bound then released: nothing listens there


def _failing_cli_ingest(app: App, ledger: Any, fault: str) -> tuple[str, float]:
    started = time.monotonic()
    result = app.cli("ingest", "--source", "orders", "--from", HOUR[0], "--to", HOUR[1], timeout=180)
    elapsed = time.monotonic() - started
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    ledger.record(
        fault,
        runs=1,
        expected=0,
        landed=0,
        duplicated=0,
        outcome=f"failed in {elapsed:.1f} s, one line naming it",
    )
    return lines[0], elapsed


def test_storage_unreachable_fails_an_ingest_within_60_s_naming_the_account(app: App, ledger: Any) -> None:
    app.write_sources(orders=orders_source(app.stack.cloud.gateway_url, retry=DEFAULT_RETRY))
    endpoint = f"http://127.0.0.1:{_closed_port()}/{ACCOUNT}"
    app.set_env(
        LANDING_CONNECTION_STRING=f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};"
        f"AccountKey={ACCOUNT_KEY};BlobEndpoint={endpoint};"
    )
    line, elapsed = _failing_cli_ingest(app, ledger, "Blob Storage unreachable (closed port), CLI ingest")
    assert elapsed < 60, line
    assert "LandingError" in line and endpoint in line and "LANDING_CONNECTION_STRING" in line, line
    assert ACCOUNT_KEY not in line


def test_identity_endpoint_unreachable_fails_an_ingest_within_60_s_naming_it(app: App, ledger: Any) -> None:
    app.write_sources(orders=orders_source(app.stack.cloud.gateway_url, retry=DEFAULT_RETRY))
    app.set_env(IDENTITY_ENDPOINT=f"http://127.0.0.1:{_closed_port()}/msi/token")
    line, elapsed = _failing_cli_ingest(
        app, ledger, "identity endpoint unreachable (closed port), CLI ingest"
    )
    assert elapsed < 60, line
    assert "IDENTITY_ENDPOINT" in line, line


def test_sts_unreachable_fails_an_ingest_within_60_s_naming_it(app: App, ledger: Any) -> None:
    app.write_sources(orders=orders_source(app.stack.cloud.gateway_url, retry=DEFAULT_RETRY))
    app.set_env(AWS_ENDPOINT_URL_STS=f"http://127.0.0.1:{_closed_port()}")
    line, elapsed = _failing_cli_ingest(app, ledger, "STS unreachable (closed port), CLI ingest")
    assert elapsed < 60, line
    assert "STS" in line and "AWS_ENDPOINT_URL_STS" in line, line


def test_gateway_unreachable_fails_an_ingest_within_60_s_naming_it(app: App, ledger: Any) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    app.write_sources(orders=orders_source(url, retry=DEFAULT_RETRY))
    line, elapsed = _failing_cli_ingest(app, ledger, "API Gateway unreachable (closed port), CLI ingest")
    assert elapsed < 60, line
    assert "GatewayError" in line and "ConnectError" in line and f"at {url}" in line and "base_url" in line, (
        line
    )


@pytest.mark.parametrize(
    "command",
    [("verify", "--source", "orders", "--from", HOUR[0], "--to", HOUR[1]), ("probe", "--source", "orders")],
    ids=["verify", "probe"],
)
def test_storage_unreachable_fails_verify_and_probe_within_30_s_naming_the_account(
    app: App, ledger: Any, command: tuple[str, ...]
) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}/{ACCOUNT}"
    app.set_env(
        LANDING_CONNECTION_STRING=f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};"
        f"AccountKey={ACCOUNT_KEY};BlobEndpoint={endpoint};"
    )
    started = time.monotonic()
    result = app.cli(*command, timeout=120)
    elapsed = time.monotonic() - started
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    print(f"MEASURED {command[0]}: {elapsed:.1f} s: {lines}")
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    ledger.record(
        f"Blob Storage unreachable (closed port), CLI {command[0]}",
        runs=1,
        expected=0,
        landed=0,
        duplicated=0,
        outcome=f"failed in {elapsed:.1f} s, one line naming it",
    )
    assert elapsed < 30, lines[0]
    assert endpoint in lines[0] and "LANDING_CONNECTION_STRING" in lines[0], lines[0]
