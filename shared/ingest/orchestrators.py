"""The ingest orchestrator and its activities, as plain Python.

`function_app.py` wires these to Durable Functions triggers; the CLI and the tests drive the
very same functions through azure-functions-durable's replay engine (see `shared.durable.engine`).
The orchestrator is deterministic: no I/O, no clock but `context.current_utc_datetime`, no
randomness. All work happens in activities, whose inputs and outputs are small and secret-free.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Generator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.durable_functions as df

from shared import __version__
from shared.durable.engine import Engine, JournalStore
from shared.errors import BridgeError, PaginationError, RequestError
from shared.gateway.client import RunContext
from shared.identity.sts import session_name_for
from shared.ingest.payloads import (
    ActivityRetry,
    BackfillRequest,
    BackfillState,
    FetchPartInput,
    FetchPartResult,
    FinalizeInput,
    IngestRequest,
    IngestState,
    PlanInput,
    PlanResult,
    Segment,
)
from shared.ingest.window import Window, isoformat
from shared.landing.blobs import MANIFEST, SUCCESS, Landing, generation_folder, part_name
from shared.observability import tracing
from shared.runtime import Runtime, current

log = logging.getLogger(__name__)

INGEST_ORCHESTRATOR = "ingest_orchestrator"
BACKFILL_ORCHESTRATOR = "backfill_orchestrator"
PLAN_WINDOW = "plan_window"
FETCH_PART = "fetch_part"
FINALIZE = "finalize"


class RunFailed(Exception):
    """An activity reported a permanent failure; the orchestration ends with its message."""


def _settled(result: Any) -> Any:
    """An activity's result, or the permanent failure it reported, raised in the orchestrator."""
    if isinstance(result, dict) and set(result) == {"error"}:
        raise RunFailed(result["error"])
    return result


