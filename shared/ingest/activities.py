"""The activities: all of a run's I/O, each small-in and small-out and secret-free across history.

plan_window decides where a window lands and what is already there; fetch_part is "pages of the
gateway client into one part writer"; finalize publishes the manifest, then `_SUCCESS`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shared import __version__
from shared.errors import BridgeError, LandingError
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
from shared.landing.parts import Checkpoint, PartInfo, PartWriter
from shared.landing.stage import Stage
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
            # A warning, not an error: the run's own failure reports it (once, on the CLI's stderr).
            log.warning("%s failed permanently: %s", fn.__name__, exc)
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
    # While the plan reads storage: the first page would otherwise wait a quarter of a second
    # for the credential clients of a fresh process (bench/RESULTS.md, issue 14).
    runtime.prepare(source)
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
    claimed = True
    if manifest is not None and not complete:
        # A manifest never marked by _SUCCESS (a kill between the two): finish that generation,
        # whose parts are all committed; it is not ours to clean up if we lose.
        generation, claimed = int(manifest.get("generation", 1)), False
    else:
        generation = _claim_generation(
            landing, prefix, int((manifest or {}).get("generation", 0)) + 1, plan
        )
    folder = layout.generation_folder(generation)
    previous = None if manifest is None else manifest.get("generationFolder", "")
    # A generation whose manifest is written holds exactly that manifest's parts, all committed:
    # every one is gone on from, chained or not (empty pages between two parts break a chain).
    # Refetching would rewrite parts a written manifest lists, in a folder that is not ours.
    landed = landing.landed_parts(prefix, folder)
    resumed = layout.resume(landed, segments, folder, source.output.format, chained=claimed)
    return PlanResult(
        prefix=prefix,
        complete=False,
        generation=generation,
        folder=folder,
        previous_folder=previous,
        manifest_etag=etag,
        claimed=claimed,
        segments=segments,
        resumed_parts=len(resumed),
        resumed_records=sum(part.records for part in resumed),
    ).model_dump()


#: Claims tried past the published generation before giving up (each is one small blob).
_MAX_CLAIMS = 1000


def _claim_generation(landing: Landing, prefix: str, first: int, plan: PlanInput) -> int:
    """The first generation from `first` on that this run owns: one it claimed before (so a
    rerun of the same instance from the same journal resumes its parts), or a fresh one."""
    me = {"instanceId": plan.instance_id, "owner": plan.owner}
    for generation in range(first, first + _MAX_CLAIMS):
        path = layout.claim_path(prefix, generation)
        claim = {**me, "pipelineRunId": plan.pipeline_run_id, "claimedAt": isoformat(datetime.now(UTC))}
        if landing.create_json(path, claim):
            return generation
        existing = landing.read_json(path) or {}
        if plan.instance_id is not None and all(existing.get(k) == v for k, v in me.items()):
            return generation
    raise LandingError(
        f"{prefix}: {_MAX_CLAIMS} generations claimed since the published one and none of them ours; "
        "remove stale claims under _generations/",
        retryable=False,
    )


@activity
def fetch_part(payload: dict[str, Any]) -> dict[str, Any]:
    """Fetch pages from the cursor and land them as parts: up to output.parts_per_activity, for
    output.activity_seconds at most (the part under way then ends at its page), each committed on
    a stage of its own while the next part's pages are fetched."""
    started = time.monotonic()
    job = FetchPartInput.model_validate(payload)
    runtime = current()
    source = runtime.source(job.source)
    window = Window.from_json(job.window)
    run = RunContext(job.pipeline_run_id, job.instance_id, job.pipeline_name)
    session = runtime.role_session(source, job.role_arn, job.session_name)
    client = runtime.gateway_client(source, window.query_params(source.window), run, session)
    landing = runtime.landing_for(source)
    metadata = {
        "source": source.name,
        "window_from": job.window["from"],
        "window_to": job.window["to"],
        "pipeline_run_id": job.pipeline_run_id,
        "instance_id": job.instance_id,
    }
    cursor, after, trail, index = job.cursor, job.pages_before, job.trail, job.part_index
    done = False
    pages = records = 0
    landed: list[PartInfo] = []
    # A dry run fetches one page (max_pages): one part.
    most = 1 if job.max_pages else source.output.parts_per_activity
    ends_at = started + source.output.activity_seconds
    # depth 1: one part commits while the next is written, so memory is two parts' buffers at most.
    commits = Stage(f"commits {job.part_index}", depth=1)
    writers: list[PartWriter] = []
    try:
        for number in range(1, most + 1):
            writer = landing.part_writer(
                job.prefix,
                f"{job.folder}{layout.part_name(index, job.segment, source.output.format)}",
                metadata,
                source.output.format,
                source.output.parquet_compression,
            )
            # The one before may still be committing; any earlier one is done (the stage holds one).
            writers = [*writers[-1:], writer]
            walk = client.pages(
                cursor,
                after_page=after,
                max_pages=job.max_pages or source.output.pages_per_part,
                enough=functools.partial(_enough, writer, source.output.max_part_bytes, ends_at),
                trail=trail,
            )
            for page in walk:
                writer.write(page.records, page.request_id, page=page.number, texts=page.texts)
            checkpoint = Checkpoint(
                window=job.window,
                next_cursor=walk.next_cursor,
                pages_before=after,
                pages_after=walk.last_page,
                done=walk.done,
            )
            last = walk.done or number == most or time.monotonic() >= ends_at
            if writer.records:
                if last:  # nothing left to overlap with
                    commits.drain()
                    _commit(writer, checkpoint, source.name, landed)
                else:
                    commits.submit(_commit, writer, checkpoint, source.name, landed)
                index += 1
            pages, records = pages + walk.fetched, records + writer.records
            cursor, after, trail, done = walk.next_cursor, walk.last_page, walk.trail, walk.done
            if last:
                break
        commits.drain()
    finally:
        commits.close()  # after a failure: the commit under way finishes, none queued starts
        for writer in writers:
            writer.close()  # idempotent; stops the encoder's stage of a part never committed
    return FetchPartResult(
        part=landed[-1] if landed else None,
        parts=len(landed),
        next_cursor=cursor,
        done=done,
        pages=pages,
        records=records,
        trail=trail,
    ).model_dump()


