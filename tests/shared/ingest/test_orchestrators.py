"""The ingest orchestrator through azure-functions-durable's own replay engine.

Activities are replaced by fakes here so history shapes can be forced; the orchestrator and
the replay engine are the real ones.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import azure.durable_functions as df
import pytest

from localcloud.stack import orders_source
from shared.durable.engine import Engine
from shared.durable.history import TASK_COMPLETED, TASK_FAILED, TASK_SCHEDULED
from shared.durable.journal import JournalStore
from shared.ingest.orchestrators import (
    FETCH_PART,
    FINALIZE,
    INGEST_ORCHESTRATOR,
    PLAN_WINDOW,
    ingest_orchestrator,
)
from shared.ingest.payloads import IngestState, Segment
from shared.landing.verify import read_records

from fixtures import App

WINDOW = {"from": "2024-01-01T00:00:00Z", "to": "2024-01-01T01:00:00Z"}


class FakeApi:
    """Fake activities: `pages` pages per segment, one page per part; may fail or block."""

    def __init__(
        self, segments: int = 1, pages: int = 5, fail_first: int = 0, together: int | None = None
    ) -> None:
        self.segments = segments
        # Fetches wait for each other in groups of `together`: proof that they run concurrently.
        self.barrier = threading.Barrier(together, timeout=30) if together else None
        self.pages = pages
        self.fail_first = fail_first
        self.calls: Counter[str] = Counter()
        self.in_flight = 0
        self.peak = 0
        self.lock = threading.Lock()

    def plan(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.calls[PLAN_WINDOW] += 1
        segments = [Segment(index=i, window=WINDOW).model_dump() for i in range(self.segments)]
        return {"prefix": "dev/orders/w", "complete": False, "segments": segments}

    def fetch(self, payload: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.calls[FETCH_PART] += 1
            if self.calls[FETCH_PART] <= self.fail_first:
                raise ConnectionError("transient")
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        if self.barrier is not None:
            self.barrier.wait()
        page = int(payload["cursor"] or 0) + 1
        done = page >= self.pages
        with self.lock:
            self.in_flight -= 1
        name = f"s{payload['segment'] or 0}-p{payload['part_index']}"
        part = {
            "name": name,
            "records": 10,
            "bytes": 1,
            "uncompressed_bytes": 2,
            "sha256": "0" * 64,
            "first_request_id": None,
            "last_request_id": None,
            "started_at": "2024-01-01T00:00:00.000000Z",
            "finished_at": "2024-01-01T00:00:00.000000Z",
        }
        return {
            "part": part,
            "next_cursor": None if done else str(page),
            "done": done,
            "pages": 1,
            "records": 10,
        }

    def finalize(self, payload: dict[str, Any]) -> dict[str, Any]:
        # As the real finalize: the parts are read back from what was committed, not from the state.
        state = payload["state"]
        assert state["parts"] == []
        names = [f"s{seg['index']}-p{i}" for seg in state["segments"] for i in range(seg["next_part"])]
        return {"parts": names[:100], "partCount": len(names), "executions": state["executions"]}

    def engine(self) -> Engine:
        return Engine(
            {INGEST_ORCHESTRATOR: ingest_orchestrator},
            {PLAN_WINDOW: self.plan, FETCH_PART: self.fetch, FINALIZE: self.finalize},
            JournalStore(None),
        )


def state(**overrides: Any) -> dict[str, Any]:
    base = IngestState(
        source="orders", window=WINDOW, pipeline_run_id="r", retry={"attempts": 3, "first_retry_ms": 1}
    )
    return base.model_copy(update=overrides).model_dump()


def test_continue_as_new_carries_the_cursor_and_parts_across_executions() -> None:
    api = FakeApi(pages=7)
    instance = api.engine().run(INGEST_ORCHESTRATOR, "i", state(parts_per_execution=2))
    assert instance.runtime_status == "Completed", instance.output
    assert instance.output["parts"] == [f"s0-p{i}" for i in range(7)]
    assert instance.output["executions"] == 4  # 2 + 2 + 2 + 1 parts
    assert api.calls[FETCH_PART] == 7 and api.calls[PLAN_WINDOW] == 1


def test_a_failed_activity_is_retried_and_the_run_resumes_where_it_was() -> None:
    api = FakeApi(pages=3, fail_first=2)
    instance = api.engine().run(INGEST_ORCHESTRATOR, "i", state())
    assert instance.runtime_status == "Completed", instance.output
    assert instance.output["parts"] == ["s0-p0", "s0-p1", "s0-p2"]
    assert api.calls[FETCH_PART] == 5


def test_segments_fan_out_no_wider_than_allowed() -> None:
    api = FakeApi(segments=4, pages=3, together=2)
    instance = api.engine().run(INGEST_ORCHESTRATOR, "i", state(max_parallel_segments=2))
    assert instance.runtime_status == "Completed", instance.output
    assert sorted(instance.output["parts"]) == sorted(f"s{s}-p{p}" for s in range(4) for p in range(3))
    assert api.peak <= 2
    # Read off the durable history, not off timing: never more than two fetches outstanding.
    assert most_outstanding(instance.history, FETCH_PART) == 2


def most_outstanding(history: list[dict[str, Any]], name: str) -> int:
    """The most tasks of `name` the orchestrator had scheduled and not yet seen completed."""
    open_ids: set[int] = set()
    most = 0
    for event in history:
        if event["EventType"] == TASK_SCHEDULED and event["Name"] == name:
            open_ids.add(event["EventId"])
            most = max(most, len(open_ids))
        elif event["EventType"] in (TASK_COMPLETED, TASK_FAILED):
            open_ids.discard(event["TaskScheduledId"])
    return most


def test_replaying_the_recorded_history_is_deterministic() -> None:
    api = FakeApi(segments=3, pages=2)
    engine = api.engine()
    instance = engine.run(INGEST_ORCHESTRATOR, "i", state(max_parallel_segments=2))
    assert instance.runtime_status == "Completed"
    handle = df.Orchestrator.create(ingest_orchestrator)
    started = next(e for e in instance.history if e["EventType"] == 0)
    context = json.dumps(
        {
            "history": instance.history,
            "input": started["Input"],
            "instanceId": "i",
            "isReplaying": True,
            "parentInstanceId": None,
            "upperSchemaVersion": 2,
        }
    )
    first, second = json.loads(handle(context)), json.loads(handle(context))
    assert first == second
    assert first["isDone"] is True and first["output"] == instance.output
    assert api.calls[FETCH_PART] == 6  # replays ran no activity


def test_segmented_window_lands_exactly_once_with_bounded_concurrency(app: App) -> None:
    gateway = app.stack.cloud.gateway
    gateway.latency_ms = 10
    app.write_sources(
        orders=orders_source(gateway.url, window={"segment": "PT15M", "max_parallel_segments": 3})
    )
    instance = app.ingest()
    assert instance.runtime_status == "Completed", instance.output
    assert 2 <= gateway.max_concurrency_observed <= 3
    names = [p.rsplit("/", 1)[1] for p in instance.output["parts"]]
    assert names[0] == "part-0000-00000.jsonl.gz" and len({n[:9] for n in names}) == 4
    ids = Counter(r["id"] for r in read_records(app.landing, instance.output["prefix"]))
    assert (
        set(ids) == gateway.expected_ids("/dev/orders", WINDOW["from"], WINDOW["to"])
        and max(ids.values()) == 1
    )


@pytest.mark.slow  # 10,000 activities through the SDK's replay: about a minute of CPU
def test_a_window_of_10000_parts_keeps_every_payload_under_32_kb() -> None:
    """Inputs, activity payloads, results and custom status, as the journal holds them."""
    api = FakeApi(pages=10_000)
    store = JournalStore(None)
    largest = Counter[str]()
    save = store.save

    def measure(instance: Any) -> None:
        for event in instance.history:
            for kind, key in (("input", "Input"), ("result", "Result")):
                if isinstance(event.get(key), str):
                    largest[kind] = max(largest[kind], len(event[key]))
        largest["status"] = max(largest["status"], len(json.dumps(instance.custom_status)))
        largest["output"] = max(largest["output"], len(json.dumps(instance.output)))
        save(instance)

    store.save = measure  # type: ignore[method-assign]
    engine = Engine(
        {INGEST_ORCHESTRATOR: ingest_orchestrator},
        {PLAN_WINDOW: api.plan, FETCH_PART: api.fetch, FINALIZE: api.finalize},
        store,
    )
    instance = engine.run(INGEST_ORCHESTRATOR, "big", state())
    assert instance.runtime_status == "Completed", instance.output
    assert instance.output["partCount"] == 10_000 and len(instance.output["parts"]) == 100
    assert instance.custom_status["parts"] == 10_000 and instance.custom_status["records"] == 100_000
    assert instance.executions == 501  # 500 of 20 parts, then the one that finalizes
    assert set(largest) == {"input", "result", "status", "output"}
    assert max(largest.values()) < 32_000, largest
    assert largest["status"] < 16_000