def activity(fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Report permanent errors as a result, so Durable's RetryOptions only retry transient ones."""

    @functools.wraps(fn)
    def run(payload: dict[str, Any]) -> dict[str, Any]:
        try:
            with tracing.activity_span(fn.__name__, payload):
                return fn(payload)
        except BridgeError as exc:
            if exc.retryable:
                raise
            log.error("%s failed permanently: %s", fn.__name__, exc)
            return {"error": str(exc)}

    return run


# --- starting a run ---------------------------------------------------------------------------


def instance_id_for(environment: str, source: str, window: Window, *, dry_run: bool = False) -> str:
    """Deterministic: two triggers for the same window attach to the same run."""
    return f"{'dryrun-' if dry_run else ''}{environment}-{source}-{window.folder}"


def prepare_ingest(request: IngestRequest, runtime: Runtime) -> tuple[str, IngestState]:
    """Validate a request against the catalog and build the orchestrator's input and instance id."""
    source = runtime.source(request.source)
    window = Window.parse(request.window.start, request.window.end)
    window.check_span(source.window, source.name)
    environment = runtime.settings.environment.value
    instance_id = instance_id_for(environment, source.name, window, dry_run=request.dry_run)
    session = runtime.role_session(source, None, None)
    role_arn = None
    session_name = None
    if session is not None:
        role_arn = source.auth.role_for(request.pipeline_name, source.name)  # type: ignore[union-attr]
        session_name = session_name_for(request.pipeline_run_id, instance_id)
    state = IngestState(
        source=source.name,
        window=window.to_json(),
        pipeline_run_id=request.pipeline_run_id or instance_id,
        pipeline_name=request.pipeline_name,
        mode=request.mode,
        dry_run=request.dry_run,
        role_arn=role_arn,
        session_name=session_name,
        retry=ActivityRetry(
            attempts=source.retry.activity_attempts,
            first_retry_ms=int(source.retry.activity_first_retry_seconds * 1000),
        ),
        parts_per_execution=source.output.parts_per_execution,
        max_parallel_segments=source.window.max_parallel_segments,
    )
    return instance_id, state


MAX_BACKFILL_WINDOWS = 1000


def backfill_instance_id(environment: str, source: str, window: Window, every: str) -> str:
    return f"backfill-{environment}-{source}-{window.folder}-{every}"


def prepare_backfill(request: BackfillRequest, runtime: Runtime) -> tuple[str, BackfillState]:
    """Split the range into windows and build the backfill orchestrator's input."""
    whole = Window.parse(request.start, request.end)
    count = -(-whole.span // request.every)  # counted before splitting: a hostile range can be huge
    if count > MAX_BACKFILL_WINDOWS:
        raise RequestError(
            "every", f"splits the range into {count} windows, more than {MAX_BACKFILL_WINDOWS}; widen it"
        )
    windows = whole.split(request.every)
    first = IngestRequest.model_validate(
        {
            "source": request.source,
            "window": windows[0].to_json(),
            "pipelineRunId": request.pipeline_run_id,
            "pipelineName": request.pipeline_name,
            "mode": request.mode,
        }
    )
    _, template = prepare_ingest(first, runtime)  # validates source, span, role once for all
    environment = runtime.settings.environment.value
    every = _duration(request.every)
    instance_id = backfill_instance_id(environment, template.source, whole, every)
    if request.pipeline_run_id is None:
        template.pipeline_run_id = instance_id
    return instance_id, BackfillState(
        template=template,
        windows=[w.to_json() for w in windows],
        instance_ids=[instance_id_for(environment, template.source, w) for w in windows],
        max_parallel=request.max_parallel,
    )


def _duration(every: timedelta) -> str:
    seconds = int(every.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    time_part = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    return f"P{f'{days}D' if days else ''}{f'T{time_part}' if time_part else ''}"


# --- the orchestrators -------------------------------------------------------------------------


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
                            pipeline_run_id=state.pipeline_run_id,
                            instance_id=context.instance_id,
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
                    pipeline_run_id=state.pipeline_run_id,
                    pipeline_name=state.pipeline_name,
                    instance_id=context.instance_id,
                    role_arn=state.role_arn,
                    session_name=state.session_name,
                    max_pages=1 if state.dry_run else None,
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
            "records": sum(int(p["records"]) for p in state.parts),
            "pages": sum(seg.pages for seg in state.segments),
            "segments": len(state.segments),
            "executions": state.executions,
        }
    )


# --- activities -------------------------------------------------------------------------------


@activity
def plan_window(payload: dict[str, Any]) -> dict[str, Any]:
    """Decide where the window lands and whether there is anything to do.

    skip-if-complete: a window with `_SUCCESS` is returned as it is. replace: a new generation
    is landed beside the current one, which stays readable until the manifest switches. Either
    way, parts an earlier attempt committed in the target generation are resumed from.
    """
    plan = PlanInput.model_validate(payload)
    runtime = current()
    source = runtime.source(plan.source)
    window = Window.from_json(plan.window)
    prefix = window_prefix(runtime, source.name, window, dry_run=plan.dry_run)
    landing = runtime.landing_for(source)
    landing.ensure_container()
    pieces = window.split(source.window.segment) if source.window.segment else [window]
    if plan.dry_run:
        return PlanResult(prefix=prefix, complete=False, segments=_segments(pieces)).model_dump()
    manifest, etag = landing.read_json_versioned(f"{prefix}/{MANIFEST}")
    complete = manifest is not None and landing.exists(f"{prefix}/{SUCCESS}")
    if complete and plan.mode == "skip-if-complete":
        log.info("window %s already landed; skipping", prefix)
        return PlanResult(
            prefix=prefix, complete=True, summary=summarize(manifest or {}, skipped=True)
        ).model_dump()
    current_generation = int((manifest or {}).get("generation", 1))
    previous: str | None
    if complete:  # replace: land the next generation beside the published one
        generation, previous = current_generation + 1, generation_folder(current_generation)
    elif manifest is not None:  # a manifest never published by _SUCCESS: finish that generation
        generation, previous = current_generation, (manifest or {}).get("previousFolder")
    else:
        generation, previous = 1, None
    folder = generation_folder(generation)
    segments = _segments(pieces)
    resumed = _resume(landing.landed_parts(prefix, folder), segments, folder)
    return PlanResult(
        prefix=prefix,
        complete=False,
        generation=generation,
        folder=folder,
        previous_folder=previous,
        manifest_etag=etag,
        segments=segments,
        resumed_parts=resumed,
    ).model_dump()


def _segments(pieces: list[Window]) -> list[Segment]:
    return [Segment(index=i, window=piece.to_json()) for i, piece in enumerate(pieces)]


def _resume(
    landed: list[tuple[str, dict[str, Any] | None]], segments: list[Segment], folder: str
) -> list[dict[str, Any]]:
    """Move each segment past the longest run of parts 0..n-1 an earlier attempt committed for it.

    Returns those parts' manifest entries; the segments are updated in place.
    """
    checkpoints = dict(landed)
    segmented = len(segments) > 1
    resumed: list[dict[str, Any]] = []
    for seg in segments:
        while True:
            name = f"{folder}{part_name(seg.next_part, seg.index if segmented else None)}"
            checkpoint = checkpoints.get(name)
            if (
                not checkpoint
                or checkpoint.get("window") != seg.window
                or not isinstance(checkpoint.get("part"), dict)
            ):
                break
            resumed.append(checkpoint["part"])
            seg.next_part += 1
            seg.cursor = checkpoint.get("next_cursor")
            seg.pages = int(checkpoint.get("pages_after", 0))
            seg.fetched = bool(checkpoint.get("done"))
    if resumed:
        log.info("resuming after %d landed parts", len(resumed))
    return resumed


@activity
def fetch_part(payload: dict[str, Any]) -> dict[str, Any]:
    """Fetch up to a part's worth of pages from the cursor and land them as one part."""
    job = FetchPartInput.model_validate(payload)
    runtime = current()
    source = runtime.source(job.source)
    window = Window.from_json(job.window)
    run = RunContext(job.pipeline_run_id, job.instance_id, job.pipeline_name)
    session = runtime.role_session(source, job.role_arn, job.session_name)
    client = runtime.gateway_client(source, window, run, session)
    writer = runtime.landing_for(source).part_writer(
        job.prefix,
        f"{job.folder}{part_name(job.part_index, job.segment)}",
        {
            "source": source.name,
            "window_from": job.window["from"],
            "window_to": job.window["to"],
            "pipeline_run_id": job.pipeline_run_id,
            "instance_id": job.instance_id,
        },
    )
    max_pages = job.max_pages or source.output.pages_per_part
    cursor, seen = job.cursor, {job.cursor}
    number, pages, done = job.pages_before, 0, False
    while pages < max_pages and writer.uncompressed < source.output.max_part_bytes:
        number += 1
        if number > source.pagination.max_pages:
            raise PaginationError(
                f"window needs more than {source.pagination.max_pages} pages (pagination.max_pages); "
                "a looping API or a window that should be split",
                source=source.name,
                page=number,
            )
        page = client.fetch(cursor, number)
        writer.write(page.records, page.request_id, nonstandard_json=page.nonstandard_json)
        pages += 1
        if page.next_cursor is None or (not page.records and source.pagination.stop_on_empty_page):
            done = True
            break
        if page.next_cursor in seen:
            raise PaginationError(
                "the API returned a next cursor it already returned; refusing to loop",
                source=source.name,
                page=number,
                request_id=page.request_id,
            )
        seen.add(page.next_cursor)
        cursor = page.next_cursor
    checkpoint = {
        "window": job.window,
        "next_cursor": None if done else cursor,
        "pages_after": number,
        "done": done,
    }
    part = writer.commit(checkpoint).to_json() if writer.records else None
    tracing.part_landed(source.name, part)
    return FetchPartResult(
        part=part, next_cursor=None if done else cursor, done=done, pages=pages, records=writer.records
    ).model_dump()


@activity
def finalize(payload: dict[str, Any]) -> dict[str, Any]:
    """Write the manifest, remove parts no attempt of this run committed, then write `_SUCCESS`."""
    job = FinalizeInput.model_validate(payload)
    state = job.state
    runtime = current()
    source = runtime.source(state.source)
    landing = runtime.landing_for(source)
    prefix = state.prefix or ""
    _remove_unlisted_parts(landing, prefix, state)
    totals = {
        "parts": len(state.parts),
        "records": sum(int(p["records"]) for p in state.parts),
        "bytes": sum(int(p["bytes"]) for p in state.parts),
        "uncompressedBytes": sum(int(p["uncompressed_bytes"]) for p in state.parts),
        "pages": sum(seg.pages for seg in state.segments),
    }
    manifest: dict[str, Any] = {
        "source": source.name,
        "environment": runtime.settings.environment.value,
        "window": state.window,
        "mode": state.mode,
        "dryRun": state.dry_run,
        "pipelineName": state.pipeline_name,
        "pipelineRunId": state.pipeline_run_id,
        "instanceId": job.instance_id,
        "roleArn": state.role_arn,
        "sessionName": state.session_name,
        "container": landing.container_name,
        "prefix": prefix,
        "generation": state.generation,
        "generationFolder": state.folder,
        "previousFolder": state.previous_folder,
        "parts": sorted(state.parts, key=lambda part: str(part["name"])),
        "segments": len(state.segments),
        "totals": totals,
        "startedAt": state.started_at,
        "finishedAt": isoformat(datetime.now(UTC)),
        "appVersion": __version__,
    }
    # Conditional on the manifest we planned against: a second writer loses instead of mixing.
    landing.write_json(
        f"{prefix}/{MANIFEST}",
        manifest,
        etag=None if state.dry_run else state.manifest_etag,
        new=not state.dry_run and state.manifest_etag is None,
    )
    landing.write_success(prefix, {"manifest": MANIFEST, "records": totals["records"]})
    return summarize(manifest, skipped=False)


def _remove_unlisted_parts(landing: Landing, prefix: str, state: IngestState) -> None:
    """Strays of this generation, and generations older than the one readers may still be reading."""
    listed = {part["name"] for part in state.parts}
    keep = {state.folder, state.previous_folder}
    for name in landing.list_names(prefix):
        relative = name[len(prefix) + 1 :]
        leaf = relative.rsplit("/", 1)[-1]
        if not leaf.startswith("part-"):
            continue
        folder = relative[: len(relative) - len(leaf)]
        if (folder == state.folder and relative not in listed) or folder not in keep:
            log.info("removing %s (not part of the generation being published)", name)
            landing.delete(name)


def window_prefix(runtime: Runtime, source: str, window: Window, *, dry_run: bool = False) -> str:
    """<env>/<source>/<from>_<to>, under _dryrun/ for dry runs."""
    path = f"{runtime.settings.environment.value}/{source}/{window.folder}"
    return f"_dryrun/{path}" if dry_run else path


def summarize(manifest: dict[str, Any], *, skipped: bool) -> dict[str, Any]:
    """The run result ADF sees: where the data is, how much, and how to trace it."""
    prefix = manifest["prefix"]
    parts = manifest.get("parts", [])
    return {
        "status": "skipped-already-landed" if skipped else "landed",
        "source": manifest["source"],
        "window": manifest["window"],
        "container": manifest["container"],
        "prefix": prefix,
        "manifest": f"{prefix}/{MANIFEST}",
        "success": f"{prefix}/{SUCCESS}",
        "parts": [f"{prefix}/{p['name']}" for p in parts],
        "records": manifest["totals"]["records"],
        "bytes": manifest["totals"]["bytes"],
        "uncompressedBytes": manifest["totals"].get("uncompressedBytes"),
        "pages": manifest["totals"]["pages"],
        "instanceId": manifest["instanceId"],
        "pipelineRunId": manifest["pipelineRunId"],
        "firstRequestId": parts[0]["first_request_id"] if parts else None,
        "lastRequestId": parts[-1]["last_request_id"] if parts else None,
    }


def engine(state_dir: Path | None) -> Engine:
    """The in-process Durable backend with this app's orchestrators and activities registered."""
    return Engine(
        {INGEST_ORCHESTRATOR: ingest_orchestrator, BACKFILL_ORCHESTRATOR: backfill_orchestrator},
        {PLAN_WINDOW: plan_window, FETCH_PART: fetch_part, FINALIZE: finalize},
        JournalStore(state_dir),
    )


__all__ = [
    "BACKFILL_ORCHESTRATOR",
    "FETCH_PART",
    "FINALIZE",
    "INGEST_ORCHESTRATOR",
    "PLAN_WINDOW",
    "backfill_orchestrator",
    "engine",
    "fetch_part",
    "finalize",
    "ingest_orchestrator",
    "instance_id_for",
    "plan_window",
    "prepare_backfill",
    "prepare_ingest",
]