def _enough(writer: PartWriter, max_part_bytes: int, ends_at: float) -> bool:
    """Whether the walk ends the part here: it holds max_part_bytes (before compression), or the
    activity's output.activity_seconds are over (monotonic `ends_at`).

    Cut by time, a retry may end its parts elsewhere than the attempt before it: parts are
    overwritten by index, and a later run goes on only from parts that chain (layout.resume)."""
    return writer.uncompressed >= max_part_bytes or time.monotonic() >= ends_at


def _commit(writer: PartWriter, checkpoint: Checkpoint, source: str, landed: list[PartInfo]) -> None:
    """Commit a part (on the commit stage, in order) and count it."""
    part = writer.commit(checkpoint)
    landed.append(part)
    tracing.part_landed(source, part)


@activity
def finalize(payload: dict[str, Any]) -> dict[str, Any]:
    """Write the manifest, remove parts no attempt of this run committed, then write `_SUCCESS`."""
    job = FinalizeInput.model_validate(payload)
    state = job.state
    runtime = current()
    source = runtime.source(state.source)
    landing = runtime.landing_for(source)
    prefix = state.prefix or ""
    state.parts = _committed_parts(landing, prefix, state, source.output.format)
    now = datetime.now(UTC)
    previous: dict[str, Any] | None = None
    if not state.dry_run:
        previous, etag = landing.read_json_versioned(f"{prefix}/{MANIFEST}")
        if etag != state.manifest_etag:
            if previous is not None and _published_by_me(previous, state, job.instance_id):
                # A retried finalize whose manifest write went through: finish with the marker.
                records = previous["totals"]["records"]
                landing.write_success(prefix, {"manifest": MANIFEST, "records": records})
                return layout.summarize(previous, skipped=False)
            raise _lost(landing, prefix, state, previous)
    kept = layout.kept_generations(previous, state.generation, now, source.output.keep_replaced_for)
    _remove_unlisted_parts(landing, prefix, state, [], only_strays=True)
    totals = {
        "parts": len(state.parts),
        "records": sum(p.records for p in state.parts),
        "bytes": sum(p.bytes for p in state.parts),
        "uncompressedBytes": sum(p.uncompressed_bytes for p in state.parts),
        "pages": sum(seg.pages for seg in state.segments),
    }
    parts = _with_columns(landing, prefix, state.parts)
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
        "publishedAt": isoformat(now),
        "replaced": kept,
        "parts": [p.model_dump() for p in sorted(parts, key=lambda part: part.name)],
        "format": source.output.format,
        "columns": _window_columns(parts),
        "segments": len(state.segments),
        "totals": totals,
        "startedAt": state.started_at,
        "finishedAt": isoformat(datetime.now(UTC)),
        "appVersion": __version__,
    }
    # Conditional on the manifest we planned against: a second writer loses instead of mixing.
    try:
        landing.write_json(
            f"{prefix}/{MANIFEST}",
            manifest,
            etag=None if state.dry_run else state.manifest_etag,
            new=not state.dry_run and state.manifest_etag is None,
        )
    except LandingError as exc:
        if exc.retryable:  # storage failed and decided nothing: the activity's retry reads what is there
            raise
        current_manifest = landing.read_json(f"{prefix}/{MANIFEST}")
        # A lost condition can be our own write: its answer lost, the storage SDK's retry met it.
        if current_manifest is None or not _published_by_me(current_manifest, state, job.instance_id):
            raise _lost(landing, prefix, state, current_manifest) from None
    landing.write_success(prefix, {"manifest": MANIFEST, "records": totals["records"]})
    # Only now, with readers switched: generations replaced longer ago than the grace go.
    _remove_unlisted_parts(landing, prefix, state, [entry["folder"] for entry in kept])
    return layout.summarize(manifest, skipped=False)


