"""The orchestrators: deterministic, replay-safe, and small in what they carry.

`function_app.py` wires these to Durable Functions triggers; the CLI and the tests drive the
very same functions through azure-functions-durable's replay engine (shared.durable). No I/O,
no clock but `context.current_utc_datetime`, no randomness: all work happens in activities
(shared.ingest.activities), whose inputs and outputs are small and secret-free.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from shared.errors import RunFailed
from shared.ingest.activities import FAILURE
from shared.ingest.payloads import (
    BackfillFailure,
    BackfillRecordInput,
    BackfillState,
    FetchPartInput,
    FetchPartResult,
    FinalizeInput,
    IngestState,
    Placement,
    PlanInput,
    PlanResult,
)
from shared.ingest.start import instance_id_for
from shared.ingest.window import Window, parse_every, parse_instant, window_at
from shared.timestamps import isoformat

INGEST_ORCHESTRATOR = "ingest_orchestrator"
BACKFILL_ORCHESTRATOR = "backfill_orchestrator"
PLAN_WINDOW = "plan_window"
FETCH_PART = "fetch_part"
FINALIZE = "finalize"
RECORD_BACKFILL = "record_backfill"


def _settled(result: Any) -> Any:
    """An activity's result, or the permanent failure it reported, raised in the orchestrator."""
    if isinstance(result, dict) and set(result) == {FAILURE}:
        raise RunFailed(result[FAILURE])
    return result


def ingest_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    """Fetch a window part by part, checkpointing the cursor in history, then finalize it."""
    state = IngestState.model_validate(context.get_input())
    retry = df.RetryOptions(
        first_retry_interval_in_milliseconds=max(1, state.retry.first_retry_ms),
        max_number_of_attempts=state.retry.attempts,
    )
    if not state.planned:
        plan = PlanResult.model_validate(
            _settled(
                (
                    yield context.call_activity_with_retry(
                        PLAN_WINDOW,
                        retry,
                        PlanInput(
                            source=state.source,
                            window=state.window,
                            mode=state.mode,
                            dry_run=state.dry_run,
                            owner=state.owner,
                            **state.correlation(context.instance_id),
                        ).model_dump(),
                    )
                )
            )
        )
        if plan.complete and plan.summary is not None:
            return plan.summary
        state = state.model_copy(update={name: getattr(plan, name) for name in Placement.model_fields})
        state.planned, state.prefix = True, plan.prefix
        state.part_count, state.records = plan.resumed_parts, plan.resumed_records
        state.started_at = isoformat(context.current_utc_datetime)

    segmented = len(state.segments) > 1
    parts_this_execution = 0
    while open_segments := [seg for seg in state.segments if not seg.fetched]:
        _report(context, state)
        batch = open_segments[: 1 if state.dry_run else state.max_parallel_segments]
        tasks = [
            context.call_activity_with_retry(
                FETCH_PART,
                retry,
                FetchPartInput(
                    source=state.source,
                    window=seg.window,
                    prefix=state.prefix or "",
                    folder=state.folder,
                    segment=seg.index if segmented else None,
                    part_index=seg.next_part,
                    cursor=seg.cursor,
                    pages_before=seg.pages,
                    role_arn=state.role_arn,
                    session_name=state.session_name,
                    max_pages=1 if state.dry_run else None,
                    trail=seg.trail,
                    **state.correlation(context.instance_id),
                ).model_dump(),
            )
            for seg in batch
        ]
        outcomes = yield context.task_all(tasks)
        for seg, outcome in zip(batch, outcomes, strict=True):
            result = FetchPartResult.model_validate(_settled(outcome))
            if not result.pages and not result.done:
                # Scheduling the same work again would loop forever.
                raise RunFailed(
                    f"fetch_part fetched no page of segment {seg.index} at part {seg.next_part} and "
                    "the window is not done; refusing to schedule it again"
                )
            seg.pages += result.pages
            seg.cursor = result.next_cursor
            seg.fetched = result.done
            seg.trail = result.trail
            state.part_count += result.parts
            state.records += result.records
            seg.next_part += result.parts
            parts_this_execution += result.parts
        if state.dry_run:
            for seg in state.segments:
                seg.fetched = True
        elif parts_this_execution >= state.parts_per_execution:
            state.executions += 1
            context.continue_as_new(state.model_dump())
            return {}

    _report(context, state)
    summary = _settled(
        (
            yield context.call_activity_with_retry(
                FINALIZE, retry, FinalizeInput(state=state, instance_id=context.instance_id).model_dump()
            )
        )
    )
    return dict(summary)


