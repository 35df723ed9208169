"""Backfills: bounded fan-out of per-window ingests, landed windows skipped, resumable after a kill."""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from localcloud import Dataset
from localcloud.stack import orders_source
from shared.durable.engine import Engine
from shared.durable.history import EXECUTION_STARTED, TASK_SCHEDULED
from shared.durable.journal import Instance, JournalStore
from shared.errors import RequestError
from shared.ingest.orchestrators import (
    BACKFILL_ORCHESTRATOR,
    INGEST_ORCHESTRATOR,
    RECORD_BACKFILL,
    backfill_orchestrator,
)
from shared.ingest.payloads import BackfillState, IngestState
from shared.ingest.requests import BackfillRequest
from shared.ingest.start import prepare_backfill
from shared.landing.verify import read_records
from shared.runtime import current
from shared.timestamps import isoformat

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


def outcomes(app: App, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every window's outcome, from the backfill's manifest blobs (the run's output only counts them)."""
    names = sorted(n for n in app.landing.list_names(result["manifest"]) if n.endswith(".json"))
    documents = [json.loads(app.landing.read_bytes(name)) for name in names]
    return sorted((w for d in documents for w in d["windows"]), key=lambda w: w["index"])


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
    windows = outcomes(app, result)
    assert [w["index"] for w in windows] == list(range(30))
    first = windows[0]
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
    for window in outcomes(app, result):
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
    assert "rerun the backfill to retry only those (landed windows are skipped)" in result.stderr
    gateway.reset_observations()
    again = app.cli_json(*backfill_args(end="2024-01-01T04:00:00Z", parallel=1))
    assert (again["landed"], again["skipped"]) == (1, 3)
    assert windows_requested(app) == {"2024-01-01T00:00:00Z"}


def fake_ingest(context: Any) -> Generator[Any, Any, dict[str, Any]]:
    """A child that lands its window at once (every 7th fails): the backfill's own shape is tested."""
    window = context.get_input()["window"]
    if False:  # a generator, like every orchestrator
        yield None
    if int(window["from"][11:13]) % 7 == 3:
        raise RuntimeError(f"window {window['from']} failed")
    return {"status": "landed", "records": 600, "prefix": f"dev/orders/{window['from']}"}


def largest(instances: list[Instance]) -> dict[str, int]:
    """The largest payload of each kind the journal holds: what Durable would store and return."""
    sizes = {"input": 0, "activity": 0, "output": 0, "status": 0}
    for instance in instances:
        for event in instance.history:
            if event["EventType"] == EXECUTION_STARTED:
                sizes["input"] = max(sizes["input"], len(event["Input"]))
            elif event["EventType"] == TASK_SCHEDULED:
                sizes["activity"] = max(sizes["activity"], len(event["Input"]))
        sizes["output"] = max(sizes["output"], len(json.dumps(instance.output)))
        sizes["status"] = max(sizes["status"], len(json.dumps(instance.custom_status)))
    return sizes


def hourly(name: str, count: int, *, mode: str = "skip-if-complete", max_parallel: int = 4) -> BackfillState:
    """A backfill of `count` hourly windows from 2024-01-01, its manifest under _backfill/`name`."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return BackfillState(
        template=IngestState(source="orders", window={}, pipeline_run_id="r", mode=mode),
        environment="dev",
        start=isoformat(start),
        end=isoformat(start + timedelta(hours=count)),
        every="PT1H",
        count=count,
        max_parallel=max_parallel,
        manifest=f"dev/orders/_backfill/{name}",
    )


def with_fake_children(
    child: Any, store: JournalStore, record: Any = lambda payload: {"path": payload["path"]}
) -> Engine:
    """The real backfill orchestrator over `child` as each window's ingest; record_backfill faked."""
    return Engine(
        {INGEST_ORCHESTRATOR: child, BACKFILL_ORCHESTRATOR: backfill_orchestrator},
        {RECORD_BACKFILL: record},
        store,
    )


def failing_ingest(context: Any) -> Generator[Any, Any, dict[str, Any]]:
    """A child that fails with a long error in a script JSON escapes (six bytes a character)."""
    if False:  # a generator, like every orchestrator
        yield None
    raise RuntimeError("échec " * 60)


def test_the_failures_a_backfill_carries_stay_bounded_in_bytes_however_long_their_errors() -> None:
    count = 300
    state = hourly("b3", count)
    store = JournalStore(None)
    saves, inputs = store.save, []

    def save(instance: Instance) -> None:
        inputs.extend(len(e["Input"]) for e in instance.history if e["EventType"] == EXECUTION_STARTED)
        saves(instance)

    store.save = save  # type: ignore[method-assign]
    instance = with_fake_children(failing_ingest, store).run(BACKFILL_ORCHESTRATOR, "b3", state.model_dump())
    assert instance.runtime_status == "Failed"
    assert str(instance.output).startswith(f"{count} of {count} windows failed; first: ")
    assert max(inputs) < 32_000, "an execution's input past Durable's 32 KB"
    assert len(json.dumps(instance.custom_status)) < 16_000


def test_a_failed_backfill_in_mode_replace_says_a_rerun_lands_every_window_again() -> None:
    state = hourly("b2", 5, mode="replace", max_parallel=2)  # hour 3 fails (fake_ingest)
    engine = with_fake_children(fake_ingest, JournalStore(None))
    instance = engine.run(BACKFILL_ORCHESTRATOR, "b2", state.model_dump())
    assert instance.runtime_status == "Failed"
    assert str(instance.output).startswith("1 of 5 windows failed; first: 2024-01-01T03:00:00Z")
    assert "a rerun in mode replace lands every window again" in str(instance.output)


def test_a_backfill_of_thousands_of_windows_stays_bounded_and_records_each_window_once() -> None:
    count = 2000  # 83 days of hours: 40 batches of 50
    state = hourly("b1", count)
    recorded: list[dict[str, Any]] = []
    store = JournalStore(None)
    saves = store.save

    def save(instance: Instance) -> None:
        if instance.instance_id == "b1":
            sizes.append(largest([instance]))
        saves(instance)

    sizes: list[dict[str, int]] = []
    store.save = save  # type: ignore[method-assign]

    def record(payload: dict[str, Any]) -> dict[str, Any]:
        recorded.append(payload)
        return {"path": payload["path"]}

    instance = with_fake_children(fake_ingest, store, record).run(
        BACKFILL_ORCHESTRATOR, "b1", state.model_dump()
    )
    assert instance.runtime_status == "Failed"
    failed = [w for batch in recorded for w in batch["windows"] if w["status"] == "failed"]
    assert str(instance.output).startswith(f"{len(failed)} of 2000 windows failed; first: ")
    # Every window once, in its own derived window, with child ids as a single ingest would use.
    indexes = [w["index"] for batch in recorded for w in batch["windows"]]
    assert sorted(indexes) == list(range(count))
    by_index = {w["index"]: w for batch in recorded for w in batch["windows"]}
    assert by_index[1999]["window"] == {"from": "2024-03-24T07:00:00Z", "to": "2024-03-24T08:00:00Z"}
    assert store.load("dev-orders-20240324T070000Z_20240324T080000Z") is not None
    assert len({b["path"] for b in recorded}) == len(recorded) == 40
    assert instance.executions == 40
    worst = {kind: max(s[kind] for s in sizes) for kind in sizes[0]}
    # Bounded whatever the count: the state carries counters and the first 100 failures only.
    assert worst["input"] < 32_000 and worst["activity"] < 32_000 and worst["status"] < 16_000, worst
    status = instance.custom_status
    assert status["done"] == count and status["failed"] == len(failed) > 100
    assert status["landed"] == count - len(failed) and status["records"] == 600 * status["landed"]
    assert status["windowsPerSecond"] is not None and status["eta"] is not None


def test_a_backfill_of_100000_windows_is_accepted_without_listing_them(app: App) -> None:
    request = BackfillRequest.model_validate(
        {"source": "orders", "from": "2020-01-01T00:00:00Z", "to": "2031-06-01T00:00:00Z", "every": "PT1H"}
    )
    instance_id, state = prepare_backfill(request, current())
    assert state.count == 100_056  # 4,169 days of 24 hours
    assert len(state.model_dump_json()) < 4000
    assert state.template.window == {"from": "2020-01-01T00:00:00Z", "to": "2020-01-01T01:00:00Z"}
    assert instance_id.startswith("backfill-dev-orders-20200101T000000Z_20310601T000000Z-PT1H")


def test_a_calendar_step_whose_longest_window_is_over_the_span_limit_is_refused(app: App) -> None:
    def backfill(every: str) -> BackfillRequest:
        return BackfillRequest.model_validate(
            {"source": "orders", "from": "2024-01-31T00:00:00Z", "to": "2024-06-01T00:00:00Z", "every": every}
        )

    # P1M1D from Jan 31: windows of 30, 32, 31, 31 and 1 days; the source allows 31 (window.max_span).
    with pytest.raises(RequestError) as refused:
        prepare_backfill(backfill("P1M1D"), current())
    assert refused.value.field == "every"
    message = str(refused.value)
    assert "up to 32 days" in message and "20240301T000000Z_20240402T000000Z" in message
    assert "allows at most 31 days" in message and "window.max_span" in message
    _, monthly = prepare_backfill(backfill("P1M"), current())  # at most 31 days: Jan 31 - Mar 1 is 30
    assert monthly.count == 5
