"""The activities: all of a run's I/O, each small-in and small-out and secret-free across history.

plan_window decides where a window lands and what is already there; fetch_part is "pages of the
gateway client into one part writer"; finalize publishes the manifest, then `_SUCCESS`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shared import __version__
from shared.errors import BridgeError
from shared.gateway.client import RunContext
from shared.ingest import layout
from shared.ingest.payloads import (
    BackfillRecordInput,
    FetchPartInput,
    FetchPartResult,
    FinalizeInput,
    IngestState,
    PlanInput,
    PlanResult,
    Segment,
)
from shared.ingest.window import Window
from shared.landing.blobs import MANIFEST, SUCCESS, Landing
from shared.landing.parts import Checkpoint, PartInfo
from shared.observability import tracing
from shared.runtime import current
from shared.timestamps import isoformat

log = logging.getLogger(__name__)

#: The key of an activity result that reports a permanent failure instead of raising.
FAILURE = "error"


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
            return {FAILURE: str(exc)}

    return run


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
    prefix = layout.window_prefix(
        runtime.settings.environment.value, source.name, window, dry_run=plan.dry_run
    )
    landing = runtime.landing_for(source)
    landing.ensure_container()
    pieces = window.split(source.window.segment) if source.window.segment else [window]
    segments = [Segment(index=i, window=piece.to_json()) for i, piece in enumerate(pieces)]
    if plan.dry_run:
        return PlanResult(prefix=prefix, complete=False, segments=segments).model_dump()
    manifest, etag = landing.read_json_versioned(f"{prefix}/{MANIFEST}")
    complete = manifest is not None and landing.exists(f"{prefix}/{SUCCESS}")
    if complete and plan.mode == "skip-if-complete":
        log.info("window %s already landed; skipping", prefix)
        return PlanResult(
            prefix=prefix, complete=True, summary=layout.summarize(manifest or {}, skipped=True)
        ).model_dump()
    current_generation = int((manifest or {}).get("generation", 1))
    previous: str | None
    if complete:  # replace: land the next generation beside the published one
        generation, previous = current_generation + 1, layout.generation_folder(current_generation)
    elif manifest is not None:  # a manifest never published by _SUCCESS: finish that generation
        generation, previous = current_generation, (manifest or {}).get("previousFolder")
    else:
        generation, previous = 1, None
    folder = layout.generation_folder(generation)
    resumed = layout.resume(landing.landed_parts(prefix, folder), segments, folder, source.output.format)
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


@activity
def fetch_part(payload: dict[str, Any]) -> dict[str, Any]:
    """Fetch up to a part's worth of pages from the cursor and land them as one part."""
    job = FetchPartInput.model_validate(payload)
    runtime = current()
    source = runtime.source(job.source)
    window = Window.from_json(job.window)
    run = RunContext(job.pipeline_run_id, job.instance_id, job.pipeline_name)
    session = runtime.role_session(source, job.role_arn, job.session_name)
    client = runtime.gateway_client(source, window.query_params(source.window), run, session)
    writer = runtime.landing_for(source).part_writer(
        job.prefix,
        f"{job.folder}{layout.part_name(job.part_index, job.segment, source.output.format)}",
        {
            "source": source.name,
            "window_from": job.window["from"],
            "window_to": job.window["to"],
            "pipeline_run_id": job.pipeline_run_id,
            "instance_id": job.instance_id,
        },
        source.output.format,
    )
    walk = client.pages(
        job.cursor,
        after_page=job.pages_before,
        max_pages=job.max_pages or source.output.pages_per_part,
        enough=lambda: writer.uncompressed >= source.output.max_part_bytes,
    )
    for page in walk:
        writer.write(page.records, page.request_id, nonstandard_json=page.nonstandard_json, page=page.number)
    checkpoint = Checkpoint(
        window=job.window, next_cursor=walk.next_cursor, pages_after=walk.last_page, done=walk.done
    )
    part = writer.commit(checkpoint) if writer.records else None
    tracing.part_landed(source.name, part)
    return FetchPartResult(
        part=part, next_cursor=walk.next_cursor, done=walk.done, pages=walk.fetched, records=writer.records
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
        "records": sum(p.records for p in state.parts),
        "bytes": sum(p.bytes for p in state.parts),
        "uncompressedBytes": sum(p.uncompressed_bytes for p in state.parts),
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
        "parts": [p.model_dump() for p in sorted(state.parts, key=lambda part: part.name)],
        "format": source.output.format,
        "columns": _window_columns(state.parts),
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
    return layout.summarize(manifest, skipped=False)


def _remove_unlisted_parts(landing: Landing, prefix: str, state: IngestState) -> None:
    listed = {part.name for part in state.parts}
    for name in layout.unlisted_parts(
        landing.list_names(prefix), prefix, listed, state.folder, state.previous_folder
    ):
        log.info("removing %s (not part of the generation being published)", name)
        landing.delete(name)


def _window_columns(parts: list[PartInfo]) -> dict[str, str] | None:
    """The window's columns (Parquet): its parts' schemas merged by the parts' own promotion rules."""
    ordered = sorted(parts, key=lambda part: part.name)
    schemas = [(part.name, part.columns) for part in ordered if part.columns is not None]
    if not schemas:
        return None
    from shared.landing.parquet import merge_schemas  # pyarrow is loaded only where Parquet is used

    return merge_schemas(schemas)


@activity
def record_backfill(payload: dict[str, Any]) -> dict[str, Any]:
    """Write one batch of a backfill's per-window outcomes as its own manifest blob.

    One blob per batch, named by the batch number: a retried or replayed batch overwrites its
    own blob, so the folder holds each window's outcome once.
    """
    job = BackfillRecordInput.model_validate(payload)
    runtime = current()
    landing = runtime.landing_for(runtime.source(job.source))
    landing.write_json(job.path, {"backfill": job.backfill, "batch": job.batch, "windows": job.windows})
    return {"path": job.path, "windows": len(job.windows)}
