"""What crosses durable history: orchestrator inputs and activity inputs and results.

Everything here is small and secret-free by construction: these values are persisted in the
durable task hub's history and returned to ADF.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.ingest.requests import Mode
from shared.landing.parts import PartInfo


class _Edge(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class Correlated(_Edge):
    """Who a payload works for: logged and traced with every activity, sent on every request."""

    pipeline_run_id: str | None = None
    pipeline_name: str | None = None
    instance_id: str | None = None


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
    parts: list[PartInfo] = Field(default_factory=list)
    started_at: str | None = None
    executions: int = 1

    def correlation(self, instance_id: str) -> dict[str, Any]:
        """The Correlated fields of this run, for the activities it schedules."""
        return {
            "pipeline_run_id": self.pipeline_run_id,
            "pipeline_name": self.pipeline_name,
            "instance_id": instance_id,
        }


class FetchPartInput(Correlated):
    pipeline_run_id: str
    instance_id: str
    source: str
    window: dict[str, str]
    prefix: str
    folder: str = ""
    segment: int | None = None
    part_index: int
    cursor: str | None
    pages_before: int
    role_arn: str | None
    session_name: str | None
    max_pages: int | None = None


class FetchPartResult(_Edge):
    part: PartInfo | None
    next_cursor: str | None
    done: bool
    pages: int
    records: int


class PlanInput(Correlated):
    source: str
    window: dict[str, str]
    mode: Mode
    dry_run: bool


class PlanResult(_Edge):
    prefix: str
    complete: bool
    summary: dict[str, Any] | None = None
    generation: int = 1
    folder: str = ""
    previous_folder: str | None = None
    manifest_etag: str | None = None
    segments: list[Segment] = Field(default_factory=list)
    resumed_parts: list[PartInfo] = Field(default_factory=list)


class BackfillState(_Edge):
    """The backfill orchestrator's input: one ingest per window, at most max_parallel at once."""

    template: IngestState
    windows: list[dict[str, str]]
    instance_ids: list[str]
    max_parallel: int


class FinalizeInput(_Edge):
    state: IngestState
    instance_id: str
