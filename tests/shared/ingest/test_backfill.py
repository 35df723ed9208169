"""Backfills: bounded fan-out of per-window ingests, landed windows skipped, resumable after a kill."""

from __future__ import annotations

import signal
from collections import Counter

from localcloud import Dataset
from localcloud.stack import orders_source
from shared.landing.verify import read_records

from fixtures import App

RANGE = ("2024-01-01T00:00:00Z", "2024-01-02T06:00:00Z")  # 30 hourly windows


def sparse(app: App) -> None:
    """600 records/hour in pages of 100: 6 pages per window."""
    app.stack.cloud.gateway.add_dataset("/dev/sparse", Dataset(name="sparse", records_per_hour=600))
    app.write_sources(orders=orders_source(app.stack.cloud.gateway_url, path="/sparse"))


def backfill_args(end: str = RANGE[1], parallel: int = 4) -> tuple[str, ...]:
    return (
        "backfill",
        "--source",
        "orders",
        "--from",
        RANGE[0],
        "--to",
        end,
        "--every",
        "PT1H",
        "--max-parallel",
        str(parallel),
    )


def windows_requested(app: App) -> set[str]:
    return {r.query["from"] for r in app.stack.cloud.gateway.requests if r.path == "/dev/sparse"}


def test_backfill_lands_every_window_with_at_most_max_parallel_in_flight(app: App) -> None:
    sparse(app)
    gateway = app.stack.cloud.gateway
    gateway.latency_ms = 5  # long enough for windows to overlap
    result = app.cli_json(*backfill_args(parallel=4))
    assert result["landed"] == 30 and result["skipped"] == 0
    assert result["records"] == 30 * 600
    assert 2 <= gateway.max_concurrency_observed <= 4
    assert len(windows_requested(app)) == 30
    first = result["windows"][0]
    ids = Counter(r["id"] for r in read_records(app.landing, first["prefix"]))
    assert set(ids) == gateway.expected_ids("/dev/sparse", first["window"]["from"], first["window"]["to"])


def test_rerunning_a_killed_backfill_fetches_only_the_unfinished_windows(app: App) -> None:
    sparse(app)
    gateway = app.stack.cloud.gateway
    gateway.latency_ms = 5
    process = app.spawn(*backfill_args(parallel=2))
    try:
        # Wait (on the landing itself) until some windows are complete, then kill -9 mid-flight.
        while sum(n.endswith("/_SUCCESS") for n in app.landing.list_names("dev/orders")) < 6:
            assert process.poll() is None, "backfill ended before it could be interrupted"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    landed_before = {
        n.split("/")[2].split("_")[0] for n in app.landing.list_names("dev/orders") if n.endswith("/_SUCCESS")
    }
    gateway.wait_idle()
    gateway.reset_observations()

    result = app.cli_json(*backfill_args(parallel=2))
    # Windows finished before the kill are replayed from the journal, not fetched again.
    assert result["landed"] + result["skipped"] == 30
    assert len(landed_before) >= 6
    refetched = {w.replace("-", "").replace(":", "") for w in windows_requested(app)}
    assert not (refetched & landed_before), "a window landed before the kill was fetched again"
    for window in result["windows"]:
        ids = Counter(r["id"] for r in read_records(app.landing, window["prefix"]))
        assert len(ids) == 600 and max(ids.values()) == 1


def test_a_failed_window_fails_the_backfill_naming_it_and_a_rerun_does_only_that_one(app: App) -> None:
    from localcloud import Fault

    sparse(app)
    gateway = app.stack.cloud.gateway
    gateway.inject(Fault("status", status=404, page=1), times=1)
    result = app.cli(*backfill_args(end="2024-01-01T04:00:00Z", parallel=1))
    assert result.returncode == 1
    assert "1 of 4 windows failed; first: 2024-01-01T00:00:00Z" in result.stderr
    gateway.reset_observations()
    again = app.cli_json(*backfill_args(end="2024-01-01T04:00:00Z", parallel=1))
    assert (again["landed"], again["skipped"]) == (1, 3)
    assert windows_requested(app) == {"2024-01-01T00:00:00Z"}
