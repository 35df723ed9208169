"""`python -m shared` as an operator runs it: real process, real stand-ins, real Azurite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from localcloud import Fault
from localcloud.azurite import free_port
from localcloud.stack import orders_source
from shared.landing.verify import read_records, verify_window

from fixtures import HOUR, REPO, App


def test_ingest_lands_every_served_record_exactly_once(app: App) -> None:
    summary = app.cli_json(
        "ingest", "--source", "orders", "--from", HOUR[0], "--to", HOUR[1], "--run-id", "adf-run-42"
    )
    gateway = app.stack.cloud.gateway
    expected = gateway.expected_ids("/dev/orders", *HOUR)
    ids = Counter(record["id"] for record in read_records(app.landing, summary["prefix"]))
    assert summary["status"] == "landed"
    assert summary["records"] == len(expected) == 3600
    assert set(ids) == expected
    assert max(ids.values()) == 1
    assert verify_window(app.landing, summary["prefix"]).ok
    # Every request was signed by credentials from exactly one STS exchange, and correlated.
    assert app.stack.cloud.sts.call_count >= 1
    assert {r.correlation_id for r in gateway.requests} == {"adf-run-42"}
    assert all(r.status == 200 for r in gateway.requests)


def test_landed_layout_is_what_downstream_steps_expect(app: App) -> None:
    summary = app.cli_json("ingest", "--source", "orders", "--from", HOUR[0], "--to", HOUR[1])
    prefix = "dev/orders/20240101T000000Z_20240101T010000Z"
    assert summary["prefix"] == prefix
    names = app.landing.list_names(prefix)
    assert f"{prefix}/_SUCCESS" in names
    assert f"{prefix}/_manifest.json" in names
    assert sorted(n for n in names if "/part-" in n) == summary["parts"]
    assert summary["parts"][0] == f"{prefix}/part-00000.jsonl.gz"
    manifest = app.landing.read_json(f"{prefix}/_manifest.json")
    assert manifest is not None
    assert manifest["roleArn"] == app.stack.cloud.role_arn
    assert manifest["totals"]["records"] == 3600


def test_rerun_of_a_landed_window_skips_without_calling_the_api(app: App) -> None:
    args = ("ingest", "--source", "orders", "--from", HOUR[0], "--to", HOUR[1])
    first = app.cli_json(*args)
    app.stack.cloud.gateway.reset_observations()
    again = app.cli_json(*args)
    assert again["status"] == "skipped-already-landed"
    assert again["records"] == first["records"]
    assert app.stack.cloud.gateway.requests == []


def test_validate_reports_sources(app: App) -> None:
    document = app.cli_json("validate")
    assert document["sources"] == {"orders": "ok"}
    assert document["landing"]["from"] == "LANDING_CONNECTION_STRING"


def _error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_validate_refuses_a_malformed_connection_string_naming_it(app: App) -> None:
    app.set_env(LANDING_CONNECTION_STRING="AccountName=devstoreaccount1;AccountKey=not base64!!")
    result = app.cli("validate")
    assert result.returncode == 2
    [line] = _error_lines(result)
    assert line.endswith(
        "invalid app settings: LANDING_CONNECTION_STRING: has an AccountKey that is not base64"
    )
    assert "not base64!!" not in result.stderr  # the key is a secret, even a broken one


def test_validate_into_a_closed_pipe_exits_quietly(app: App) -> None:
    # `validate | head -1` once head has gone: the pipe has no reader left.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "shared", "validate"],
            cwd=REPO,
            env=app._process_env(),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 1
    assert _error_lines(result) == [] and "BrokenPipeError" not in result.stderr, result.stderr


def test_an_uncreatable_state_dir_is_a_config_error_naming_it(app: App, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    app.set_env(RUN_STATE_DIR=str(blocker / "state"))
    result = app.cli("ingest", "--source", "orders", "--from", HOUR[0], "--to", HOUR[1])
    assert result.returncode == 2
    [line] = _error_lines(result)
    assert line.startswith("error: ConfigError: run state directory") and "RUN_STATE_DIR" in line


def test_a_catalog_path_naming_a_folder_is_a_config_error(app: App, tmp_path: Path) -> None:
    app.set_env(SOURCE_CATALOG_PATH=str(tmp_path))
    result = app.cli("validate")
    assert result.returncode == 2
    assert "SOURCE_CATALOG_PATH" in result.stderr and "is a folder" in result.stderr, result.stderr


def test_bad_arguments_fail_with_one_line_naming_the_field(app: App) -> None:
    result = app.cli("ingest", "--source", "orders", "--from", "2024-01-02T00:00:00Z", "--to", HOUR[1])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "window" in result.stderr and "must be before" in result.stderr
    assert "Traceback" not in result.stderr


def _closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def _one_line_failure_within_a_minute(app: App) -> str:
    """Run an ingest that cannot succeed; it must end in bounded time with one line, no traceback."""
    started = time.monotonic()
    result = app.cli("ingest", "--source", "orders", "--from", HOUR[0], "--to", HOUR[1], timeout=90)
    assert result.returncode == 1
    assert time.monotonic() - started < 60
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return str(lines[0])


def test_unreachable_sts_fails_fast_with_one_line(app: App) -> None:
    app.set_env(AWS_ENDPOINT_URL_STS=_closed_port_url())
    line = _one_line_failure_within_a_minute(app)
    assert "STS" in line and "AWS_ENDPOINT_URL_STS" in line


def test_unreachable_gateway_fails_fast_with_one_line(app: App) -> None:
    app.write_sources(
        orders=orders_source(_closed_port_url(), retry={"max_attempts": 3, "activity_attempts": 2})
    )
    line = _one_line_failure_within_a_minute(app)
    assert "GatewayError" in line and "ConnectError" in line


def test_a_run_killed_mid_page_resumes_and_lands_every_record_exactly_once(app: App) -> None:
    app.write_sources(orders=orders_source(app.stack.cloud.gateway_url, output={"pages_per_part": 10}))
    gateway = app.stack.cloud.gateway
    gateway.inject(Fault("delay", delay_ms=4000, page=25), times=1)
    process = app.spawn("ingest", "--source", "orders", "--from", HOUR[0], "--to", HOUR[1])
    try:
        # The delay fault is consumed when page 25 is asked for: the worker is then mid-part 2.
        while gateway.faults.pending():
            assert process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    prefix = "dev/orders/20240101T000000Z_20240101T010000Z"
    assert sorted(n for n in app.landing.list_names(prefix) if "part-" in n) == [
        f"{prefix}/part-00000.jsonl.gz",
        f"{prefix}/part-00001.jsonl.gz",
    ]
    gateway.wait_idle()
    served_before = gateway.served_ids("orders")

    summary = app.cli_json("ingest", "--source", "orders", "--from", HOUR[0], "--to", HOUR[1])
    expected = gateway.expected_ids("/dev/orders", *HOUR)
    ids = Counter(record["id"] for record in read_records(app.landing, summary["prefix"]))
    assert set(ids) == expected and max(ids.values()) == 1
    assert summary["records"] == 3600 and len(summary["parts"]) == 4
    assert len(served_before) >= 2000  # the first run really got that far
    assert verify_window(app.landing, summary["prefix"]).ok


def test_a_permanent_failure_is_one_line_in_text_and_in_json(app: App) -> None:
    """The activity's own report of a refused page stays a warning: stderr holds the run's line only."""
    app.stack.cloud.gateway.inject(Fault("status", status=403), times=10)
    text = app.cli("ingest", "--source", "orders", "--from", HOUR[0], "--to", HOUR[1])
    assert text.returncode == 1
    [line] = text.stderr.strip().splitlines()
    assert line.startswith("error: ") and "HTTP 403" in line and "page=1" in line
    app.set_env(LOG_FORMAT="json")
    structured = app.cli("ingest", "--source", "orders", "--from", HOUR[0], "--to", HOUR[1])
    [document] = [json.loads(raw) for raw in structured.stderr.strip().splitlines()]
    assert document["level"] == "ERROR" and "HTTP 403" in document["message"]
