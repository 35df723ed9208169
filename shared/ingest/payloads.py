"""Pydantic models at the edges: what callers send, and what crosses durable history.

Everything here is small and secret-free by construction: these values are persisted in the
durable task hub's history and returned to ADF.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from shared.errors import RequestError

Mode = Literal["skip-if-complete", "replace"]
ModelT = TypeVar("ModelT", bound=BaseModel)


class _Edge(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class WindowBody(_Edge):
    start: str = Field(alias="from")
    end: str = Field(alias="to")


def run_text(value: str | None, info: ValidationInfo) -> str | None:
    """Pipeline run ids and names: printable; the run id ASCII, as it travels in a header."""
    if value is not None and (not value.strip() or not value.isprintable()):
        raise ValueError("must be non-blank printable text")
    if value is not None and info.field_name == "pipeline_run_id" and not value.isascii():
        raise ValueError("must be ASCII (it is sent as the x-correlation-id header)")
    return value


class IngestRequest(_Edge):
    """POST /api/ingest body (also built by the CLI)."""

    source: str = Field(min_length=1, max_length=63)
    window: WindowBody
    pipeline_run_id: str | None = Field(None, alias="pipelineRunId", max_length=200)
    pipeline_name: str | None = Field(None, alias="pipelineName", max_length=260)
    mode: Mode = "skip-if-complete"
    dry_run: bool = Field(False, alias="dryRun")

    _run_text = field_validator("pipeline_run_id", "pipeline_name")(lambda value, info: run_text(value, info))


class BackfillRequest(_Edge):
    """POST /api/backfill body (also built by the CLI)."""

    source: str = Field(min_length=1, max_length=63)
    start: str = Field(alias="from")
    end: str = Field(alias="to")
    every: timedelta = Field(description="ISO8601 duration of each window, e.g. PT1H or P1D.")
    max_parallel: int = Field(4, alias="maxParallel", ge=1, le=32)
    pipeline_run_id: str | None = Field(None, alias="pipelineRunId", max_length=200)
    pipeline_name: str | None = Field(None, alias="pipelineName", max_length=260)
    mode: Mode = "skip-if-complete"

    _run_text = field_validator("pipeline_run_id", "pipeline_name")(lambda value, info: run_text(value, info))

    @field_validator("every")
    @classmethod
    def _every(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=1):
            raise ValueError("must be at least PT1M")
        return value


class ProbeRequest(_Edge):
    """POST /api/probe body."""

    source: str = Field(min_length=1, max_length=63)


def parse_request(model: type[ModelT], body: Any) -> ModelT:
    """Validate a request body; the first problem becomes a RequestError naming the field."""
    if not isinstance(body, dict):
        raise RequestError("body", "must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in err["loc"]) or "body"
        reason = err["msg"]
        if err["type"] == "missing":
            reason = "is required"
        elif err["type"] == "extra_forbidden":
            reason = "is not a known field"
        elif err["type"] == "literal_error":
            reason = f"must be one of {err.get('ctx', {}).get('expected', 'the documented values')}"
        raise RequestError(field, reason) from None


class ActivityRetry(_Edge):
    """Durable RetryOptions for the activities of one run, fixed at start from the catalog."""

    attempts: int = 3
    first_retry_ms: int = 5000


class Segment(_Edge):
    """A sub-window walked on its own, with its own cursor and parts (one when not segmenting)."""

    index: int
    window: dict[str, str]
    cursor: str | None = None
    next_part: int = 0
    pages: int = 0
    fetched: bool = False


class IngestState(_Edge):
    """The ingest orchestrator's input, carried across continue_as_new."""

    source: str
    window: dict[str, str]
    pipeline_run_id: str
    pipeline_name: str | None = None
    mode: Mode = "skip-if-complete"
    dry_run: bool = False
    role_arn: str | None = None
    session_name: str | None = None
    retry: ActivityRetry = Field(default_factory=ActivityRetry)
    parts_per_execution: int = 20
    # Progress, checkpointed in history:
    planned: bool = False
    prefix: str | None = None
    generation: int = 1
    folder: str = ""
    previous_folder: str | None = None
    manifest_etag: str | None = None
    segments: list[Segment] = Field(default_factory=list)
    max_parallel_segments: int = 1
    parts: list[dict[str, Any]] = Field(default_factory=list)
    started_at: str | None = None
    executions: int = 1


class FetchPartInput(_Edge):
    source: str
    window: dict[str, str]
    prefix: str
    folder: str = ""
    segment: int | None = None
    part_index: int
    cursor: str | None
    pages_before: int
    pipeline_run_id: str
    pipeline_name: str | None
    instance_id: str
    role_arn: str | None
    session_name: str | None
    max_pages: int | None = None


class FetchPartResult(_Edge):
    part: dict[str, Any] | None
    next_cursor: str | None
    done: bool
    pages: int
    records: int


class PlanInput(_Edge):
    source: str
    window: dict[str, str]
    mode: Mode
    dry_run: bool
    # Correlation only (logs and spans of the activity), like every other activity input.
    pipeline_run_id: str | None = None
    instance_id: str | None = None


class PlanResult(_Edge):
    prefix: str
    complete: bool
    summary: dict[str, Any] | None = None
    generation: int = 1
    folder: str = ""
    previous_folder: str | None = None
    manifest_etag: str | None = None
    segments: list[Segment] = Field(default_factory=list)
    resumed_parts: list[dict[str, Any]] = Field(default_factory=list)


class BackfillState(_Edge):
    """The backfill orchestrator's input: one ingest per window, at most max_parallel at once."""

    template: IngestState
    windows: list[dict[str, str]]
    instance_ids: list[str]
    max_parallel: int


class FinalizeInput(_Edge):
    state: IngestState
    instance_id: str
