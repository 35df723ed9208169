"""The orchestrators: deterministic, replay-safe, and small in what they carry.

`function_app.py` wires these to Durable Functions triggers; the CLI and the tests drive the
very same functions through azure-functions-durable's replay engine (shared.durable). No I/O,
no clock but `context.current_utc_datetime`, no randomness: all work happens in activities
(shared.ingest.activities), whose inputs and outputs are small and secret-free.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from shared.errors import RunFailed
from shared.ingest.activities import FAILURE
from shared.ingest.payloads import (
    BackfillState,
    FetchPartInput,
    FetchPartResult,
    FinalizeInput,
    IngestState,
    PlanInput,
    PlanResult,
)
from shared.timestamps import isoformat

INGEST_ORCHESTRATOR = "ingest_orchestrator"
BACKFILL_ORCHESTRATOR = "backfill_orchestrator"
PLAN_WINDOW = "plan_window"
FETCH_PART = "fetch_part"
FINALIZE = "finalize"


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
                            **state.correlation(context.instance_id),
                        ).model_dump(),
                    )
                )
            )
        )
        if plan.complete and plan.summary is not None:
            return plan.summary
        state.planned = True
        state.prefix = plan.prefix
        state.generation, state.folder = plan.generation, plan.folder
        state.previous_folder, state.manifest_etag = plan.previous_folder, plan.manifest_etag
        state.segments, state.parts = plan.segments, plan.resumed_parts
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
                    **state.correlation(context.instance_id),
                ).model_dump(),
            )
            for seg in batch
        ]
        outcomes = yield context.task_all(tasks)
        for seg, outcome in zip(batch, outcomes, strict=True):
            result = FetchPartResult.model_validate(_settled(outcome))
            seg.pages += result.pages
            seg.cursor = result.next_cursor
            seg.fetched = result.done
            if result.part is not None:
                state.parts.append(result.part)
                seg.next_part += 1
                parts_this_execution += 1
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

    Windows already landed finish at once (their ingest skips them), so re-running a
    half-finished backfill only fetches what is missing.
    """
    backfill = BackfillState.model_validate(context.get_input())
    outcomes: dict[int, dict[str, Any]] = {}
    pending: dict[Any, int] = {}
    queue = list(range(len(backfill.windows)))
    while queue or pending:
        while queue and len(pending) < backfill.max_parallel:
            index = queue.pop(0)
            child = backfill.template.model_copy(update={"window": backfill.windows[index]})
            task = context.call_sub_orchestrator(
                INGEST_ORCHESTRATOR, child.model_dump(), backfill.instance_ids[index]
            )
            pending[task] = index
        finished = yield context.task_any(list(pending))
        index = pending.pop(finished)
        outcomes[index] = _window_outcome(backfill, index, finished.result)
        context.set_custom_status({"windows": len(backfill.windows), "done": len(outcomes)})
    results = [outcomes[i] for i in range(len(backfill.windows))]
    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        raise RunFailed(
            f"{len(failed)} of {len(results)} windows failed; first: {failed[0]['window']['from']}: "
            f"{failed[0]['error']}; rerun the backfill to retry only those"
        )
    return {
        "source": backfill.template.source,
        "windows": results,
        "landed": sum(1 for r in results if r["status"] == "landed"),
        "skipped": sum(1 for r in results if r["status"] == "skipped-already-landed"),
        "records": sum(int(r.get("records") or 0) for r in results),
    }


def _window_outcome(backfill: BackfillState, index: int, result: Any) -> dict[str, Any]:
    outcome: dict[str, Any] = {"window": backfill.windows[index], "instanceId": backfill.instance_ids[index]}
    if isinstance(result, Exception):
        return {**outcome, "status": "failed", "error": " ".join(str(result).split())}
    return {
        **outcome,
        "status": result.get("status"),
        "records": result.get("records"),
        "prefix": result.get("prefix"),
    }


def _report(context: df.DurableOrchestrationContext, state: IngestState) -> None:
    context.set_custom_status(
        {
            "parts": len(state.parts),
            "records": sum(p.records for p in state.parts),
            "pages": sum(seg.pages for seg in state.segments),
            "segments": len(state.segments),
            "executions": state.executions,
        }
    )
