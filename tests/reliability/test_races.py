"""Issue 17 findings 4, 5 and 6: runs racing over one window, drivers racing over one journal,
and cursors that cycle across parts."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from localcloud.stack import orders_source
from shared import runtime
from shared.cli import local_engine
from shared.durable.engine import Engine
from shared.durable.journal import Instance, JournalStore
from shared.ingest import activities, orchestrators
from shared.ingest.requests import IngestRequest
from shared.ingest.start import prepare_ingest
from shared.landing.verify import read_records, verify_window

from fixtures import HOUR, App

PREFIX = "dev/orders/20240101T000000Z_20240101T010000Z"


def _start(engine: Engine, **fields: Any) -> tuple[str, dict[str, Any]]:
    request = IngestRequest.model_validate(
        {"source": "orders", "window": {"from": HOUR[0], "to": HOUR[1]}, **fields}
    )
    instance_id, state = prepare_ingest(request, runtime.current())
    state.owner = engine.store.owner
    return instance_id, state.model_dump()


def _engine(state_dir: Path, fetch_part: Any = activities.fetch_part) -> Engine:
    return Engine(
        {orchestrators.INGEST_ORCHESTRATOR: orchestrators.ingest_orchestrator},
        {
            orchestrators.PLAN_WINDOW: activities.plan_window,
            orchestrators.FETCH_PART: fetch_part,
            orchestrators.FINALIZE: activities.finalize,
        },
        JournalStore(state_dir),
    )


@pytest.fixture
def moving(app: App) -> Any:
    gateway = app.stack.cloud.gateway
    gateway.moving_data = True  # the `cloud` fixture puts it back
    return gateway


def test_two_journals_racing_over_moving_data_leave_the_published_window_byte_identical(
    app: App, moving: Any, tmp_path: Path, ledger: Any
) -> None:
    """Finding 4: the slower run used to commit its parts over the published ones."""
    app.write_sources(orders=orders_source(app.stack.cloud.gateway_url, output={"pages_per_part": 12}))
    slow_started, fast_done = threading.Event(), threading.Event()

    def held_fetch(payload: dict[str, Any]) -> dict[str, Any]:
        slow_started.set()
        assert fast_done.wait(60), "the fast run never finished"
        return activities.fetch_part(payload)

    slow_engine = _engine(tmp_path / "journal-slow", held_fetch)
    fast_engine = _engine(tmp_path / "journal-fast")
    slow_id, slow_input = _start(slow_engine)
    outcome: list[Instance] = []
    slow = threading.Thread(
        target=lambda: outcome.append(slow_engine.run(orchestrators.INGEST_ORCHESTRATOR, slow_id, slow_input))
    )
    slow.start()
    try:
        assert slow_started.wait(60), "the slow run never planned"
        fast = fast_engine.run(orchestrators.INGEST_ORCHESTRATOR, *_start(fast_engine))
    finally:
        fast_done.set()
        slow.join(120)
    assert fast.runtime_status == "Completed", fast.output
    published = app.landing.read_json(f"{PREFIX}/_manifest.json")
    assert outcome and outcome[0].runtime_status == "Failed"
    loser = str(outcome[0].output)
    assert "was published by another run meanwhile" in loser and "generation 2" in loser, loser
    assert app.landing.read_json(f"{PREFIX}/_manifest.json") == published
    report = verify_window(app.landing, PREFIX)  # every listed part against its sha256
    assert report.ok, report.problems
    names = [n[len(PREFIX) + 1 :] for n in app.landing.list_names(PREFIX) if "part-" in n]
    assert names and all(n.startswith("gen-0002/") for n in names), "the loser's parts are cleaned"
    records = list(read_records(app.landing, PREFIX))
    assert all("revision" in r for r in records), "the data moved between the runs' requests"
    ledger.landed_exactly_once(
        "two journals race one window over moving data",
        runs=2,
        records=records,
        expected=moving.expected_ids("/dev/orders", *HOUR),
        outcome="published window byte-identical to its manifest; loser failed naming the winner",
    )

    late = fast_engine.run(orchestrators.INGEST_ORCHESTRATOR, *_start(fast_engine))
    assert late.output["status"] == "skipped-already-landed"
    replaced = slow_engine.run(orchestrators.INGEST_ORCHESTRATOR, *_start(slow_engine, mode="replace"))
    assert replaced.runtime_status == "Completed", replaced.output
    manifest = app.landing.read_json(f"{PREFIX}/_manifest.json")
    assert manifest is not None and manifest["generation"] == 3  # 1 was the loser's claim: never reused
    assert verify_window(app.landing, PREFIX).ok


def test_a_second_cli_on_the_same_journal_fails_at_once_naming_the_driver(app: App, ledger: Any) -> None:
    """Finding 5: two CLIs sharing RUN_STATE_DIR used to both drive the instance."""
    gateway = app.stack.cloud.gateway
    # 36 pages at 0.5 s: the first CLI drives for 18 s unless the gateway speeds up, which it
    # does as soon as the second CLI has answered.
    gateway.latency_ms = 500
    args = ("ingest", "--source", "orders", "--from", HOUR[0], "--to", HOUR[1])
    first = app.spawn(*args)
    try:
        assert gateway.wait_for_requests(1, timeout=60), "the first CLI never started driving"
        second = app.cli(*args)
        refused_after = len(gateway.requests)
    finally:
        gateway.latency_ms = 0
        assert first.wait(120) == 0
    assert second.returncode == 1
    assert refused_after < 36, "refused while the first CLI was still driving"
    assert f"already being driven by process {first.pid}" in second.stderr, second.stderr
    journal = local_engine(app.state_dir).store.load("dev-orders-20240101T000000Z_20240101T010000Z")
    assert journal is not None and journal.runtime_status == "Completed"
    assert gateway.count(status=200) == 36, "one driver's traffic, not two"
    ids = Counter(r["id"] for r in read_records(app.landing, PREFIX))
    ledger.record(
        "two CLIs drive one journal",
        runs=2,
        expected=3600,
        landed=len(ids),
        duplicated=sum(n - 1 for n in ids.values()),
        outcome="second refused at once, names the driver's pid; "
        f"{gateway.count(status=200)} requests (one driver)",
    )
    assert verify_window(app.landing, PREFIX).ok


@pytest.mark.parametrize("period", [2, 3])
def test_cursors_cycling_across_parts_fail_naming_both_pages(app: App, period: int, ledger: Any) -> None:
    """Finding 6: with one page per part, a cycle used to run on to pagination.max_pages."""
    gateway = app.stack.cloud.gateway
    app.write_sources(orders=orders_source(app.stack.cloud.gateway_url, output={"pages_per_part": 1}))
    gateway.token_cycle = period  # the `cloud` fixture puts it back
    instance = app.ingest()
    assert instance.runtime_status == "Failed"
    assert "returned the same next cursor as page" in str(instance.output), instance.output
    pages = gateway.count(status=200)
    ledger.record(
        f"next tokens cycle with period {period}, one page per part",
        runs=1,
        expected=0,
        landed=0,
        duplicated=0,
        outcome=f"PaginationError after {pages} pages (page {pages} = page {pages - period}), "
        "nothing published",
    )
    assert pages <= 4 * period, "caught within a few cycles, not at max_pages"
    assert not app.landing.exists(f"{PREFIX}/_SUCCESS")
