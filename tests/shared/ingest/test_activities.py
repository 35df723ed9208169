"""fetch_part against the real stand-ins: several parts in one activity, each committed while
the next is fetched (output.parts_per_activity), for as long as output.activity_seconds allows."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from typing import Any

import pytest

from localcloud.stack import orders_source
from shared.errors import LandingError
from shared.gateway.client import GatewayClient
from shared.gateway.pages import Page
from shared.ingest.payloads import FetchPartResult
from shared.landing.parts import Checkpoint, PartInfo, PartWriter
from shared.landing.verify import read_records

from fixtures import HOUR, App, fetch_parts_scheduled

# 36 pages of 100 records: 12 parts of 3 pages, 4 parts an activity, so 3 activities.
PAGES_PER_PART, PARTS_PER_ACTIVITY = 3, 4


def configure(app: App, output: dict[str, Any] | None = None, **retry: Any) -> None:
    app.write_sources(
        orders=orders_source(
            app.stack.cloud.gateway_url,
            output={
                "pages_per_part": PAGES_PER_PART,
                "parts_per_activity": PARTS_PER_ACTIVITY,
                **(output or {}),
            },
            retry=retry,
        )
    )



def landed_once(app: App, prefix: str) -> bool:
    ids = Counter(record["id"] for record in read_records(app.landing, prefix))
    expected = app.stack.cloud.gateway.expected_ids("/dev/orders", *HOUR)
    return set(ids) == expected and max(ids.values()) == 1


def test_a_part_commits_while_the_next_parts_pages_are_fetched(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(app, activity_attempts=1)
    next_part_fetched = threading.Event()
    committed_on: list[str] = []
    fetch, commit = GatewayClient.fetch, PartWriter.commit

    def fetching(self: GatewayClient, cursor: str | None, number: int) -> Page:
        page = fetch(self, cursor, number)
        if number == PAGES_PER_PART + 1:  # the second part's first page
            next_part_fetched.set()
        return page

    def committing(self: PartWriter, checkpoint: Checkpoint) -> PartInfo:
        committed_on.append(threading.current_thread().name)
        # Part 0's commit waits for part 1's first page: committed in series, it would wait in vain.
        if self.name == "part-00000.jsonl.gz" and not next_part_fetched.wait(timeout=10):
            raise AssertionError("part 0 was committed before part 1's pages were fetched")
        return commit(self, checkpoint)

    monkeypatch.setattr(GatewayClient, "fetch", fetching)
    monkeypatch.setattr(PartWriter, "commit", committing)
    instance = app.ingest(pipelineRunId="run-overlap")
    assert instance.runtime_status == "Completed", instance.output
    assert len(instance.output["parts"]) == 12 and landed_once(app, instance.output["prefix"])
    assert fetch_parts_scheduled(instance) == 3
    # Three parts of each activity on its commit stage; its last one inline, with nothing to overlap.
    assert [name.startswith("stage commits") for name in committed_on] == [True, True, True, False] * 3


def test_a_commit_failing_while_the_next_part_is_fetched_fails_the_activity_and_its_retry_lands_once(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(app)
    commit = PartWriter.commit
    failed: list[str] = []

    def committing(self: PartWriter, checkpoint: Checkpoint) -> PartInfo:
        if self.name == "part-00001.jsonl.gz" and not failed:
            failed.append(self.name)
            raise LandingError("commit part-00001.jsonl.gz: The server is busy.")
        return commit(self, checkpoint)

    monkeypatch.setattr(PartWriter, "commit", committing)
    instance = app.ingest(pipelineRunId="run-commit-fails")
    assert instance.runtime_status == "Completed", instance.output
    assert failed and landed_once(app, instance.output["prefix"])
    assert len(instance.output["parts"]) == 12
    # The first attempt stopped when it went to hand over part 2's commit (behind part 1's), after
    # its 9 pages; the retry fetched the activity's parts again: part 0, committed, is rewritten.
    pages = [r for r in app.stack.cloud.gateway.requests if r.path == "/dev/orders"]
    assert len(pages) == 36 + 3 * PAGES_PER_PART


def test_an_activity_lands_parts_for_activity_seconds_however_slow_the_api(app: App) -> None:
    # One part could hold the whole window (36 pages), but at 20 ms a page an activity's 50 ms end
    # its part within a few pages, and no further part starts.
    configure(app, output={"pages_per_part": 36, "activity_seconds": 0.05})
    app.stack.cloud.gateway.latency_ms = 20
    instance = app.ingest(pipelineRunId="run-activity-seconds")
    assert instance.runtime_status == "Completed", instance.output
    prefix = instance.output["prefix"]
    parts = app.landing.read_json(f"{prefix}/_manifest.json")["parts"]
    assert len(parts) > 3 and all(part["records"] < 3600 for part in parts)
    assert fetch_parts_scheduled(instance) == len(parts)  # one part an activity, not 4
    assert landed_once(app, prefix)
    # Each part's checkpoint says where its walk began, from one activity to the next: a later
    # run goes on only from parts that chain (shared.ingest.layout.resume).
    spans = [(c.pages_before, c.pages_after) for _, c in app.landing.landed_parts(prefix, "") if c]
    assert spans[0][0] == 0 and spans[-1][1] == 36
    assert all(before == after for (_, after), (before, _) in itertools.pairwise(spans))


def test_an_activity_whose_time_is_over_before_its_first_page_still_lands_one(app: App) -> None:
    # A budget spent on set-up alone: each activity still fetches one page, so the run ends.
    configure(app, output={"activity_seconds": 1e-6, "parts_per_execution": 50})  # one history
    instance = app.ingest(pipelineRunId="run-no-time")
    assert instance.runtime_status == "Completed", instance.output
    parts = app.landing.read_json(f"{instance.output['prefix']}/_manifest.json")["parts"]
    assert [part["records"] for part in parts] == [100] * 36
    assert fetch_parts_scheduled(instance) == 36 and landed_once(app, instance.output["prefix"])


def test_a_result_recorded_before_parts_were_counted_still_counts_its_one_part() -> None:
    # A run started on the previous version replays fetch_part results that have no `parts`.
    base = {"next_cursor": None, "done": True, "pages": 1, "records": 0}
    assert FetchPartResult.model_validate({**base, "part": None}).parts == 0
    part = {
        "name": "part-00000.jsonl.gz",
        "records": 100,
        "bytes": 10,
        "uncompressed_bytes": 20,
        "sha256": "0" * 64,
        "first_request_id": None,
        "last_request_id": None,
        "started_at": "2024-01-01T00:00:00.000000Z",
        "finished_at": "2024-01-01T00:00:01.000000Z",
    }
    assert FetchPartResult.model_validate({**base, "records": 100, "part": part}).parts == 1