def _committed_parts(landing: Landing, prefix: str, state: IngestState, extension: str) -> list[PartInfo]:
    """This run's parts, read back from their checkpoints (the orchestration only counts them).

    Each segment's parts 0..next_part-1 in the generation folder; parts past those are strays.
    """
    fresh = [Segment(index=seg.index, window=seg.window) for seg in state.segments]
    # Not chained: these are the parts this run committed, in order, counted by the orchestration.
    landed = landing.landed_parts(prefix, state.folder)
    found = layout.resume(landed, fresh, state.folder, extension, chained=False)
    parts: list[PartInfo] = []
    offset = 0
    for seen, mine in zip(fresh, state.segments, strict=True):
        if seen.next_part < mine.next_part:
            raise LandingError(
                f"{prefix}: segment {mine.index} committed {mine.next_part} parts in "
                f"{state.folder or 'the window folder'} but only {seen.next_part} are there; "
                "rerun the window",
                retryable=False,
            )
        parts += found[offset : offset + mine.next_part]
        offset += seen.next_part
    return parts


def _published_by_me(manifest: dict[str, Any], state: IngestState, instance_id: str) -> bool:
    return (
        manifest.get("instanceId") == instance_id
        and manifest.get("generation") == state.generation
        and manifest.get("generationFolder") == state.folder
        and sorted(p.get("sha256") for p in manifest.get("parts", []))
        == sorted(p.sha256 for p in state.parts)
    )


def _lost(landing: Landing, prefix: str, state: IngestState, winner: dict[str, Any] | None) -> LandingError:
    """The race is lost: another run published meanwhile. Our own generation's parts go."""
    if state.claimed:
        for name in landing.list_names(f"{prefix}/{state.folder}" if state.folder else prefix):
            relative = name[len(prefix) + 1 :]
            own = relative.startswith(state.folder) and relative.count("/") == state.folder.count("/")
            if own and relative.rsplit("/", 1)[-1].startswith("part-"):
                landing.delete(name)
    other = winner or {}
    return LandingError(
        f"{prefix} was published by another run meanwhile (instance {other.get('instanceId')}, "
        f"pipeline run {other.get('pipelineRunId')}, generation {other.get('generation')}, "
        f"at {other.get('publishedAt', other.get('finishedAt'))}); this run's generation "
        f"{state.generation} is discarded, not published",
        retryable=False,
    )


def _remove_unlisted_parts(
    landing: Landing, prefix: str, state: IngestState, kept: list[str], *, only_strays: bool = False
) -> None:
    listed = {part.name for part in state.parts}
    names = landing.list_names(prefix)
    for name in layout.unlisted_parts(names, prefix, listed, state.folder, kept, only_strays=only_strays):
        log.info("removing %s (not part of the generation being published)", name)
        landing.delete(name)


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


def _with_columns(landing: Landing, prefix: str, parts: list[PartInfo]) -> list[PartInfo]:
    """Parts with their columns: a resumed Parquet part whose schema was too wide for its
    checkpoint metadata gets them from its file's footer (a few KiB read, not the part)."""
    missing = [p for p in parts if p.columns is None and p.name.endswith(".parquet")]
    if not missing:
        return parts
    from shared.landing.parquet import footer_columns  # pyarrow is loaded only where Parquet is used

    filled = {}
    for part in missing:
        path = f"{prefix}/{part.name}"
        columns = footer_columns(functools.partial(landing.read_tail, path))
        filled[part.name] = part.model_copy(update={"columns": columns})
    return [filled.get(p.name, p) for p in parts]


def _window_columns(parts: list[PartInfo]) -> dict[str, str] | None:
    """The window's columns (Parquet): its parts' schemas merged by the parts' own promotion rules."""
    ordered = sorted(parts, key=lambda part: part.name)
    schemas = [(part.name, part.columns) for part in ordered if part.columns is not None]
    if not schemas:
        return None
    from shared.landing.parquet import merge_schemas  # pyarrow is loaded only where Parquet is used

    return merge_schemas(schemas)
