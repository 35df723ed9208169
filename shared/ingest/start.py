"""Starting a run: a caller's request checked against the catalog, turned into an instance id and input.

Instance ids are derived from what is being landed, so two triggers for the same window (or
the same backfill) attach to one run instead of starting two.
"""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import TypeAdapter

from shared.config.auth import AwsIamAuth
from shared.errors import RequestError
from shared.identity.sts import session_name_for
from shared.ingest.payloads import ActivityRetry, BackfillState, IngestState
from shared.ingest.requests import BackfillRequest, IngestRequest
from shared.ingest.window import Every, Window, count_windows, longest_window, window_at
from shared.runtime import Runtime

# Windows are derived, not listed, so the state does not grow with the count; the cap only stops
# a typo (PT1M over a decade) from queueing millions of runs.
MAX_BACKFILL_WINDOWS = 1_000_000
_DURATION = TypeAdapter(timedelta)


def instance_id_for(environment: str, source: str, window: Window, *, dry_run: bool = False) -> str:
    """Deterministic: two triggers for the same window attach to the same run."""
    return f"{'dryrun-' if dry_run else ''}{window_run_prefix(environment, source)}{window.folder}"


def window_run_prefix(environment: str, source: str) -> str:
    """What every window run of the source's instance ids starts with (instance_id_for)."""
    return f"{environment}-{source}-"


def is_window_run(instance_id: str, environment: str, source: str) -> bool:
    """Whether the id is a window run of this source: the prefix also begins the ids of a source
    whose name extends this one's (orders, orders-eu), so the rest must be a window's folder."""
    prefix = window_run_prefix(environment, source)
    return instance_id.startswith(prefix) and _WINDOW_FOLDER.fullmatch(instance_id[len(prefix) :]) is not None


_WINDOW_FOLDER = re.compile(r"\d{8}T\d{6}Z_\d{8}T\d{6}Z")  # Window.folder


def backfill_instance_id(environment: str, source: str, window: Window, every: str) -> str:
    return f"backfill-{environment}-{source}-{window.folder}-{every}"


def prepare_ingest(request: IngestRequest, runtime: Runtime) -> tuple[str, IngestState]:
    """Validate a request against the catalog and build the orchestrator's input and instance id."""
    source = runtime.source(request.source)
    window = Window.parse(request.window.start, request.window.end)
    window.check_span(source.window, source.name)
    environment = runtime.settings.environment.value
    instance_id = instance_id_for(environment, source.name, window, dry_run=request.dry_run)
    role_arn = session_name = None
    if isinstance(source.auth, AwsIamAuth):
        role_arn = source.auth.role_for(request.pipeline_name, source.name)
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


def prepare_backfill(request: BackfillRequest, runtime: Runtime) -> tuple[str, BackfillState]:
    """Count the range's windows and build the backfill orchestrator's input (windows not listed)."""
    whole = Window.parse(request.start, request.end, field=None)  # the body's own from and to
    count = count_windows(whole.start, request.every, whole.end)  # computed: a range can be huge
    if count > MAX_BACKFILL_WINDOWS:
        raise RequestError(
            "every", f"splits the range into {count} windows, more than {MAX_BACKFILL_WINDOWS}; widen it"
        )
    # Every window, not only the first: a calendar step makes windows of different lengths
    # (P1M1D from Jan 31: 30, 32, 31 days).
    longest = longest_window(whole.start, request.every, whole.end)
    mapping = runtime.source(request.source).window
    if longest is not None and longest.span > mapping.max_span:
        raise RequestError(
            "every",
            f"makes windows of up to {longest.span} ({longest.folder}) but source {request.source!r} "
            f"allows at most {mapping.max_span} (window.max_span); use a shorter every",
            source=request.source,
        )
    first_window = window_at(whole.start, request.every, 0, whole.end)
    assert first_window is not None  # count >= 1: Window.parse refuses empty ranges
    first = IngestRequest.model_validate(
        {
            "source": request.source,
            "window": first_window.to_json(),
            "pipelineRunId": request.pipeline_run_id,
            "pipelineName": request.pipeline_name,
            "mode": request.mode,
        }
    )
    _, template = prepare_ingest(first, runtime)  # validates the role once for all
    environment = runtime.settings.environment.value
    every = iso_duration(request.every)
    instance_id = backfill_instance_id(environment, template.source, whole, every)
    if request.pipeline_run_id is None:
        template.pipeline_run_id = instance_id
    return instance_id, BackfillState(
        template=template,
        environment=environment,
        start=whole.to_json()["from"],
        end=whole.to_json()["to"],
        every=every,
        count=count,
        max_parallel=request.max_parallel,
        manifest=backfill_manifest_folder(environment, template.source, instance_id),
    )


def backfill_manifest_folder(environment: str, source: str, instance_id: str) -> str:
    """Where a backfill's per-window outcomes land: one JSON blob per batch of windows."""
    return f"{environment}/{source}/_backfill/{instance_id}"


def iso_duration(every: Every | timedelta) -> str:
    """A duration as ISO 8601 (PT1H, P1DT2H, P1M), as pydantic renders a timedelta everywhere else."""
    if isinstance(every, Every):
        return every.text
    return str(_DURATION.dump_python(every, mode="json"))