def backfill_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    """One ingest sub-orchestration per window, never more than max_parallel in flight.

    Eternal and bounded: window i is derived from (start, every, i); after `batch_size` finished
    windows their outcomes go to a manifest blob and the orchestration continues as new with
    counters only, so history, input and status stay the same size for 10 or 100,000 windows.
    Windows already landed finish at once (their ingest skips them), so re-running a
    half-finished backfill only fetches what is missing.
    """
    state = BackfillState.model_validate(context.get_input())
    if state.started_at is None:
        state.started_at = isoformat(context.current_utc_datetime)
    start, end = parse_instant(state.start, "from"), parse_instant(state.end, "to")
    every = parse_every(state.every)
    source = state.template.source
    pending: dict[Any, tuple[int, Window]] = {}
    outcomes: list[dict[str, Any]] = []
    # Children still running at continue_as_new would report to an execution that no longer
    # waits for them: the batch is drained before the next one starts.
    while True:
        while (
            state.next_index < state.count
            and len(pending) < state.max_parallel
            and len(outcomes) + len(pending) < state.batch_size
        ):
            window = window_at(start, every, state.next_index, end)
            if window is None:
                state.count = state.next_index  # the range ended before the count said: stop there
                break
            child = state.template.model_copy(update={"window": window.to_json()})
            task = context.call_sub_orchestrator(
                INGEST_ORCHESTRATOR, child.model_dump(), instance_id_for(state.environment, source, window)
            )
            pending[task] = (state.next_index, window)
            state.next_index += 1
        _backfill_status(context, state, len(pending))
        if not pending:
            break
        finished = yield context.task_any(list(pending))
        index, window = pending.pop(finished)
        outcome = _window_outcome(index, window, finished.result)
        outcomes.append(outcome)
        _count(state, outcome)
    if outcomes:
        _settled(
            (
                yield context.call_activity_with_retry(
                    RECORD_BACKFILL,
                    df.RetryOptions(
                        first_retry_interval_in_milliseconds=max(1, state.template.retry.first_retry_ms),
                        max_number_of_attempts=state.template.retry.attempts,
                    ),
                    BackfillRecordInput(
                        source=source,
                        path=f"{state.manifest}/batch-{state.batch:06d}.json",
                        backfill=context.instance_id,
                        batch=state.batch,
                        windows=outcomes,
                    ).model_dump(),
                )
            )
        )
        state.batch += 1
    if state.next_index < state.count:
        context.continue_as_new(state.model_dump())
        return {}
    summary = _backfill_summary(context, state)
    if state.counts.failed:
        first = state.failures[0]
        raise RunFailed(
            f"{state.counts.failed} of {state.count} windows failed; "
            f"first: {first.window['from']}: {first.error}; "
            f"every outcome is in {state.manifest}/; "
            + (
                "rerun the backfill to retry only those (landed windows are skipped)"
                if state.template.mode == "skip-if-complete"
                else "a rerun in mode replace lands every window again; in skip-if-complete only those"
            )
        )
    return summary


#: Failed windows kept in the backfill's state and output; the manifest blobs have them all.
MAX_LISTED_FAILURES = 100
#: ... and at most this much of them as JSON: 100 errors of 300 characters, escaped (a non-ASCII
#: one is six bytes a character), would carry the state past Durable's 32 KB in every execution.
MAX_LISTED_FAILURE_BYTES = 12_000
_MAX_ERROR = 300


def _window_outcome(index: int, window: Window, result: Any) -> dict[str, Any]:
    outcome: dict[str, Any] = {"index": index, "window": window.to_json()}
    if isinstance(result, Exception):
        return {**outcome, "status": "failed", "error": " ".join(str(result).split())[:_MAX_ERROR]}
    return {
        **outcome,
        "status": result.get("status"),
        "records": result.get("records"),
        "prefix": result.get("prefix"),
    }


def _count(state: BackfillState, outcome: dict[str, Any]) -> None:
    state.counts.add(outcome["status"], int(outcome.get("records") or 0))
    if outcome["status"] == "failed" and len(state.failures) < MAX_LISTED_FAILURES:
        failure = BackfillFailure(index=outcome["index"], window=outcome["window"], error=outcome["error"])
        if sum(map(_json_size, state.failures)) + _json_size(failure) <= MAX_LISTED_FAILURE_BYTES:
            state.failures.append(failure)


def _json_size(failure: BackfillFailure) -> int:
    """As the SDK serialises the state: ASCII-escaped."""
    return len(json.dumps(failure.model_dump()))


def _backfill_progress(context: df.DurableOrchestrationContext, state: BackfillState) -> dict[str, Any]:
    """Counters, rate and ETA; from the orchestration clock only, so replays compute the same."""
    now = context.current_utc_datetime
    elapsed = (now - parse_instant(state.started_at, "startedAt")).total_seconds()
    rate = state.counts.done / elapsed if elapsed > 0 else None
    remaining = state.count - state.counts.done
    eta = None if rate is None or not rate else now + timedelta(seconds=remaining / rate)
    return {
        "windows": state.count,
        **state.counts.model_dump(),
        "windowsPerSecond": round(rate, 3) if rate is not None else None,
        "etaSeconds": round(remaining / rate) if rate else None,
        "eta": isoformat(eta) if eta is not None else None,
        "startedAt": state.started_at,
        "manifest": state.manifest,
    }


def _backfill_status(context: df.DurableOrchestrationContext, state: BackfillState, in_flight: int) -> None:
    context.set_custom_status(
        {**_backfill_progress(context, state), "inFlight": in_flight, "batch": state.batch}
    )


def _backfill_summary(context: df.DurableOrchestrationContext, state: BackfillState) -> dict[str, Any]:
    progress = _backfill_progress(context, state)
    del progress["eta"], progress["etaSeconds"]
    return {
        **progress,
        "source": state.template.source,
        "from": state.start,
        "to": state.end,
        "every": state.every,
        "batches": state.batch,
        "failures": [f.model_dump() for f in state.failures],
        "finishedAt": isoformat(context.current_utc_datetime),
    }


def _report(context: df.DurableOrchestrationContext, state: IngestState) -> None:
    context.set_custom_status(
        {
            "parts": state.part_count,
            "records": state.records,
            "pages": sum(seg.pages for seg in state.segments),
            "segments": len(state.segments),
            "executions": state.executions,
        }
    )
